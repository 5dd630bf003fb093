//! Statistics over sample times. Pure: numbers in, numbers out.
//!
//! Medians and MAD rather than means drive the verdicts, because build times on shared
//! machines have long right tails. The speedup interval is a percentile bootstrap of the
//! ratio of medians with a fixed seed, so the same samples always give the same interval.

use serde::{Deserialize, Serialize};

/// Modified z-score (Iglewicz and Hoaglin) above which a sample is an outlier.
pub const OUTLIER_Z: f64 = 3.5;
/// Bootstrap resamples for confidence intervals.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
pub const BOOTSTRAP_SEED: u64 = 0x5EED_F1A7_B3E4_C4A1;
pub const CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    pub n: usize,
    pub median_s: f64,
    pub mean_s: f64,
    /// Sample standard deviation (n - 1); 0 for a single sample.
    pub stddev_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Median absolute deviation (unscaled).
    pub mad_s: f64,
    /// Indices (into `samples`) whose modified z-score exceeds 3.5.
    pub outliers: Vec<usize>,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(xs: &[f64]) -> Option<Summary> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let med = median(xs);
        let deviations: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
        let mad = median(&deviations);
        Some(Summary {
            n,
            median_s: med,
            mean_s: mean,
            stddev_s: stddev,
            min_s: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max_s: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mad_s: mad,
            outliers: outliers(xs, med, mad),
        })
    }
}

/// Median of a non-empty slice (the mean of the middle two for even lengths).
pub fn median(xs: &[f64]) -> f64 {
    assert!(!xs.is_empty(), "median of no samples");
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn outliers(xs: &[f64], med: f64, mad: f64) -> Vec<usize> {
    if mad == 0.0 {
        // Half or more of the samples are identical: nothing can be called an outlier
        // by this rule without dividing by zero.
        return Vec::new();
    }
    xs.iter()
        .enumerate()
        .filter(|(_, x)| 0.6745 * (*x - med).abs() / mad > OUTLIER_Z)
        .map(|(i, _)| i)
        .collect()
}

/// A ratio with its bootstrap confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RatioInterval {
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub confidence: f64,
    pub resamples: usize,
}

/// median(numerator) / median(denominator), with a percentile bootstrap interval:
/// both sample sets are resampled independently with replacement.
/// `None` when either side is empty or a median is not positive.
pub fn ratio_of_medians(numerator: &[f64], denominator: &[f64]) -> Option<RatioInterval> {
    if numerator.is_empty() || denominator.is_empty() {
        return None;
    }
    let den = median(denominator);
    if den <= 0.0 {
        return None;
    }
    let ratio = median(numerator) / den;
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    let mut ratios = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut a = vec![0.0; numerator.len()];
    let mut b = vec![0.0; denominator.len()];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        resample(numerator, &mut a, &mut rng);
        resample(denominator, &mut b, &mut rng);
        let d = median(&b);
        if d > 0.0 {
            ratios.push(median(&a) / d);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some(RatioInterval {
        ratio,
        ci_low: percentile_sorted(&ratios, tail),
        ci_high: percentile_sorted(&ratios, 1.0 - tail),
        confidence: CONFIDENCE,
        resamples: ratios.len(),
    })
}

/// A 95% percentile-bootstrap interval of the median (fixed seed, like the ratio's).
pub fn median_interval(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    let mut sample = vec![0.0; xs.len()];
    let mut medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            resample(xs, &mut sample, &mut rng);
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some((
        percentile_sorted(&medians, tail),
        percentile_sorted(&medians, 1.0 - tail),
    ))
}

fn resample(from: &[f64], into: &mut [f64], rng: &mut SplitMix64) {
    for slot in into.iter_mut() {
        *slot = from[rng.below(from.len())];
    }
}

/// Linear-interpolated percentile of sorted data, `q` in [0, 1].
fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// SplitMix64: tiny, fast and good enough for resampling; fixed seed for repeatable intervals.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        // Multiply-shift maps 64 random bits to [0, n) without modulo bias worth noting.
        ((self.next() as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summary_of_known_values() {
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.n, 8);
        assert!(close(s.mean_s, 5.0));
        assert!(close(s.median_s, 4.5));
        // Sample variance: sum of squares 32 / 7.
        assert!(close(s.stddev_s, (32.0f64 / 7.0).sqrt()));
        assert!(close(s.min_s, 2.0));
        assert!(close(s.max_s, 9.0));
        // |x - 4.5| = 2.5 .5 .5 .5 .5 .5 2.5 4.5 -> median 0.5... sorted: .5 .5 .5 .5 .5 2.5 2.5 4.5
        assert!(close(s.mad_s, 0.5));
        // z(9) = 0.6745 * 4.5 / 0.5 = 6.07 > 3.5; z(2) = z(7) = 3.37.
        assert_eq!(s.outliers, vec![7]);
    }

    #[test]
    fn single_sample_has_zero_spread() {
        let s = Summary::of(&[1.5]).unwrap();
        assert!(close(s.median_s, 1.5) && close(s.stddev_s, 0.0) && close(s.mad_s, 0.0));
        assert!(s.outliers.is_empty());
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn identical_samples_have_no_outliers() {
        assert!(Summary::of(&[1.0, 1.0, 1.0, 2.0])
            .unwrap()
            .outliers
            .is_empty());
    }

    #[test]
    fn median_odd_and_even() {
        assert!(close(median(&[3.0, 1.0, 2.0]), 2.0));
        assert!(close(median(&[4.0, 1.0, 3.0, 2.0]), 2.5));
    }

    #[test]
    fn ratio_of_constant_samples_has_a_degenerate_interval() {
        let r = ratio_of_medians(&[10.0, 10.0, 10.0], &[0.5, 0.5]).unwrap();
        assert!(close(r.ratio, 20.0) && close(r.ci_low, 20.0) && close(r.ci_high, 20.0));
        assert_eq!(r.resamples, BOOTSTRAP_RESAMPLES);
        assert!(close(r.confidence, 0.95));
    }

    #[test]
    fn ratio_interval_brackets_the_ratio_and_is_repeatable() {
        let cold = [12.1, 12.9, 13.4, 12.6, 14.0];
        let warm = [0.21, 0.25, 0.19, 0.30, 0.22];
        let r = ratio_of_medians(&cold, &warm).unwrap();
        assert!(close(r.ratio, 12.9 / 0.22));
        assert!(r.ci_low <= r.ratio && r.ratio <= r.ci_high);
        // The interval cannot leave the range of possible median ratios.
        assert!(r.ci_low >= 12.1 / 0.30 - 1e-9 && r.ci_high <= 14.0 / 0.19 + 1e-9);
        assert!(r.ci_low < r.ci_high);
        assert_eq!(r, ratio_of_medians(&cold, &warm).unwrap());
    }

    #[test]
    fn median_interval_lies_within_the_samples_and_holds_the_median() {
        let xs = [3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.6];
        let (lo, hi) = median_interval(&xs).unwrap();
        assert!(
            lo >= 1.0 && hi <= 9.0 && lo <= median(&xs) && median(&xs) <= hi,
            "{lo} {hi}"
        );
        assert_eq!(median_interval(&[2.0]), Some((2.0, 2.0)));
        assert_eq!(median_interval(&[]), None);
    }

    #[test]
    fn ratio_needs_samples_and_a_positive_denominator() {
        assert!(ratio_of_medians(&[], &[1.0]).is_none());
        assert!(ratio_of_medians(&[1.0], &[]).is_none());
        assert!(ratio_of_medians(&[1.0], &[0.0]).is_none());
    }

    #[test]
    fn rng_below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64(1);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[rng.below(7)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
