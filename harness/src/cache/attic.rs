//! Attic: pulls go through its Nix binary cache interface (`{endpoint}/{cache}`) with the
//! token as the HTTP Basic password (Nix reads it from the driver's private netrc); pushes
//! go through its API (`tools::attic_api`, the default) or, when the profile asks, the
//! `attic` CLI. Before the run the harness checks, over its own HTTP client, that the token
//! may read the cache (and push to it, unless the run is read-only or pushes with the CLI)
//! and that the profile's public key is the cache's. The token is never put on a command
//! line, in a log, an error or the results.

use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::exec::http::{Auth, Client, Method, Request};
use crate::plan::cache::{Fill, NixCache, ATTIC_LOGIN};
use crate::plan::proxies::Proxies;
use crate::tools::attic_api::AtticApi;

const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks that an Attic cache answers with its token, that its key is the profile's and,
/// when the API fills it, that the token may push.
pub fn check(cache: &NixCache, proxies: &Proxies) -> Result<()> {
    let token = cache.token()?;
    let (endpoint, name) = cache.attic_server()?;
    let client = Client::new(proxies).map_err(Error::Environment)?;
    let api = AtticApi {
        client: &client,
        endpoint: &endpoint,
        cache: &name,
        token,
    };
    let unusable = |why: String| {
        Error::Environment(format!(
            "the Attic cache {} cannot be used: {why}",
            cache.url
        ))
    };
    let served = api.cache_config().map_err(unusable)?;
    if let Some(key) = served.public_key.filter(|k| *k != cache.public_key) {
        return Err(Error::Environment(format!(
            "the profile's nix.public_key ({}) is not the key the Attic cache `{name}` signs with ({key}): every warm build would refuse its paths\n  fix: set public_key = \"{key}\"",
            cache.public_key
        )));
    }
    // What Nix itself will fetch first, authenticated the way Nix will (HTTP Basic).
    let info_url = Url::parse(&format!("{}/nix-cache-info", cache.url))
        .map_err(|e| Error::Usage(format!("{}/nix-cache-info is not a URL ({e})", cache.url)))?;
    let info = client
        .send(
            Request::new(Method::Get, &info_url, PREFLIGHT_TIMEOUT).auth(Auth::Basic {
                user: ATTIC_LOGIN,
                password: token,
            }),
        )
        .map_err(|e| unusable(e.to_string()))?;
    if info.status != 200 || !info.text().contains("StoreDir:") {
        return Err(unusable(format!(
            "GET {info_url} answered {} without a StoreDir line, so Nix could not substitute from it\n  fix: check nix.endpoint and that the token may pull from `{name}`",
            info.status
        )));
    }
    if cache.fill == Fill::AtticApi {
        // An empty question still needs push permission: refused now, not after priming.
        api.missing_paths(&[]).map_err(unusable)?;
    }
    Ok(())
}
