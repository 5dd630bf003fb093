//! The fault proxy's cost in pass-through: the same downloads directly and through the
//! proxy on loopback (throughput at 8 MiB and 256 MiB, and the round trip of a small request
//! on a kept-alive connection, which is what a cache client's many narinfo lookups pay).

#[path = "../tests/support/blob_server.rs"]
mod blob_server;

use std::net::SocketAddr;
use std::time::Duration;

use blob_server::Client;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flywheel_bench::cache::proxy::{FaultProxy, Mode};
use flywheel_bench::plan::SlowSettings;

fn routes(up: SocketAddr, proxy: &FaultProxy) -> [(&'static str, SocketAddr); 2] {
    [
        ("direct", up),
        ("through the pass-through proxy", proxy.addr()),
    ]
}

fn downloads(c: &mut Criterion) {
    let up = blob_server::serve().unwrap();
    let proxy = FaultProxy::start(up, Mode::PassThrough, SlowSettings::default(), ".txt").unwrap();
    for (label, bytes, samples) in [("8 MiB", 8u64 << 20, 100), ("256 MiB", 256 << 20, 10)] {
        let mut group = c.benchmark_group(format!("{label} download over loopback"));
        group.throughput(Throughput::Bytes(bytes));
        group.sample_size(samples);
        if bytes > 64 << 20 {
            group.measurement_time(Duration::from_secs(10));
        }
        for (name, addr) in routes(up, &proxy) {
            let path = format!("/{bytes}/nar/x.nar");
            group.bench_function(name, |b| {
                // A fresh connection per download, as a cache client opens for a NAR.
                b.iter(|| {
                    let got = Client::connect(addr).unwrap().get(&path, false).unwrap();
                    assert_eq!(got.len, bytes);
                })
            });
        }
        group.finish();
    }
}

fn small_requests(c: &mut Criterion) {
    let up = blob_server::serve().unwrap();
    let proxy = FaultProxy::start(up, Mode::PassThrough, SlowSettings::default(), ".txt").unwrap();
    let mut group = c.benchmark_group("small request round trip (kept-alive connection)");
    for (name, addr) in routes(up, &proxy) {
        let mut client = Client::connect(addr).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| assert_eq!(client.get("/300/x.narinfo", false).unwrap().len, 300))
        });
    }
    group.finish();
}

criterion_group!(benches, downloads, small_requests);
criterion_main!(benches);
