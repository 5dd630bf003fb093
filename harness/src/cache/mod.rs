//! Caches the warm builds read from: the embedded server or an external cache, provisioned
//! once per run into `NixCache` / `BazelCache` values that drivers and the vm lane use.

pub mod attic;
pub mod attic_api;
pub mod client;
pub mod http;
pub mod nginx;
mod poison_nar;
pub mod proxy;
pub mod reapi;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::cache::client::Proxies;
use crate::error::{Error, IoContext, Result};
use crate::plan::config::{BazelCacheConfig, NixCacheConfig, Secret, StoreCacheConfig};
use crate::results::explain::CacheLink;
use crate::results::{CacheBackend, CacheUse};
use crate::run::process::{run_captured, CommandSpec, Executor};
use nginx::Nginx;

/// Lower-case hex of a digest, as narinfos, Attic and REAPI write them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How warm builds reach a Nix binary cache. Secrets live only in the files it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NixCache {
    pub backend: CacheBackend,
    /// The substituter URL builds read from.
    pub substituter: Url,
    /// `name:base64` key that signed the cache's narinfos.
    pub public_key: String,
    /// How the priming build's outputs get into the cache.
    pub push: Push,
    /// A netrc file (0600, private folder) with the cache's credentials, e.g. an Attic token.
    pub netrc_file: Option<PathBuf>,
}

/// How outputs are uploaded to a Nix cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Push {
    /// `nix copy --to URL`, signed with the key file when there is one.
    NixCopy {
        to: Url,
        secret_key_file: Option<PathBuf>,
    },
    /// `attic push TARGET PATHS` with a private HOME holding its config (and so the token).
    AtticCli {
        program: PathBuf,
        home: PathBuf,
        target: String,
    },
    /// Attic's own API: get-missing-paths, then upload-path for each missing path of the
    /// primed closure, references first.
    AtticApi(Box<AtticTarget>),
    /// A read-only run (`--no-fill`): nothing is ever written to the cache.
    ReadOnly,
}

/// One Attic cache as the harness reaches its API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtticTarget {
    /// The server, without the cache name.
    pub endpoint: Url,
    pub cache: String,
    /// A private (0600) file holding the token.
    pub token_file: PathBuf,
    /// The run's proxies (a vm lane's guest does not read the host's environment).
    pub proxies: Proxies,
}

impl NixCache {
    /// A binary cache that `nix copy` fills (http, file, s3, the embedded one).
    pub fn store(backend: CacheBackend, store: &StoreCacheConfig) -> NixCache {
        NixCache {
            backend,
            substituter: store.url.clone(),
            public_key: store.public_key.clone(),
            push: Push::NixCopy {
                to: store.url.clone(),
                secret_key_file: store.secret_key_file.clone(),
            },
            netrc_file: None,
        }
    }

    /// What results record: never credentials (they are in the netrc file).
    pub fn use_record(&self) -> CacheUse {
        CacheUse {
            backend: self.backend,
            url: crate::boundary::public_url(&self.substituter),
        }
    }

    /// The files that hold this cache's secrets (netrc, signing key, the attic CLI's home),
    /// for whoever must move them (the vm lane).
    pub fn secret_files_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut files: Vec<&mut PathBuf> = self.netrc_file.iter_mut().collect();
        match &mut self.push {
            Push::NixCopy {
                secret_key_file: Some(key),
                ..
            } => files.push(key),
            Push::AtticCli { home, .. } => files.push(home),
            Push::AtticApi(target) => files.push(&mut target.token_file),
            _ => {}
        }
        files
    }
}

/// `URL?secret-key=FILE` for `nix copy --to`: Nix reads the key from the file it names, so
/// the URL names a secret file and must itself stay out of logs and results.
pub fn signed_destination(to: &Url, secret_key_file: Option<&Path>) -> String {
    let mut url = to.clone();
    if let Some(key) = secret_key_file {
        let pair = format!("secret-key={}", key.display());
        let query = match url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{pair}"),
            _ => pair,
        };
        url.set_query(Some(&query));
    }
    url.to_string()
}

/// A small text document from a cache (a narinfo): its status and body, or `None` when
/// it cannot be asked here. Reads `file://` caches directly and plain `http://` ones with
/// the harness's minimal client (loopback and LAN caches: the embedded one, a test one).
pub fn fetch_text(url: &str) -> Option<(u16, String)> {
    let url = Url::parse(url).ok()?;
    match url.scheme() {
        "file" => Some(match std::fs::read_to_string(url.to_file_path().ok()?) {
            Ok(text) => (200, text),
            Err(_) => (404, String::new()),
        }),
        "http" => {
            let addr = url.socket_addrs(|| None).ok()?.into_iter().next()?;
            let response = http::get(addr, url.path(), Duration::from_secs(10)).ok()?;
            Some((
                response.status,
                String::from_utf8_lossy(&response.body).into_owned(),
            ))
        }
        _ => None,
    }
}

/// A Bazel cache as builds reach it. Headers (credentials) live only in the rc file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BazelCache {
    pub backend: CacheBackend,
    pub endpoint: BazelEndpoint,
    /// A private rc file with `build --remote_header=...` lines.
    pub headers_rc: Option<PathBuf>,
    /// A read-only run (`--no-fill`): no build may upload to the cache.
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BazelEndpoint {
    /// `--remote_cache=URL` (http(s) or grpc(s)).
    Remote(Url),
    /// `--disk_cache=FOLDER`.
    Disk(PathBuf),
}

impl BazelCache {
    pub fn use_record(&self) -> CacheUse {
        CacheUse {
            backend: self.backend,
            url: match &self.endpoint {
                BazelEndpoint::Remote(url) => crate::boundary::public_url(url),
                BazelEndpoint::Disk(path) => path.display().to_string(),
            },
        }
    }
}

/// The network address behind a cache URL (for the fault proxy), or why there is none to
/// stand in front of.
pub fn network_route(url: &Url) -> std::result::Result<CacheRoute, String> {
    let tls = matches!(url.scheme(), "https" | "grpcs");
    if tls {
        return Err(format!(
            "the fault proxy cannot stand in front of a TLS cache ({url}): rerouting it through the proxy breaks the certificate's host name check"
        ));
    }
    let port = url.port_or_known_default().ok_or_else(|| {
        format!("the cache URL {url} has no port and its scheme has no default one")
    })?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("the cache URL {url} has no host"))?;
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve the cache's host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("the cache's host {host} has no address"))?;
    Ok(CacheRoute {
        upstream,
        plain_http: url.scheme() == "http",
    })
}

/// A network cache as the fault proxy reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRoute {
    /// Where the cache listens (the fault proxy forwards there).
    pub upstream: SocketAddr,
    /// Plain HTTP (so HTTP-level faults apply), rather than gRPC.
    pub plain_http: bool,
}

/// The same URL with its host and port replaced by `via` (the fault proxy).
pub fn reroute(url: &Url, via: SocketAddr) -> Url {
    let mut rerouted = url.clone();
    // Both succeed on URLs with a host, which every network cache URL has.
    let _ = rerouted.set_ip_host(via.ip());
    let _ = rerouted.set_port(Some(via.port()));
    rerouted
}

/// The caches of one run. The embedded server is stopped when this is dropped, so its
/// owner drops the drivers that use it first.
pub struct Caches {
    pub nix: Option<NixCache>,
    pub bazel: Option<BazelCache>,
    /// The server stops when this is dropped.
    embedded: Option<EmbeddedCache>,
}

/// What a run's warm cases need.
pub struct CacheNeeds<'a> {
    /// `nix` when a Nix case reads a cache.
    pub nix: Option<&'a Path>,
    pub bazel: bool,
    /// nginx, when a needed cache is the embedded one.
    pub nginx: Option<&'a Path>,
    /// Whether warm cases fill the caches (`false`: read-only, nothing is written).
    pub fill: bool,
    /// Proxies for the harness's own requests to the caches.
    pub proxies: &'a Proxies,
}

/// `--no-fill` against a cache the run starts empty measures nothing.
fn read_only_embedded(system: &str) -> Error {
    Error::Usage(format!(
        "--no-fill (fill = false) measures a cache as it is, but the {system} cache is the embedded one, which every run starts empty\n  fix: choose a profile whose {system} backend is an existing cache (see bench.toml), or fill the cache"
    ))
}

impl Caches {
    /// The link to the embedded cache, measured once (`None` without the embedded cache:
    /// an external one offers no blob of known size to time).
    pub fn measure_link(&self) -> Result<Option<CacheLink>> {
        self.embedded
            .as_ref()
            .map(EmbeddedCache::measure_link)
            .transpose()
    }

    /// Caches someone else provisioned (the vm lane's host, for its guest).
    pub fn given(nix: Option<NixCache>, bazel: Option<BazelCache>) -> Caches {
        Caches {
            nix,
            bazel,
            embedded: None,
        }
    }

    /// Starts or connects the caches the run needs. `dir` must be private to the harness:
    /// it will hold keys and credentials.
    pub fn provision(
        nix: &NixCacheConfig,
        bazel: &BazelCacheConfig,
        needs: CacheNeeds,
        dir: &Path,
        exec: &dyn Executor,
    ) -> Result<Caches> {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let embedded = match needs.nginx {
            Some(nginx) => Some(EmbeddedCache::start(nginx, &dir.join("embedded"))?),
            None => None,
        };
        let store = |backend, config: &StoreCacheConfig| -> Result<NixCache> {
            let mut cache = NixCache::store(backend, config);
            if !needs.fill {
                cache.push = Push::ReadOnly;
            }
            // The URL's user and password, for Nix to read and upload with.
            if let Some(login) = &config.login {
                let netrc = dir.join("nix-netrc");
                let host = config.url.host_str().unwrap_or_default();
                let entry = netrc_entry(host, &login.user, login.password.expose());
                crate::scratch::write_private(&netrc, entry.as_bytes())?;
                cache.netrc_file = Some(netrc);
            }
            Ok(cache)
        };
        let nix_cache = match (needs.nix, nix) {
            (None, _) => None,
            (Some(_), NixCacheConfig::Embedded) if !needs.fill => {
                return Err(read_only_embedded("Nix"))
            }
            (Some(nix), NixCacheConfig::Embedded) => Some(
                embedded
                    .as_ref()
                    .ok_or_else(|| Error::Environment("the embedded cache was not started".into()))?
                    .nix_cache(nix, exec)?,
            ),
            (Some(_), NixCacheConfig::Attic(attic)) => Some(attic::connect(
                attic,
                &dir.join("attic"),
                needs.fill,
                needs.proxies,
            )?),
            (Some(_), NixCacheConfig::Http(s)) => Some(store(CacheBackend::Http, s)?),
            (Some(_), NixCacheConfig::File(s)) => Some(store(CacheBackend::File, s)?),
            (Some(_), NixCacheConfig::S3(s)) => Some(store(CacheBackend::S3, s)?),
        };
        let read_only = !needs.fill;
        let bazel_cache = match (needs.bazel, bazel) {
            (false, _) => None,
            (true, BazelCacheConfig::Embedded) if read_only => {
                return Err(read_only_embedded("Bazel"))
            }
            (true, BazelCacheConfig::Embedded) => Some(
                embedded
                    .as_ref()
                    .ok_or_else(|| Error::Environment("the embedded cache was not started".into()))?
                    .bazel_cache(),
            ),
            (true, BazelCacheConfig::Http { url, headers }) => Some(remote_bazel(
                CacheBackend::Http,
                url,
                headers,
                dir,
                read_only,
            )?),
            (true, BazelCacheConfig::Grpc { url, headers }) => Some(remote_bazel(
                CacheBackend::Grpc,
                url,
                headers,
                dir,
                read_only,
            )?),
            (true, BazelCacheConfig::Disk { path }) => Some(BazelCache {
                backend: CacheBackend::Disk,
                endpoint: BazelEndpoint::Disk(path.clone()),
                headers_rc: None,
                read_only,
            }),
        };
        Ok(Caches {
            nix: nix_cache,
            bazel: bazel_cache,
            embedded,
        })
    }
}

fn remote_bazel(
    backend: CacheBackend,
    url: &Url,
    headers: &[Secret],
    dir: &Path,
    read_only: bool,
) -> Result<BazelCache> {
    let headers_rc = if headers.is_empty() {
        None
    } else {
        let rc = dir.join("bazel-headers.rc");
        crate::scratch::write_private(&rc, headers_rc_text(headers).as_bytes())?;
        Some(rc)
    };
    Ok(BazelCache {
        backend,
        endpoint: BazelEndpoint::Remote(url.clone()),
        headers_rc,
        read_only,
    })
}

/// `machine HOST login USER password PASSWORD`, as Nix (curl) reads a netrc file. The
/// values were checked to hold no whitespace.
pub fn netrc_entry(host: &str, login: &str, password: &str) -> String {
    format!("machine {host}\nlogin {login}\npassword {password}\n")
}

/// `build '--remote_header=Name=Value'` lines, each one word as Bazel's rc parser reads it:
/// it splits on whitespace and honours shell-like quotes, so a value with a space
/// (`Authorization=Bearer T`) is single-quoted, and a `'` in it written `'\''`.
fn headers_rc_text(headers: &[Secret]) -> String {
    headers
        .iter()
        .map(|h| {
            let quoted = h.expose().replace('\'', "'\\''");
            format!("build '--remote_header={quoted}'\n")
        })
        .collect()
}

const KEY_TIMEOUT: Duration = Duration::from_secs(60);
const NIX_CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";

/// The embedded cache server: one nginx serving a Nix binary cache under `/nix` and a
/// Bazel HTTP cache under `/bazel`; stopped when dropped.
pub struct EmbeddedCache {
    server: Nginx,
    dir: PathBuf,
}

impl EmbeddedCache {
    /// `dir` must be private to the harness: it will hold the Nix signing key.
    pub fn start(nginx: &Path, dir: &Path) -> Result<Self> {
        let server = Nginx::start(nginx, &dir.join("nginx"))?;
        for prefix in ["nix", "bazel"] {
            let folder = server.root().join(prefix);
            std::fs::create_dir_all(&folder)
                .context(|| format!("creating {}", folder.display()))?;
        }
        let info = server.root().join("nix/nix-cache-info");
        std::fs::write(&info, NIX_CACHE_INFO).context(|| format!("writing {}", info.display()))?;
        Ok(EmbeddedCache {
            server,
            dir: dir.to_path_buf(),
        })
    }

    /// The Nix side, with a signing key generated for this run only.
    pub fn nix_cache(&self, nix: &Path, exec: &dyn Executor) -> Result<NixCache> {
        let secret = self.dir.join("signing-key.sec");
        let key_name = format!("flywheel-bench-{}", self.server.addr().port());
        let generated = nix_key(
            exec,
            nix,
            &["generate-secret", "--key-name", &key_name],
            None,
        )?;
        crate::scratch::write_private(&secret, generated.as_bytes())?;
        let public_key = nix_key(exec, nix, &["convert-secret-to-public"], Some(&secret))?;
        Ok(NixCache::store(
            CacheBackend::EmbeddedNginx,
            &StoreCacheConfig {
                url: self.server.url("nix"),
                public_key: public_key.trim().to_string(),
                secret_key_file: Some(secret),
                login: None,
            },
        ))
    }

    /// Measures the link the builds reach this cache through, once per run: throughput from
    /// downloading a blob of known size (the median of three), latency from small requests
    /// (the median of twenty).
    pub fn measure_link(&self) -> Result<CacheLink> {
        const PROBE_BYTES: usize = 8 << 20;
        let root = self.server.root();
        let io =
            |what: &str, e: std::io::Error| Error::io(format!("{what} the cache link probe"), e);
        std::fs::write(root.join("link-probe"), vec![0x5a; PROBE_BYTES])
            .map_err(|e| io("writing", e))?;
        std::fs::write(root.join("link-ping"), b"1").map_err(|e| io("writing", e))?;
        let timed = |path: &str, runs: usize| -> Result<f64> {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let started = std::time::Instant::now();
                let r = http::get(self.server.addr(), path, Duration::from_secs(30))
                    .map_err(|e| io("fetching", e))?;
                if r.status != 200 {
                    return Err(Error::Environment(format!(
                        "the embedded cache answered {} for its link probe {path}",
                        r.status
                    )));
                }
                times.push(started.elapsed().as_secs_f64());
            }
            Ok(crate::stats::median(&times))
        };
        let latency_s = timed("/link-ping", 20)?;
        let blob_s = timed("/link-probe", 3)?;
        for probe in ["link-probe", "link-ping"] {
            let _ = std::fs::remove_file(root.join(probe));
        }
        Ok(CacheLink {
            throughput_bytes_per_s: PROBE_BYTES as f64 / (blob_s - latency_s).max(1e-6),
            latency_s,
            probe_bytes: PROBE_BYTES as u64,
        })
    }

    /// The Bazel side: nginx's WebDAV speaks Bazel's HTTP cache protocol (`/ac/`, `/cas/`).
    pub fn bazel_cache(&self) -> BazelCache {
        BazelCache {
            backend: CacheBackend::EmbeddedNginx,
            endpoint: BazelEndpoint::Remote(self.server.url("bazel")),
            headers_rc: None,
            read_only: false,
        }
    }
}

/// `nix key ...`; the secret key goes in on standard input, never on a command line.
fn nix_key(exec: &dyn Executor, nix: &Path, args: &[&str], stdin: Option<&Path>) -> Result<String> {
    let argv: Vec<OsString> = ["--extra-experimental-features", "nix-command", "key"]
        .into_iter()
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let mut spec = CommandSpec::new(nix, argv, KEY_TIMEOUT);
    if let Some(file) = stdin {
        spec = spec.stdin(file);
    }
    let out = run_captured(exec, spec)?;
    if !out.outcome.success() || out.stdout.trim().is_empty() {
        return Err(Error::Environment(format!(
            "`nix key {}` failed: {}\n  fix: check that `nix --version` works (Nix 2.8 or newer)",
            args[0],
            out.stderr.trim()
        )));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_joins_any_query() {
        let key = Path::new("/run/key.sec");
        let plain = Url::parse("http://127.0.0.1:8080/nix").unwrap();
        assert_eq!(
            signed_destination(&plain, Some(key)),
            "http://127.0.0.1:8080/nix?secret-key=/run/key.sec"
        );
        let s3 = Url::parse("s3://bucket?region=eu-west-1").unwrap();
        assert_eq!(
            signed_destination(&s3, Some(key)),
            "s3://bucket?region=eu-west-1&secret-key=/run/key.sec"
        );
        assert_eq!(
            signed_destination(&s3, None),
            "s3://bucket?region=eu-west-1"
        );
    }

    #[test]
    fn fault_routes_use_default_ports_and_refuse_tls() {
        let route = network_route(&Url::parse("http://127.0.0.1/nix").unwrap()).unwrap();
        assert_eq!(route.upstream, "127.0.0.1:80".parse().unwrap());
        assert!(route.plain_http);
        let grpc = network_route(&Url::parse("grpc://127.0.0.1:9092").unwrap()).unwrap();
        assert!(!grpc.plain_http);
        let tls = network_route(&Url::parse("https://cache.example.com").unwrap()).unwrap_err();
        assert!(
            tls.contains("TLS") && tls.contains("cache.example.com"),
            "{tls}"
        );
        assert!(network_route(&Url::parse("grpcs://c:443").unwrap())
            .unwrap_err()
            .contains("TLS"));
    }

    #[test]
    fn rerouting_keeps_the_scheme_and_path() {
        let via: SocketAddr = "127.0.0.1:1234".parse().unwrap();
        let url = Url::parse("http://127.0.0.1:8080/nix").unwrap();
        assert_eq!(reroute(&url, via).as_str(), "http://127.0.0.1:1234/nix");
        let grpc = Url::parse("grpc://cache:9092").unwrap();
        assert_eq!(reroute(&grpc, via).as_str(), "grpc://127.0.0.1:1234");
    }

    #[test]
    fn header_rc_lines_carry_each_header_as_one_quoted_word() {
        let text = headers_rc_text(&[
            Secret::new("Authorization=Bearer t"),
            Secret::new("X-Quote=it's"),
        ]);
        assert_eq!(
            text,
            "build '--remote_header=Authorization=Bearer t'\nbuild '--remote_header=X-Quote=it'\\''s'\n"
        );
    }

    #[test]
    fn credentials_of_a_cache_url_go_to_a_private_netrc() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreCacheConfig {
            url: Url::parse("http://127.0.0.1:9/nix").unwrap(),
            public_key: "k:1".into(),
            secret_key_file: None,
            login: Some(crate::plan::config::Login {
                user: "bot".into(),
                password: Secret::new("s3cr3t"),
            }),
        };
        let caches = Caches::provision(
            &NixCacheConfig::Http(store),
            &BazelCacheConfig::Embedded,
            CacheNeeds {
                nix: Some(Path::new("nix")),
                bazel: false,
                nginx: None,
                fill: true,
                proxies: &Proxies::default(),
            },
            dir.path(),
            &crate::run::process::ProcessExecutor,
        )
        .unwrap();
        let nix = caches.nix.unwrap();
        let netrc = nix.netrc_file.clone().unwrap();
        assert_eq!(
            std::fs::read_to_string(&netrc).unwrap(),
            "machine 127.0.0.1\nlogin bot\npassword s3cr3t\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&netrc).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(nix.use_record().url, "http://127.0.0.1:9/nix");
        assert!(!serde_json::to_string(&nix).unwrap().contains("s3cr3t"));
    }
}
