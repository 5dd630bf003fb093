//! Attic: pulls go through its Nix binary cache interface (`{endpoint}/{cache}`) with the
//! token in a private netrc file (Attic takes it as the HTTP Basic password); pushes go
//! through the `attic` CLI with a private HOME whose config holds the token. The token is
//! read from an environment variable or a file and written only to those two 0600 files:
//! never to a command line, a log, an error or the results.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::cache::{NixCache, Push};
use crate::error::{Error, IoContext, Result};
use crate::plan::config::{AtticConfig, Token};
use crate::results::CacheBackend;
use crate::run::process::{run_captured, CommandSpec, Executor};
use crate::scratch::write_private;

const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// The name the harness gives the server in attic's config.
const SERVER: &str = "flywheel-bench";

/// The token, trimmed; read from its file when it is in one.
fn read_token(token: &Token) -> Result<String> {
    let token = match token {
        Token::Value(secret) => secret.expose().to_string(),
        Token::File(path) => std::fs::read_to_string(path).map_err(|e| {
            Error::Environment(format!(
                "cannot read the Attic token file {}: {}\n  fix: point token_file at a readable file holding the token",
                path.display(),
                e.kind()
            ))
        })?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(Error::Environment(
            "the Attic token is empty\n  fix: set the token variable or file to the token".into(),
        ));
    }
    Ok(token)
}

/// `{endpoint}/{cache}`: Attic's Nix binary cache interface for one cache.
pub fn substituter(endpoint: &Url, cache: &str) -> Result<Url> {
    let text = format!("{}/{cache}", endpoint.as_str().trim_end_matches('/'));
    Url::parse(&text).map_err(|e| {
        Error::Usage(format!(
            "the Attic cache URL {text} is not valid ({e})\n  fix: check the profile's nix.endpoint and nix.cache"
        ))
    })
}

/// Checks the cache answers (`nix-cache-info`) with these credentials, then describes how
/// to read and fill it. `dir` must be private to the harness.
pub fn connect(config: &AtticConfig, dir: &Path, exec: &dyn Executor) -> Result<NixCache> {
    let token = read_token(&config.token)?;
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let netrc = dir.join("netrc");
    let entry = format!(
        "machine {}\nlogin {SERVER}\npassword {token}\n",
        config.endpoint.host_str().unwrap_or_default()
    );
    write_private(&netrc, entry.as_bytes())?;
    let substituter = substituter(&config.endpoint, &config.cache)?;

    let curl = crate::tools::require("curl", "to check the Attic cache before the run")?;
    let info_url = format!("{substituter}/nix-cache-info");
    let args: Vec<OsString> = ["-sS", "--fail", "--max-time", "15", "--netrc-file"]
        .map(OsString::from)
        .into_iter()
        .chain([netrc.clone().into_os_string(), info_url.clone().into()])
        .collect();
    let out = run_captured(exec, CommandSpec::new(curl, args, PREFLIGHT_TIMEOUT))?;
    if !out.outcome.success() || !out.stdout.contains("StoreDir:") {
        let why = out
            .stderr
            .lines()
            .last()
            .unwrap_or("no nix-cache-info in the answer")
            .trim()
            .to_string();
        return Err(Error::Environment(format!(
            "the Attic cache {substituter} did not answer {info_url}: {why}\n  fix: check the endpoint, the cache name and that the token may read it"
        )));
    }

    let push = match crate::tools::find("attic") {
        Some(program) => {
            let home = dir.join("attic-home");
            let config_dir = home.join(".config/attic");
            std::fs::create_dir_all(&config_dir).context(|| format!("creating {}", config_dir.display()))?;
            let toml = format!(
                "default-server = \"{SERVER}\"\n\n[servers.{SERVER}]\nendpoint = \"{}\"\ntoken = \"{token}\"\n",
                config.endpoint
            );
            write_private(&config_dir.join("config.toml"), toml.as_bytes())?;
            Push::AtticCli { program, home, target: format!("{SERVER}:{}", config.cache) }
        }
        None => Push::Unavailable(
            "filling the Attic cache needs the `attic` CLI on PATH (e.g. `nix profile install nixpkgs#attic-client`); reading it needs only Nix".into(),
        ),
    };
    Ok(NixCache {
        backend: CacheBackend::Attic,
        substituter,
        public_key: config.public_key.clone(),
        push,
        netrc_file: Some(netrc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::config::Secret;

    #[test]
    fn the_substituter_is_the_endpoint_and_cache() {
        let endpoint = Url::parse("https://attic.example.com/").unwrap();
        assert_eq!(
            substituter(&endpoint, "main").unwrap().as_str(),
            "https://attic.example.com/main"
        );
    }

    #[test]
    fn tokens_are_trimmed_and_errors_never_contain_them() {
        assert_eq!(
            read_token(&Token::Value(Secret::new("t0k\n"))).unwrap(),
            "t0k"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cr3t-token\n").unwrap();
        assert_eq!(read_token(&Token::File(file)).unwrap(), "s3cr3t-token");
        let err = read_token(&Token::File(dir.path().join("missing")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_file"), "{err}");
    }
}
