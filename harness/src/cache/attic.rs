//! Attic: pulls go through its Nix binary cache interface (`{endpoint}/{cache}`) with the
//! token in a private netrc file (Attic takes it as the HTTP Basic password); pushes go
//! through its API (`attic_api`, the default) or, when the profile asks, the `attic` CLI with
//! a private HOME whose config holds the token. Before the run the harness checks, over
//! its own HTTP client, that the token may read the cache (and push to it, unless the run
//! is read-only) and that the profile's public key is the cache's. The token is read from
//! an environment variable or a file and written only to 0600 files: never to a command
//! line, a log, an error or the results.

use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::cache::{AtticTarget, NixCache, Push};
use crate::error::{Error, IoContext, Result};
use crate::exec::http::{Auth, Client, Method, Request};
use crate::exec::scratch::write_private;
use crate::plan::config::{AtticConfig, Token};
use crate::plan::profile::AtticPush;
use crate::plan::proxies::Proxies;
use crate::results::CacheBackend;
use crate::tools::attic_api::AtticApi;

const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// The name the harness gives the server in attic's config, and the netrc login.
const SERVER: &str = "flywheel-bench";

/// The token, trimmed; read from its file when it is in one.
pub(crate) fn read_token(token: &Token) -> Result<String> {
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

/// Checks that the cache answers with these credentials and that its key is the profile's,
/// then describes how to read it and (unless `fill` is off) fill it. `dir` must be private
/// to the harness: it receives the token's files.
pub fn connect(
    config: &AtticConfig,
    dir: &Path,
    fill: bool,
    proxies: &Proxies,
) -> Result<NixCache> {
    let token = read_token(&config.token)?;
    let substituter = substituter(&config.endpoint, &config.cache)?;
    let client = Client::new(proxies).map_err(Error::Environment)?;
    let api = AtticApi {
        client: &client,
        endpoint: &config.endpoint,
        cache: &config.cache,
        token: &token,
    };
    let unusable = |why: String| {
        Error::Environment(format!(
            "the Attic cache {substituter} cannot be used: {why}"
        ))
    };
    let served = api.cache_config().map_err(unusable)?;
    if let Some(key) = served.public_key.filter(|k| *k != config.public_key) {
        return Err(Error::Environment(format!(
            "the profile's nix.public_key ({}) is not the key the Attic cache `{}` signs with ({key}): every warm build would refuse its paths\n  fix: set public_key = \"{key}\"",
            config.public_key, config.cache
        )));
    }
    // What Nix itself will fetch first, authenticated the way Nix will (HTTP Basic).
    let info_url = Url::parse(&format!("{substituter}/nix-cache-info"))
        .map_err(|e| Error::Usage(format!("{substituter}/nix-cache-info is not a URL ({e})")))?;
    let info = client
        .send(
            Request::new(Method::Get, &info_url, PREFLIGHT_TIMEOUT).auth(Auth::Basic {
                user: SERVER,
                password: &token,
            }),
        )
        .map_err(|e| unusable(e.to_string()))?;
    if info.status != 200 || !info.text().contains("StoreDir:") {
        return Err(unusable(format!(
            "GET {info_url} answered {} without a StoreDir line, so Nix could not substitute from it\n  fix: check nix.endpoint and that the token may pull from `{}`",
            info.status, config.cache
        )));
    }

    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let netrc = dir.join("netrc");
    let entry = format!(
        "machine {}\nlogin {SERVER}\npassword {token}\n",
        config.endpoint.host_str().unwrap_or_default()
    );
    write_private(&netrc, entry.as_bytes())?;
    let push = match (fill, config.push) {
        (false, _) => Push::ReadOnly,
        (true, AtticPush::Api) => {
            // An empty question still needs push permission: refused now, not after priming.
            api.missing_paths(&[]).map_err(unusable)?;
            let token_file = dir.join("token");
            write_private(&token_file, token.as_bytes())?;
            Push::AtticApi(Box::new(AtticTarget {
                endpoint: config.endpoint.clone(),
                cache: config.cache.clone(),
                token_file,
                proxies: proxies.clone(),
            }))
        }
        (true, AtticPush::Cli) => attic_cli(config, dir, &token)?,
    };
    Ok(NixCache {
        backend: CacheBackend::Attic,
        substituter,
        public_key: config.public_key.clone(),
        push,
        netrc_file: Some(netrc),
    })
}

/// Pushes through the `attic` CLI (`push = "cli"`), with a private HOME holding its config.
fn attic_cli(config: &AtticConfig, dir: &Path, token: &str) -> Result<Push> {
    let program = crate::tools::find("attic").ok_or_else(|| {
        Error::Environment(
            "the profile asks for the `attic` CLI (nix.push = \"cli\"), which is not on PATH\n  fix: install it (e.g. `nix profile install nixpkgs#attic-client`), or use push = \"api\" (the default), which needs no CLI".into(),
        )
    })?;
    let home = dir.join("attic-home");
    let config_dir = home.join(".config/attic");
    std::fs::create_dir_all(&config_dir)
        .context(|| format!("creating {}", config_dir.display()))?;
    let toml = format!(
        "default-server = \"{SERVER}\"\n\n[servers.{SERVER}]\nendpoint = \"{}\"\ntoken = \"{token}\"\n",
        config.endpoint
    );
    write_private(&config_dir.join("config.toml"), toml.as_bytes())?;
    Ok(Push::AtticCli {
        program,
        home,
        target: format!("{SERVER}:{}", config.cache),
    })
}

/// The token of a filled cache's target, from its private file.
pub fn target_token(target: &AtticTarget) -> std::result::Result<String, String> {
    read_token(&Token::File(target.token_file.clone())).map_err(|e| e.to_string())
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
        assert!(read_token(&Token::Value(Secret::new(" \n")))
            .unwrap_err()
            .to_string()
            .contains("empty"));
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
