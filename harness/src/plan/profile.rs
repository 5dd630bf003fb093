//! Profiles (`bench.toml`, or `--config FILE`): named choices of cache backends, lanes,
//! sample counts and thresholds, so a run against a real deployment is one `--profile`.
//! Pure apart from reading the file; secrets are referred to (an environment variable or a
//! file), never written in the profile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::plan::Lane;

pub const CONFIG_FILE: &str = "bench.toml";
pub const DEFAULT_PROFILE: &str = "embedded";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub name: String,
    pub samples: Option<usize>,
    pub warmups: Option<usize>,
    pub lanes: Option<Vec<Lane>>,
    pub nix: NixBackend,
    pub bazel: BazelBackend,
    pub min_hit_ratio: Option<f64>,
    pub min_speedup: Option<f64>,
    pub max_fallback_penalty: Option<f64>,
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
    /// An Attic server: pulls through its Nix binary cache interface, pushes with `attic`.
    Attic {
        endpoint: String,
        cache: String,
        public_key: String,
        token: TokenSource,
    },
    /// Any binary cache `nix copy` can write and Nix can read: http(s)://, file://, s3://.
    Store {
        backend: &'static str,
        url: String,
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
        url: String,
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
    nix: Option<RawNix>,
    bazel: Option<RawBazel>,
    thresholds: Option<RawThresholds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNix {
    backend: String,
    endpoint: Option<String>,
    cache: Option<String>,
    url: Option<String>,
    path: Option<PathBuf>,
    public_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBazel {
    backend: String,
    url: Option<String>,
    path: Option<PathBuf>,
    headers_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    min_hit_ratio: Option<f64>,
    min_speedup: Option<f64>,
    max_fallback_penalty: Option<f64>,
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
    let text = std::fs::read_to_string(path).map_err(|e| Error::Manifest {
        path: path.to_path_buf(),
        message: format!("cannot read it: {e}"),
        fix: "pass --config with the path of your bench.toml".into(),
    })?;
    parse(&text, path, name)
}

pub fn parse(text: &str, path: &Path, name: &str) -> Result<Profile> {
    let invalid = |message: String, fix: &str| Error::Manifest {
        path: path.to_path_buf(),
        message,
        fix: fix.to_string(),
    };
    let mut raw: RawFile = toml::from_str(text).map_err(|e| {
        invalid(
            e.to_string().trim_end().to_string(),
            "see the README's \"Profiles\" section",
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
    let key = |k: &str| format!("profiles.{name}.{k}");
    let need = |v: Option<String>, k: &str, example: &str| {
        v.filter(|s| !s.is_empty()).ok_or_else(|| {
            invalid(
                format!("key `{}` is missing", key(k)),
                &format!("add {k} = {example}"),
            )
        })
    };
    let nix = match p.nix {
        None => NixBackend::Embedded,
        Some(n) => match n.backend.as_str() {
            "embedded" => NixBackend::Embedded,
            "attic" => {
                let token = match (n.token_env, n.token_file) {
                    (Some(var), None) => TokenSource::Env(var),
                    (None, Some(file)) => TokenSource::File(file),
                    _ => {
                        return Err(invalid(
                            format!("key `{}`: an Attic backend needs exactly one of token_env or token_file", key("nix")),
                            "add token_env = \"ATTIC_TOKEN\" (the variable's name, not the token) or token_file = \"/run/secrets/attic\"",
                        ))
                    }
                };
                NixBackend::Attic {
                    endpoint: need(n.endpoint, "nix.endpoint", "\"https://attic.example.com\"")?
                        .trim_end_matches('/')
                        .to_string(),
                    cache: need(n.cache, "nix.cache", "\"main\"")?,
                    public_key: need(
                        n.public_key,
                        "nix.public_key",
                        "\"main:base64...\" (GET /_api/v1/cache-config/CACHE)",
                    )?,
                    token,
                }
            }
            scheme @ ("http" | "s3") => NixBackend::Store {
                backend: if scheme == "http" { "http" } else { "s3" },
                url: need(
                    n.url,
                    "nix.url",
                    if scheme == "http" {
                        "\"https://cache.example.com\""
                    } else {
                        "\"s3://bucket?region=eu-west-1\""
                    },
                )?,
                public_key: need(n.public_key, "nix.public_key", "\"name:base64...\"")?,
                secret_key_file: n.secret_key_file,
            },
            "file" => {
                let dir = n.path.ok_or_else(|| {
                    invalid(
                        format!("key `{}` is missing", key("nix.path")),
                        "add path = \"/var/cache/nix-bench\"",
                    )
                })?;
                NixBackend::Store {
                    backend: "file",
                    url: format!("file://{}", dir.display()),
                    public_key: need(n.public_key, "nix.public_key", "\"name:base64...\"")?,
                    secret_key_file: n.secret_key_file,
                }
            }
            other => {
                return Err(invalid(
                    format!("key `{}`: unknown backend {other:?}", key("nix.backend")),
                    "use embedded, attic, http, file or s3",
                ))
            }
        },
    };
    let bazel =
        match p.bazel {
            None => BazelBackend::Embedded,
            Some(b) => match b.backend.as_str() {
                "embedded" => BazelBackend::Embedded,
                "http" | "grpc" => {
                    let url = need(b.url, "bazel.url", "\"grpc://bazel-remote:9092\"")?;
                    let scheme_ok = match b.backend.as_str() {
                        "http" => url.starts_with("http://") || url.starts_with("https://"),
                        _ => url.starts_with("grpc://") || url.starts_with("grpcs://"),
                    };
                    if !scheme_ok {
                        return Err(invalid(
                        format!("key `{}`: {url} is not a {} URL", key("bazel.url"), b.backend),
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
                        invalid(
                            format!("key `{}` is missing", key("bazel.path")),
                            "add path = \"/var/cache/bazel-disk\"",
                        )
                    })?,
                },
                other => {
                    return Err(invalid(
                        format!("key `{}`: unknown backend {other:?}", key("bazel.backend")),
                        "use embedded, http, grpc or disk",
                    ))
                }
            },
        };
    let t = p.thresholds.unwrap_or(RawThresholds {
        min_hit_ratio: None,
        min_speedup: None,
        max_fallback_penalty: None,
    });
    Ok(Profile {
        name: name.into(),
        samples: p.samples,
        warmups: p.warmups,
        lanes: p.lanes,
        nix,
        bazel,
        min_hit_ratio: t.min_hit_ratio,
        min_speedup: t.min_speedup,
        max_fallback_penalty: t.max_fallback_penalty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[profiles.prod]
samples = 7
lanes = ["host", "vm"]
[profiles.prod.nix]
backend = "attic"
endpoint = "https://attic.example.com/"
cache = "main"
public_key = "main:AAAA"
token_env = "ATTIC_TOKEN"
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
                endpoint: "https://attic.example.com".into(),
                cache: "main".into(),
                public_key: "main:AAAA".into(),
                token: TokenSource::Env("ATTIC_TOKEN".into())
            }
        );
        assert_eq!(
            p.bazel,
            BazelBackend::Remote {
                url: "grpc://bazel-remote:9092".into(),
                headers_env: Some("BAZEL_HEADERS".into())
            }
        );
        assert_eq!(p.min_hit_ratio, Some(0.8));
        let local = parse_named("local").unwrap();
        assert_eq!(
            local.nix,
            NixBackend::Store {
                backend: "file",
                url: "file:///srv/cache".into(),
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
        let err = error("[profiles.p]\nsampels = 3\n", "p");
        assert!(err.contains("sampels"), "{err}");
        let err = error(
            "[profiles.p.nix]\nbackend = \"http\"\npublic_key = \"k\"\n",
            "p",
        );
        assert!(err.contains("profiles.p.nix.url"), "{err}");
    }
}
