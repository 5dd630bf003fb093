//! How every report, message and the console write numbers. One place, so the same
//! quantity reads the same wherever it appears: measured magnitudes (times, ratios,
//! shares, sizes) with three significant digits, changes as signed percentages with one
//! decimal, one zero (`0 s`, `0%`, `0 B`), a unit on every number, and plurals that agree
//! with their count. Pure.

use super::RatioInterval;

/// Significant digits of a measured magnitude: enough to tell a 10% threshold apart at
/// any scale, no more than a few samples can support.
const DIGITS: i32 = 3;

/// `value` rounded to `digits` significant digits, written without an exponent; `0` for
/// zero, and no sign on a value that rounds to zero.
fn significant(value: f64, digits: i32) -> String {
    if !value.is_finite() {
        return format!("{value}");
    }
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs().log10().floor() as i32;
    if magnitude >= digits - 1 {
        // Whole numbers keep every digit: 1234 s, not 1230 s.
        return format!("{value:.0}");
    }
    let decimals = digits - 1 - magnitude;
    let scale = 10f64.powi(decimals);
    let rounded = (value * scale).round() / scale;
    // Rounding can carry into the next power of ten (9.996 -> 10.0): one decimal fewer.
    let decimals = if rounded.abs() >= 10f64.powi(magnitude + 1) {
        (decimals - 1).max(0)
    } else {
        decimals
    };
    format!("{rounded:.prec$}", prec = decimals as usize)
}

/// A time in the unit that suits it, three significant digits: `4.40 s`, `65.2 ms`,
/// `512 µs`, `1234 s`, `0 s`, `-2.00 s` (a fit's slope or intercept may be negative).
pub fn seconds(s: f64) -> String {
    seconds_with(s, DIGITS)
}

fn seconds_with(s: f64, digits: i32) -> String {
    if s == 0.0 || !s.is_finite() {
        return format!("{} s", significant(s, digits));
    }
    // Choose the unit by the value as it will be shown, so 0.99996 s reads `1.00 s`.
    let shown: f64 = significant(s, digits).parse().unwrap_or(s);
    let (value, unit) = match shown.abs() {
        a if a >= 1.0 => (s, "s"),
        a if a >= 1e-3 => (s * 1e3, "ms"),
        _ => (s * 1e6, "µs"),
    };
    format!("{} {unit}", significant(value, digits))
}

/// Two times that must read apart (the ends of an axis): more digits until they do, up
/// to six; equal values stay equal.
pub fn seconds_apart(low: f64, high: f64) -> (String, String) {
    (DIGITS..=6)
        .map(|d| (seconds_with(low, d), seconds_with(high, d)))
        .find(|(a, b)| a != b)
        .unwrap_or_else(|| (seconds(low), seconds(high)))
}

/// Seconds per unit of a swept parameter: `500 ms/unit`.
pub fn per_unit(s: f64) -> String {
    format!("{}/unit", seconds(s))
}

/// A ratio (a speedup, a penalty, measured over claimed): `199x`, `1.98x`, `0.953x`.
pub fn ratio(r: f64) -> String {
    format!("{}x", significant(r, DIGITS))
}

/// A share of a whole (0 to 1) as a percentage: `100%`, `66.7%`, `90.0%`, `0%`.
pub fn percent(fraction: f64) -> String {
    format!("{}%", significant(fraction * 100.0, DIGITS))
}

/// A ratio near 1 as a signed change: `+9.3%`, `-0.4%`, `0%`. Changes are differences
/// around 1, so they keep one decimal at every size rather than significant digits.
pub fn change(r: f64) -> String {
    let pct = (r - 1.0) * 100.0;
    if (pct * 10.0).round() == 0.0 {
        "0%".into()
    } else {
        format!("{pct:+.1}%")
    }
}

/// A byte count in binary units: `512 B`, `10.0 MiB`, `23.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    // Round first, so 1023.9 KiB reads `1.00 MiB`.
    while unit + 1 < UNITS.len()
        && significant(value, DIGITS).parse::<f64>().unwrap_or(value) >= 1024.0
    {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{} {}", significant(value, DIGITS), UNITS[unit])
    }
}

/// A rate of bytes: `1.00 MiB/s`.
pub fn bytes_per_s(rate: f64) -> String {
    format!("{}/s", bytes(rate.max(0.0).round() as u64))
}

/// A plain number (a parameter's value, a fit's exponent): whole numbers as they are,
/// others with three significant digits.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        significant(v, DIGITS)
    }
}

/// A coefficient of determination: three decimals, since what matters is how close to 1.
pub fn r_squared(v: f64) -> String {
    format!("{v:.3}")
}

/// `1 sample`, `5 samples`: the count and its noun in agreement (regular plurals).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    format!("{n} {}", plural(n, noun))
}

/// The noun as a count of `n` needs it (`sample` or `samples`).
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        noun.to_string()
    } else if noun.ends_with('s') || noun.ends_with('x') || noun.ends_with("ch") {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// `1 case`, `5 samples` for a `usize`.
pub fn count_of(n: usize, noun: &str) -> String {
    count(n as u64, noun)
}

/// An estimate and its interval, each as `show` writes it: `1.20 s [1.10 s, 1.31 s]`, or
/// `1.20 s [n/a]` when there were too few samples for an interval.
pub fn interval_text(
    estimate: f64,
    interval: Option<(f64, f64)>,
    show: impl Fn(f64) -> String,
) -> String {
    match interval {
        Some((low, high)) => format!("{} [{}, {}]", show(estimate), show(low), show(high)),
        None => format!("{} [n/a]", show(estimate)),
    }
}

/// `2.06x [1.91x, 3.35x]`.
pub fn ratio_interval(r: &RatioInterval) -> String {
    interval_text(r.ratio, r.interval(), ratio)
}

/// A ratio near 1 as a change with its interval: `+9.3% [+7.1%, +11.6%]`.
pub fn change_interval(r: &RatioInterval) -> String {
    interval_text(r.ratio, r.interval(), change)
}

/// The median of `walls` and its 95% interval when there are samples enough for one.
pub fn median_interval(walls: &[f64]) -> String {
    interval_text(super::median(walls), super::median_interval(walls), seconds)
}

/// `sample 2` for the 0-based index `i` of a `samples` list: reports count from 1.
pub fn sample_number(i: usize) -> String {
    format!("sample {}", i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_three_significant_digits_in_every_unit() {
        let cases = [
            (0.0, "0 s"),
            (-0.0, "0 s"),
            (12.94, "12.9 s"),
            (4.4, "4.40 s"),
            (754.2, "754 s"),
            (1800.0, "1800 s"),
            (0.065, "65.0 ms"),
            (0.0712, "71.2 ms"),
            (0.0051, "5.10 ms"),
            (0.99996, "1.00 s"),
            (0.0009996, "1.00 ms"),
            (0.000_512, "512 µs"),
            (-2.0, "-2.00 s"),
            (-1e-5, "-10.0 µs"),
        ];
        for (value, text) in cases {
            assert_eq!(seconds(value), text, "{value}");
        }
        assert_eq!(per_unit(0.5), "500 ms/unit");
    }

    #[test]
    fn axis_ends_read_apart() {
        assert_eq!(
            seconds_apart(11.66, 11.74),
            ("11.66 s".into(), "11.74 s".into())
        );
        assert_eq!(seconds_apart(1.0, 2.0), ("1.00 s".into(), "2.00 s".into()));
        assert_eq!(seconds_apart(3.0, 3.0), ("3.00 s".into(), "3.00 s".into()));
    }

    #[test]
    fn ratios_shares_and_changes() {
        assert_eq!(ratio(199.28), "199x");
        assert_eq!(ratio(1.98), "1.98x");
        assert_eq!(ratio(2.06), "2.06x");
        assert_eq!(ratio(73.3), "73.3x");
        assert_eq!(ratio(1234.0), "1234x");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(2.0 / 3.0), "66.7%");
        assert_eq!(percent(0.9), "90.0%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(change(1.093), "+9.3%");
        assert_eq!(change(0.996), "-0.4%");
        assert_eq!(change(1.0004), "0%");
        assert_eq!(change(1.1), "+10.0%");
        let r = crate::stats::ratio_of_medians(&[1.013], &[1.0]).unwrap();
        assert_eq!(change_interval(&r), "+1.3% [n/a]");
        let mut r = crate::stats::ratio_of_medians(&[7.33], &[0.1]).unwrap();
        assert_eq!(ratio_interval(&r), "73.3x [n/a]");
        (r.ci_low, r.ci_high) = (Some(70.0), Some(75.51));
        assert_eq!(ratio_interval(&r), "73.3x [70.0x, 75.5x]");
    }

    #[test]
    fn sizes_counts_and_plurals() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(10 << 20), "10.0 MiB");
        assert_eq!(bytes((1 << 20) - 1), "1.00 MiB");
        assert_eq!(bytes(25_232_932_864), "23.5 GiB");
        assert_eq!(bytes_per_s(1_048_576.0), "1.00 MiB/s");
        assert_eq!(count(1u64, "sample"), "1 sample");
        assert_eq!(count(5u64, "sample"), "5 samples");
        assert_eq!(count_of(1, "warm-up"), "1 warm-up");
        assert_eq!(count_of(0, "case"), "0 cases");
        assert_eq!(count_of(2, "mismatch"), "2 mismatches");
        assert_eq!(number(20.0), "20");
        assert_eq!(number(0.953), "0.953");
        assert_eq!(sample_number(0), "sample 1");
    }
}
