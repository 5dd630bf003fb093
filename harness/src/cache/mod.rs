//! Caches the warm builds read from, provisioned once per run: the embedded server started
//! (nginx, with a signing key made for the run) or an external cache checked, into the
//! `plan::cache` targets that drivers and lanes use; and the fault proxy in front of them.

mod attic;
mod http;
pub mod nginx;
mod poison_nar;
pub mod proxy;
mod reapi;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::error::{Error, IoContext, Result};
use crate::exec::process::{run_captured, CommandSpec, Executor};
use crate::plan::cache::{BazelCache, BazelEndpoint, Fill, NixCache};
use crate::plan::config::{BazelCacheConfig, NixCacheConfig};
use crate::plan::proxies::Proxies;
use crate::results::explain::CacheLink;
use crate::results::CacheBackend;
use nginx::Nginx;

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
    /// How the embedded cache stores NARs.
    pub compression: crate::plan::Compression,
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

    /// Starts or checks the caches the run needs. `dir` must be private to the harness:
    /// it will hold the embedded cache's signing key.
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
        let started = || {
            embedded
                .as_ref()
                .ok_or_else(|| Error::Environment("the embedded cache was not started".into()))
        };
        let nix_cache = match (needs.nix, nix) {
            (None, _) => None,
            (Some(_), NixCacheConfig::Embedded) if !needs.fill => {
                return Err(read_only_embedded("Nix"))
            }
            (Some(nix), NixCacheConfig::Embedded) => {
                Some(started()?.nix_cache(nix, exec, needs.compression)?)
            }
            (Some(_), NixCacheConfig::External(cache)) => {
                if cache.backend == CacheBackend::Attic {
                    attic::check(cache, needs.proxies)?;
                }
                Some(cache.clone())
            }
        };
        let bazel_cache = match (needs.bazel, bazel) {
            (false, _) => None,
            (true, BazelCacheConfig::Embedded) if !needs.fill => {
                return Err(read_only_embedded("Bazel"))
            }
            (true, BazelCacheConfig::Embedded) => Some(started()?.bazel_cache()),
            (true, BazelCacheConfig::External(cache)) => Some(cache.clone()),
        };
        Ok(Caches {
            nix: nix_cache,
            bazel: bazel_cache,
            embedded,
        })
    }
}

const KEY_TIMEOUT: Duration = Duration::from_secs(60);
const NIX_CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";

/// The embedded cache server: one nginx serving a Nix binary cache per compression under
/// `/nix/COMPRESSION` (`/nix/zstd`, ...; each filled when a case first reads it) and a
/// Bazel HTTP cache under `/bazel`; stopped when dropped.
pub struct EmbeddedCache {
    server: Nginx,
    dir: PathBuf,
}

impl EmbeddedCache {
    /// `dir` must be private to the harness: it will hold the Nix signing key.
    pub fn start(nginx: &Path, dir: &Path) -> Result<Self> {
        let server = Nginx::start(nginx, &dir.join("nginx"))?;
        let nix_roots = crate::plan::Compression::ALL.map(|c| format!("nix/{}", c.name()));
        for prefix in nix_roots.iter().map(String::as_str).chain(["bazel"]) {
            let folder = server.root().join(prefix);
            std::fs::create_dir_all(&folder)
                .context(|| format!("creating {}", folder.display()))?;
        }
        for root in &nix_roots {
            let info = server.root().join(root).join("nix-cache-info");
            std::fs::write(&info, NIX_CACHE_INFO)
                .context(|| format!("writing {}", info.display()))?;
        }
        Ok(EmbeddedCache {
            server,
            dir: dir.to_path_buf(),
        })
    }

    /// The Nix side, at the root of `compression` (the others: `NixCache::with_compression`),
    /// with a signing key generated for this run only.
    pub fn nix_cache(
        &self,
        nix: &Path,
        exec: &dyn Executor,
        compression: crate::plan::Compression,
    ) -> Result<NixCache> {
        let secret = self.dir.join("signing-key.sec");
        let key_name = format!("flywheel-bench-{}", self.server.addr().port());
        let generated = nix_key(
            exec,
            nix,
            &["generate-secret", "--key-name", &key_name],
            None,
        )?;
        crate::exec::scratch::write_private(&secret, generated.as_bytes())?;
        let public_key = nix_key(exec, nix, &["convert-secret-to-public"], Some(&secret))?;
        let root = format!("nix/{}", compression.name());
        let mut cache = NixCache::store(
            CacheBackend::EmbeddedNginx,
            self.server.url(&root),
            public_key.trim().to_string(),
            Some(secret),
            true,
        );
        if let Fill::NixCopy { compression: c, .. } = &mut cache.fill {
            *c = Some(compression);
        }
        cache.fill_root = Some(self.server.root().join(root));
        Ok(cache)
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
            headers: Vec::new(),
            read_only: false,
            fill_root: Some(self.server.root().join("bazel")),
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
}
