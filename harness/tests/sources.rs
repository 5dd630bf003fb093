//! Git-sourced bench repos: fetched in a preparation step, or skipped (never failed) when
//! they cannot be fetched.

mod common;

use common::*;

#[test]
fn an_unreachable_git_source_is_skipped_with_the_reason_and_no_credentials() {
    require_tools(&["nix", "git"]);
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("repo.toml"),
        "name = \"offline\"\ndescription = \"d\"\n[source]\ngit = \"https://bot:s3cret-pw@example.invalid/nobody/offline.git\"\nrev = \"0123456789abcdef0123456789abcdef01234567\"\n[nix]\nflake = [\".#default\"]\n",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    // Its only case was skipped: nothing could run here, which is exit 3.
    let out = run_exits(
        cold_run(&[repo.path()], 1, &output)
            .arg("--checkout-cache")
            .arg(tmp.path().join("checkouts")),
        3,
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("s3cret-pw"), "{printed}");
    assert!(!std::fs::read_to_string(&output)
        .unwrap()
        .contains("s3cret-pw"));
    let results = read_json(&output);
    assert_valid_results(&results);
    let cold = case(&results, "cold");
    assert_eq!(cold["outcome"], "skipped", "{cold}");
    let reason = cold["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "could not fetch https://example.invalid/nobody/offline.git@0123456789abcdef"
        ),
        "{reason}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipping offline: could not fetch"));
}

#[test]
fn the_tranche_1_manifests_are_pinned() {
    for name in ["gloriousflywheel", "scheduling-kit", "acuity-middleware"] {
        let text =
            std::fs::read_to_string(repo_root().join("bench-repos").join(name).join("repo.toml"))
                .unwrap();
        let rev = text
            .lines()
            .find_map(|l| l.strip_prefix("rev = \""))
            .unwrap();
        assert_eq!(
            rev.trim_end_matches('"').len(),
            40,
            "{name} is pinned by a full commit"
        );
    }
}
