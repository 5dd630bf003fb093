//! Which machine a run had, beyond the CPU's brand string: a fingerprint of the CPU, and a
//! speed probe (a short fixed workload timed before the first case and after the last).
//! Pure: readings in, judgements out; `lanes::host` reads the machine and times the probe.
//!
//! On virtual machines the brand string is often the same on every host ("Intel(R)
//! Xeon(R) Processor") whatever runs behind it; family, model, stepping, microcode, the
//! feature flags and the cache sizes tell hosts apart, and the probe says how fast the
//! host was while the run measured.

use serde::{Deserialize, Serialize};

use crate::stats::{median, numbers};

/// The CPU as the kernel describes it (the first processor of /proc/cpuinfo, the cache
/// sizes of cpu0 in sysfs) and the hypervisor, where there is one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuFingerprint {
    /// e.g. `GenuineIntel`, `AuthenticAMD`.
    pub vendor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepping: Option<u32>,
    /// Absent where the kernel does not show it (often in virtual machines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microcode: Option<String>,
    /// FNV-1a (64 bits, hex) of the sorted feature flags: a hypervisor that exposes other
    /// features (AVX-512, say) is another machine to a compiler.
    pub flags_hash: String,
    pub flags: usize,
    /// The hypervisor's CPUID signature (e.g. `KVMKVMKVM`), `unknown` where the CPU says
    /// it runs under one without naming it; absent on bare metal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3_bytes: Option<u64>,
}

impl CpuFingerprint {
    /// (what, this, other) for every field that differs.
    pub fn differences(&self, other: &CpuFingerprint) -> Vec<(&'static str, String, String)> {
        self.rows()
            .into_iter()
            .zip(other.rows())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((what, a), (_, b))| (what, a, b))
            .collect()
    }

    /// Each field as a table shows it.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let num = |v: Option<u32>| v.map_or_else(|| "absent".into(), |v| v.to_string());
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "absent".into());
        let size = |v: Option<u64>| v.map_or_else(|| "absent".into(), numbers::bytes);
        vec![
            ("vendor", self.vendor.clone()),
            ("family", num(self.family)),
            ("model", num(self.model)),
            ("stepping", num(self.stepping)),
            ("microcode", text(&self.microcode)),
            (
                "flags hash",
                format!("{} ({} flags)", self.flags_hash, self.flags),
            ),
            ("hypervisor", text(&self.hypervisor)),
            ("L2", size(self.l2_bytes)),
            ("L3", size(self.l3_bytes)),
        ]
    }
}

/// FNV-1a, 64 bits: stable across releases and machines (std's hasher is not).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The speed probe of a run: the same fixed workload timed before the first case and
/// after the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpeedProbe {
    /// What the workload is, so that only probes of the same workload are compared.
    pub workload: String,
    pub before: ProbeReading,
    /// Absent when the run stopped before its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ProbeReading>,
}

/// One timing of the probe: each repeat of its CPU part and of its memory part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProbeReading {
    pub cpu_s: Vec<f64>,
    pub memory_s: Vec<f64>,
}

/// How much faster a machine must read than another before the probe calls them
/// different, at the least: below it, two readings of one quiet host differ (measured:
/// see docs/methodology.md).
pub const PROBE_TOLERANCE: f64 = 0.05;
/// Multiples of the readings' own spread (relative MAD) that also count as noise.
const PROBE_NOISE_MULTIPLE: f64 = 3.0;
/// A probe whose readings spread more than this, or whose run drifted more than twice
/// this, measured an unsteady machine: its speed cannot vouch for the run's times.
const PROBE_STEADY: f64 = 0.05;

impl ProbeReading {
    /// Seconds of the whole workload: the median CPU part plus the median memory part.
    pub fn seconds(&self) -> Option<f64> {
        if self.cpu_s.is_empty() || self.memory_s.is_empty() {
            return None;
        }
        Some(median(&self.cpu_s) + median(&self.memory_s))
    }

    /// The relative spread of its repeats: the larger of the two parts' MAD / median.
    pub fn noise(&self) -> f64 {
        let spread = |xs: &[f64]| {
            crate::stats::Summary::of(xs)
                .filter(|s| s.median_s > 0.0)
                .map_or(0.0, |s| s.mad_s / s.median_s)
        };
        spread(&self.cpu_s).max(spread(&self.memory_s))
    }
}

impl SpeedProbe {
    /// Workloads per second, before and after averaged: higher is faster.
    pub fn speed_index(&self) -> Option<f64> {
        let readings: Vec<f64> = std::iter::once(&self.before)
            .chain(&self.after)
            .filter_map(ProbeReading::seconds)
            .filter(|s| *s > 0.0)
            .collect();
        (!readings.is_empty()).then(|| readings.len() as f64 / readings.iter().sum::<f64>())
    }

    /// after / before - 1 of the workload's time: how much slower the machine got during
    /// the run (negative: faster).
    pub fn drift(&self) -> Option<f64> {
        let before = self.before.seconds().filter(|s| *s > 0.0)?;
        Some(self.after.as_ref()?.seconds()? / before - 1.0)
    }

    /// The larger spread of its readings.
    pub fn noise(&self) -> f64 {
        std::iter::once(&self.before)
            .chain(&self.after)
            .map(ProbeReading::noise)
            .fold(0.0, f64::max)
    }

    /// Why its machine was not steady during the run, if it was not: readings that spread
    /// beyond `PROBE_STEADY`, or a drift beyond twice that.
    pub fn unsteady(&self) -> Option<String> {
        let drift = self.drift().filter(|d| d.abs() > 2.0 * PROBE_STEADY);
        let noise = Some(self.noise()).filter(|n| *n > PROBE_STEADY);
        match (drift, noise) {
            (None, None) => None,
            (Some(d), None) => Some(format!(
                "drifted {} during the run",
                numbers::change(1.0 + d)
            )),
            (None, Some(n)) => Some(format!("spread ±{:.1}% between its repeats", 100.0 * n)),
            (Some(d), Some(n)) => Some(format!(
                "drifted {} during the run and spread ±{:.1}% between its repeats",
                numbers::change(1.0 + d),
                100.0 * n
            )),
        }
    }

    /// `1.23 (drift +0.4%)`.
    pub fn describe(&self) -> String {
        let index = self
            .speed_index()
            .map_or_else(|| "n/a".into(), |i| format!("{i:.2}/s"));
        match self.drift() {
            Some(d) => format!("{index} (drift {})", numbers::change(1.0 + d)),
            None => format!("{index} (no reading after the last case)"),
        }
    }
}

/// What two runs' probes say of their machines' speed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeAgreement {
    /// new speed index / baseline speed index.
    pub ratio: f64,
    /// How far apart they may be and still be the same speed: the larger of
    /// `PROBE_TOLERANCE`, both runs' drifts, and three times their readings' spread.
    pub tolerance: f64,
}

impl ProbeAgreement {
    pub fn of(baseline: &SpeedProbe, new: &SpeedProbe) -> Option<ProbeAgreement> {
        if baseline.workload != new.workload {
            return None;
        }
        let ratio = new.speed_index()? / baseline.speed_index()?;
        let drift = |p: &SpeedProbe| p.drift().map_or(0.0, f64::abs);
        let tolerance = PROBE_TOLERANCE
            .max(drift(baseline))
            .max(drift(new))
            .max(PROBE_NOISE_MULTIPLE * (baseline.noise() + new.noise()));
        Some(ProbeAgreement { ratio, tolerance })
    }

    /// Within the tolerance; both machines must also have been steady (`SpeedProbe::unsteady`).
    pub fn agrees(&self) -> bool {
        (self.ratio - 1.0).abs() <= self.tolerance
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `r` on a CPU of `model` (a fixed fingerprint otherwise) whose probe runs `speed`
    /// times as fast as 20 workloads a second.
    pub(crate) fn on_machine(
        mut r: crate::results::Results,
        model: u32,
        speed: f64,
    ) -> crate::results::Results {
        r.environment.fingerprint = Some(CpuFingerprint {
            vendor: "GenuineIntel".into(),
            family: Some(6),
            model: Some(model),
            stepping: Some(7),
            flags_hash: "00ff00ff00ff00ff".into(),
            flags: 90,
            hypervisor: Some("KVMKVMKVM".into()),
            l3_bytes: Some(32 << 20),
            ..CpuFingerprint::default()
        });
        let reading = ProbeReading {
            cpu_s: vec![0.02 / speed; 5],
            memory_s: vec![0.03 / speed; 5],
        };
        r.speed_probe = Some(SpeedProbe {
            workload: "w".into(),
            before: reading.clone(),
            after: Some(reading),
        });
        r
    }

    fn probe(cpu: f64, memory: f64, after: Option<f64>) -> SpeedProbe {
        let reading = |scale: f64| ProbeReading {
            cpu_s: vec![cpu * scale, cpu * scale * 1.01, cpu * scale * 0.99],
            memory_s: vec![memory * scale; 3],
        };
        SpeedProbe {
            workload: "w".into(),
            before: reading(1.0),
            after: after.map(reading),
        }
    }

    #[test]
    fn the_index_is_workloads_per_second_and_drift_is_after_over_before() {
        let p = probe(0.02, 0.03, Some(1.1));
        let (before, after) = (0.05, 0.055);
        assert!((p.speed_index().unwrap() - 2.0 / (before + after)).abs() < 1e-9);
        assert!((p.drift().unwrap() - 0.1).abs() < 1e-9);
        assert!(p.describe().contains("drift +10.0%"), "{}", p.describe());
        assert_eq!(probe(0.02, 0.03, None).drift(), None);
    }

    #[test]
    fn probes_agree_within_their_noise_and_not_beyond() {
        let base = probe(0.02, 0.03, Some(1.0));
        let same = probe(0.0202, 0.0301, Some(1.01));
        let a = ProbeAgreement::of(&base, &same).unwrap();
        assert!(a.agrees(), "{a:?}");
        let faster = probe(0.016, 0.025, Some(1.0));
        let a = ProbeAgreement::of(&base, &faster).unwrap();
        assert!(!a.agrees() && a.ratio > 1.15, "{a:?}");
        // A run whose own machine slowed by 20% during it was not steady.
        let drifting = probe(0.016, 0.025, Some(1.2));
        assert!(drifting.unsteady().unwrap().contains("drifted +20.0%"));
        assert_eq!(base.unsteady(), None);
        let mut other = faster.clone();
        other.workload = "another".into();
        assert_eq!(ProbeAgreement::of(&base, &other), None);
    }

    #[test]
    fn fingerprints_name_what_differs() {
        let a = CpuFingerprint {
            vendor: "GenuineIntel".into(),
            family: Some(6),
            model: Some(85),
            stepping: Some(7),
            flags_hash: "00aa".into(),
            flags: 90,
            l3_bytes: Some(32 << 20),
            ..CpuFingerprint::default()
        };
        let b = CpuFingerprint {
            model: Some(106),
            l3_bytes: Some(48 << 20),
            ..a.clone()
        };
        let named: Vec<&str> = a.differences(&b).iter().map(|d| d.0).collect();
        assert_eq!(named, ["model", "L3"]);
        assert!(a.differences(&a).is_empty());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
