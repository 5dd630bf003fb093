//! Profiles (`bench.toml`, or `--config FILE`): named choices of cache backends, lanes,
//! sample counts and thresholds, so a run against a real deployment is one `--profile`.
//! Pure apart from reading the file; secrets are referred to (an environment variable or a
//! file), never written in the profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::plan::args::{check_fraction, check_non_negative, check_positive};
use crate::plan::cache::NixCache;
use crate::plan::Lane;
use crate::plan::ParamValue;
use crate::results::CacheBackend;

pub const CONFIG_FILE: &str = "bench.toml";
pub use crate::results::DEFAULT_PROFILE;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub name: String,
    pub samples: Option<usize>,
    pub warmups: Option<usize>,
    pub lanes: Option<Vec<Lane>>,
    pub nix: NixBackend,
    /// Caches present in every build, cold ones included (`[nix] upstream`).
    pub nix_upstream: Vec<NixCache>,
    pub bazel: BazelBackend,
    /// `[bazel] repository_cache`: share one repository cache between all builds.
    pub bazel_shared_repository_cache: Option<bool>,
    pub min_hit_ratio: Option<f64>,
    pub min_speedup: Option<f64>,
    pub max_fallback_penalty: Option<f64>,
    /// `fill = false`: warm cases measure the caches as they are and nothing is uploaded.
    pub fill: Option<bool>,
    /// `compression = "xz"`: how the embedded cache stores NARs.
    pub compression: Option<crate::plan::Compression>,
    /// `link = "rtt_ms=40,bandwidth=100mbit"`: warm cases read the team cache so.
    pub link: Option<crate::plan::Link>,
    /// `repos = [...]`: the bench repos a run selects when `--repo` is not given.
    pub repos: Option<Vec<String>>,
    /// `[params.REPO]`: parameter values for one bench repo (under `--param`).
    pub params: BTreeMap<String, Vec<(String, ParamValue)>>,
}

/// How pushes reach an Attic server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AtticPush {
    /// Attic's HTTP API, spoken by the harness itself (no `attic` CLI needed).
    #[default]
    Api,
    /// The `attic` CLI on PATH.
    Cli,
}

/// Where an Attic token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum NixBackend {
    /// The harness's own nginx cache.
    #[default]
    Embedded,
    /// An Attic server: pulls through its Nix binary cache interface, pushes through its
    /// API (or the `attic` CLI).
    Attic {
        endpoint: Url,
        cache: String,
        public_key: String,
        token: TokenSource,
        push: AtticPush,
    },
    /// Any binary cache `nix copy` can write and Nix can read: http(s)://, file://, s3://,
    /// of the kind the profile's `backend` names.
    Store {
        backend: CacheBackend,
        url: Url,
        public_key: String,
        secret_key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum BazelBackend {
    #[default]
    Embedded,
    /// http(s):// or grpc(s):// (bazel-remote serves both); headers from an environment variable.
    Remote {
        url: Url,
        headers_env: Option<String>,
    },
    /// A local `--disk_cache` folder.
    Disk { path: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    samples: Option<usize>,
    warmups: Option<usize>,
    lanes: Option<Vec<Lane>>,
    fill: Option<bool>,
    compression: Option<crate::plan::Compression>,
    link: Option<String>,
    repos: Option<Vec<String>>,
    #[serde(default)]
    params: BTreeMap<String, BTreeMap<String, toml::Value>>,
    nix: Option<RawNix>,
    bazel: Option<RawBazel>,
    thresholds: Option<RawThresholds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNix {
    #[serde(default = "embedded")]
    backend: String,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
    endpoint: Option<String>,
    cache: Option<String>,
    url: Option<String>,
    path: Option<PathBuf>,
    public_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    push: Option<AtticPush>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBazel {
    #[serde(default = "embedded")]
    backend: String,
    repository_cache: Option<bool>,
    url: Option<String>,
    path: Option<PathBuf>,
    headers_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    public_key: String,
}

fn embedded() -> String {
    "embedded".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    min_hit_ratio: Option<f64>,
    min_speedup: Option<f64>,
    max_fallback_penalty: Option<f64>,
}

/// The profile `name` from `config` (`--config`), else from `bench.toml` in `cwd` when
/// there is one.
pub fn load_from(config: Option<&Path>, cwd: &Path, name: &str) -> Result<Profile> {
    let local = cwd.join(CONFIG_FILE);
    let file = config.or_else(|| local.is_file().then_some(local.as_path()));
    load(file, name)
}

/// The profile `name` from `path`; the built-in embedded profile when `path` is absent and
/// `name` is the default.
pub fn load(path: Option<&Path>, name: &str) -> Result<Profile> {
    let Some(path) = path else {
        if name == DEFAULT_PROFILE {
            return Ok(Profile {
                name: name.into(),
                ..Profile::default()
            });
        }
        return Err(Error::Usage(format!(
            "--profile {name}: there is no {CONFIG_FILE} here to define it\n  fix: run from the folder with bench.toml or pass --config FILE"
        )));
    };
    let text = crate::boundary::read_text(path, crate::boundary::TEXT_LIMIT).map_err(|why| {
        Error::Manifest {
            path: path.to_path_buf(),
            message: why,
            fix: "pass --config with the path of your bench.toml".into(),
        }
    })?;
    parse(&text, path, name)
}

pub fn parse(text: &str, path: &Path, name: &str) -> Result<Profile> {
    let invalid = |message: String, fix: &str| invalid(path, message, fix);
    let mut raw: RawFile = toml::from_str(text).map_err(|e| {
        invalid(
            e.to_string().trim_end().to_string(),
            "see docs/caches-and-profiles.md",
        )
    })?;
    let Some(p) = raw.profiles.remove(name) else {
        if name == DEFAULT_PROFILE {
            return Ok(Profile {
                name: name.into(),
                ..Profile::default()
            });
        }
        let known: Vec<&String> = raw.profiles.keys().collect();
        return Err(invalid(
            format!(
                "no profile `{name}` (known: {DEFAULT_PROFILE} (built in){})",
                known.iter().map(|k| format!(", {k}")).collect::<String>()
            ),
            "pass one of those to --profile, or add a [profiles.NAME] table",
        ));
    };
    let keys = Keys { path, name };
    let t = p.thresholds.unwrap_or_default();
    Ok(Profile {
        name: name.into(),
        samples: p
            .samples
            .map(|n| keys.check("samples", at_least_one(n), "samples = 5"))
            .transpose()?,
        warmups: p.warmups,
        lanes: p.lanes,
        nix_upstream: p
            .nix
            .as_ref()
            .map_or(Ok(Vec::new()), |n| keys.upstream(&n.upstream))?,
        bazel_shared_repository_cache: p.bazel.as_ref().and_then(|b| b.repository_cache),
        fill: p.fill,
        compression: p.compression,
        link: p
            .link
            .map(|l| {
                keys.check(
                    "link",
                    crate::plan::Link::parse(&l),
                    "link = \"rtt_ms=40,bandwidth=100mbit\"",
                )
            })
            .transpose()?,
        repos: p.repos,
        params: keys.params(p.params)?,
        nix: p.nix.map_or(Ok(NixBackend::Embedded), |n| keys.nix(n))?,
        bazel: p
            .bazel
            .map_or(Ok(BazelBackend::Embedded), |b| keys.bazel(b))?,
        min_hit_ratio: t
            .min_hit_ratio
            .map(|v| {
                keys.check(
                    "thresholds.min_hit_ratio",
                    check_fraction(v),
                    "min_hit_ratio = 0.9",
                )
            })
            .transpose()?,
        min_speedup: t
            .min_speedup
            .map(|v| {
                keys.check(
                    "thresholds.min_speedup",
                    check_non_negative(v),
                    "min_speedup = 1.0",
                )
            })
            .transpose()?,
        max_fallback_penalty: t
            .max_fallback_penalty
            .map(|v| {
                keys.check(
                    "thresholds.max_fallback_penalty",
                    check_positive(v),
                    "max_fallback_penalty = 3.0",
                )
            })
            .transpose()?,
    })
}

fn at_least_one(n: usize) -> std::result::Result<usize, String> {
    (n >= 1)
        .then_some(n)
        .ok_or_else(|| "must be at least 1".to_string())
}

fn invalid(path: &Path, message: String, fix: &str) -> Error {
    Error::Manifest {
        path: path.to_path_buf(),
        message,
        fix: fix.to_string(),
    }
}

/// Names keys of one profile in errors.
struct Keys<'a> {
    path: &'a Path,
    name: &'a str,
}

impl Keys<'_> {
    /// `[params.REPO]` tables: whole numbers and strings, as `repo.toml` declares them.
    fn params(
        &self,
        raw: BTreeMap<String, BTreeMap<String, toml::Value>>,
    ) -> Result<BTreeMap<String, Vec<(String, ParamValue)>>> {
        raw.into_iter()
            .map(|(repo, table)| {
                let values = table
                    .into_iter()
                    .map(|(key, value)| match value {
                        toml::Value::Integer(i) => Ok((key, ParamValue::Int(i))),
                        toml::Value::String(s) => Ok((key, ParamValue::Str(s))),
                        other => Err(self.error(
                            format!(
                                "key `{}`: a parameter is a whole number or a string, not {}",
                                self.key(&format!("params.{repo}.{key}")),
                                other.type_str()
                            ),
                            &format!("write e.g. {key} = 20"),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((repo, values))
            })
            .collect()
    }

    fn key(&self, k: &str) -> String {
        format!("profiles.{}.{k}", self.name)
    }

    fn error(&self, message: String, fix: &str) -> Error {
        invalid(self.path, message, fix)
    }

    fn check<T>(
        &self,
        k: &str,
        checked: std::result::Result<T, String>,
        example: &str,
    ) -> Result<T> {
        checked.map_err(|why| {
            self.error(
                format!("key `{}`: {why}", self.key(k)),
                &format!("write e.g. {example}"),
            )
        })
    }

    fn need(&self, v: Option<String>, k: &str, example: &str) -> Result<String> {
        v.filter(|s| !s.is_empty()).ok_or_else(|| {
            self.error(
                format!("key `{}` is missing", self.key(k)),
                &format!("add {k} = {example}"),
            )
        })
    }

    fn url(&self, v: Option<String>, k: &str, example: &str) -> Result<Url> {
        let text = self.need(v, k, example)?;
        Url::parse(&text).map_err(|e| {
            let shown = crate::boundary::redact_urls(&text);
            self.error(
                format!("key `{}`: {shown:?} is not a URL ({e})", self.key(k)),
                &format!("write it in full, e.g. {k} = {example}"),
            )
        })
    }

    fn upstream(&self, raw: &[RawUpstream]) -> Result<Vec<NixCache>> {
        raw.iter()
            .map(|u| {
                let example = "\"https://cache.nixos.org\"";
                let url = self.url(Some(u.url.clone()), "nix.upstream.url", example)?;
                if !matches!(url.scheme(), "http" | "https" | "file" | "s3") {
                    return Err(self.error(
                        format!(
                            "key `{}`: {} is not a Nix binary cache URL",
                            self.key("nix.upstream.url"),
                            crate::boundary::public_url(&url)
                        ),
                        "use an http(s)://, file:// or s3:// cache",
                    ));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(self.error(
                        format!(
                            "key `{}`: {} carries a user or password; every build, cold ones included, would send them, and they would be shown",
                            self.key("nix.upstream.url"),
                            crate::boundary::public_url(&url)
                        ),
                        "an upstream cache is a public one: remove the credentials from its URL",
                    ));
                }
                let public_key = self.need(
                    Some(u.public_key.clone()),
                    "nix.upstream.public_key",
                    "\"cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=\"",
                )?;
                Ok(NixCache::upstream(url, public_key))
            })
            .collect()
    }

    fn nix(&self, n: RawNix) -> Result<NixBackend> {
        const KEY_EXAMPLE: &str = "\"name:base64...\"";
        if n.push.is_some() && n.backend != "attic" {
            return Err(self.error(
                format!(
                    "key `{}` applies to the attic backend only",
                    self.key("nix.push")
                ),
                "remove it: other caches are filled with `nix copy`",
            ));
        }
        Ok(match n.backend.as_str() {
            "embedded" => NixBackend::Embedded,
            "attic" => {
                let token = match (n.token_env, n.token_file) {
                    (Some(var), None) => TokenSource::Env(var),
                    (None, Some(file)) => TokenSource::File(file),
                    _ => {
                        return Err(self.error(
                            format!("key `{}`: an Attic backend needs exactly one of token_env or token_file", self.key("nix")),
                            "add token_env = \"ATTIC_TOKEN\" (the variable's name, not the token) or token_file = \"/run/secrets/attic\"",
                        ))
                    }
                };
                let endpoint =
                    self.url(n.endpoint, "nix.endpoint", "\"https://attic.example.com\"")?;
                if !matches!(endpoint.scheme(), "http" | "https")
                    || !endpoint.username().is_empty()
                    || endpoint.password().is_some()
                {
                    return Err(self.error(
                        format!(
                            "key `{}`: {} is not an http(s):// server address without a user or password",
                            self.key("nix.endpoint"),
                            crate::boundary::public_url(&endpoint)
                        ),
                        "write the server's address, e.g. endpoint = \"https://attic.example.com\"; the token goes in token_env or token_file",
                    ));
                }
                NixBackend::Attic {
                    endpoint,
                    cache: self.need(n.cache, "nix.cache", "\"main\"")?,
                    public_key: self.need(
                        n.public_key,
                        "nix.public_key",
                        "\"main:base64...\" (GET /_api/v1/cache-config/CACHE)",
                    )?,
                    token,
                    push: n.push.unwrap_or_default(),
                }
            }
            kind @ ("http" | "s3") => {
                let (backend, schemes, example): (_, &[&str], _) = if kind == "http" {
                    (
                        CacheBackend::Http,
                        &["http", "https"],
                        "\"https://cache.example.com\"",
                    )
                } else {
                    (
                        CacheBackend::S3,
                        &["s3"],
                        "\"s3://bucket?region=eu-west-1\"",
                    )
                };
                let url = self.url(n.url, "nix.url", example)?;
                if !schemes.contains(&url.scheme()) {
                    return Err(self.error(
                        format!(
                            "key `{}`: {url} is not a URL of the {kind} backend",
                            self.key("nix.url")
                        ),
                        &format!(
                            "write e.g. url = {example}, or choose the backend its scheme names"
                        ),
                    ));
                }
                NixBackend::Store {
                    backend,
                    url,
                    public_key: self.need(n.public_key, "nix.public_key", KEY_EXAMPLE)?,
                    secret_key_file: n.secret_key_file,
                }
            }
            "file" => {
                let dir = n.path.filter(|p| p.is_absolute()).ok_or_else(|| {
                    self.error(
                        format!(
                            "key `{}` is missing or not an absolute path",
                            self.key("nix.path")
                        ),
                        "add path = \"/var/cache/nix-bench\"",
                    )
                })?;
                NixBackend::Store {
                    backend: CacheBackend::File,
                    url: Url::from_file_path(&dir).map_err(|()| {
                        self.error(
                            format!(
                                "key `{}`: {} is not a usable folder path",
                                self.key("nix.path"),
                                dir.display()
                            ),
                            "write an absolute folder path",
                        )
                    })?,
                    public_key: self.need(n.public_key, "nix.public_key", KEY_EXAMPLE)?,
                    secret_key_file: n.secret_key_file,
                }
            }
            other => {
                return Err(self.error(
                    format!(
                        "key `{}`: unknown backend {other:?}",
                        self.key("nix.backend")
                    ),
                    "use embedded, attic, http, file or s3",
                ))
            }
        })
    }

    fn bazel(&self, b: RawBazel) -> Result<BazelBackend> {
        Ok(match b.backend.as_str() {
            "embedded" => BazelBackend::Embedded,
            kind @ ("http" | "grpc") => {
                let url = self.url(b.url, "bazel.url", "\"grpc://bazel-remote:9092\"")?;
                let schemes: &[&str] = if kind == "http" {
                    &["http", "https"]
                } else {
                    &["grpc", "grpcs"]
                };
                if !schemes.contains(&url.scheme()) {
                    return Err(self.error(
                        format!(
                            "key `{}`: {} is not a {kind} URL",
                            self.key("bazel.url"),
                            crate::boundary::public_url(&url)
                        ),
                        "write http(s)://HOST:PORT for backend http, grpc(s)://HOST:PORT for grpc",
                    ));
                }
                BazelBackend::Remote {
                    url,
                    headers_env: b.headers_env,
                }
            }
            "disk" => BazelBackend::Disk {
                path: b.path.ok_or_else(|| {
                    self.error(
                        format!("key `{}` is missing", self.key("bazel.path")),
                        "add path = \"/var/cache/bazel-disk\"",
                    )
                })?,
            },
            other => {
                return Err(self.error(
                    format!(
                        "key `{}`: unknown backend {other:?}",
                        self.key("bazel.backend")
                    ),
                    "use embedded, http, grpc or disk",
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[profiles.prod]
samples = 7
lanes = ["host", "vm"]
fill = false
[profiles.prod.nix]
backend = "attic"
endpoint = "https://attic.example.com/"
cache = "main"
public_key = "main:AAAA"
token_env = "ATTIC_TOKEN"
push = "cli"
[profiles.prod.bazel]
backend = "grpc"
url = "grpc://bazel-remote:9092"
headers_env = "BAZEL_HEADERS"
[profiles.prod.thresholds]
min_hit_ratio = 0.8

[profiles.local]
[profiles.local.nix]
backend = "file"
path = "/srv/cache"
public_key = "k:B"
[profiles.local.bazel]
backend = "disk"
path = "/srv/bazel"
"#;

    fn parse_named(name: &str) -> Result<Profile> {
        parse(FILE, Path::new("bench.toml"), name)
    }

    #[test]
    fn parses_backends_lanes_and_thresholds() {
        let p = parse_named("prod").unwrap();
        assert_eq!(p.samples, Some(7));
        assert_eq!(p.lanes, Some(vec![Lane::Host, Lane::Vm]));
        assert_eq!(
            p.nix,
            NixBackend::Attic {
                endpoint: Url::parse("https://attic.example.com/").unwrap(),
                cache: "main".into(),
                public_key: "main:AAAA".into(),
                token: TokenSource::Env("ATTIC_TOKEN".into()),
                push: AtticPush::Cli,
            }
        );
        assert_eq!(p.fill, Some(false));
        assert_eq!(
            p.bazel,
            BazelBackend::Remote {
                url: Url::parse("grpc://bazel-remote:9092").unwrap(),
                headers_env: Some("BAZEL_HEADERS".into())
            }
        );
        assert_eq!(p.min_hit_ratio, Some(0.8));
        let local = parse_named("local").unwrap();
        assert_eq!(
            local.nix,
            NixBackend::Store {
                backend: CacheBackend::File,
                url: Url::parse("file:///srv/cache").unwrap(),
                public_key: "k:B".into(),
                secret_key_file: None
            }
        );
        assert_eq!(
            local.bazel,
            BazelBackend::Disk {
                path: "/srv/bazel".into()
            }
        );
    }

    #[test]
    fn the_committed_bench_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench.toml");
        assert_eq!(
            load(Some(&path), DEFAULT_PROFILE).unwrap().nix,
            NixBackend::Embedded
        );
    }

    #[test]
    fn the_tranche_1_profile_puts_cache_nixos_org_under_every_build() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench.toml");
        let p = load(Some(&path), "tranche-1").unwrap();
        assert_eq!(p.nix, NixBackend::Embedded);
        assert_eq!(p.nix_upstream[0].url.host_str(), Some("cache.nixos.org"));
        let off = parse(
            "[profiles.p.bazel]\nrepository_cache = false\n",
            Path::new("bench.toml"),
            "p",
        )
        .unwrap();
        assert_eq!(
            off.bazel,
            BazelBackend::Embedded,
            "the backend defaults to embedded"
        );
        assert_eq!(off.bazel_shared_repository_cache, Some(false));
    }

    #[test]
    fn the_embedded_profile_is_built_in() {
        assert_eq!(parse_named("embedded").unwrap().nix, NixBackend::Embedded);
        assert_eq!(
            load(None, "embedded").unwrap().bazel,
            BazelBackend::Embedded
        );
        assert!(load(None, "prod")
            .unwrap_err()
            .to_string()
            .contains("--config"));
    }

    fn error(text: &str, name: &str) -> String {
        parse(text, Path::new("/x/bench.toml"), name)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_fix() {
        let err = parse_named("nope").unwrap_err().to_string();
        assert!(
            err.contains("no profile `nope`") && err.contains("prod") && err.contains("fix:"),
            "{err}"
        );
        let err = error("[profiles.p.nix]\nbackend = \"attic\"\nendpoint = \"https://a\"\ncache = \"c\"\npublic_key = \"k\"\n", "p");
        assert!(
            err.contains("/x/bench.toml") && err.contains("token_env"),
            "{err}"
        );
        let err = error("[profiles.p.nix]\nbackend = \"ftp\"\n", "p");
        assert!(
            err.contains("profiles.p.nix.backend") && err.contains("attic, http, file or s3"),
            "{err}"
        );
        let err = error(
            "[profiles.p.bazel]\nbackend = \"grpc\"\nurl = \"http://x\"\n",
            "p",
        );
        assert!(err.contains("profiles.p.bazel.url"), "{err}");
        let err = error("[profiles.p.thresholds]\nmin_hit_ratio = 1.5\n", "p");
        assert!(
            err.contains("profiles.p.thresholds.min_hit_ratio") && err.contains("between 0 and 1"),
            "{err}"
        );
        let err = error("[profiles.p]\nsamples = 0\n", "p");
        assert!(err.contains("profiles.p.samples"), "{err}");
        let err = error(
            "[profiles.p.nix]\nbackend = \"http\"\nurl = \"cache\"\npublic_key = \"k\"\n",
            "p",
        );
        assert!(err.contains("not a URL"), "{err}");
        let err = error(
            "[profiles.p.nix]\nbackend = \"http\"\nurl = \"https://c\"\npublic_key = \"k\"\npush = \"api\"\n",
            "p",
        );
        assert!(
            err.contains("profiles.p.nix.push") && err.contains("attic backend only"),
            "{err}"
        );
        let err = error(
            "[profiles.p.nix]\nbackend = \"attic\"\npush = \"ftp\"\n",
            "p",
        );
        assert!(err.contains("push") && err.contains("api"), "{err}");
        let err = error("[profiles.p]\nsampels = 3\n", "p");
        assert!(err.contains("sampels"), "{err}");
        let err = error(
            "[profiles.p.nix]\nbackend = \"http\"\npublic_key = \"k\"\n",
            "p",
        );
        assert!(err.contains("profiles.p.nix.url"), "{err}");
    }

    #[test]
    fn attic_endpoints_are_http_servers_without_credentials() {
        let attic = |endpoint: &str| {
            format!("[profiles.p.nix]\nbackend = \"attic\"\nendpoint = \"{endpoint}\"\ncache = \"c\"\npublic_key = \"c:K\"\ntoken_env = \"T\"\n")
        };
        for bad in [
            "ftp://attic.example.com",
            "https://bot:s3cr3t@attic.example.com",
        ] {
            let err = parse(&attic(bad), Path::new("bench.toml"), "p")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("key `profiles.p.nix.endpoint`") && !err.contains("s3cr3t"),
                "{err}"
            );
        }
        parse(
            &attic("http://127.0.0.1:8080"),
            Path::new("bench.toml"),
            "p",
        )
        .unwrap();
        let upstream = "[profiles.p.nix]\nupstream = [{ url = \"https://u:s3cr3t@cache.example.com\", public_key = \"k:1\" }]\n";
        let err = parse(upstream, Path::new("bench.toml"), "p")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nix.upstream.url") && !err.contains("s3cr3t"),
            "{err}"
        );
    }
}
