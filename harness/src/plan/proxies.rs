//! Proxies for the harness's own HTTP requests, resolved once from the environment with
//! the run's configuration (Nix and Bazel read the same variables themselves). Pure.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::plan::config::Env;

/// Proxies for the harness's own requests, from the variables curl and Nix read, resolved
/// once with the run's configuration: `https_proxy`/`HTTPS_PROXY` for https URLs,
/// `http_proxy`/`HTTP_PROXY` for http ones, `all_proxy`/`ALL_PROXY` for either when those
/// are unset, and `no_proxy`/`NO_PROXY` for the hosts that go direct (lower case wins).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Proxies {
    http: Option<Url>,
    https: Option<Url>,
    /// Host names (or domain suffixes) reached directly; `*` means every host.
    no_proxy: Vec<String>,
}

impl std::fmt::Debug for Proxies {
    /// Proxy URLs may carry credentials: only their hosts are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = |u: &Option<Url>| u.as_ref().map(|u| u.host_str().unwrap_or("?").to_string());
        f.debug_struct("Proxies")
            .field("http", &host(&self.http))
            .field("https", &host(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxies {
    /// The proxies the environment names. A value that is not a URL is an error naming the
    /// variable (never its value, which may hold a password).
    pub fn from_env(env: &Env) -> Result<Proxies, String> {
        let first = |names: &[&'static str]| -> Result<Option<Url>, String> {
            for &name in names {
                let Some(value) = env.var(name).map(str::trim).filter(|v| !v.is_empty()) else {
                    continue;
                };
                // `host:port` without a scheme means an HTTP proxy, as curl reads it.
                let text = if value.contains("://") {
                    value.to_string()
                } else {
                    format!("http://{value}")
                };
                return Url::parse(&text)
                    .ok()
                    .filter(|u| u.host_str().is_some())
                    .map(Some)
                    .ok_or_else(|| {
                        format!(
                            "${name} is not a proxy URL\n  fix: set it to e.g. http://proxy.example.com:3128, or unset it"
                        )
                    });
            }
            Ok(None)
        };
        let all = first(&["all_proxy", "ALL_PROXY"])?;
        let no_proxy = ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|name| env.var(name))
            .unwrap_or_default()
            .split([',', ' '])
            .map(|e| e.trim().trim_start_matches("*.").trim_start_matches('.'))
            .filter(|e| !e.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Ok(Proxies {
            http: first(&["http_proxy", "HTTP_PROXY"])?.or_else(|| all.clone()),
            https: first(&["https_proxy", "HTTPS_PROXY"])?.or(all),
            no_proxy,
        })
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Url> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }?;
        let host = url
            .host_str()?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let port = url.port_or_known_default();
        let bypass = self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((name, p)) if p.chars().all(|c| c.is_ascii_digit()) => (name, p.parse().ok()),
                _ => (entry.as_str(), None),
            };
            let name = name.trim_matches(['[', ']']);
            let host_matches = host == name || host.ends_with(&format!(".{name}"));
            host_matches && entry_port.is_none_or(|p| Some(p) == port)
        });
        (!bypass).then_some(proxy)
    }

    /// The proxy for http URLs.
    pub fn http(&self) -> Option<&Url> {
        self.http.as_ref()
    }

    /// The proxy for https URLs.
    pub fn https(&self) -> Option<&Url> {
        self.https.as_ref()
    }

    /// Proxy passwords, to keep out of error texts.
    pub fn secrets(&self) -> Vec<String> {
        [&self.http, &self.https]
            .into_iter()
            .flatten()
            .filter_map(|u| u.password().map(str::to_string))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::with_vars(vars, Path::new("/"))
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn proxies_come_from_the_usual_variables_per_scheme() {
        let p = Proxies::from_env(&env(&[
            ("https_proxy", "http://user:pw@proxy:3128"),
            ("HTTP_PROXY", "plain:8080"),
            (
                "NO_PROXY",
                "localhost, .internal.example,*.corp, 10.0.0.1:9000",
            ),
        ]))
        .unwrap();
        assert_eq!(
            p.for_url(&url("https://attic.example.com/x"))
                .map(Url::as_str),
            Some("http://user:pw@proxy:3128/")
        );
        assert_eq!(
            p.for_url(&url("http://cache.example.com/x"))
                .map(Url::as_str),
            Some("http://plain:8080/"),
            "a value without a scheme is an HTTP proxy"
        );
        for direct in [
            "http://localhost:8080/",
            "https://a.internal.example/",
            "https://internal.example/",
            "https://b.corp/",
            "http://10.0.0.1:9000/",
        ] {
            assert_eq!(p.for_url(&url(direct)), None, "{direct} bypasses the proxy");
        }
        assert!(
            p.for_url(&url("http://10.0.0.1:9001/")).is_some(),
            "another port"
        );
        assert!(p.for_url(&url("https://notinternal.example/")).is_some());
        assert!(!format!("{p:?}").contains("pw"), "Debug hides credentials");

        let all = Proxies::from_env(&env(&[("ALL_PROXY", "socks5://s:1080"), ("no_proxy", "*")]))
            .unwrap();
        assert_eq!(
            all.for_url(&url("https://x/")),
            None,
            "* bypasses every host"
        );
        let all = Proxies::from_env(&env(&[("all_proxy", "http://a:1")])).unwrap();
        assert!(
            all.for_url(&url("https://x/")).is_some() && all.for_url(&url("http://x/")).is_some()
        );
        assert_eq!(Proxies::from_env(&env(&[])).unwrap(), Proxies::default());

        let err = Proxies::from_env(&env(&[("https_proxy", "http://user:s3cret@")])).unwrap_err();
        assert!(
            err.contains("$https_proxy") && err.contains("fix:"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}
