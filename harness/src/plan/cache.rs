//! The caches builds read, resolved once: one target per system and role (the team cache
//! warm cases measure; for Nix also the upstream layer every build may substitute from),
//! with its kind as the profile named it, the one URL builds read, its key and
//! credentials, and how it is filled. Provisioning (`cache`) starts the embedded cache and
//! checks the others; the drivers, coverage, miss explanations and the vm lane's guest read
//! these same values. Credentials are `Secret`s, never serialised: whoever needs one in a
//! file (Nix's netrc, Bazel's rc, a guest's job folder) writes it there privately. Pure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::plan::config::{Login, Secret};
use crate::results::{CacheBackend, CacheUse};

/// The login that goes with an Attic token (Attic reads only the password), and the name
/// the harness gives the server in the `attic` CLI's config.
pub const ATTIC_LOGIN: &str = "flywheel-bench";

/// A Nix binary cache as builds reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NixCache {
    /// What kind of cache it is, as the profile named it (`--nix-cache` and upstream caches:
    /// their URL's scheme).
    pub backend: CacheBackend,
    /// What builds substitute from (Attic: `{endpoint}/{cache}`).
    pub url: Url,
    /// `name:base64` key that signed the cache's narinfos.
    pub public_key: String,
    /// The readers' credentials, sent as HTTP Basic (Nix reads them from a netrc): an Attic
    /// token as the password of [`ATTIC_LOGIN`] (the API takes it as a bearer token), or
    /// the user and password an http(s) URL carried, taken out of it.
    #[serde(skip)]
    pub login: Option<Login>,
    /// How the priming build's outputs get into the cache.
    pub fill: Fill,
    /// The embedded cache: the folder its URL serves, where `fill` samples' fresh caches
    /// are made and removed.
    #[serde(skip)]
    pub fill_root: Option<PathBuf>,
}

/// How outputs are uploaded to a Nix cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fill {
    /// `nix copy --to URL`, signed with the key file when there is one, its NARs
    /// compressed so (`None`: as the URL or Nix's default, xz, has it).
    NixCopy {
        secret_key_file: Option<PathBuf>,
        #[serde(default)]
        compression: Option<crate::plan::Compression>,
    },
    /// Attic's own API: get-missing-paths, then upload-path for each missing path of the
    /// primed closure, references first.
    AtticApi,
    /// `attic push` with a private HOME holding its config (and so the token).
    AtticCli,
    /// Nothing is ever written: a read-only run (`--no-fill`), or an upstream cache.
    ReadOnly,
}

impl NixCache {
    /// A binary cache that `nix copy` fills (http, file, s3, the embedded one); read-only
    /// unless `fill`.
    pub fn store(
        backend: CacheBackend,
        url: Url,
        public_key: String,
        secret_key_file: Option<PathBuf>,
        fill: bool,
    ) -> NixCache {
        NixCache {
            fill_root: None,
            backend,
            url,
            public_key,
            login: None,
            fill: if fill {
                Fill::NixCopy {
                    secret_key_file,
                    compression: None,
                }
            } else {
                Fill::ReadOnly
            },
        }
    }

    /// An upstream cache: read by every build, never filled, no credentials.
    pub fn upstream(url: Url, public_key: String) -> NixCache {
        NixCache {
            fill_root: None,
            backend: nix_backend_of(&url),
            url,
            public_key,
            login: None,
            fill: Fill::ReadOnly,
        }
    }

    /// What results record: never credentials.
    pub fn use_record(&self) -> CacheUse {
        CacheUse {
            backend: self.backend,
            url: self.url.to_string(),
            compression: self.compression(),
        }
    }

    /// How `nix copy` compresses the NARs it writes here, where the harness chose it.
    pub fn compression(&self) -> Option<crate::plan::Compression> {
        match &self.fill {
            Fill::NixCopy { compression, .. } => *compression,
            _ => None,
        }
    }

    /// The embedded cache's root that holds NARs of `compression`: each compression has a
    /// root of its own beside the others (`…/nix/zstd`, `…/nix/xz`), signed with the same
    /// key, so a compression sweep's points never read each other's NARs. `None` for a
    /// cache the harness does not serve, whose compression it does not choose.
    pub fn with_compression(&self, compression: crate::plan::Compression) -> Option<NixCache> {
        if self.backend != CacheBackend::EmbeddedNginx {
            return None;
        }
        let Fill::NixCopy {
            secret_key_file, ..
        } = &self.fill
        else {
            return None;
        };
        let mut url = self.url.clone();
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .pop()
            .push(compression.name());
        Some(NixCache {
            url,
            fill: Fill::NixCopy {
                secret_key_file: secret_key_file.clone(),
                compression: Some(compression),
            },
            fill_root: self
                .fill_root
                .as_deref()
                .and_then(Path::parent)
                .map(|parent| parent.join(compression.name())),
            ..self.clone()
        })
    }

    /// The URL a build reads, through `via` (the fault proxy) when set.
    pub fn read_url(&self, via: Option<SocketAddr>) -> Url {
        match via {
            Some(via) => reroute(&self.url, via),
            None => self.url.clone(),
        }
    }

    /// `URL?secret-key=FILE` for `nix copy --to`: Nix reads the key from the file it names,
    /// so the destination names a secret file and must itself stay out of logs and results.
    /// With `compression`, `&compression=` too.
    pub fn copy_destination(
        &self,
        secret_key_file: Option<&Path>,
        compression: Option<crate::plan::Compression>,
    ) -> String {
        let mut url = self.url.clone();
        if let Some(compression) = compression {
            url.query_pairs_mut()
                .append_pair("compression", compression.name());
        }
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

    /// The Attic server and cache name behind an Attic cache's URL (`{endpoint}/{cache}`).
    pub fn attic_server(&self) -> Result<(Url, String)> {
        let bad = || {
            Error::Usage(format!(
                "{} does not name an Attic cache (`ENDPOINT/CACHE`)\n  fix: check the profile's nix.endpoint and nix.cache",
                self.url
            ))
        };
        let path = self.url.path().trim_end_matches('/');
        let (server_path, cache) = path.rsplit_once('/').ok_or_else(bad)?;
        if cache.is_empty() {
            return Err(bad());
        }
        let mut endpoint = self.url.clone();
        endpoint.set_path(&format!("{server_path}/"));
        Ok((endpoint, cache.to_string()))
    }

    /// The Attic token (the login's password), or why an Attic cache has none.
    pub fn token(&self) -> Result<&str> {
        self.login
            .as_ref()
            .map(|l| l.password.expose())
            .ok_or_else(|| {
                Error::Environment(format!(
                "the Attic cache {} has no token\n  fix: set the profile's token_env or token_file",
                self.url
            ))
            })
    }
}

/// `{endpoint}/{cache}`: Attic's Nix binary cache interface for one cache.
pub fn attic_url(endpoint: &Url, cache: &str) -> Result<Url> {
    let text = format!("{}/{cache}", endpoint.as_str().trim_end_matches('/'));
    Url::parse(&text).map_err(|e| {
        Error::Usage(format!(
            "the Attic cache URL {text} is not valid ({e})\n  fix: check the profile's nix.endpoint and nix.cache"
        ))
    })
}

/// The kind a Nix cache URL's scheme names (for URLs that come without a kind: `--nix-cache`
/// and upstream caches).
pub fn nix_backend_of(url: &Url) -> CacheBackend {
    match url.scheme() {
        "file" => CacheBackend::File,
        "s3" => CacheBackend::S3,
        _ => CacheBackend::Http,
    }
}

/// A Bazel cache as builds reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BazelCache {
    pub backend: CacheBackend,
    pub endpoint: BazelEndpoint,
    /// `Name=Value` headers (credentials) sent with every remote request.
    #[serde(skip)]
    pub headers: Vec<Secret>,
    /// A read-only run (`--no-fill`): no build may upload to the cache.
    pub read_only: bool,
    /// The embedded cache: the folder its URL serves, where `fill` samples' fresh caches
    /// are made and removed.
    #[serde(skip)]
    pub fill_root: Option<PathBuf>,
}

/// A fresh, empty cache beside the embedded one, for one `fill` sample: where the tool
/// uploads and the folder the server keeps it in (removed after the sample).
#[derive(Debug, Clone, PartialEq)]
pub struct FreshCache {
    pub url: Url,
    pub folder: PathBuf,
}

impl FreshCache {
    /// The `n`th fresh cache under an embedded cache served at `url` from `root`; `None`
    /// for a cache the harness does not serve (Attic's fresh caches are made through its
    /// API instead).
    pub fn beside(url: &Url, root: Option<&Path>, n: usize) -> Option<FreshCache> {
        let name = format!("fill-{n}");
        let mut fresh = url.clone();
        fresh.path_segments_mut().ok()?.pop_if_empty().push(&name);
        Some(FreshCache {
            url: fresh,
            folder: root?.join(name),
        })
    }

    /// Why a `fill` case cannot run against a cache of `backend` whose folder the harness
    /// does not have at hand.
    pub fn unavailable(system: &str, backend: CacheBackend) -> String {
        if backend == CacheBackend::EmbeddedNginx {
            // Only a vm lane's guest has the embedded cache without its folder.
            return format!(
                "a fill sample makes a fresh, empty {system} cache beside the embedded one, then measures what it stored and removes it in the cache's folder; the vm lane's guest reaches the embedded cache only over the network, its folder stays on the host\n  fix: run `fill` on the host lane (--lane host), or on the vm lane against an Attic profile with push = \"api\" (its fresh caches are made and removed through its API)"
            );
        }
        format!(
            "a fill sample needs a fresh, empty {system} cache of its own, which only the embedded cache and an Attic server (through its API) offer: the harness cannot empty another external cache\n  fix: run `fill` with the embedded cache (the default profile) or an Attic profile with push = \"api\""
        )
    }
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
                BazelEndpoint::Remote(url) => url.to_string(),
                BazelEndpoint::Disk(path) => path.display().to_string(),
            },
            compression: None,
        }
    }

    /// `build '--remote_header=Name=Value'` lines, for the private rc file builds read. Each
    /// is one word as Bazel's rc parser reads it: it splits on whitespace and honours
    /// shell-like quotes, so a value with a space (`Authorization=Bearer T`) is
    /// single-quoted, and a `'` in it written `'\''`.
    pub fn headers_rc(&self) -> Option<String> {
        (!self.headers.is_empty()).then(|| {
            self.headers
                .iter()
                .map(|h| {
                    let quoted = h.expose().replace('\'', "'\\''");
                    format!("build '--remote_header={quoted}'\n")
                })
                .collect()
        })
    }
}

/// The same URL with its host and port replaced by `via` (the fault proxy).
pub fn reroute(url: &Url, via: SocketAddr) -> Url {
    let mut rerouted = url.clone();
    // Both succeed on URLs with a host, which every network cache URL has.
    let _ = rerouted.set_ip_host(via.ip());
    let _ = rerouted.set_port(Some(via.port()));
    rerouted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn the_signing_key_joins_any_query() {
        let key = Path::new("/run/key.sec");
        let cache = |u: &str| NixCache::store(CacheBackend::Http, url(u), "k:1".into(), None, true);
        assert_eq!(
            cache("http://127.0.0.1:8080/nix").copy_destination(Some(key), None),
            "http://127.0.0.1:8080/nix?secret-key=/run/key.sec"
        );
        let s3 = cache("s3://bucket?region=eu-west-1");
        assert_eq!(
            s3.copy_destination(Some(key), None),
            "s3://bucket?region=eu-west-1&secret-key=/run/key.sec"
        );
        assert_eq!(
            s3.copy_destination(None, None),
            "s3://bucket?region=eu-west-1"
        );
    }

    #[test]
    fn rerouting_keeps_the_scheme_and_path() {
        let via: SocketAddr = "127.0.0.1:1234".parse().unwrap();
        assert_eq!(
            reroute(&url("http://127.0.0.1:8080/nix"), via).as_str(),
            "http://127.0.0.1:1234/nix"
        );
        assert_eq!(
            reroute(&url("grpc://cache:9092"), via).as_str(),
            "grpc://127.0.0.1:1234"
        );
    }

    #[test]
    fn fresh_caches_sit_beside_the_embedded_one() {
        let fresh = FreshCache::beside(
            &url("http://127.0.0.1:8080/nix"),
            Some(Path::new("/r/nix")),
            3,
        )
        .unwrap();
        assert_eq!(fresh.url.as_str(), "http://127.0.0.1:8080/nix/fill-3");
        assert_eq!(fresh.folder, Path::new("/r/nix/fill-3"));
        let slash = FreshCache::beside(&url("http://h/bazel/"), Some(Path::new("/b")), 0);
        assert_eq!(slash.unwrap().url.as_str(), "http://h/bazel/fill-0");
        assert_eq!(FreshCache::beside(&url("http://h/nix"), None, 1), None);
    }

    #[test]
    fn each_compression_has_a_root_of_the_embedded_cache_with_the_same_key() {
        use crate::plan::Compression;
        let key = PathBuf::from("/run/key.sec");
        let mut zstd = NixCache::store(
            CacheBackend::EmbeddedNginx,
            url("http://127.0.0.1:8080/nix/zstd"),
            "k:1".into(),
            Some(key.clone()),
            true,
        );
        zstd.fill = Fill::NixCopy {
            secret_key_file: Some(key.clone()),
            compression: Some(Compression::Zstd),
        };
        zstd.fill_root = Some(PathBuf::from("/srv/nix/zstd"));
        let xz = zstd.with_compression(Compression::Xz).unwrap();
        assert_eq!(xz.url.as_str(), "http://127.0.0.1:8080/nix/xz");
        assert_eq!(xz.fill_root.as_deref(), Some(Path::new("/srv/nix/xz")));
        assert_eq!(
            (xz.public_key.as_str(), xz.compression()),
            ("k:1", Some(Compression::Xz))
        );
        assert_eq!(
            xz.copy_destination(Some(&key), xz.compression()),
            "http://127.0.0.1:8080/nix/xz?compression=xz&secret-key=/run/key.sec"
        );
        assert_eq!(xz.use_record().compression, Some(Compression::Xz));
        assert_eq!(xz.with_compression(Compression::Zstd), Some(zstd.clone()));
        // A vm guest's copy has no folder, and keeps none.
        let guest = NixCache {
            fill_root: None,
            ..zstd.clone()
        };
        assert_eq!(
            guest.with_compression(Compression::None).unwrap().fill_root,
            None
        );
        // Another cache compresses as it does: the harness chooses nothing there.
        let http = NixCache {
            backend: CacheBackend::Http,
            ..zstd
        };
        assert_eq!(http.with_compression(Compression::Xz), None);
        let attic = NixCache::upstream(url("https://cache.nixos.org"), "k:1".into());
        assert_eq!(attic.with_compression(Compression::Xz), None);
        assert_eq!(attic.use_record().compression, None);
    }

    #[test]
    fn a_fill_without_the_embedded_caches_folder_says_why_and_the_fix() {
        let guest = FreshCache::unavailable("Nix", CacheBackend::EmbeddedNginx);
        assert!(
            guest.contains("vm lane's guest reaches the embedded cache only over the network")
                && guest.contains("fix: run `fill` on the host lane (--lane host)"),
            "{guest}"
        );
        let other = FreshCache::unavailable("Bazel", CacheBackend::Grpc);
        assert!(
            other.contains("cannot empty another external cache"),
            "{other}"
        );
    }

    #[test]
    fn an_attic_cache_is_one_url_with_its_server_and_name_inside() {
        for endpoint in ["https://attic.example.com", "https://h.example/attic/"] {
            let cache = NixCache {
                fill_root: None,
                backend: CacheBackend::Attic,
                url: attic_url(&url(endpoint), "main").unwrap(),
                public_key: "main:K".into(),
                login: None,
                fill: Fill::AtticApi,
            };
            let (server, name) = cache.attic_server().unwrap();
            assert_eq!(name, "main");
            assert_eq!(
                server.as_str().trim_end_matches('/'),
                endpoint.trim_end_matches('/')
            );
            assert!(cache.token().unwrap_err().to_string().contains("token"));
        }
        assert_eq!(
            attic_url(&url("https://attic.example.com/"), "main")
                .unwrap()
                .as_str(),
            "https://attic.example.com/main"
        );
    }

    #[test]
    fn header_rc_lines_carry_each_header_as_one_quoted_word_and_serialising_drops_secrets() {
        let cache = BazelCache {
            fill_root: None,
            backend: CacheBackend::Http,
            endpoint: BazelEndpoint::Remote(url("http://cache:8080")),
            headers: vec![
                Secret::new("Authorization=Bearer t"),
                Secret::new("X-Quote=it's"),
            ],
            read_only: false,
        };
        assert_eq!(
            cache.headers_rc().as_deref(),
            Some("build '--remote_header=Authorization=Bearer t'\nbuild '--remote_header=X-Quote=it'\\''s'\n")
        );
        let json = serde_json::to_string(&cache).unwrap();
        assert!(!json.contains("Bearer"), "{json}");
        let nix = NixCache {
            fill_root: None,
            login: Some(Login {
                user: "bot".into(),
                password: Secret::new("s3cr3t"),
            }),
            ..NixCache::upstream(url("https://cache.nixos.org"), "k:1".into())
        };
        assert!(!serde_json::to_string(&nix).unwrap().contains("s3cr3t"));
        assert_eq!(nix_backend_of(&url("file:///srv/c")), CacheBackend::File);
    }
}
