//! How cost grows over a sweep of a repo parameter (`--sweep size=2,4,8`): per repo,
//! system, lane and scenario, the median at each value and fits of how it grows. Pure:
//! derived from the cases alone, so it can be recomputed from any results file.

use serde::{Deserialize, Serialize};

use super::{CaseResult, Outcome};
use crate::results::scenario::Link;
use crate::results::{Lane, ParamValue, Scenario, System};
use crate::stats::fit::{
    crossing, fit_medians, log_log, slope_interval, Crossing, LinearFit, Point,
};
use crate::stats::{median, ratio_of_medians, RatioInterval};

/// One scenario's series over the swept parameter, with its fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Growth {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    pub scenario: Scenario,
    /// The swept parameter, e.g. `size`.
    pub parameter: String,
    /// One point per value, in ascending order.
    pub points: Vec<GrowthPoint>,
    /// median_s = slope × value + intercept (seconds per unit of the parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearFit>,
    /// ln median_s = exponent × ln value + c: the slope is the exponent (1 linear,
    /// 2 quadratic); absent unless every value and median is positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_log: Option<LinearFit>,
    /// 95% bootstrap interval of the linear slope over the samples at each point (absent
    /// when a point has fewer than 3 samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope_ci_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope_ci_high: Option<f64>,
    /// A link sweep's warm series (`--sweep link.rtt_ms=...`): where its line meets the
    /// cold median, i.e. the distance at which the cache stops paying, with its interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_even: Option<Crossing>,
    /// A link sweep's warm series: the median through the unshaped proxy (`link.*` = 0)
    /// over the median read directly, with its interval: what the proxy itself costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_cost: Option<RatioInterval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GrowthPoint {
    /// The parameter's value.
    pub value: f64,
    pub median_s: f64,
    /// The wall times of the samples.
    pub samples: Vec<f64>,
}

impl Growth {
    /// `repo system lane scenario`, as cases are named.
    pub fn label(&self) -> String {
        format!("{} {}", self.key(), self.scenario)
    }

    /// The points as the fits take them.
    pub fn series(&self) -> Vec<Point<'_>> {
        self.points
            .iter()
            .map(|p| Point {
                x: p.value,
                samples: &p.samples,
            })
            .collect()
    }

    /// The same series (repo, system, lane, scenario and parameter) in another run.
    pub fn same_series(&self, other: &Growth) -> bool {
        self.key() == other.key()
            && self.scenario == other.scenario
            && self.parameter == other.parameter
    }
}

/// Every series in `cases`: successful cases with samples that share repo, system, lane
/// and scenario and differ in exactly one numeric parameter, at two or more values.
pub fn growth(cases: &[CaseResult]) -> Vec<Growth> {
    let measured: Vec<&CaseResult> = cases
        .iter()
        .filter(|c| c.outcome == Outcome::Ok && !c.samples.is_empty())
        .collect();
    let mut groups: Vec<Vec<&CaseResult>> = Vec::new();
    for case in measured {
        match groups.iter_mut().find(|g| g[0].same_scenario(case)) {
            Some(group) => group.push(case),
            None => groups.push(vec![case]),
        }
    }
    groups
        .iter()
        .filter_map(|g| series(g))
        .map(|mut growth| {
            link_sweep(&mut growth, cases);
            growth
        })
        .collect()
}

/// A link sweep's warm series against the direct cases of the same repo, system, lane
/// and build parameters: cold (the break-even) and warm read directly (the proxy's cost).
fn link_sweep(growth: &mut Growth, cases: &[CaseResult]) {
    if growth.scenario != Scenario::Warm || !Link::is_parameter(&growth.parameter) {
        return;
    }
    let Some(point) = cases.iter().find(|c| {
        c.repo == growth.repo
            && c.system == growth.system
            && c.lane == growth.lane
            && c.scenario == Scenario::Warm
            && c.parameters.contains_key(&growth.parameter)
    }) else {
        return;
    };
    let direct = |scenario: Scenario| {
        cases.iter().find(|c| {
            c.key() == point.key()
                && c.scenario == scenario
                && c.outcome == Outcome::Ok
                && !c.samples.is_empty()
                && c.link.is_none()
                && c.parameters
                    == point
                        .parameters
                        .iter()
                        .filter(|(k, _)| !Link::is_parameter(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
        })
    };
    if let Some(cold) = direct(Scenario::Cold) {
        growth.break_even = crossing(&growth.series(), &cold.walls());
    }
    let unshaped = growth.points.iter().find(|p| p.value == 0.0);
    if let (Some(warm), Some(unshaped)) = (direct(Scenario::Warm), unshaped) {
        growth.proxy_cost = ratio_of_medians(&unshaped.samples, &warm.walls());
    }
}

fn series(group: &[&CaseResult]) -> Option<Growth> {
    let (parameter, group) = swept_parameter(group)?;
    let mut points: Vec<GrowthPoint> = group
        .iter()
        .map(|case| {
            let samples = case.walls();
            Some(GrowthPoint {
                value: numeric(case.parameters.get(&parameter)?)?,
                median_s: median(&samples),
                samples,
            })
        })
        .collect::<Option<_>>()?;
    points.sort_by(|a, b| a.value.total_cmp(&b.value));
    let first = group[0];
    let mut growth = Growth {
        repo: first.repo.clone(),
        system: first.system,
        lane: first.lane,
        scenario: first.scenario,
        parameter,
        points,
        linear: None,
        log_log: None,
        slope_ci_low: None,
        slope_ci_high: None,
        break_even: None,
        proxy_cost: None,
    };
    let series = growth.series();
    let (linear, interval) = (fit_medians(&series), slope_interval(&series));
    let medians: Vec<(f64, f64)> = growth
        .points
        .iter()
        .map(|p| (p.value, p.median_s))
        .collect();
    growth.linear = linear;
    growth.log_log = log_log(&medians);
    (growth.slope_ci_low, growth.slope_ci_high) = interval.unzip();
    Some(growth)
}

/// The one parameter whose value differs between the cases, and the cases that have it
/// (a link sweep's direct case has none), when it is numeric everywhere and takes
/// distinct values (two cases at the same value are not a sweep).
fn swept_parameter<'a>(group: &[&'a CaseResult]) -> Option<(String, Vec<&'a CaseResult>)> {
    if group.len() < 2 {
        return None;
    }
    let mut keys: Vec<&String> = group.iter().flat_map(|c| c.parameters.keys()).collect();
    keys.sort();
    keys.dedup();
    let varying: Vec<&String> = keys
        .into_iter()
        .filter(|k| {
            group
                .iter()
                .any(|c| c.parameters.get(*k) != group[0].parameters.get(*k))
        })
        .collect();
    let [key] = varying.as_slice() else {
        return None;
    };
    let group: Vec<&CaseResult> = group
        .iter()
        .copied()
        .filter(|c| c.parameters.contains_key(*key) || !Link::is_parameter(key))
        .collect();
    let mut values: Vec<f64> = group
        .iter()
        .map(|c| numeric(c.parameters.get(*key)?))
        .collect::<Option<_>>()?;
    values.sort_by(f64::total_cmp);
    values.dedup();
    (values.len() == group.len() && group.len() >= 2).then(|| ((*key).clone(), group))
}

fn numeric(value: &ParamValue) -> Option<f64> {
    match value {
        ParamValue::Int(i) => Some(*i as f64),
        ParamValue::Str(_) => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::Results;

    /// The fixture's cases at `size` 2, 4 and 8, cold growing linearly and warm flat.
    pub(crate) fn swept() -> Vec<CaseResult> {
        let results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let mut cases = Vec::new();
        for size in [2i64, 4, 8] {
            for case in results
                .cases
                .iter()
                .filter(|c| c.scenario != Scenario::Noop)
            {
                let mut case = case.clone();
                case.parameters.insert("size".into(), ParamValue::Int(size));
                for (i, s) in case.samples.iter_mut().enumerate() {
                    s.wall_s = match case.scenario {
                        Scenario::Cold => 1.0 + 0.5 * size as f64 + 0.01 * i as f64,
                        _ => 0.2 + 0.001 * i as f64,
                    };
                }
                cases.push(case);
            }
        }
        cases
    }

    #[test]
    fn a_link_sweep_gives_the_break_even_and_the_proxy_cost() {
        let results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let like = |scenario: Scenario| {
            let mut case = results
                .cases
                .iter()
                .find(|c| c.scenario == scenario)
                .unwrap()
                .clone();
            case.samples.truncate(3);
            assert_eq!(case.samples.len(), 3, "the fixture has 3 samples a case");
            case
        };
        let walls = |case: &mut CaseResult, at: f64| {
            for (i, s) in case.samples.iter_mut().enumerate() {
                s.wall_s = at + 0.01 * i as f64;
            }
        };
        let mut cold = like(Scenario::Cold);
        walls(&mut cold, 6.0);
        let mut direct = like(Scenario::Warm);
        walls(&mut direct, 0.99);
        let mut cases = vec![cold, direct];
        // warm = 1 + 0.05 × rtt: the cache stops paying at 100 ms.
        for rtt in [0i64, 10, 40, 160] {
            let mut point = like(Scenario::Warm);
            point
                .parameters
                .insert("link.rtt_ms".into(), ParamValue::Int(rtt));
            point.link = Some(Link {
                rtt_ms: rtt as u64,
                bandwidth_bytes_per_s: None,
            });
            walls(&mut point, 1.0 + 0.05 * rtt as f64);
            cases.push(point);
        }
        let series = growth(&cases);
        let [warm] = series.as_slice() else {
            panic!("one series, warm over the link: {series:?}")
        };
        assert_eq!(warm.parameter, "link.rtt_ms");
        assert_eq!(warm.points.len(), 4, "the direct case is no point");
        let even = warm.break_even.unwrap();
        assert!((even.at.unwrap() - 100.0).abs() < 1.0, "{even:?}");
        assert!((even.level - 6.01).abs() < 1e-9, "{even:?}");
        let cost = warm.proxy_cost.as_ref().unwrap();
        assert!((cost.ratio - 1.01 / 1.0).abs() < 0.02, "{cost:?}");
    }

    #[test]
    fn a_sweep_gives_one_series_per_scenario_with_fits() {
        let growth = growth(&swept());
        assert_eq!(growth.len(), 2);
        let cold = &growth[0];
        assert_eq!(
            (cold.scenario, cold.parameter.as_str()),
            (Scenario::Cold, "size")
        );
        let values: Vec<f64> = cold.points.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![2.0, 4.0, 8.0]);
        assert_eq!(cold.points[0].samples.len(), 3);
        let linear = cold.linear.unwrap();
        assert!(
            (linear.slope - 0.5).abs() < 1e-6 && linear.r_squared > 0.999,
            "{linear:?}"
        );
        let (low, high) = (cold.slope_ci_low.unwrap(), cold.slope_ci_high.unwrap());
        assert!(low <= linear.slope && linear.slope <= high);
        let exponent = cold.log_log.unwrap().slope;
        assert!(exponent > 0.5 && exponent < 1.0, "{exponent}");
        assert!(growth[1].linear.unwrap().slope.abs() < 1e-6);
    }

    #[test]
    fn no_series_without_a_single_numeric_sweep() {
        let results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        // One case per scenario: nothing swept.
        assert!(growth(&results.cases).is_empty());
        // Two parameters varying at once: not one sweep.
        let mut two = swept();
        for (i, c) in two.iter_mut().enumerate() {
            c.parameters
                .insert("work".into(), ParamValue::Int(i as i64));
        }
        assert!(growth(&two).is_empty());
        // A string parameter is no axis.
        let mut named = swept();
        for c in &mut named {
            let size = c.parameters["size"].to_string();
            c.parameters
                .insert("size".into(), ParamValue::Str(format!("s{size}")));
        }
        assert!(growth(&named).is_empty());
        // Failed cases do not count.
        let mut failed = swept();
        for c in failed.iter_mut().filter(|c| c.scenario == Scenario::Warm) {
            c.outcome = Outcome::Failed;
        }
        assert_eq!(growth(&failed).len(), 1);
    }
}
