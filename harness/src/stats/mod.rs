//! Statistics over sample times. Pure: numbers in, numbers out.
//!
//! Medians and MAD rather than means drive the verdicts, because build times on shared
//! machines have long right tails. Intervals are percentile bootstraps with a fixed seed, so
//! the same samples always give the same interval; from fewer than `MIN_INTERVAL_SAMPLES`
//! samples there is no interval ("n/a"), and nothing can pass on it.

pub mod fit;
pub mod numbers;
pub mod stopping;

use std::fmt;

use serde::{Deserialize, Serialize};

/// Modified z-score (Iglewicz and Hoaglin) above which a sample is an outlier.
pub const OUTLIER_Z: f64 = 3.5;
/// How far off a sample must be for a warning, as hyperfine warns: its threshold of ten
/// standard deviations (MAD × 1.4826 × 10), on this module's modified z-score scale. Far
/// stricter than `OUTLIER_Z`, which only marks dots in the plots.
pub const WARNING_Z: f64 = 0.6745 * 1.4826 * 10.0;
/// Bootstrap resamples for confidence intervals.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
pub const BOOTSTRAP_SEED: u64 = 0x5EED_F1A7_B3E4_C4A1;
pub const CONFIDENCE: f64 = 0.95;
/// Fewer samples than this give no interval: resampling one or two values only shuffles
/// them, and the "interval" says nothing about the spread.
pub const MIN_INTERVAL_SAMPLES: usize = 3;

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
        let mad = mad(xs, med);
        Some(Summary {
            n,
            median_s: med,
            mean_s: mean,
            stddev_s: stddev,
            min_s: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max_s: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mad_s: mad,
            outliers: (0..n)
                .filter(|i| modified_z(xs[*i], med, mad).abs() > OUTLIER_Z)
                .collect(),
        })
    }
}

/// The `q` quantile (0 to 1) of `xs`, interpolated between the closest ranks (the
/// definition numpy and R use by default); `None` for no values.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = q * (sorted.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    Some(sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64))
}

/// Median of a non-empty slice (the mean of the middle two for even lengths).
pub fn median(xs: &[f64]) -> f64 {
    median_in_place(&mut xs.to_vec())
}

/// The median, reordering `xs` (selection, not a full sort: the bootstrap's hot path).
fn median_in_place(xs: &mut [f64]) -> f64 {
    assert!(!xs.is_empty(), "median of no samples");
    let (mid, even) = (xs.len() / 2, xs.len() % 2 == 0);
    let (below, upper, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if even {
        // The lower middle is the largest of the values selected below the upper one.
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    } else {
        upper
    }
}

fn mad(xs: &[f64], med: f64) -> f64 {
    let mut deviations: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
    median_in_place(&mut deviations)
}

/// Signed modified z-score. A MAD of 0 (half or more of the samples identical) becomes
/// `f64::EPSILON`, as hyperfine does, so a sample off the common value still stands out.
fn modified_z(x: f64, med: f64, mad: f64) -> f64 {
    let mad = if mad > 0.0 { mad } else { f64::EPSILON };
    0.6745 * (x - med) / mad
}

/// What a case's samples should make a reader doubt, as hyperfine warns.
#[derive(Debug, Clone, PartialEq)]
pub enum Warning {
    /// The first sample is an outlier on the slow side: a cache (the OS's, the tool's)
    /// was probably still cold.
    SlowFirstSample { first_s: f64, median_s: f64 },
    /// Samples far from the others (beyond `WARNING_Z`), 1-based.
    Outliers { samples: Vec<usize> },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::SlowFirstSample { first_s, median_s } => write!(
                f,
                "the first sample ({}) was much slower than the rest (median {}): caches were probably still cold; add warm-ups (`--warmups N`)",
                numbers::seconds(*first_s),
                numbers::seconds(*median_s)
            ),
            Warning::Outliers { samples } => {
                let list: Vec<String> = samples.iter().map(usize::to_string).collect();
                let json: Vec<String> = samples.iter().map(|n| (n - 1).to_string()).collect();
                write!(
                    f,
                    "{} {} {} statistical {}: something else may have used the machine; re-run on a quiet one (samples[{}] in the JSON)",
                    numbers::plural(samples.len() as u64, "sample"),
                    list.join(", "),
                    if samples.len() == 1 { "is a" } else { "are" },
                    numbers::plural(samples.len() as u64, "outlier"),
                    json.join("], samples[")
                )
            }
        }
    }
}

/// Warnings for one case's samples (in the order they were taken): a slow first sample,
/// or else outliers, like hyperfine (which reports one or the other).
pub fn warnings(xs: &[f64]) -> Vec<Warning> {
    let Some(summary) = Summary::of(xs) else {
        return Vec::new();
    };
    let z = |x: f64| modified_z(x, summary.median_s, summary.mad_s);
    if z(xs[0]) > WARNING_Z {
        return vec![Warning::SlowFirstSample {
            first_s: xs[0],
            median_s: summary.median_s,
        }];
    }
    let far: Vec<usize> = (0..xs.len())
        .filter(|&i| z(xs[i]).abs() > WARNING_Z)
        .map(|i| i + 1)
        .collect();
    if far.is_empty() {
        return Vec::new();
    }
    vec![Warning::Outliers { samples: far }]
}

/// A ratio with its bootstrap confidence interval (absent, "n/a", when either side had
/// fewer than `MIN_INTERVAL_SAMPLES` samples).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RatioInterval {
    pub ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_high: Option<f64>,
    pub confidence: f64,
    /// Resamples that gave a ratio (0 without an interval).
    pub resamples: usize,
}

impl RatioInterval {
    fn with(ratio: f64, interval: Option<Interval>) -> RatioInterval {
        RatioInterval {
            ratio,
            ci_low: interval.map(|i| i.low),
            ci_high: interval.map(|i| i.high),
            confidence: CONFIDENCE,
            resamples: interval.map_or(0, |i| i.resamples),
        }
    }

    /// The interval's ends, when there is one.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.ci_low.zip(self.ci_high)
    }
}

/// median(numerator) / median(denominator), with a percentile bootstrap interval:
/// both sample sets are resampled independently with replacement.
/// `None` when either side is empty or a median is not positive.
pub fn ratio_of_medians(numerator: &[f64], denominator: &[f64]) -> Option<RatioInterval> {
    let ratio = median_ratio(numerator, denominator)?;
    let interval = bootstrap(&[numerator, denominator], |resampled| {
        let d = median_in_place(&mut resampled[1]);
        (d > 0.0).then(|| median_in_place(&mut resampled[0]) / d)
    });
    Some(RatioInterval::with(ratio, interval))
}

/// The median of the paired ratios numerator_i / denominator_i (samples taken in the same
/// round), with a percentile bootstrap over the pairs: each resample keeps a pair together,
/// so a load that moved both sides of a round alike cancels. Only the first `min(len)`
/// pairs count. `None` without a pair or with a denominator that is not positive.
pub fn paired_ratio(numerator: &[f64], denominator: &[f64]) -> Option<RatioInterval> {
    let ratios = pair_ratios(numerator, denominator)?;
    let interval = bootstrap(&[&ratios], |resampled| {
        Some(median_in_place(&mut resampled[0]))
    });
    Some(RatioInterval::with(median(&ratios), interval))
}

/// numerator_i / denominator_i over the pairs; `None` without a pair or with a
/// denominator that is not positive.
pub fn pair_ratios(numerator: &[f64], denominator: &[f64]) -> Option<Vec<f64>> {
    let ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .map(|(n, d)| (*d > 0.0).then(|| n / d))
        .collect::<Option<_>>()?;
    (!ratios.is_empty()).then_some(ratios)
}

/// median(numerator) / median(denominator) alone, without the bootstrap; `None` as for
/// [`ratio_of_medians`].
pub fn median_ratio(numerator: &[f64], denominator: &[f64]) -> Option<f64> {
    if numerator.is_empty() || denominator.is_empty() {
        return None;
    }
    let den = median(denominator);
    (den > 0.0).then(|| median(numerator) / den)
}

/// How a ratio of medians changed between two runs: (new.0 / new.1) / (baseline.0 /
/// baseline.1), e.g. how a speedup moved, with a bootstrap interval over all four sample
/// sets. `None` when a side is empty or a ratio is not positive.
pub fn change_of_ratio(baseline: (&[f64], &[f64]), new: (&[f64], &[f64])) -> Option<RatioInterval> {
    let before = median_ratio(baseline.0, baseline.1)?;
    let after = median_ratio(new.0, new.1)?;
    if before <= 0.0 {
        return None;
    }
    let interval = bootstrap(&[baseline.0, baseline.1, new.0, new.1], |r| {
        let (b0, b1) = (median_in_place(&mut r[0]), median_in_place(&mut r[1]));
        let (n0, n1) = (median_in_place(&mut r[2]), median_in_place(&mut r[3]));
        (b0 > 0.0 && b1 > 0.0 && n1 > 0.0).then(|| (n0 / n1) / (b0 / b1))
    });
    Some(RatioInterval::with(after / before, interval))
}

/// A 95% percentile-bootstrap interval of the median (fixed seed, like the ratio's);
/// `None` from fewer than `MIN_INTERVAL_SAMPLES` samples.
pub fn median_interval(xs: &[f64]) -> Option<(f64, f64)> {
    bootstrap(&[xs], |resampled| Some(median_in_place(&mut resampled[0]))).map(|i| (i.low, i.high))
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    low: f64,
    high: f64,
    resamples: usize,
}

/// The percentile interval of `statistic` over `BOOTSTRAP_RESAMPLES` resamplings (with
/// replacement, each group on its own) of `groups`. `None` when a group has fewer than
/// `MIN_INTERVAL_SAMPLES` samples or no resample gave a value.
fn bootstrap(
    groups: &[&[f64]],
    mut statistic: impl FnMut(&mut [Vec<f64>]) -> Option<f64>,
) -> Option<Interval> {
    if groups.iter().any(|g| g.len() < MIN_INTERVAL_SAMPLES) {
        return None;
    }
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    let mut buffers: Vec<Vec<f64>> = groups.iter().map(|g| vec![0.0; g.len()]).collect();
    let mut values = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for (from, into) in groups.iter().zip(buffers.iter_mut()) {
            for slot in into.iter_mut() {
                *slot = from[rng.below(from.len())];
            }
        }
        if let Some(v) = statistic(&mut buffers).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some(Interval {
        low: percentile_sorted(&values, tail),
        high: percentile_sorted(&values, 1.0 - tail),
        resamples: values.len(),
    })
}

/// Linear-interpolated percentile of sorted data, `q` in [0, 1].
fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// SplitMix64: tiny, fast and good enough for resampling; fixed seed for repeatable intervals.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// A uniform draw in (0, 1), for simulations.
    #[cfg(test)]
    pub(crate) fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box-Muller), for simulations.
    #[cfg(test)]
    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

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
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), Some(2.5));
        assert!(close(
            quantile(&[5.0, 1.0, 2.0, 3.0, 4.0], 0.95).unwrap(),
            4.8
        ));
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[1.0], 1.5), None);
    }

    #[test]
    fn single_sample_has_zero_spread() {
        let s = Summary::of(&[1.5]).unwrap();
        assert!(close(s.median_s, 1.5) && close(s.stddev_s, 0.0) && close(s.mad_s, 0.0));
        assert!(s.outliers.is_empty());
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn outliers_stand_out_when_most_samples_are_identical() {
        // MAD 0: hyperfine's cases (https://stats.stackexchange.com/q/339932).
        let one = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0];
        assert_eq!(Summary::of(&one).unwrap().outliers, vec![7]);
        let two = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0, 100.0];
        assert_eq!(Summary::of(&two).unwrap().outliers, vec![7, 8]);
        assert!(Summary::of(&[1.0, 1.0, 1.0]).unwrap().outliers.is_empty());
        // Spread but no outlier; then one planted.
        assert!(Summary::of(&[-0.2, 0.0, 0.2]).unwrap().outliers.is_empty());
        assert_eq!(
            Summary::of(&[0.5, 0.30, 0.29, 0.31, 0.30])
                .unwrap()
                .outliers,
            vec![0]
        );
    }

    #[test]
    fn warns_of_a_slow_first_sample_or_else_of_outliers() {
        assert!(warnings(&[]).is_empty());
        assert!(warnings(&[1.0, 1.1, 0.9, 1.05]).is_empty());
        let slow_first = warnings(&[3.0, 1.0, 1.01, 0.99, 1.0]);
        assert_eq!(
            slow_first,
            vec![Warning::SlowFirstSample {
                first_s: 3.0,
                median_s: 1.0
            }]
        );
        assert!(slow_first[0].to_string().contains("--warmups"));
        let later = warnings(&[1.0, 1.01, 4.0, 0.99, 1.0]);
        assert_eq!(later, vec![Warning::Outliers { samples: vec![3] }]);
        assert!(
            later[0]
                .to_string()
                .starts_with("sample 3 is a statistical outlier"),
            "{}",
            later[0]
        );
        assert!(later[0].to_string().contains("(samples[2] in the JSON)"));
        // A fast first sample is an outlier, not a cold cache.
        assert_eq!(
            warnings(&[0.2, 1.0, 1.01, 0.99, 1.0]),
            vec![Warning::Outliers { samples: vec![1] }]
        );
    }

    #[test]
    fn median_odd_and_even() {
        assert!(close(median(&[3.0, 1.0, 2.0]), 2.0));
        assert!(close(median(&[4.0, 1.0, 3.0, 2.0]), 2.5));
        assert!(close(median(&[5.0]), 5.0));
        assert!(close(median(&[2.0, 1.0]), 1.5));
        assert!(close(median(&[1.0, 9.0, 9.0, 1.0, 5.0, 5.0]), 5.0));
    }

    #[test]
    fn ratio_of_constant_samples_has_a_point_interval() {
        let r = ratio_of_medians(&[10.0, 10.0, 10.0], &[0.5, 0.5, 0.5]).unwrap();
        assert!(close(r.ratio, 20.0));
        assert_eq!(r.interval(), Some((20.0, 20.0)));
        assert_eq!(r.resamples, BOOTSTRAP_RESAMPLES);
        assert!(close(r.confidence, 0.95));
    }

    #[test]
    fn ratio_interval_brackets_the_ratio_and_is_repeatable() {
        let cold = [12.1, 12.9, 13.4, 12.6, 14.0];
        let warm = [0.21, 0.25, 0.19, 0.30, 0.22];
        let r = ratio_of_medians(&cold, &warm).unwrap();
        assert!(close(r.ratio, 12.9 / 0.22));
        let (low, high) = r.interval().unwrap();
        assert!(low <= r.ratio && r.ratio <= high);
        // The interval cannot leave the range of possible median ratios.
        assert!(low >= 12.1 / 0.30 - 1e-9 && high <= 14.0 / 0.19 + 1e-9);
        assert!(low < high);
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
        assert_eq!(median_interval(&[]), None);
    }

    #[test]
    fn fewer_than_three_samples_give_no_interval() {
        assert_eq!(median_interval(&[2.0]), None);
        assert_eq!(median_interval(&[2.0, 3.0]), None);
        assert!(median_interval(&[2.0, 3.0, 4.0]).is_some());
        // One cold and one warm sample: the ratio, but no interval (not "73.3x [73.3x, 73.3x]").
        let r = ratio_of_medians(&[7.33], &[0.1]).unwrap();
        assert!(close(r.ratio, 73.3));
        assert_eq!((r.interval(), r.resamples), (None, 0));
        assert_eq!(
            ratio_of_medians(&[1.0, 2.0, 3.0], &[1.0, 1.0])
                .unwrap()
                .interval(),
            None
        );
    }

    #[test]
    fn a_speedup_that_fell_shows_in_its_change() {
        let cold = [12.1, 12.9, 13.4, 12.6, 14.0];
        let warm = [0.21, 0.25, 0.19, 0.30, 0.22];
        let slower_warm: Vec<f64> = warm.iter().map(|w| w * 2.0).collect();
        let same = change_of_ratio((&cold, &warm), (&cold, &warm)).unwrap();
        let (low, high) = same.interval().unwrap();
        assert!(
            close(same.ratio, 1.0) && low < 1.0 && high > 1.0,
            "{same:?}"
        );
        let fell = change_of_ratio((&cold, &warm), (&cold, &slower_warm)).unwrap();
        assert!(close(fell.ratio, 0.5), "{fell:?}");
        assert!(fell.ci_high.unwrap() < 0.9, "{fell:?}");
        assert_eq!(
            change_of_ratio((&cold, &warm[..2]), (&cold, &warm))
                .unwrap()
                .interval(),
            None
        );
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
