//! The vm lane boots a real VM (QEMU; TCG where KVM does not work) and runs a Nix case in
//! it against the host's embedded cache; the gpu lane skips cleanly without a GPU.

mod common;

use common::*;

#[test]
fn a_vm_runs_nix_cases_against_the_host_cache_and_says_how_it_was_accelerated() {
    require_tools(&["qemu-system-x86_64", "nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let nix_before = host_nix_snapshot();
    run_ok(
        tiny_nix_run(&[
            "--lane",
            "vm",
            "--scenario",
            "cold",
            "--scenario",
            "warm",
            "--scenario",
            "fill",
            "--samples",
            "1",
        ])
        .arg("--output")
        .arg(&output)
        .arg("--work-dir")
        .arg(&work),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let lane = &results["lanes"][0];
    assert_eq!(lane["lane"], "vm");
    assert_eq!(lane["virtualization"], "qemu");
    assert!(
        lane["cpu_model"].as_str().unwrap().contains("QEMU"),
        "{lane}"
    );
    // KVM only when a test VM proved it works; on a nested PVM /dev/kvm the lane says tcg.
    let accel = lane["acceleration"].as_str().unwrap();
    let note = lane["acceleration_note"].as_str().unwrap();
    assert!(
        accel == "tcg" || (accel == "kvm" && note.contains("booted and exited under KVM")),
        "{lane}"
    );
    assert!(
        lane["tools"]["nix"]["version"]
            .as_str()
            .unwrap()
            .contains("Nix"),
        "tools inside the lane: {lane}"
    );

    let cold = case(&results, "cold");
    assert_eq!(cold["lane"], "vm");
    assert_eq!(cold["outcome"], "ok", "{cold}");
    assert_eq!(
        cold["samples"][0]["built"], 3,
        "size 2: two compile steps and a link"
    );
    let warm = case(&results, "warm");
    assert_eq!(warm["outcome"], "ok", "{warm}");
    assert_eq!(warm["samples"][0]["built"], 0, "{warm}");
    assert!(
        warm["samples"][0]["substituted"].as_u64().unwrap() > 0,
        "{warm}"
    );
    assert!(
        warm["cache"]["url"].as_str().unwrap().contains("10.0.2.2"),
        "the guest reads the host's cache: {warm}"
    );

    // A fill sample measures and removes its fresh cache in the cache's folder, which stays
    // on the host: skipped with that reason and the fix, before anything is built.
    let fill = case(&results, "fill");
    assert_eq!(fill["outcome"], "skipped", "{fill}");
    let reason = fill["reason"].as_str().unwrap();
    assert!(
        reason.contains("the vm lane's guest reaches the embedded cache only over the network")
            && reason.contains("fix: run `fill` on the host lane (--lane host)"),
        "{reason}"
    );
    assert_eq!(fill["samples"], serde_json::json!([]), "{fill}");

    // The lane's bootstrap: the host's checks, the VM's image and KVM probe, then the
    // guest's own user-namespace probe, each timed; and nothing left at the end.
    let checks = lane["bootstrap"]["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "cache preflight",
            "user-namespace probe",
            "cache link probe",
            "vm image (kernel and initramfs)",
            "kvm probe",
            "user-namespace probe (in the guest)"
        ],
        "{lane}"
    );
    assert!(checks.iter().all(|c| c["seconds"].as_f64().unwrap() > 0.0));
    let kvm = &checks[4]["detail"];
    assert!(
        kvm.as_str().unwrap().starts_with(&format!("{accel}: ")),
        "{kvm}"
    );
    assert_eq!(
        results["cleanup"]["left"],
        serde_json::json!([]),
        "{}",
        results["cleanup"]
    );

    // qemu and nginx included.
    assert_left_nothing(&work, &nix_before);
}

#[test]
fn the_gpu_lane_skips_with_a_reason_when_there_is_no_gpu() {
    require_tools(&["nix"]);
    let has_gpu = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_gpu {
        return; // This test is about GPU-less machines; GPU machines run the canary instead.
    }
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    // Every case skipped: nothing could run here (exit 3), and the results say why.
    run_exits(
        bin()
            .current_dir(repo_root())
            .args([
                "run",
                "--lane",
                "gpu",
                "--repo",
                "fixture-cuda",
                "--scenario",
                "cold",
                "--scenario",
                "warm",
                "--output",
            ])
            .arg(&output),
        3,
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    assert_eq!(results["lanes"][0]["lane"], "gpu");
    assert!(results["lanes"][0].get("gpu").is_none());
    let cold = case(&results, "cold");
    assert_eq!(cold["outcome"], "skipped");
    assert!(
        cold["reason"]
            .as_str()
            .unwrap()
            .starts_with("no NVIDIA GPU"),
        "{cold}"
    );
}
