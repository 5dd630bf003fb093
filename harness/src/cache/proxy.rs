//! The fault-injecting cache proxy. It sits on loopback between a build tool and its
//! cache (embedded or external) and does one thing to the traffic:
//! - pass-through, `blackhole` and `slow` work on raw TCP (bytes copied as they come, never
//!   parsed), so they apply to gRPC too;
//! - `http-500`, `corrupt` and `poison` speak HTTP/1.1 (Nix binary caches, Bazel's HTTP
//!   cache) and stream bodies through: only a narinfo or action-cache entry that `poison`
//!   rewrites is held whole, and never more than `POISON_MAX_BYTES` of it;
//! - `refuse` is a port nobody listens on.
//!
//! It runs on its own thread with a single-threaded tokio runtime and stops when dropped.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub use crate::cache::poison_nar::NarinfoSigner;
use crate::cache::poison_nar::{poison_nar, POISON_NAR_PATH};
use crate::cache::reapi;
use crate::error::{Error, IoContext, Result};
use crate::plan::{Fault, Link, SlowSettings};
use crate::tools::hex;

/// What a proxy did, for the evidence.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Accepted client connections, in every mode.
    pub connections: AtomicU64,
    /// HTTP requests, counted where the proxy parses HTTP (`http-500`, `corrupt`, `poison`);
    /// the raw-TCP modes (pass-through, `blackhole`, `slow`) never parse, so they leave it 0.
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
    /// Pass-through shaped as a link to a distant cache (`--link`); unshaped, the plain
    /// pass-through.
    Link(Link),
}

/// Per direction. `splice(2)` through a pipe was tried instead of copying: on loopback it
/// cost more CPU per GiB here (the extra hop's TCP work dominates, not the copy).
const PASS_THROUGH_BUFFER: usize = 256 * 1024;
/// Socket buffers of the pass-through's two sockets: the extra hop then moves data in
/// fewer, larger steps (about 10% faster through the proxy on loopback than the kernel's
/// autotuned sizes in measurements here).
const PASS_THROUGH_SOCKET_BUFFER: usize = 1 << 20;

/// The most of a narinfo or action-cache entry `poison` holds to rewrite it; both are a few
/// KiB, and a larger one passes untouched (or, without a length, is refused with 502).
pub const POISON_MAX_BYTES: usize = 1 << 20;

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
    /// Signs `poison`'s Nix entries anew when the harness holds the cache's key.
    nix_signer: Option<NarinfoSigner>,
    counters: Arc<ProxyCounters>,
}

impl FaultProxy {
    pub fn start(
        upstream: SocketAddr,
        mode: Mode,
        slow: SlowSettings,
        poison_suffix: &str,
    ) -> Result<FaultProxy> {
        Self::start_signing(upstream, mode, slow, poison_suffix, None)
    }

    /// `start`, where `poison` serves Nix a validly signed wrong entry (signed with
    /// `nix_signer`, the cache's own key) instead of an unsigned one.
    pub fn start_signing(
        upstream: SocketAddr,
        mode: Mode,
        slow: SlowSettings,
        poison_suffix: &str,
        nix_signer: Option<NarinfoSigner>,
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
            nix_signer,
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
        Mode::Link(link) if link.shaped() => {
            let rtt = link.rtt();
            shaped(client, ctx.upstream, rtt, rtt, link.bandwidth_bytes_per_s).await
        }
        Mode::PassThrough | Mode::Link(_) => {
            if let Ok(mut upstream) = TcpStream::connect(ctx.upstream).await {
                let _ = upstream.set_nodelay(true);
                let mut client = client;
                for socket in [&client, &upstream] {
                    let socket = socket2::SockRef::from(socket);
                    let _ = socket.set_recv_buffer_size(PASS_THROUGH_SOCKET_BUFFER);
                    let _ = socket.set_send_buffer_size(PASS_THROUGH_SOCKET_BUFFER);
                }
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
        Mode::Fault(Fault::Slow) => {
            let rate = ctx.slow.bytes_per_sec.max(1);
            let no_handshake = Duration::ZERO;
            shaped(
                client,
                ctx.upstream,
                no_handshake,
                ctx.slow.latency,
                Some(rate),
            )
            .await
        }
        Mode::Fault(fault) => {
            let service = hyper::service::service_fn(|req| handle_request(req, fault, ctx.clone()));
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

/// Each burst from the client waits `latency` before it goes on; the answers trickle at
/// `rate` bytes per second (unlimited: `None`). On a raw stream a burst stands for a
/// request: an HTTP/1.1 or gRPC client sends a small request in one write and then waits,
/// so each request pays the latency once (a large upload arriving in several reads pays it
/// per read). A new connection first waits `handshake` (a TCP handshake's round trip).
async fn shaped(
    client: TcpStream,
    upstream: SocketAddr,
    handshake: Duration,
    latency: Duration,
    rate: Option<u64>,
) {
    tokio::time::sleep(handshake).await;
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
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
        let chunk = rate.map_or(PASS_THROUGH_BUFFER, |rate| {
            (rate / 20).clamp(512, 64 * 1024) as usize
        });
        let mut buf = vec![0u8; chunk];
        loop {
            match upstream_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if let Some(rate) = rate {
                        tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
                    }
                }
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, answers);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Reply = Response<BoxBody<Bytes, BoxError>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = status;
    response
}

fn full(body: Bytes) -> BoxBody<Bytes, BoxError> {
    Full::new(body).map_err(|never| match never {}).boxed()
}

async fn handle_request(
    req: Request<Incoming>,
    fault: Fault,
    ctx: Arc<Context>,
) -> std::result::Result<Reply, Infallible> {
    ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
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
    if fault == Fault::Poison && is_get && path.ends_with(POISON_NAR_PATH) {
        return Ok(reply(StatusCode::OK, poison_nar()));
    }
    let response = match forward(req, ctx.upstream).await {
        Ok(r) => r,
        Err(e) => return Ok(upstream_failed(e)),
    };
    let (mut parts, body) = response.into_parts();
    if !is_get || parts.status != StatusCode::OK {
        return Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed(),
        ));
    }
    let body = match fault {
        Fault::Corrupt if is_blob(&path) => {
            ctx.counters.corrupted.fetch_add(1, Ordering::Relaxed);
            // Same length, so the upstream's length headers stay true.
            Corrupting::new(body).boxed()
        }
        Fault::Poison
            if may_poison(&path) && body.size_hint().lower() <= POISON_MAX_BYTES as u64 =>
        {
            let entry = match Limited::new(body, POISON_MAX_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => return Ok(upstream_failed(e.to_string())),
            };
            let poisoned = poison(&path, &entry, &ctx);
            if poisoned.is_some() {
                ctx.counters.poisoned.fetch_add(1, Ordering::Relaxed);
                // The body changed length; hyper sets it again from the full body.
                parts.headers.remove(hyper::header::CONTENT_LENGTH);
                parts.headers.remove(hyper::header::TRANSFER_ENCODING);
            }
            full(poisoned.unwrap_or(entry))
        }
        _ => body.map_err(BoxError::from).boxed(),
    };
    Ok(Response::from_parts(parts, body))
}

fn upstream_failed(e: impl std::fmt::Display) -> Reply {
    reply(
        StatusCode::BAD_GATEWAY,
        format!("fault proxy: upstream: {e}\n"),
    )
}

/// Sends the request on a new upstream connection; both bodies stream.
async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
) -> std::result::Result<Response<Incoming>, String> {
    let stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection lives on until the response body has been read.
    tokio::spawn(connection);
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// NARs (`/nar/`) and Bazel CAS blobs (`/cas/`) are content; narinfos and action-cache
/// entries are metadata and stay intact.
fn is_blob(path: &str) -> bool {
    path.contains("/nar/") || path.contains("/cas/")
}

/// What `poison` may rewrite: narinfos and action-cache entries.
fn may_poison(path: &str) -> bool {
    path.ends_with(".narinfo") || path.contains("/ac/")
}

/// A body passed on frame by frame with one byte in every 4 KiB flipped, and the middle
/// one when the length is known (a byte both rules pick flips back), keeping the length.
struct Corrupting {
    inner: Incoming,
    offset: u64,
    middle: Option<u64>,
}

impl Corrupting {
    fn new(inner: Incoming) -> Corrupting {
        let middle = inner
            .size_hint()
            .exact()
            .filter(|len| *len > 0)
            .map(|len| len / 2);
        Corrupting {
            inner,
            offset: 0,
            middle,
        }
    }
}

impl Body for Corrupting {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BoxError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let frame = frame.map_data(|data| {
            let start = self.offset;
            self.offset += data.len() as u64;
            flip_bytes(&data, start, self.middle)
        });
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `chunk` (at `start` in its body) with the bytes at multiples of 4 KiB and at `middle`
/// flipped.
fn flip_bytes(chunk: &Bytes, start: u64, middle: Option<u64>) -> Bytes {
    let end = start + chunk.len() as u64;
    let mut bytes = BytesMut::from(chunk.as_ref());
    let first = start.div_ceil(4096) * 4096;
    for at in (first..end)
        .step_by(4096)
        .chain(middle.filter(|m| (start..end).contains(m)))
    {
        bytes[(at - start) as usize] ^= 0xff;
    }
    bytes.freeze()
}

/// Nix: the narinfo points at a NAR of the wrong content, signed with the cache's key
/// when the harness holds it; otherwise it loses its signatures (so no trusted key
/// vouches for it). Bazel: the action-cache entry's outputs matching the suffix point at
/// `POISON_BLOB`.
fn poison(path: &str, body: &Bytes, ctx: &Context) -> Option<Bytes> {
    if path.ends_with(".narinfo") {
        let text = std::str::from_utf8(body).ok()?;
        if let Some(signer) = &ctx.nix_signer {
            return signer.poison(text).map(Bytes::from);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback HTTP server on its own thread that answers every request with `body`;
    /// it lives as long as the test process.
    fn upstream(body: &'static [u8]) -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
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
                    let _ = stream.write_all(body);
                });
            }
        });
        addr
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
    fn flipping_in_chunks_equals_flipping_the_whole_body() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let whole = flip_bytes(&Bytes::from(body.clone()), 0, Some(5000));
        let flipped: Vec<usize> = (0..body.len()).filter(|i| whole[*i] != body[*i]).collect();
        assert_eq!(flipped, vec![0, 4096, 5000, 8192]);
        for split in [1, 4095, 4096, 4097, 5000, 9999] {
            let (a, b) = body.split_at(split);
            let mut joined = flip_bytes(&Bytes::copy_from_slice(a), 0, Some(5000)).to_vec();
            joined.extend_from_slice(&flip_bytes(
                &Bytes::copy_from_slice(b),
                split as u64,
                Some(5000),
            ));
            assert_eq!(joined, whole, "split at {split}");
        }
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
    fn a_link_pays_its_round_trip_per_connection_and_request_and_caps_bandwidth() {
        let body: &'static [u8] = &[7u8; 100_000];
        let link = |rtt_ms, bandwidth_bytes_per_s| {
            start(
                upstream(body),
                Mode::Link(Link {
                    rtt_ms,
                    bandwidth_bytes_per_s,
                }),
            )
        };
        let proxy = link(150, None);
        let started = std::time::Instant::now();
        assert_eq!(get(proxy.addr(), "/x").unwrap().body, body);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "handshake + request"
        );
        // 100 kB at 500 kB/s: at least 0.2 s, whatever the machine.
        let proxy = link(0, Some(500_000));
        let started = std::time::Instant::now();
        assert_eq!(get(proxy.addr(), "/x").unwrap().body, body);
        assert!(started.elapsed() >= Duration::from_millis(190));
        // Unshaped: the plain pass-through, bytes unchanged.
        assert_eq!(get(link(0, None).addr(), "/x").unwrap().body, body);
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
