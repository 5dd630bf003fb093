//! The harness's own HTTP client (the Attic API, cache preflights, coverage): ureq with
//! rustls and the system's trust store (https without curl or OpenSSL), proxies as the run's
//! configuration resolved them, one timeout per request, and errors that name the method,
//! the URL (never credentials) and what went wrong. Callers judge statuses themselves.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig};
use ureq::Agent;
use url::Url;

use crate::boundary::public_url;
use crate::plan::proxies::Proxies;

/// Answers larger than this are cut (narinfos and API answers are a few KiB).
const MAX_ANSWER_BYTES: u64 = 16 << 20;

/// An HTTP method the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// How a request authenticates. The credential goes into a header, never into the URL.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// `Authorization: bearer TOKEN` (Attic's API).
    Bearer(&'a str),
    /// HTTP Basic (a binary cache read through netrc credentials, as Nix does).
    Basic {
        user: &'a str,
        password: &'a str,
    },
}

/// What a request sends.
pub enum Body {
    Empty,
    Json(Vec<u8>),
    /// `prefix` then the file's bytes, with their total length as Content-Length.
    File {
        prefix: Vec<u8>,
        file: PathBuf,
    },
}

/// One request: method, URL, credentials, extra headers, body and its own timeout.
pub struct Request<'a> {
    method: Method,
    url: &'a Url,
    auth: Auth<'a>,
    headers: Vec<(String, String)>,
    body: Body,
    timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: &'a Url, timeout: Duration) -> Request<'a> {
        Request {
            method,
            url,
            auth: Auth::None,
            headers: Vec::new(),
            body: Body::Empty,
            timeout,
        }
    }

    pub fn auth(mut self, auth: Auth<'a>) -> Self {
        self.auth = auth;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// An answer of any status: callers decide what a status means for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request that got no answer: what, where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    pub method: &'static str,
    /// The URL without any user or password.
    pub url: String,
    pub why: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.method, self.url, self.why)
    }
}

/// One agent (connection pool) per route: direct, through the http proxy, through the
/// https proxy, so keep-alive connections are never shared across routes.
pub struct Client {
    direct: Agent,
    via_http: Option<Agent>,
    via_https: Option<Agent>,
    proxies: Proxies,
}

impl Client {
    pub fn new(proxies: &Proxies) -> Result<Client, String> {
        Ok(Client {
            direct: agent(None)?,
            via_http: proxies.http().map(|p| agent(Some(p))).transpose()?,
            via_https: proxies.https().map(|p| agent(Some(p))).transpose()?,
            proxies: proxies.clone(),
        })
    }

    fn agent_for(&self, url: &Url) -> &Agent {
        if self.proxies.for_url(url).is_none() {
            return &self.direct;
        }
        let via = match url.scheme() {
            "https" => &self.via_https,
            _ => &self.via_http,
        };
        via.as_ref().unwrap_or(&self.direct)
    }

    /// Sends the request and reads the answer, whatever its status.
    pub fn send(&self, request: Request<'_>) -> Result<Response, HttpError> {
        let failed = |why: String| {
            let mut why = why;
            for secret in self.proxies.secrets() {
                why = why.replace(&secret, "<redacted>");
            }
            HttpError {
                method: request.method.name(),
                url: public_url(request.url),
                why,
            }
        };
        let agent = self.agent_for(request.url);
        let uri = request.url.as_str();
        let mut builder = match request.method {
            Method::Get => ureq::http::Request::get(uri),
            Method::Post => ureq::http::Request::post(uri),
            Method::Put => ureq::http::Request::put(uri),
            Method::Delete => ureq::http::Request::delete(uri),
        };
        match request.auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                builder = builder.header("authorization", format!("bearer {token}"))
            }
            Auth::Basic { user, password } => {
                use base64::Engine;
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                builder = builder.header("authorization", format!("Basic {pair}"));
            }
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let timeout = request.timeout;
        let answer = match &request.body {
            Body::Empty => run(agent, builder.body(()), timeout),
            Body::Json(bytes) => run(
                agent,
                builder
                    .header("content-type", "application/json")
                    .body(bytes.as_slice()),
                timeout,
            ),
            Body::File { prefix, file } => {
                let unreadable =
                    |e: std::io::Error| failed(format!("cannot read {}: {e}", file.display()));
                let opened = std::fs::File::open(file).map_err(unreadable)?;
                let length = opened.metadata().map_err(unreadable)?.len() + prefix.len() as u64;
                let mut reader = std::io::Cursor::new(prefix.as_slice()).chain(opened);
                run(
                    agent,
                    builder
                        .header("content-length", length)
                        .body(ureq::SendBody::from_reader(&mut reader)),
                    timeout,
                )
            }
        };
        let mut answer = answer.map_err(failed)?;
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| failed(describe(&e, request.timeout)))?;
        Ok(Response { status, body })
    }
}

/// Sends a built request with its own overall timeout (connect, send, answer and body
/// together).
fn run<B: ureq::AsSendBody>(
    agent: &Agent,
    request: Result<ureq::http::Request<B>, ureq::http::Error>,
    timeout: Duration,
) -> Result<ureq::http::Response<ureq::Body>, String> {
    // Only a header can be malformed here; its value may be a credential, so it is not shown.
    let request =
        request.map_err(|_| "a header value is not valid HTTP (a stray newline?)".to_string())?;
    let request = agent
        .configure_request(request)
        .timeout_global(Some(timeout))
        .build();
    agent.run(request).map_err(|e| describe(&e, timeout))
}

fn agent(proxy: Option<&Url>) -> Result<Agent, String> {
    let proxy = proxy
        .map(|p| ureq::Proxy::new(p.as_str()))
        .transpose()
        .map_err(|e| {
            format!(
                "the proxy {} is not usable: {e}",
                public_url(proxy.expect("set"))
            )
        })?;
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .proxy(proxy)
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .user_agent(format!("flywheel-bench/{}", env!("CARGO_PKG_VERSION")))
        // Keep a connection per concurrent request alive (coverage asks 25 at a time), so
        // https requests do not pay a handshake each.
        .max_idle_connections_per_host(64)
        .max_idle_connections(128)
        .build();
    Ok(config.into())
}

fn describe(error: &ureq::Error, timeout: Duration) -> String {
    match error {
        ureq::Error::Timeout(_) => format!("no answer within {} s", timeout.as_secs_f64()),
        ureq::Error::Io(io) => format!("{} ({:?})", io, io.kind()),
        // rustls's words when the platform's trust store is empty or missing.
        other if other.to_string().contains("No CA certificates") => format!(
            "{other}\n  fix: install a CA bundle (Debian: ca-certificates) or set SSL_CERT_FILE to one"
        ),
        other => other.to_string(),
    }
}

/// Runs `work` on every item with at most `limit` at a time, keeping the items' order.
pub fn concurrently<T: Sync, R: Send>(
    items: &[T],
    limit: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..limit.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(index) else { break };
                let result = work(item);
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((index, result));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::config::Env;
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener};
    use std::path::Path;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::with_vars(vars, Path::new("/"))
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    /// Accepts one connection, answers `reply` to its request, returns the request's head.
    fn one_shot(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(reply.as_bytes());
            String::from_utf8_lossy(&seen).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn sends_credentials_as_headers_and_reads_any_status() {
        let client = Client::new(&Proxies::default()).unwrap();
        let (addr, head) = one_shot("HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope");
        let target = url(&format!("http://{addr}/_api/v1/cache-config/main"));
        let answer = client
            .send(
                Request::new(Method::Get, &target, Duration::from_secs(10))
                    .auth(Auth::Bearer("t0k"))
                    .header("x-test", "1"),
            )
            .unwrap();
        assert_eq!(
            answer,
            Response {
                status: 403,
                body: b"nope".to_vec()
            }
        );
        let head = head.join().unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /_api/v1/cache-config/main http/1.1"),
            "{head}"
        );
        assert!(
            head.contains("authorization: bearer t0k") && head.contains("x-test: 1"),
            "{head}"
        );

        let (addr, head) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let target = url(&format!("http://{addr}/nix-cache-info"));
        client
            .send(
                Request::new(Method::Get, &target, Duration::from_secs(10)).auth(Auth::Basic {
                    user: "u",
                    password: "p",
                }),
            )
            .unwrap();
        // base64("u:p")
        assert!(head.join().unwrap().contains("Basic dTpw"));
    }

    #[test]
    fn uploads_a_prefix_and_a_file_with_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nar");
        std::fs::write(&file, b"NARBYTES").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).ends_with("{\"a\":1}NARBYTES") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the body ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let client = Client::new(&Proxies::default()).unwrap();
        let target = url(&format!("http://{addr}/_api/v1/upload-path"));
        let answer = client
            .send(
                Request::new(Method::Put, &target, Duration::from_secs(10)).body(Body::File {
                    prefix: b"{\"a\":1}".to_vec(),
                    file,
                }),
            )
            .unwrap();
        assert_eq!(answer.status, 200);
        let seen = server.join().unwrap().to_ascii_lowercase();
        assert!(seen.contains("content-length: 15"), "{seen}");
    }

    #[test]
    fn failures_name_the_method_the_url_and_why() {
        let client = Client::new(&Proxies::default()).unwrap();
        // Nothing listens on a port that was just freed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = url(&format!("http://127.0.0.1:{port}/x.narinfo"));
        let err = client
            .send(Request::new(Method::Get, &target, Duration::from_secs(5)))
            .unwrap_err();
        assert_eq!(err.method, "GET");
        assert!(
            err.to_string().starts_with(&format!("GET {target}: ")),
            "{err}"
        );
        assert!(err.why.contains("ConnectionRefused"), "{err}");

        // A server that accepts and never answers: the request's own timeout ends it.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = url(&format!("http://{}/slow", silent.local_addr().unwrap()));
        let started = std::time::Instant::now();
        let err = client
            .send(Request::new(
                Method::Get,
                &target,
                Duration::from_millis(300),
            ))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.why.contains("no answer within 0.3 s"), "{err}");

        let err = client
            .send(
                Request::new(Method::Get, &target, Duration::from_secs(1))
                    .auth(Auth::Bearer("tok\nen")),
            )
            .unwrap_err();
        assert!(
            err.why.contains("header") && !err.why.contains("tok"),
            "{err}"
        );
    }

    /// Runs the test `name` of this binary again in a child whose trust store is `cert_file`:
    /// rustls reads the store from the process's environment, which one test cannot change
    /// for itself while others run beside it; and the Nix build sandbox has no store at all.
    fn in_child_trusting(name: &str, cert_file: &str) -> bool {
        if std::env::var_os("FLYWHEEL_TEST_TRUST_STORE").is_some() {
            return false;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads", "1"])
            .env("FLYWHEEL_TEST_TRUST_STORE", "1")
            .env("SSL_CERT_FILE", cert_file)
            .env("SSL_CERT_DIR", "/nonexistent")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} with SSL_CERT_FILE={cert_file}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// The URL of a listener that answers plain HTTP where TLS is expected.
    fn plain_http_where_tls_is_expected() -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        });
        url(&format!("https://{addr}/nix-cache-info"))
    }

    #[test]
    fn https_speaks_tls_itself_and_names_the_url_when_the_handshake_fails() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tls/test-ca.pem"
        );
        if in_child_trusting(
            "exec::http::tests::https_speaks_tls_itself_and_names_the_url_when_the_handshake_fails",
            fixture,
        ) {
            return;
        }
        // rustls (no OpenSSL, no curl) tries the handshake, and the error says where and what.
        let target = plain_http_where_tls_is_expected();
        let client = Client::new(&Proxies::default()).unwrap();
        let err = client
            .send(Request::new(Method::Get, &target, Duration::from_secs(10)))
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("GET {target}: ")),
            "{err}"
        );
        assert!(
            err.why.contains("corrupt message"),
            "a TLS record error: {err}"
        );
    }

    #[test]
    fn a_machine_without_ca_certificates_is_told_how_to_get_them() {
        if in_child_trusting(
            "exec::http::tests::a_machine_without_ca_certificates_is_told_how_to_get_them",
            "/no-cert-file.crt",
        ) {
            return;
        }
        let target = plain_http_where_tls_is_expected();
        let client = Client::new(&Proxies::default()).unwrap();
        let err = client
            .send(Request::new(Method::Get, &target, Duration::from_secs(10)))
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("GET {target}: ")),
            "{err}"
        );
        assert!(
            err.why.contains("No CA certificates")
                && err
                    .why
                    .contains("fix: install a CA bundle (Debian: ca-certificates)")
                && err.why.contains("SSL_CERT_FILE"),
            "{err}"
        );
    }

    #[test]
    fn requests_go_through_the_proxy_unless_the_host_is_excluded() {
        // A CONNECT proxy that answers the tunnelled request itself.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = listener.local_addr().unwrap();
        let seen = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut heads = Vec::new();
            for reply in [
                "HTTP/1.1 200 Connection established\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ] {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1];
                while !seen.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut buf).unwrap() == 0 {
                        break;
                    }
                    seen.push(buf[0]);
                }
                heads.push(String::from_utf8_lossy(&seen).into_owned());
                stream.write_all(reply.as_bytes()).unwrap();
            }
            heads
        });
        let proxies = Proxies::from_env(&env(&[
            ("http_proxy", &format!("http://{proxy}")),
            ("no_proxy", "direct.invalid"),
        ]))
        .unwrap();
        let client = Client::new(&proxies).unwrap();
        let target = url("http://cache.invalid:8080/nix-cache-info");
        let answer = client
            .send(Request::new(Method::Get, &target, Duration::from_secs(10)))
            .unwrap();
        assert_eq!(answer.text(), "ok", "the proxy answered for cache.invalid");
        let heads = seen.join().unwrap();
        assert!(
            heads[0].starts_with("CONNECT cache.invalid:8080 "),
            "{heads:?}"
        );
        assert!(heads[1].starts_with("GET /nix-cache-info "), "{heads:?}");
        let direct = url("http://direct.invalid/x");
        let err = client
            .send(Request::new(Method::Get, &direct, Duration::from_secs(10)))
            .unwrap_err();
        assert!(
            !err.why.is_empty(),
            "resolved directly, and .invalid never resolves: {err}"
        );
    }

    #[test]
    fn concurrent_work_keeps_the_order_and_the_bound() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u32> = (0..40).collect();
        let out = concurrently(&items, 4, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(concurrently(&[] as &[u32], 8, |i| *i).is_empty());
    }
}
