//! When to stop sampling: once the 95% bootstrap interval of a case's median (or of a
//! speedup) is narrower than a target fraction of it, or at the maximum. Pure, and cheap
//! enough (a few ms at 30 samples) to run after every sample.

use serde::{Deserialize, Serialize};

use super::{median, median_interval, ratio_of_medians};

/// How many samples to take (`--samples`, `--max-samples`, `--target-precision`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoppingRule {
    /// Always taken, even when the interval is narrow sooner.
    pub min_samples: usize,
    /// Never exceeded, however wide the interval still is.
    pub max_samples: usize,
    /// Stop once the interval is narrower than this fraction of the estimate (0.05: 5%);
    /// `None` takes exactly `min_samples`.
    pub target_precision: Option<f64>,
}

/// Why a case (or comparison) took the samples it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The fixed number of samples: no target precision was asked for.
    SampleCount,
    /// The 95% interval became narrower than the target precision.
    PrecisionReached,
    /// The maximum number of samples came first: the interval is still wider than asked.
    MaxSamples,
}

impl StopReason {
    /// How reports say it.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::SampleCount => "fixed sample count",
            StopReason::PrecisionReached => "precision reached",
            StopReason::MaxSamples => "max samples reached, precision not",
        }
    }
}

/// Where sampling stands after the samples so far, and whether to go on.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The median (or ratio of medians); absent before the first sample.
    pub estimate: Option<f64>,
    /// Its 95% interval; absent below 3 samples, and from a median without a target
    /// precision (a fixed count needs no bootstrap after every sample).
    pub interval: Option<(f64, f64)>,
    /// The interval's width over the estimate, what the target precision bounds.
    pub relative_width: Option<f64>,
    /// `None`: take another sample.
    pub stop: Option<StopReason>,
}

impl StoppingRule {
    /// Checks the settings; errors name the flag and the fix.
    pub fn new(
        min_samples: usize,
        max_samples: usize,
        target_precision: Option<f64>,
    ) -> Result<StoppingRule, String> {
        if min_samples == 0 {
            return Err("--samples is 0: a case needs at least 1 sample".into());
        }
        if let Some(p) = target_precision {
            if !(p.is_finite() && p > 0.0) {
                return Err(format!(
                    "--target-precision {p} is not a fraction above 0: give e.g. 0.05 for an interval within 5% of the median"
                ));
            }
            if max_samples < min_samples {
                return Err(format!(
                    "--max-samples {max_samples} is below --samples {min_samples}: the maximum must be at least the minimum"
                ));
            }
        }
        Ok(StoppingRule {
            min_samples,
            max_samples,
            target_precision,
        })
    }

    /// The most samples this rule can take.
    pub fn max_samples_taken(&self) -> usize {
        if self.target_precision.is_some() {
            self.max_samples.max(self.min_samples)
        } else {
            self.min_samples
        }
    }

    /// Where a case stands after `samples` (its wall times so far).
    pub fn check_median(&self, samples: &[f64]) -> Progress {
        let estimate = (!samples.is_empty()).then(|| median(samples));
        let interval = self.target_precision.and_then(|_| median_interval(samples));
        self.progress(samples.len(), estimate, interval)
    }

    /// Where a comparison stands: the ratio of the medians (cold over warm for a speedup)
    /// and its interval. It stops when both sides have their minimum and the interval is
    /// narrow enough, or both have their maximum.
    pub fn check_ratio(&self, numerator: &[f64], denominator: &[f64]) -> Progress {
        let ratio = ratio_of_medians(numerator, denominator);
        // The side with fewer samples decides: until both reach the maximum, the other
        // side may still narrow the interval.
        self.progress(
            numerator.len().min(denominator.len()),
            ratio.as_ref().map(|r| r.ratio),
            ratio.as_ref().and_then(|r| r.interval()),
        )
    }

    fn progress(&self, n: usize, estimate: Option<f64>, interval: Option<(f64, f64)>) -> Progress {
        let relative_width = estimate
            .zip(interval)
            .filter(|(e, _)| *e > 0.0)
            .map(|(e, (low, high))| (high - low) / e);
        let stop = match self.target_precision {
            None => (n >= self.min_samples).then_some(StopReason::SampleCount),
            Some(_) if n < self.min_samples => None,
            Some(p) if relative_width.is_some_and(|w| w < p) => Some(StopReason::PrecisionReached),
            Some(_) => (n >= self.max_samples).then_some(StopReason::MaxSamples),
        };
        Progress {
            estimate,
            interval,
            relative_width,
            stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream: `center` with noise of relative size `spread`.
    fn stream(center: f64, spread: f64) -> impl Iterator<Item = f64> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        std::iter::repeat_with(move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            center * (1.0 + spread * (unit - 0.5))
        })
    }

    /// Samples one stream until the rule stops; returns how many and why.
    fn run(rule: &StoppingRule, mut source: impl Iterator<Item = f64>) -> (usize, StopReason) {
        let mut samples = Vec::new();
        loop {
            if let Some(reason) = rule.check_median(&samples).stop {
                return (samples.len(), reason);
            }
            samples.push(source.next().unwrap());
        }
    }

    fn adaptive() -> StoppingRule {
        StoppingRule::new(5, 30, Some(0.05)).unwrap()
    }

    #[test]
    fn a_tight_stream_stops_at_the_minimum() {
        assert_eq!(
            run(&adaptive(), stream(10.0, 0.01)),
            (5, StopReason::PrecisionReached)
        );
    }

    #[test]
    fn a_noisy_stream_goes_to_the_maximum_and_says_so() {
        assert_eq!(
            run(&adaptive(), stream(10.0, 1.5)),
            (30, StopReason::MaxSamples)
        );
    }

    #[test]
    fn a_moderate_stream_stops_in_between() {
        let (n, reason) = run(&adaptive(), stream(10.0, 0.12));
        assert!(
            n > 5 && n < 30 && reason == StopReason::PrecisionReached,
            "{n} {reason:?}"
        );
    }

    #[test]
    fn without_a_target_it_takes_the_fixed_count() {
        let fixed = StoppingRule::new(3, 0, None).unwrap();
        assert_eq!(run(&fixed, stream(10.0, 1.5)), (3, StopReason::SampleCount));
    }

    #[test]
    fn the_interval_narrows_as_samples_come() {
        let rule = StoppingRule::new(30, 30, Some(0.001)).unwrap();
        let samples: Vec<f64> = stream(10.0, 0.5).take(30).collect();
        let early = rule.check_median(&samples[..3]);
        let late = rule.check_median(&samples);
        assert!(early.relative_width.unwrap() > late.relative_width.unwrap());
        assert_eq!(rule.check_median(&samples[..2]).interval, None);
        assert_eq!(rule.check_median(&[]).estimate, None);
    }

    #[test]
    fn a_speedup_stops_by_its_own_interval() {
        let rule = adaptive();
        let cold: Vec<f64> = stream(12.0, 0.01).take(5).collect();
        let warm: Vec<f64> = stream(0.2, 0.01).take(5).collect();
        assert_eq!(
            rule.check_ratio(&cold, &warm).stop,
            Some(StopReason::PrecisionReached)
        );
        let noisy_warm: Vec<f64> = stream(0.2, 1.5).take(30).collect();
        let full_cold: Vec<f64> = stream(12.0, 0.01).take(30).collect();
        // The cold side is done; the warm side is noisy: sample warm until its maximum.
        assert_eq!(rule.check_ratio(&full_cold, &noisy_warm[..10]).stop, None);
        assert_eq!(
            rule.check_ratio(&full_cold, &noisy_warm).stop,
            Some(StopReason::MaxSamples)
        );
    }

    #[test]
    fn bad_settings_name_the_flag() {
        assert!(StoppingRule::new(0, 30, None)
            .unwrap_err()
            .contains("--samples"));
        for p in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            assert!(StoppingRule::new(5, 30, Some(p))
                .unwrap_err()
                .contains("--target-precision"));
        }
        assert!(StoppingRule::new(5, 4, Some(0.05))
            .unwrap_err()
            .contains("--max-samples 4 is below --samples 5"));
    }
}
