//! The Attic backend: pulls through its Nix binary cache interface (tested against nginx,
//! which speaks the same protocol), pushes through the `attic` CLI (tested with a stand-in
//! executable that records its arguments and copies with `nix copy`), and never lets the
//! token out.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const TOKEN: &str = "flywheel-attic-token-7f3a9c";

fn nix_key(args: &[&str], stdin: Option<&Path>) -> String {
    let mut cmd = Command::new("nix");
    cmd.args(["--extra-experimental-features", "nix-command", "key"])
        .args(args);
    if let Some(file) = stdin {
        cmd.stdin(std::fs::File::open(file).unwrap());
    }
    String::from_utf8(cmd.output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn profile(dir: &Path, endpoint: &str, public_key: &str) -> std::path::PathBuf {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.attic]\n[profiles.attic.nix]\nbackend = \"attic\"\nendpoint = \"{endpoint}\"\ncache = \"main\"\npublic_key = \"{public_key}\"\ntoken_env = \"FLYWHEEL_TEST_ATTIC_TOKEN\"\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn pulls_pushes_and_never_lets_the_token_out() {
    require_tools(&["nix", "nginx", "curl", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    // The "Attic server": a binary cache at /main under nginx.
    let server = nginx(&tmp.path().join("www"));
    std::fs::create_dir_all(server.root().join("main")).unwrap();
    std::fs::write(
        server.root().join("main/nix-cache-info"),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n",
    )
    .unwrap();
    let secret = tmp.path().join("key.sec");
    std::fs::write(
        &secret,
        nix_key(&["generate-secret", "--key-name", "main"], None),
    )
    .unwrap();
    let public = nix_key(&["convert-secret-to-public"], Some(&secret));

    // The stand-in `attic`: records its arguments and environment, checks its config holds
    // the server, and uploads what it was asked to push with nix copy.
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let log = tmp.path().join("attic-calls.log");
    let stand_in = format!(
        "#!/bin/sh\nset -e\necho \"args: $*\" >> {log}\necho \"NIX_REMOTE=$NIX_REMOTE\" >> {log}\ngrep -q '^\\[servers.flywheel-bench\\]' \"$HOME/.config/attic/config.toml\"\n[ \"$1\" = push ] && [ \"$2\" = flywheel-bench:main ]\nshift 2\nexec nix --extra-experimental-features nix-command copy --store \"$NIX_REMOTE\" --to \"http://127.0.0.1:{port}/main?secret-key={secret}\" \"$@\"\n",
        log = log.display(),
        port = server.addr().port(),
        secret = secret.display()
    );
    let attic = bin_dir.join("attic");
    std::fs::write(&attic, stand_in).unwrap();
    std::fs::set_permissions(&attic, std::fs::Permissions::from_mode(0o755)).unwrap();

    let config = profile(
        tmp.path(),
        &format!("http://127.0.0.1:{}", server.addr().port()),
        &public,
    );
    let output = tmp.path().join("results.json");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = run_ok(
        tiny_nix_run(&[
            "--profile",
            "attic",
            "--scenario",
            "cold",
            "--scenario",
            "warm",
            "--samples",
            "1",
        ])
        .env("PATH", path)
        .env("FLYWHEEL_TEST_ATTIC_TOKEN", TOKEN)
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(&output),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    assert_eq!(results["profile"], "attic");
    let warm = case(&results, "warm");
    assert_eq!(warm["outcome"], "ok", "{warm}");
    assert_eq!(warm["cache"]["backend"], "attic");
    assert_eq!(
        warm["cache"]["url"],
        format!("http://127.0.0.1:{}/main", server.addr().port())
    );
    assert_eq!(warm["samples"][0]["built"], 0, "{warm}");
    assert!(
        warm["samples"][0]["substituted"].as_u64().unwrap() > 0,
        "pulled from the Attic interface: {warm}"
    );

    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains("args: push flywheel-bench:main /nix/store/"),
        "{calls}"
    );
    assert!(
        calls.contains("NIX_REMOTE=local?root="),
        "attic reads the primed store: {calls}"
    );

    // The token is in none of: results, what the harness printed, attic's arguments.
    for (what, text) in [
        (
            "the results file",
            std::fs::read_to_string(&output).unwrap(),
        ),
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("attic's arguments", calls),
    ] {
        assert!(!text.contains(TOKEN), "the Attic token leaked into {what}");
    }
}

#[test]
fn an_unreachable_attic_is_a_clear_preflight_error_without_the_token() {
    require_tools(&["nix", "curl"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = profile(tmp.path(), "http://127.0.0.1:1", "main:AAAA");
    let out = tiny_nix_run(&["--profile", "attic", "--scenario", "warm"])
        .env("FLYWHEEL_TEST_ATTIC_TOKEN", TOKEN)
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(tmp.path().join("r.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the Attic cache http://127.0.0.1:1/main did not answer"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
    let missing = tiny_nix_run(&["--profile", "attic", "--scenario", "warm"])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("$FLYWHEEL_TEST_ATTIC_TOKEN is not set")
    );
}
