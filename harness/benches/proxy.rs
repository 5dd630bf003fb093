//! The fault proxy in pass-through mode must not slow cache transfers measurably:
//! the same 8 MiB download, directly and through the proxy, on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flywheel_bench::cache::http;
use flywheel_bench::cache::proxy::{FaultProxy, Mode};
use flywheel_bench::plan::SlowSettings;

const BODY_BYTES: usize = 8 << 20;

/// An HTTP server that answers every request with the same large body.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = vec![0x5au8; BODY_BYTES];
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    addr
}

fn transfers(c: &mut Criterion) {
    let up = upstream();
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
