//! Growth fits: how a median grows with a repo parameter. Least squares on the medians
//! (slope, intercept, R²), the same in log-log space (whose slope is the exponent), and
//! bootstrap intervals of the slope that resample the samples at each point.

use serde::{Deserialize, Serialize};

use super::{bootstrap, median, median_in_place, RatioInterval};

/// y = slope × x + intercept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
    /// Share of the variance of y the line explains (1 when y does not vary at all).
    pub r_squared: f64,
}

/// One point of a series: the parameter's value and the samples taken there.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    pub x: f64,
    pub samples: &'a [f64],
}

/// Ordinary least squares; `None` without two distinct finite x values.
pub fn least_squares(points: &[(f64, f64)]) -> Option<LinearFit> {
    if points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if points.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let ss_tot: f64 = points.iter().map(|(_, y)| (y - mean_y).powi(2)).sum();
    let ss_res: f64 = points
        .iter()
        .map(|(x, y)| (y - (slope * x + intercept)).powi(2))
        .sum();
    Some(LinearFit {
        slope,
        intercept,
        r_squared: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            1.0
        },
    })
}

/// Least squares on (ln x, ln y): y ≈ e^intercept × x^slope, so the slope is the
/// exponent (1: linear growth, 2: quadratic). `None` unless every x and y is positive.
pub fn log_log(points: &[(f64, f64)]) -> Option<LinearFit> {
    if points.iter().any(|(x, y)| *x <= 0.0 || *y <= 0.0) {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|(x, y)| (x.ln(), y.ln())).collect();
    least_squares(&logs)
}

/// The linear fit of the medians at each point.
pub fn fit_medians(series: &[Point]) -> Option<LinearFit> {
    if series.iter().any(|p| p.samples.is_empty()) {
        return None;
    }
    least_squares(&medians(series))
}

fn medians(series: &[Point]) -> Vec<(f64, f64)> {
    series.iter().map(|p| (p.x, median(p.samples))).collect()
}

/// 95% bootstrap interval of the slope of the medians: each resample redraws the samples
/// at every point. `None` when a point has fewer than 3 samples (as for a median) or the
/// series cannot be fitted.
pub fn slope_interval(series: &[Point]) -> Option<(f64, f64)> {
    fit_medians(series)?;
    let groups: Vec<&[f64]> = series.iter().map(|p| p.samples).collect();
    bootstrap(&groups, |resampled| resampled_slope(series, resampled)).map(|i| (i.low, i.high))
}

/// slope(new) / slope(baseline) with a bootstrap interval (both series resampled), for
/// judging whether growth got steeper. `None` when either cannot be fitted or the
/// baseline does not grow (a ratio to a flat or falling slope says nothing).
pub fn slope_ratio(baseline: &[Point], new: &[Point]) -> Option<RatioInterval> {
    let base = fit_medians(baseline)?.slope;
    let now = fit_medians(new)?.slope;
    if base <= 0.0 {
        return None;
    }
    let groups: Vec<&[f64]> = baseline.iter().chain(new).map(|p| p.samples).collect();
    let interval = bootstrap(&groups, |resampled| {
        let (b, n) = resampled.split_at_mut(baseline.len());
        let b = resampled_slope(baseline, b)?;
        (b > 0.0).then_some(resampled_slope(new, n)? / b)
    });
    Some(RatioInterval::with(now / base, interval))
}

/// Where a growing series meets a flat level: the x at which the linear fit of the
/// medians equals `median(level)` (warm time against RTT meeting the cold median: where a
/// cache stops paying), with a 95% bootstrap interval that resamples both.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Crossing {
    /// The level's median.
    pub level: f64,
    /// Where the fit reaches it; absent when the series does not grow (slope ≤ 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_high: Option<f64>,
}

pub fn crossing(series: &[Point], level: &[f64]) -> Option<Crossing> {
    if level.is_empty() {
        return None;
    }
    let fit = fit_medians(series)?;
    let meet =
        |fit: LinearFit, level: f64| (fit.slope > 0.0).then(|| (level - fit.intercept) / fit.slope);
    let level_median = median(level);
    let mut groups: Vec<&[f64]> = series.iter().map(|p| p.samples).collect();
    groups.push(level);
    let interval = bootstrap(&groups, |resampled| {
        let (points, rest) = resampled.split_at_mut(series.len());
        let refit: Vec<(f64, f64)> = series
            .iter()
            .zip(points.iter_mut())
            .map(|(p, samples)| (p.x, median_in_place(samples)))
            .collect();
        meet(least_squares(&refit)?, median_in_place(&mut rest[0]))
    });
    Some(Crossing {
        level: level_median,
        at: meet(fit, level_median),
        ci_low: interval.map(|i| i.low),
        ci_high: interval.map(|i| i.high),
    })
}

fn resampled_slope(series: &[Point], resampled: &mut [Vec<f64>]) -> Option<f64> {
    let points: Vec<(f64, f64)> = series
        .iter()
        .zip(resampled.iter_mut())
        .map(|(p, samples)| (p.x, median_in_place(samples)))
        .collect();
    least_squares(&points).map(|f| f.slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_rising_series_meets_a_level_where_its_line_does() {
        // warm = 1 + 0.05 x (x in ms), cold 6: the cache stops paying at x = 100.
        let at = |x: f64| vec![1.0 + 0.05 * x - 0.01, 1.0 + 0.05 * x, 1.0 + 0.05 * x + 0.01];
        let (a, b, c, d) = (at(0.0), at(10.0), at(40.0), at(160.0));
        let series = [
            Point {
                x: 0.0,
                samples: &a,
            },
            Point {
                x: 10.0,
                samples: &b,
            },
            Point {
                x: 40.0,
                samples: &c,
            },
            Point {
                x: 160.0,
                samples: &d,
            },
        ];
        let cold = [5.9, 6.0, 6.1];
        let got = crossing(&series, &cold).unwrap();
        assert!(
            close(got.level, 6.0) && close(got.at.unwrap(), 100.0),
            "{got:?}"
        );
        let (low, high) = (got.ci_low.unwrap(), got.ci_high.unwrap());
        assert!(low < 100.0 && 100.0 < high && high - low < 10.0, "{got:?}");
        // A flat series never meets it.
        let flat = [
            Point {
                x: 0.0,
                samples: &a,
            },
            Point {
                x: 10.0,
                samples: &a,
            },
        ];
        assert_eq!(crossing(&flat, &cold).unwrap().at, None);
    }

    #[test]
    fn a_line_fits_exactly() {
        let f = least_squares(&[(1.0, 5.0), (2.0, 7.0), (4.0, 11.0)]).unwrap();
        assert!(close(f.slope, 2.0) && close(f.intercept, 3.0) && close(f.r_squared, 1.0));
        let flat = least_squares(&[(1.0, 4.0), (2.0, 4.0)]).unwrap();
        assert!(close(flat.slope, 0.0) && close(flat.r_squared, 1.0));
    }

    #[test]
    fn scattered_points_explain_less() {
        // Known values: slope 0.6, intercept 2.2, R² 0.6.
        let f =
            least_squares(&[(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)]).unwrap();
        assert!(close(f.slope, 0.6) && close(f.intercept, 2.2), "{f:?}");
        assert!(close(f.r_squared, 0.6), "{f:?}");
    }

    #[test]
    fn log_log_finds_the_exponent() {
        let quadratic: Vec<(f64, f64)> = [2.0, 4.0, 8.0, 16.0]
            .iter()
            .map(|x| (*x, 0.5 * x * x))
            .collect();
        let f = log_log(&quadratic).unwrap();
        assert!(
            close(f.slope, 2.0) && close(f.intercept, 0.5f64.ln()),
            "{f:?}"
        );
        assert!(log_log(&[(0.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn no_fit_without_two_distinct_values() {
        assert!(least_squares(&[]).is_none());
        assert!(least_squares(&[(1.0, 2.0)]).is_none());
        assert!(least_squares(&[(1.0, 2.0), (1.0, 3.0)]).is_none());
        assert!(least_squares(&[(1.0, f64::NAN), (2.0, 3.0)]).is_none());
    }

    fn series(points: &[(f64, Vec<f64>)]) -> Vec<Point<'_>> {
        points
            .iter()
            .map(|(x, samples)| Point { x: *x, samples })
            .collect()
    }

    #[test]
    fn the_slope_interval_holds_the_slope_and_needs_three_samples_a_point() {
        let data = vec![
            (2.0, vec![2.1, 2.0, 1.9]),
            (4.0, vec![4.2, 3.9, 4.0]),
            (8.0, vec![8.1, 7.8, 8.0]),
        ];
        let s = series(&data);
        let slope = fit_medians(&s).unwrap().slope;
        let (low, high) = slope_interval(&s).unwrap();
        assert!(
            low <= slope && slope <= high && high - low < 0.2,
            "{low} {high}"
        );
        assert_eq!(slope_interval(&s), slope_interval(&s));
        let thin = vec![(2.0, vec![2.0, 2.1]), (4.0, vec![4.0, 4.1, 4.2])];
        assert_eq!(slope_interval(&series(&thin)), None);
    }

    #[test]
    fn a_steeper_slope_shows_in_the_ratio() {
        let base = vec![
            (2.0, vec![2.1, 2.0, 1.9]),
            (4.0, vec![4.2, 3.9, 4.0]),
            (8.0, vec![8.1, 7.8, 8.0]),
        ];
        let steeper: Vec<(f64, Vec<f64>)> = base
            .iter()
            .map(|(x, s)| (*x, s.iter().map(|v| v * 2.0).collect()))
            .collect();
        let r = slope_ratio(&series(&base), &series(&steeper)).unwrap();
        assert!(close(r.ratio, 2.0), "{r:?}");
        let (low, high) = r.interval().unwrap();
        assert!(low > 1.5 && high < 2.5, "{r:?}");
        let flat = vec![(2.0, vec![1.0; 3]), (4.0, vec![1.0; 3])];
        assert!(slope_ratio(&series(&flat), &series(&base)).is_none());
    }
}
