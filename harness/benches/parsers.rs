//! Throughput of the log parsers that run once per sample, on input that grows with the
//! build: the Bazel execution log (target: 200 MB/s on 100 MB), the Bazel JSON trace
//! profile and Nix's internal-json log. Inputs are generated from recorded fixtures, so
//! their shape is real; nothing generated is committed. The streaming readers' peak heap
//! is printed too: it must follow what they keep (an execution log's output digests), not
//! the size of the file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flywheel_bench::tools::bazel_log::read_exec_log;
use flywheel_bench::tools::bazel_profile::read_profile;
use flywheel_bench::tools::nix_log::{parse_internal_json, parse_lines};
use flywheel_bench::tools::nix_phases::split_nix_time;

const TARGET_BYTES: usize = 100 << 20;

/// The system allocator, counting live bytes and their peak while `TRACKING` is on.
struct PeakHeap;

static TRACKING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if TRACKING.load(Ordering::Relaxed) {
            // Saturating: a block freed here may have been allocated before tracking began.
            let _ = LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                Some(live.saturating_sub(layout.size()))
            });
        }
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: PeakHeap = PeakHeap;

/// Runs `parse` once and prints the most heap it held at any moment, input excluded.
fn print_peak_heap<T>(what: &str, parse: impl FnOnce() -> T) -> T {
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    TRACKING.store(true, Ordering::Relaxed);
    let parsed = parse();
    TRACKING.store(false, Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed) as f64;
    println!("{what}: peak heap {:.2} MiB", peak / (1u64 << 20) as f64);
    parsed
}

fn fixture(path: &str) -> String {
    let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Copies of a recorded log until it holds `TARGET_BYTES`, each copy's output paths made
/// distinct (as in a big build, where every action writes its own files).
fn grown(recorded: &[String], distinct: &str) -> String {
    let mut out = String::with_capacity(TARGET_BYTES + (1 << 20));
    let mut copy = 0usize;
    while out.len() < TARGET_BYTES {
        let text = &recorded[copy % recorded.len()];
        out.push_str(&text.replace(distinct, &format!("{distinct}{copy}")));
        copy += 1;
    }
    out
}

fn exec_log(c: &mut Criterion) {
    let recorded = [
        fixture("bazel/cold.exec.json"),
        fixture("bazel/warm.exec.json"),
    ];
    let log = grown(&recorded, "k8-fastbuild");
    let outputs = print_peak_heap(
        "read_exec_log, 100 MB, every copy's outputs distinct",
        || {
            read_exec_log(log.as_bytes(), "generated")
                .unwrap()
                .outputs
                .len()
        },
    );
    println!("  (it keeps {outputs} output digests for verification)");
    // The same bytes with the same outputs in every copy: memory must not grow with the file.
    let repeated = grown(&recorded, "\u{0}");
    print_peak_heap("read_exec_log, 100 MB, the same outputs repeated", || {
        read_exec_log(repeated.as_bytes(), "generated").unwrap()
    });
    drop(repeated);
    let mut group = c.benchmark_group("bazel execution log");
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.sample_size(10);
    group.bench_function("read_exec_log, 100 MB", |b| {
        b.iter(|| read_exec_log(black_box(log.as_bytes()), "generated").unwrap())
    });
    group.finish();
}

/// A profile with the recorded builds' events repeated until it holds `TARGET_BYTES`,
/// each copy shifted to start after the previous one (as one long build's would).
fn grown_profile() -> String {
    let builds: Vec<(Vec<serde_json::Value>, i64)> = ["cold", "warm"]
        .iter()
        .map(|name| {
            let text = fixture(&format!("bazel/profile/{name}.profile.json"));
            let profile: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let events = profile["traceEvents"].as_array().expect("events").clone();
            let end = events
                .iter()
                .map(|e| e["ts"].as_i64().unwrap_or(0) + e["dur"].as_i64().unwrap_or(0))
                .max()
                .unwrap_or(0);
            (events, end)
        })
        .collect();
    let mut out = String::with_capacity(TARGET_BYTES + (1 << 20));
    out.push_str("{\"otherData\":{},\"traceEvents\":[\n");
    let (mut copy, mut offset) = (0, 0);
    while out.len() < TARGET_BYTES {
        let (events, end) = &builds[copy % builds.len()];
        for event in events {
            let mut event = event.clone();
            if let Some(ts) = event["ts"].as_i64() {
                event["ts"] = (ts + offset).into();
            }
            if copy > 0 || !out.ends_with('\n') {
                out.push_str(",\n");
            }
            out.push_str(&event.to_string());
        }
        offset += end;
        copy += 1;
    }
    out.push_str("\n]}\n");
    out
}

fn profile(c: &mut Criterion) {
    let profile = grown_profile();
    print_peak_heap("read_profile + split, 100 MB", || {
        read_profile(profile.as_bytes(), "generated")
            .unwrap()
            .split(60.0)
    });
    let mut group = c.benchmark_group("bazel json trace profile");
    group.throughput(Throughput::Bytes(profile.len() as u64));
    group.sample_size(10);
    group.bench_function("read_profile + split, 100 MB", |b| {
        b.iter(|| {
            read_profile(black_box(profile.as_bytes()), "generated")
                .unwrap()
                .split(60.0)
        })
    });
    group.finish();
}

fn nix_log(c: &mut Criterion) {
    let recorded = fixture("nix/cold.stderr.log");
    let copies = (20 << 20) / recorded.len();
    let log = recorded.repeat(copies);
    let lines = log.lines().count() as u64;
    let arrivals: Vec<u64> = (0..lines).map(|i| i * 100).collect();
    let mut group = c.benchmark_group("nix internal-json");
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.sample_size(10);
    group.bench_function("parse_internal_json, 20 MB", |b| {
        b.iter(|| parse_internal_json(black_box(&log)))
    });
    group.bench_function("split_nix_time, 20 MB", |b| {
        b.iter(|| {
            split_nix_time(
                &parse_lines(black_box(&log)),
                &arrivals,
                lines as f64 * 1e-4,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, exec_log, profile, nix_log);
criterion_main!(benches);
