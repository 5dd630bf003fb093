//! Scenarios and faults, and their names on the command line and in results
//! (`cold`, `warm`, `noop`, `fill`, `fallback:<fault>[+tuned]`, `verify`). Pure.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What the fault proxy does to cache traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Nothing listens: connections are refused.
    Refuse,
    /// Connections are accepted and never answered.
    Blackhole,
    /// Every request gets HTTP 500.
    Http500,
    /// Added latency per request and a bandwidth cap.
    Slow,
    /// Bytes flipped in blob bodies (NARs, CAS blobs); metadata untouched.
    Corrupt,
    /// Valid-looking wrong entries: unsigned narinfos (Nix), action-cache entries that
    /// point at a valid but wrong blob (Bazel).
    Poison,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Refuse,
        Fault::Blackhole,
        Fault::Http500,
        Fault::Slow,
        Fault::Corrupt,
        Fault::Poison,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Refuse => "refuse",
            Fault::Blackhole => "blackhole",
            Fault::Http500 => "http-500",
            Fault::Slow => "slow",
            Fault::Corrupt => "corrupt",
            Fault::Poison => "poison",
        }
    }

    /// Faults whose penalty depends on the tool's timeouts, so they are also run with the
    /// settings that bound it.
    pub fn has_tuned_variant(self) -> bool {
        matches!(self, Fault::Blackhole | Fault::Slow)
    }

    /// Faults that need to understand HTTP (the others work on any TCP stream, gRPC too).
    pub fn needs_http(self) -> bool {
        matches!(self, Fault::Http500 | Fault::Corrupt | Fault::Poison)
    }
}

/// How `slow` slows traffic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlowSettings {
    /// Added before every request is forwarded.
    pub latency: Duration,
    /// Cap on the cache's answers, bytes per second.
    pub bytes_per_sec: u64,
}

impl Default for SlowSettings {
    fn default() -> Self {
        SlowSettings {
            latency: Duration::from_millis(200),
            bytes_per_sec: 1024 * 1024,
        }
    }
}

/// The link to the team cache that warm cases read through (`--link rtt_ms=40,bandwidth=100mbit`,
/// a profile's `link`, or a sweep of `link.rtt_ms` / `link.bandwidth`): the fault proxy in
/// pass-through, each request held back one round trip, answers capped at the bandwidth.
/// An unshaped link (`rtt_ms=0`, no bandwidth) still goes through the proxy, so what the
/// proxy itself costs is measured against direct access.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Link {
    /// Added round trip per request (and per connection), milliseconds.
    pub rtt_ms: u64,
    /// Cap on the cache's answers, bytes per second; absent: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_s: Option<u64>,
}

impl Link {
    /// The keys of `--link` and their parameter names in a sweep (`link.KEY`).
    pub const KEYS: [&'static str; 2] = ["rtt_ms", "bandwidth"];
    pub const PARAMETER_PREFIX: &'static str = "link.";

    /// `rtt_ms=40,bandwidth=100mbit`: either key or both.
    pub fn parse(text: &str) -> std::result::Result<Link, String> {
        let mut link = Link::default();
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                format!(
                    "`{pair}` is not KEY=VALUE (keys: {})",
                    Link::KEYS.join(", ")
                )
            })?;
            link.set(key.trim(), value.trim())?;
        }
        Ok(link)
    }

    /// One key: `rtt_ms` in whole milliseconds, `bandwidth` in bytes per second or with a
    /// unit of bits (`kbit`, `mbit`, `gbit`, decimal).
    pub fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        match key {
            "rtt_ms" => {
                self.rtt_ms = value
                    .parse()
                    .map_err(|_| format!("rtt_ms={value}: not a whole number of milliseconds"))?
            }
            "bandwidth" => self.bandwidth_bytes_per_s = Some(parse_bandwidth(value)?),
            other => {
                return Err(format!(
                    "unknown link key `{other}` (keys: {})",
                    Link::KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// `link.rtt_ms`, `link.bandwidth`: parameters every repo takes, which shape the link
    /// to the team cache instead of reaching the build tool.
    pub fn is_parameter(key: &str) -> bool {
        key.starts_with(Link::PARAMETER_PREFIX)
    }

    /// Whether it changes the traffic at all.
    pub fn shaped(&self) -> bool {
        self.rtt_ms > 0 || self.bandwidth_bytes_per_s.is_some()
    }

    pub fn rtt(&self) -> Duration {
        Duration::from_millis(self.rtt_ms)
    }
}

fn parse_bandwidth(text: &str) -> std::result::Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, bits_per_unit) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)]
        .iter()
        .find_map(|(unit, scale)| {
            lower
                .strip_suffix(unit)
                .map(|d| (d.to_string(), Some(*scale)))
        })
        .unwrap_or((lower.clone(), None));
    let number: f64 = digits
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| {
            format!("bandwidth={text}: not a positive number of bytes per second, or of kbit, mbit, gbit")
        })?;
    let bytes = match bits_per_unit {
        Some(scale) => number * scale / 8.0,
        None => number,
    };
    Ok((bytes.round() as u64).max(1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Empty local state, no cache.
    Cold,
    /// Empty local state, populated cache.
    Warm,
    /// Everything already local: the cost of asking the tool to do nothing.
    Noop,
    /// Empty local state, no cache to read: a cold build that then fills a fresh, empty
    /// team cache of its own with everything it made (each sample pays the whole fill).
    Fill,
    /// Empty local state, populated cache behind the fault proxy. `tuned`: with the
    /// tool's timeout settings that bound the penalty.
    Fallback { fault: Fault, tuned: bool },
    /// A build from the cache, then a clean build without it; their outputs compared.
    Verify,
}

impl Scenario {
    /// What `run` does without `--scenario`.
    pub const DEFAULT: [Scenario; 3] = [Scenario::Cold, Scenario::Warm, Scenario::Noop];

    /// Every fallback scenario: each fault, and the tuned variants.
    pub fn all_fallbacks() -> Vec<Scenario> {
        Fault::ALL
            .iter()
            .flat_map(|&fault| {
                let tuned = fault
                    .has_tuned_variant()
                    .then_some(Scenario::Fallback { fault, tuned: true });
                std::iter::once(Scenario::Fallback {
                    fault,
                    tuned: false,
                })
                .chain(tuned)
            })
            .collect()
    }

    pub fn all() -> Vec<Scenario> {
        let mut all = Scenario::DEFAULT.to_vec();
        all.push(Scenario::Fill);
        all.extend(Scenario::all_fallbacks());
        all.push(Scenario::Verify);
        all
    }

    /// One `--scenario` value: a scenario, or `fallback` (every fault) or `all`.
    pub fn parse_selection(text: &str) -> Result<Vec<Scenario>, String> {
        match text {
            "fallback" => Ok(Scenario::all_fallbacks()),
            "all" => Ok(Scenario::all()),
            _ => text.parse().map(|s| vec![s]),
        }
    }

    /// Whether the case needs a team cache: it reads one, or (`fill`) fills fresh ones of
    /// its kind.
    pub fn uses_cache(self) -> bool {
        !matches!(self, Scenario::Cold | Scenario::Noop)
    }

    pub fn fault(self) -> Option<Fault> {
        match self {
            Scenario::Fallback { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::Cold => f.write_str("cold"),
            Scenario::Warm => f.write_str("warm"),
            Scenario::Noop => f.write_str("noop"),
            Scenario::Fill => f.write_str("fill"),
            Scenario::Verify => f.write_str("verify"),
            Scenario::Fallback { fault, tuned } => {
                write!(
                    f,
                    "fallback:{}{}",
                    fault.name(),
                    if *tuned { "+tuned" } else { "" }
                )
            }
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scenario::all()
            .into_iter()
            .find(|s| s.to_string() == text)
            .ok_or_else(|| {
                let names: Vec<String> = Scenario::all().iter().map(|s| s.to_string()).collect();
                let near = crate::error::did_you_mean(
                    text,
                    names.iter().map(String::as_str).chain(["fallback", "all"]),
                );
                format!(
                    "unknown scenario `{text}`{}; known: {}, or `fallback` (every fault) or `all`",
                    near.map_or(String::new(), |n| format!(" (did you mean `{n}`?)")),
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                let near = crate::error::did_you_mean(text, names.iter().copied());
                format!(
                    "unknown fault `{text}`{}; known: {}",
                    near.map_or(String::new(), |n| format!(" (did you mean `{n}`?)")),
                    names.join(", ")
                )
            })
    }
}

/// Serde and JSON Schema for a type written as one of a fixed set of names.
macro_rules! named_serde {
    ($type:ty, $description:literal, $names:expr) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                stringify!($type).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let names: Vec<String> = $names;
                schemars::json_schema!({
                    "description": $description,
                    "type": "string",
                    "enum": names,
                })
            }
        }
    };
}

named_serde!(
    Scenario,
    "cold, warm, noop, fill, fallback:<fault>[+tuned] or verify",
    Scenario::all().iter().map(|s| s.to_string()).collect()
);
named_serde!(
    Fault,
    "What the fault proxy did to cache traffic",
    Fault::ALL.iter().map(|f| f.name().to_string()).collect()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_with_units_and_refuse_nonsense() {
        assert_eq!(
            Link::parse("rtt_ms=40,bandwidth=100mbit").unwrap(),
            Link {
                rtt_ms: 40,
                bandwidth_bytes_per_s: Some(12_500_000)
            }
        );
        assert_eq!(
            Link::parse("bandwidth=1000").unwrap().bandwidth_bytes_per_s,
            Some(1000)
        );
        assert!(!Link::parse("rtt_ms=0").unwrap().shaped());
        assert!(Link::parse("rtt_ms=1").unwrap().shaped());
        for (bad, says) in [
            ("rtt=4", "unknown link key `rtt`"),
            ("rtt_ms=-1", "not a whole number"),
            ("bandwidth=0", "not a positive number"),
            ("bandwidth=fast", "not a positive number"),
            ("rtt_ms", "not KEY=VALUE"),
        ] {
            let err = Link::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Scenario::all() {
            assert_eq!(s.to_string().parse::<Scenario>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Scenario>(&json).unwrap(), s);
        }
        assert_eq!(
            Scenario::Fallback {
                fault: Fault::Blackhole,
                tuned: true
            }
            .to_string(),
            "fallback:blackhole+tuned"
        );
        assert_eq!(Scenario::Fill.to_string(), "fill");
        assert_eq!(serde_json::to_string(&Scenario::Fill).unwrap(), "\"fill\"");
    }

    #[test]
    fn selections_expand() {
        assert_eq!(
            Scenario::parse_selection("warm").unwrap(),
            vec![Scenario::Warm]
        );
        // Six faults, two of them with a tuned variant.
        assert_eq!(Scenario::parse_selection("fallback").unwrap().len(), 8);
        assert_eq!(
            Scenario::parse_selection("all").unwrap().len(),
            3 + 1 + 8 + 1
        );
        assert_eq!(
            Scenario::parse_selection("fill").unwrap(),
            vec![Scenario::Fill]
        );
        let err = Scenario::parse_selection("fil").unwrap_err();
        assert!(err.contains("(did you mean `fill`?)"), "{err}");
        let err = Scenario::parse_selection("fallback:fire").unwrap_err();
        assert!(err.contains("fallback:http-500"), "{err}");
        assert!("fallback:refuse+tuned".parse::<Scenario>().is_err());
        let err = Scenario::parse_selection("wram").unwrap_err();
        assert!(err.contains("(did you mean `warm`?)"), "{err}");
        let err = Scenario::parse_selection("fallback:corupt").unwrap_err();
        assert!(err.contains("(did you mean `fallback:corrupt`?)"), "{err}");
    }

    #[test]
    fn faults_round_trip_by_name() {
        for f in Fault::ALL {
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
        }
        assert!("fire".parse::<Fault>().unwrap_err().contains("http-500"));
    }

    #[test]
    fn order_is_cold_warm_noop_fill_fallbacks_verify() {
        let mut all = Scenario::all();
        all.reverse();
        all.sort();
        assert_eq!(all, Scenario::all());
    }
}
