//! The fault proxy streams: a 1 GiB blob passes with bounded memory, and `corrupt` flips
//! the same bytes of a streamed body as of a whole one, keeping its length.

#[path = "support/blob_server.rs"]
mod blob_server;

use blob_server::Client;
use flywheel_bench::cache::proxy::{FaultProxy, Mode, POISON_MAX_BYTES};
use flywheel_bench::plan::{Fault, SlowSettings};

const GIB: u64 = 1 << 30;
/// What the proxy may grow by while 1 GiB passes.
const MAX_GROWTH_BYTES: u64 = 64 << 20;

fn proxy(mode: Mode) -> FaultProxy {
    let up = blob_server::serve().unwrap();
    FaultProxy::start(up, mode, SlowSettings::default(), ".txt").unwrap()
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// How far the process's peak resident memory rose above its resident memory before `f`.
/// The peak is reset first (`clear_refs` 5), so earlier allocations do not hide a rise.
fn peak_growth(f: impl FnOnce()) -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    let before = status_bytes("VmRSS:");
    f();
    status_bytes("VmHWM:").saturating_sub(before)
}

/// Tests in this file take turns, so no other test allocates while one measures memory.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn a_1_gib_blob_passes_with_bounded_memory_in_raw_and_http_modes() {
    let _alone = alone();
    for (mode, path) in [
        (Mode::PassThrough, format!("/{GIB}/nar/big.nar")),
        (
            Mode::Fault(Fault::Corrupt),
            format!("/{GIB}/nix/nar/big.nar"),
        ),
        (Mode::Fault(Fault::Poison), format!("/{GIB}/bazel/cas/big")),
    ] {
        let proxy = proxy(mode);
        // Warm up: runtime, connections and buffers exist before the measurement.
        let mut client = Client::connect(proxy.addr()).unwrap();
        assert_eq!(client.get("/65536/warm", false).unwrap().len, 65536);
        let growth = peak_growth(|| {
            let got = Client::connect(proxy.addr())
                .unwrap()
                .get(&path, false)
                .unwrap();
            assert_eq!((got.status, got.len), (200, GIB), "{mode:?}");
        });
        assert!(
            growth < MAX_GROWTH_BYTES,
            "{mode:?}: peak RSS rose by {} MiB while 1 GiB passed",
            growth >> 20
        );
    }
}

#[test]
fn corrupt_flips_a_streamed_body_like_a_whole_one() {
    let _alone = alone();
    let proxy = proxy(Mode::Fault(Fault::Corrupt));
    let mut client = Client::connect(proxy.addr()).unwrap();
    for len in [1u64, 4096, 8192, 1_000_000] {
        let got = client.get(&format!("/{len}/nix/nar/x.nar"), true).unwrap();
        // One byte per started 4 KiB, and the middle one unless it is such a byte already
        // (then it flips back).
        let every_4k = len.div_ceil(4096);
        let expected = if (len / 2) % 4096 == 0 {
            every_4k - 1
        } else {
            every_4k + 1
        };
        assert_eq!((got.len, got.differing), (len, expected), "length {len}");
    }
    // Metadata passes untouched.
    let narinfo = client.get("/300/nix/x.narinfo", true).unwrap();
    assert_eq!((narinfo.len, narinfo.differing), (300, 0));
}

#[test]
fn poison_passes_an_entry_too_large_to_hold() {
    let _alone = alone();
    let proxy = proxy(Mode::Fault(Fault::Poison));
    let mut client = Client::connect(proxy.addr()).unwrap();
    let len = POISON_MAX_BYTES as u64 + 1;
    let got = client.get(&format!("/{len}/nix/x.narinfo"), true).unwrap();
    assert_eq!((got.status, got.len, got.differing), (200, len, 0));
    assert_eq!(
        proxy
            .counters()
            .poisoned
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
