//! The fault proxy in pass-through mode must not slow cache transfers measurably:
//! the same 8 MiB download, directly and through the proxy, on loopback.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flywheel_bench::cache::http;
use flywheel_bench::cache::proxy::{FaultProxy, Mode};
use flywheel_bench::plan::SlowSettings;

const BODY_BYTES: usize = 8 << 20;

fn transfers(c: &mut Criterion) {
    let up = http::serve_static(vec![0x5au8; BODY_BYTES]).unwrap();
    let proxy = FaultProxy::start(up, Mode::PassThrough, SlowSettings::default(), ".txt").unwrap();
    let mut group = c.benchmark_group("8 MiB download over loopback");
    group.throughput(Throughput::Bytes(BODY_BYTES as u64));
    for (name, addr) in [
        ("direct", up),
        ("through the pass-through proxy", proxy.addr()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = http::get(addr, "/nar/x.nar", Duration::from_secs(30)).unwrap();
                assert_eq!(r.body.len(), BODY_BYTES);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transfers);
criterion_main!(benches);
