//! Speed of the pure hot paths: the bootstrap intervals (a comparison's, and the adaptive
//! stopping rule's, which runs after every sample), the growth slope interval and the Nix
//! log parser (run once per build, on logs that grow with the build).

use criterion::{criterion_group, criterion_main, Criterion};
use flywheel_bench::stats::fit::{slope_interval, Point};
use flywheel_bench::stats::stopping::StoppingRule;
use flywheel_bench::stats::{median_interval, ratio_of_medians, Summary};
use flywheel_bench::tools::nix_log::parse_internal_json;

fn bootstrap(c: &mut Criterion) {
    let cold: Vec<f64> = (0..5).map(|i| 12.0 + i as f64 * 0.3).collect();
    let warm: Vec<f64> = (0..5).map(|i| 0.05 + i as f64 * 0.004).collect();
    c.bench_function("ratio_of_medians 5x5 samples", |b| {
        b.iter(|| ratio_of_medians(&cold, &warm))
    });
    let cold30: Vec<f64> = (0..30).map(|i| 12.0 + (i % 7) as f64 * 0.3).collect();
    let warm30: Vec<f64> = (0..30).map(|i| 0.05 + (i % 5) as f64 * 0.004).collect();
    c.bench_function("ratio_of_medians 30x30 samples", |b| {
        b.iter(|| ratio_of_medians(&cold30, &warm30))
    });
    c.bench_function("median_interval 30 samples", |b| {
        b.iter(|| median_interval(&cold30))
    });
    let rule = StoppingRule::new(5, 30, Some(0.05)).unwrap();
    c.bench_function("stopping rule after sample 30 (median)", |b| {
        b.iter(|| rule.check_median(&cold30))
    });
    c.bench_function("stopping rule after sample 30 (speedup)", |b| {
        b.iter(|| rule.check_ratio(&cold30, &warm30))
    });
    let points: Vec<Point> = [2.0, 4.0, 8.0]
        .into_iter()
        .map(|x| Point {
            x,
            samples: &cold[..],
        })
        .collect();
    c.bench_function("slope_interval 3 points x 5 samples", |b| {
        b.iter(|| slope_interval(&points))
    });
    c.bench_function("summary 30 samples", |b| b.iter(|| Summary::of(&cold30)));
}

fn nix_log(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nix/cold.stderr.log"
    );
    let log = std::fs::read_to_string(path).expect("recorded fixture");
    c.bench_function("parse nix internal-json (21-derivation cold build)", |b| {
        b.iter(|| parse_internal_json(&log))
    });
}

criterion_group!(benches, bootstrap, nix_log);
criterion_main!(benches);
