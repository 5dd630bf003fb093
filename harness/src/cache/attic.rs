//! Attic: pulls go through its Nix binary cache interface (`{endpoint}/{cache}`) with the
//! token in a private netrc file (Attic takes it as the HTTP Basic password); pushes go
//! through the `attic` CLI with a private HOME whose config holds the token. The token is
//! read from an environment variable or a file and written only to those two 0600 files:
//! never to a command line, a log, an error or the results.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::plan::profile::TokenSource;
use crate::run::process::{run_captured, CommandSpec, Executor};
use crate::scratch::write_private;
use crate::tools::nix::{NixCache, Push};

const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// The name the harness gives the server in attic's config.
const SERVER: &str = "flywheel-bench";

pub struct AtticConfig<'a> {
    pub endpoint: &'a str,
    pub cache: &'a str,
    pub public_key: &'a str,
    pub token: &'a TokenSource,
}

fn read_token(source: &TokenSource) -> Result<String> {
    let token = match source {
        TokenSource::Env(var) => std::env::var(var).map_err(|_| {
            Error::Environment(format!(
                "the Attic token variable ${var} is not set\n  fix: export {var}=<token> before the run (it is never printed or recorded)"
            ))
        })?,
        TokenSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
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

/// The host part of an endpoint URL (what netrc's `machine` matches).
fn host_of(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// Checks the cache answers (`nix-cache-info`) with these credentials, then describes how
/// to read and fill it. `dir` must be private to the harness.
pub fn connect(config: AtticConfig, dir: &Path, exec: &dyn Executor) -> Result<NixCache> {
    let token = read_token(config.token)?;
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let netrc = dir.join("netrc");
    let entry = format!(
        "machine {}\nlogin {SERVER}\npassword {token}\n",
        host_of(config.endpoint)
    );
    write_private(&netrc, entry.as_bytes())?;
    let substituter = format!("{}/{}", config.endpoint, config.cache);

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
            Push::Attic { program, home, target: format!("{SERVER}:{}", config.cache) }
        }
        None => Push::Unavailable(
            "filling the Attic cache needs the `attic` CLI on PATH (e.g. `nix profile install nixpkgs#attic-client`); reading it needs only Nix".into(),
        ),
    };
    Ok(NixCache {
        backend: "attic".into(),
        substituter,
        public_key: config.public_key.to_string(),
        push,
        secret_key_file: None,
        netrc_file: Some(netrc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netrc_machines_are_hosts() {
        assert_eq!(host_of("https://attic.example.com"), "attic.example.com");
        assert_eq!(host_of("http://127.0.0.1:8080/x"), "127.0.0.1");
    }

    #[test]
    fn token_errors_never_contain_the_token() {
        let err = read_token(&TokenSource::Env("FLYWHEEL_TEST_UNSET_TOKEN_VAR".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("$FLYWHEEL_TEST_UNSET_TOKEN_VAR"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cr3t-token\n").unwrap();
        assert_eq!(
            read_token(&TokenSource::File(file)).unwrap(),
            "s3cr3t-token"
        );
    }
}
