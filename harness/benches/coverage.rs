//! `coverage` of a 10 000-path closure against a loopback cache (the harness's own nginx
//! serving generated narinfos) must take well under 5 s: every output's narinfo asked, 25 at
//! a time as Nix does, then the closure classified.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use flywheel_bench::cache::nginx::Nginx;
use flywheel_bench::exec::http::Client;
use flywheel_bench::plan::proxies::Proxies;
use flywheel_bench::results::coverage::classify_closure;
use flywheel_bench::results::coverage::Derivation;
use flywheel_bench::run::coverage::answers_for;
use flywheel_bench::tools::narinfo::NarinfoSource;

const PATHS: usize = 10_000;
/// One in this many paths has no narinfo, so the walk also descends into inputs.
const MISSING_EVERY: usize = 10;

/// A chain of derivations: each builds from the one before and references it at run time.
fn closure() -> Vec<Derivation> {
    (0..PATHS)
        .map(|i| Derivation {
            drv: format!("/nix/store/{i:032}-pkg-{i}.drv"),
            name: format!("pkg-{i}"),
            outputs: BTreeMap::from([(
                "out".to_string(),
                Some(format!("/nix/store/{i:032}-pkg-{i}")),
            )]),
            input_drvs: (i > 0)
                .then(|| {
                    (
                        format!("/nix/store/{:032}-pkg-{}.drv", i - 1, i - 1),
                        vec!["out".to_string()],
                    )
                })
                .into_iter()
                .collect(),
        })
        .collect()
}

fn coverage(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let nginx = which::which("nginx").expect("nginx is installed (scripts/setup)");
    let server = Nginx::start(&nginx, &dir.path().join("nginx")).unwrap();
    let cache_dir = server.root().join("nix");
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::write(cache_dir.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    for i in (0..PATHS).filter(|i| i % MISSING_EVERY != 1) {
        let references = if i > 0 {
            format!("{:032}-pkg-{}", i - 1, i - 1)
        } else {
            String::new()
        };
        std::fs::write(
            cache_dir.join(format!("{i:032}.narinfo")),
            format!("StorePath: /nix/store/{i:032}-pkg-{i}\nURL: nar/{i}.nar\nCompression: none\nNarHash: sha256:{i:052}\nNarSize: 100\nReferences: {references}\n"),
        )
        .unwrap();
    }
    let derivations = closure();
    let top = derivations.last().unwrap().drv.clone();
    let client = Client::new(&Proxies::default()).unwrap();
    let team = NarinfoSource::at(&server.url("nix"), None).unwrap();
    let mut group = c.benchmark_group("coverage");
    group.sample_size(10);
    group.bench_function(
        "10 000-path closure, loopback nginx, 25 requests at a time",
        |b| {
            b.iter(|| {
                let answers = answers_for(&client, &team, &[], &derivations, 25);
                let result = classify_closure(&derivations, std::slice::from_ref(&top), &answers);
                assert_eq!(result.closure_outputs, PATHS as u64);
                assert_eq!(
                    result.closure_present,
                    (PATHS - PATHS / MISSING_EVERY) as u64
                );
            })
        },
    );
    group.finish();
}

criterion_group!(benches, coverage);
criterion_main!(benches);
