//! The fault-injecting cache proxy. It sits on loopback between a build tool and its
//! cache (embedded or external) and does one thing to the traffic:
//! - pass-through, `blackhole` and `slow` work on raw TCP, so they apply to gRPC too;
//! - `http-500`, `corrupt` and `poison` speak HTTP/1.1 (Nix binary caches, Bazel's HTTP cache);
//! - `refuse` is a port nobody listens on.
//!
//! It runs on its own thread with a single-threaded tokio runtime and stops when dropped.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::cache::reapi;
use crate::error::{Error, IoContext, Result};
use crate::plan::{Fault, SlowSettings};

/// What a proxy did, for the evidence.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Blob bodies with flipped bytes.
    pub corrupted: AtomicU64,
    /// Entries made valid-looking but wrong.
    pub poisoned: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    PassThrough,
    Fault(Fault),
}

const PASS_THROUGH_BUFFER: usize = 256 * 1024;

/// The blob poisoned action-cache entries point at: valid (its digest matches), wrong.
pub const POISON_BLOB: &[u8] =
    b"flywheel-bench poison: a valid blob that is not this action's output\n";

pub struct FaultProxy {
    addr: SocketAddr,
    counters: Arc<ProxyCounters>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Context {
    upstream: SocketAddr,
    mode: Mode,
    slow: SlowSettings,
    /// Which Bazel outputs a poisoned action-cache entry redirects (by path suffix).
    poison_suffix: String,
    poison_hash: String,
    counters: Arc<ProxyCounters>,
}

impl FaultProxy {
    pub fn start(
        upstream: SocketAddr,
        mode: Mode,
        slow: SlowSettings,
        poison_suffix: &str,
    ) -> Result<FaultProxy> {
        let counters = Arc::new(ProxyCounters::default());
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context(|| "binding the fault proxy on loopback".into())?;
        let addr = listener
            .local_addr()
            .context(|| "reading the fault proxy's address".into())?;
        if mode == Mode::Fault(Fault::Refuse) {
            // Close the port again: connections to it are refused. Nothing else on this
            // machine is likely to take a just-released ephemeral port within a case.
            drop(listener);
            return Ok(FaultProxy {
                addr,
                counters,
                shutdown: None,
                thread: None,
            });
        }
        listener
            .set_nonblocking(true)
            .context(|| "configuring the fault proxy's socket".into())?;
        let ctx = Arc::new(Context {
            upstream,
            mode,
            slow,
            poison_suffix: poison_suffix.to_string(),
            poison_hash: hex(&Sha256::digest(POISON_BLOB)),
            counters: counters.clone(),
        });
        let (tx, rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context(|| "starting the fault proxy's runtime".into())?;
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || runtime.block_on(serve(listener, ctx, rx)))
            .map_err(|e| Error::io("starting the fault proxy's thread", e))?;
        Ok(FaultProxy {
            addr,
            counters,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn counters(&self) -> &ProxyCounters {
        &self.counters
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: StdListener, ctx: Arc<Context>, mut shutdown: oneshot::Receiver<()>) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    // Connections are tasks of this runtime: they all end when `block_on` returns.
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(handle_connection(client, ctx.clone()));
            }
        }
    }
}

async fn handle_connection(client: TcpStream, ctx: Arc<Context>) {
    let _ = client.set_nodelay(true);
    match ctx.mode {
        Mode::PassThrough => {
            if let Ok(mut upstream) = TcpStream::connect(ctx.upstream).await {
                let _ = upstream.set_nodelay(true);
                let mut client = client;
                // Large buffers: fewer wake-ups per megabyte, so a pass-through costs little.
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    PASS_THROUGH_BUFFER,
                    PASS_THROUGH_BUFFER,
                )
                .await;
            }
        }
        Mode::Fault(Fault::Blackhole) => blackhole(client).await,
        Mode::Fault(Fault::Slow) => slow(client, &ctx).await,
        Mode::Fault(_) => {
            let service = hyper::service::service_fn(|req| handle_request(req, ctx.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(client), service)
                .await;
        }
    }
}

/// Reads and discards whatever arrives and never answers.
async fn blackhole(mut client: TcpStream) {
    let mut sink = [0u8; 16 * 1024];
    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    // The client closed its side; keep ours open until it goes away entirely.
    std::future::pending::<()>().await;
}

/// Each burst from the client waits `latency`; the answers trickle at `bytes_per_sec`.
async fn slow(client: TcpStream, ctx: &Context) {
    let Ok(upstream) = TcpStream::connect(ctx.upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let latency = ctx.slow.latency;
    let rate = ctx.slow.bytes_per_sec.max(1);
    let requests = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tokio::time::sleep(latency).await;
                    if upstream_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    let answers = async move {
        let chunk = (rate / 20).clamp(512, 64 * 1024) as usize;
        let mut buf = vec![0u8; chunk];
        loop {
            match upstream_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, answers);
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn handle_request(
    req: Request<Incoming>,
    ctx: Arc<Context>,
) -> std::result::Result<Reply, Infallible> {
    ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
    let fault = match ctx.mode {
        Mode::Fault(f) => f,
        Mode::PassThrough => unreachable!("pass-through never parses HTTP"),
    };
    if fault == Fault::Http500 {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "flywheel-bench fault proxy: http-500\n",
        ));
    }
    let path = req.uri().path().to_string();
    let is_get = req.method() == hyper::Method::GET;
    if fault == Fault::Poison && is_get && path.ends_with(&format!("/cas/{}", ctx.poison_hash)) {
        return Ok(reply(StatusCode::OK, POISON_BLOB));
    }
    let (status, mut parts, body) = match forward(req, ctx.upstream).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(reply(
                StatusCode::BAD_GATEWAY,
                format!("fault proxy: upstream: {e}\n"),
            ))
        }
    };
    let body = if is_get && status == StatusCode::OK {
        match fault {
            Fault::Corrupt if is_blob(&path) => {
                ctx.counters.corrupted.fetch_add(1, Ordering::Relaxed);
                corrupt(&body)
            }
            Fault::Poison => match poison(&path, &body, &ctx) {
                Some(poisoned) => {
                    ctx.counters.poisoned.fetch_add(1, Ordering::Relaxed);
                    poisoned
                }
                None => body,
            },
            _ => body,
        }
    } else {
        body
    };
    // The body may have changed length; hyper sets it again from the full body.
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, Full::new(body)))
}

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
) -> std::result::Result<(StatusCode, hyper::http::response::Parts, Bytes), String> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status, parts, body))
}

/// NARs (`/nar/`) and Bazel CAS blobs (`/cas/`) are content; narinfos and action-cache
/// entries are metadata and stay intact.
fn is_blob(path: &str) -> bool {
    path.contains("/nar/") || path.contains("/cas/")
}

/// Flips one byte in every 4 KiB and the middle one, keeping the length.
fn corrupt(body: &Bytes) -> Bytes {
    let mut bytes = body.to_vec();
    let len = bytes.len();
    for i in (0..len).step_by(4096).chain((len > 0).then_some(len / 2)) {
        bytes[i] ^= 0xff;
    }
    bytes.into()
}

/// Nix: the narinfo loses its signatures (so no trusted key vouches for it).
/// Bazel: the action-cache entry's outputs matching the suffix point at `POISON_BLOB`.
fn poison(path: &str, body: &Bytes, ctx: &Context) -> Option<Bytes> {
    if path.ends_with(".narinfo") {
        let text = std::str::from_utf8(body).ok()?;
        let unsigned: String = text
            .lines()
            .filter(|l| !l.starts_with("Sig:"))
            .map(|l| format!("{l}\n"))
            .collect();
        return (unsigned != text).then(|| unsigned.into());
    }
    if path.contains("/ac/") {
        let (poisoned, _) = reapi::redirect_outputs(
            body,
            |p| p.ends_with(&ctx.poison_suffix),
            &ctx.poison_hash,
            POISON_BLOB.len() as u64,
        )?;
        return Some(poisoned.into());
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(body: &'static [u8]) -> SocketAddr {
        crate::cache::http::serve_static(body.to_vec()).unwrap()
    }

    fn get(addr: SocketAddr, path: &str) -> std::io::Result<crate::cache::http::Response> {
        crate::cache::http::get(addr, path, Duration::from_secs(5))
    }

    fn start(up: SocketAddr, mode: Mode) -> FaultProxy {
        FaultProxy::start(up, mode, SlowSettings::default(), ".txt").unwrap()
    }

    #[test]
    fn pass_through_is_transparent() {
        let up = upstream(b"hello");
        let proxy = start(up, Mode::PassThrough);
        assert_eq!(get(proxy.addr(), "/x").unwrap().body, b"hello");
    }

    #[test]
    fn refuse_refuses() {
        let proxy = start(upstream(b"x"), Mode::Fault(Fault::Refuse));
        let err = get(proxy.addr(), "/x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn blackhole_accepts_and_never_answers() {
        let proxy = start(upstream(b"x"), Mode::Fault(Fault::Blackhole));
        let err =
            crate::cache::http::get(proxy.addr(), "/x", Duration::from_millis(300)).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        assert_eq!(proxy.counters().connections.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn http_500_answers_every_request_with_500() {
        let proxy = start(upstream(b"x"), Mode::Fault(Fault::Http500));
        assert_eq!(
            get(proxy.addr(), "/nix/nix-cache-info").unwrap().status,
            500
        );
    }

    #[test]
    fn corrupt_flips_blob_bytes_and_leaves_metadata_alone() {
        let body: &'static [u8] = b"0123456789abcdef";
        let proxy = start(upstream(body), Mode::Fault(Fault::Corrupt));
        let blob = get(proxy.addr(), "/nix/nar/abc.nar.xz").unwrap().body;
        assert_eq!(blob.len(), body.len());
        assert_ne!(blob, body);
        assert_eq!(get(proxy.addr(), "/nix/abc.narinfo").unwrap().body, body);
        assert_eq!(proxy.counters().corrupted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn slow_adds_latency() {
        let proxy = FaultProxy::start(
            upstream(b"hello"),
            Mode::Fault(Fault::Slow),
            SlowSettings {
                latency: Duration::from_millis(300),
                bytes_per_sec: 1 << 20,
            },
            ".txt",
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(get(proxy.addr(), "/x").unwrap().body, b"hello");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn poison_strips_narinfo_signatures_and_serves_the_poison_blob() {
        let narinfo: &'static [u8] =
            b"StorePath: /nix/store/abc-x\nNarHash: sha256:1\nSig: k:AAAA\n";
        let proxy = start(upstream(narinfo), Mode::Fault(Fault::Poison));
        let got = get(proxy.addr(), "/nix/abc.narinfo").unwrap().body;
        assert_eq!(got, b"StorePath: /nix/store/abc-x\nNarHash: sha256:1\n");
        let hash = hex(&Sha256::digest(POISON_BLOB));
        assert_eq!(
            get(proxy.addr(), &format!("/bazel/cas/{hash}"))
                .unwrap()
                .body,
            POISON_BLOB
        );
    }
}
