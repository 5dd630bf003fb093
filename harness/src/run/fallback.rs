//! The fallback step's planning: whether the fault proxy can stand in front of a case's
//! cache, and what the proxy did. Pure apart from reading the proxy's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::proxy::ProxyCounters;
use crate::cache::{network_route, CacheRoute};
use crate::plan::Fault;
use crate::results::ProxyCounts;
use crate::tools::CacheLocation;

/// Where the proxy forwards a `fault` case's cache traffic, or why the case must be
/// skipped (the true reason: no cache, a local folder, TLS, a protocol the fault needs).
pub fn plan_fault(fault: Fault, cache: Option<CacheLocation>) -> Result<CacheRoute, String> {
    let (route, url) = routed(cache)?;
    if fault.needs_http() && !route.plain_http {
        return Err(format!(
            "the {} fault needs a plain http:// cache; this one is {url}",
            fault.name()
        ));
    }
    Ok(route)
}

/// Where the proxy forwards a shaped link's traffic (`--link`), or why it cannot stand in
/// front of the case's cache.
pub fn plan_link(cache: Option<CacheLocation>) -> Result<CacheRoute, String> {
    routed(cache).map(|(route, _)| route)
}

fn routed(cache: Option<CacheLocation<'_>>) -> Result<(CacheRoute, &url::Url), String> {
    let url = match cache {
        None => return Err("no cache to put the fault proxy in front of".into()),
        Some(CacheLocation::Folder(path)) => {
            return Err(format!(
                "the cache is a local folder ({}): there is no network traffic for the fault proxy to disturb",
                path.display()
            ))
        }
        Some(CacheLocation::Url(url)) => url,
    };
    if matches!(url.scheme(), "file" | "s3") {
        return Err(format!(
            "the fault proxy stands in front of http(s) and grpc(s) caches; {url} is read through {}://",
            url.scheme()
        ));
    }
    Ok((network_route(url)?, url))
}

/// The proxy's counters as results record them.
pub fn proxy_counts(counters: &ProxyCounters) -> ProxyCounts {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    ProxyCounts {
        connections: load(&counters.connections),
        requests: load(&counters.requests),
        corrupted: load(&counters.corrupted),
        poisoned: load(&counters.poisoned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use url::Url;

    fn plan(fault: Fault, url: &str) -> Result<CacheRoute, String> {
        let url = Url::parse(url).unwrap();
        plan_fault(fault, Some(CacheLocation::Url(&url)))
    }

    #[test]
    fn a_tls_cache_without_a_port_is_refused_for_tls_not_for_missing() {
        let why = plan(Fault::Refuse, "https://cache.example.com").unwrap_err();
        assert!(why.contains("TLS") && !why.contains("no cache"), "{why}");
        let why = plan(Fault::Slow, "grpcs://cache.example.com").unwrap_err();
        assert!(why.contains("TLS"), "{why}");
    }

    #[test]
    fn plain_caches_get_a_route_and_default_ports() {
        let route = plan(Fault::Corrupt, "http://127.0.0.1/nix").unwrap();
        assert_eq!(route.upstream, "127.0.0.1:80".parse().unwrap());
        let route = plan(Fault::Blackhole, "grpc://127.0.0.1:9092").unwrap();
        assert!(!route.plain_http);
        let why = plan(Fault::Poison, "grpc://127.0.0.1:9092").unwrap_err();
        assert!(why.contains("needs a plain http://"), "{why}");
    }

    #[test]
    fn caches_without_network_traffic_are_named() {
        let why = plan_fault(Fault::Refuse, None).unwrap_err();
        assert!(why.contains("no cache"), "{why}");
        let why = plan_fault(
            Fault::Refuse,
            Some(CacheLocation::Folder(Path::new("/srv/disk"))),
        )
        .unwrap_err();
        assert!(why.contains("local folder (/srv/disk)"), "{why}");
        let why = plan(Fault::Slow, "file:///srv/cache").unwrap_err();
        assert!(why.contains("file://"), "{why}");
    }
}
