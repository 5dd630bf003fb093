//! The Attic backend against the in-test Attic server (`common::attic_server`, which
//! implements Attic's API and binary cache interface as its server does): the harness
//! fills it through the API with no `attic` CLI, a warm `nix build` then substitutes the
//! whole closure from it, a second fill uploads nothing, `--no-fill` measures it with a
//! pull-only token and writes nothing; refusals name the permission; a NAR the server
//! refuses fails the case naming the path; the token never leaks. The `attic` CLI path is
//! checked for how it is invoked (a stand-in records its arguments).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::attic_server::{from_nix32, nix32, AtticServer, Grant};
use common::debian13::{Debian13, GUEST_HARNESS};
use common::*;

const TOKEN_ENV: &str = "FLYWHEEL_TEST_ATTIC_TOKEN";
/// The profile line that reads the token from `TOKEN_ENV`.
const FROM_ENV: &str = "token_env = \"FLYWHEEL_TEST_ATTIC_TOKEN\"";
const PUSH: Grant = Grant {
    pull: true,
    push: true,
};
const PULL: Grant = Grant {
    pull: true,
    push: false,
};

/// The recorded closure (app -> lib -> data, lib -> note) as a bench repo: 4 store paths
/// with references, 1168 NAR bytes.
fn closure_repo() -> tempfile::TempDir {
    let expr = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nix/closure/refs.nix"),
    )
    .unwrap();
    temp_repo("closure", &expr)
}

/// A `bench.toml` with profile `attic`; `extra` holds the `token_env`/`token_file` line.
fn profile(dir: &Path, endpoint: &str, cache: &str, public_key: &str, extra: &str) -> PathBuf {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.attic]\n[profiles.attic.nix]\nbackend = \"attic\"\nendpoint = \"{endpoint}\"\ncache = \"{cache}\"\npublic_key = \"{public_key}\"\n{extra}\n"
        ),
    )
    .unwrap();
    config
}

/// The profile for the server's cache `main`, with its key and `extra` lines.
fn main_profile(dir: &Path, server: &AtticServer, extra: &str) -> PathBuf {
    profile(
        dir,
        &server.endpoint(),
        "main",
        &server.public_key("main"),
        extra,
    )
}

/// A `nix` first on PATH that records every command line, then runs the real one.
fn recording_nix(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("nix-argv.log");
    let real = which_path("nix").expect("nix is installed");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\nexec {} \"$@\"\n",
        log.display(),
        real.display()
    );
    executable(&bin.join("nix"), &script);
    (bin, log)
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// `run --profile attic` of `repo` with Nix, one sample, no warm-up.
fn attic_run(repo: &Path, config: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.current_dir(repo_root())
        .args(["run", "--system", "nix", "--warmups", "0", "--samples", "1"])
        // One sample gives a speedup no interval, so its verdict cannot pass: these tests
        // are about the cache, not verdicts (exit 5 is tested in nix_bench).
        .args(["--verdicts", "warn"])
        .args(["--profile", "attic"])
        .arg("--repo")
        .arg(repo)
        .arg("--config")
        .arg(config)
        .arg("--output")
        .arg(output)
        .args(extra);
    cmd
}

fn assert_no_token(token: &str, texts: &[(&str, String)]) {
    for (what, text) in texts {
        assert!(!text.contains(token), "the Attic token leaked into {what}");
    }
}

fn out_texts(out: &Output) -> [(&'static str, String); 2] {
    [
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
    ]
}

#[test]
fn nix32_matches_nix() {
    // `nix hash to-base32 sha256-Ot3KQcX1X0zVLJwNus6HRLImrys/oNp8O+U7SuxfpV4=` (Nix 2.8):
    // the recorded closure's refs-app NAR.
    let hex = "3addca41c5f55f4cd52c9c0dbace8744b226af2b3fa0da7c3be53b4aec5fa55e";
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        nix32(&bytes),
        "0pm5bzn4lfz57dydm81z5fpjdcj4hz7bl3cw5kalqpzmqm0wmp9s"
    );
    assert_eq!(from_nix32(&nix32(&bytes), 32).unwrap(), bytes);
}

#[test]
fn fills_through_the_api_then_warm_substitutes_everything_and_a_refill_uploads_nothing() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let token = server.token(&[("main", PUSH)]);
    // A token file with a trailing newline: the harness trims it.
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = main_profile(
        tmp.path(),
        &server,
        &format!("token_file = \"{}\"", token_file.display()),
    );
    let (bin, argv_log) = recording_nix(tmp.path());
    let repo = closure_repo();
    let first = tmp.path().join("first.json");
    let out = run_ok(
        attic_run(
            repo.path(),
            &config,
            &first,
            &["--scenario", "cold", "--scenario", "warm"],
        )
        .env("PATH", path_with(&bin)),
    );
    let results = read_json(&first);
    assert_valid_results(&results);
    let warm = case(&results, "warm");
    assert_eq!(warm["outcome"], "ok", "{warm}");
    assert_eq!(warm["cache"]["backend"], "attic");
    assert_eq!(warm["samples"][0]["built"], 0, "{warm}");
    // The text file is added to the fresh store by evaluation; the three built paths come
    // from the cache.
    assert_eq!(warm["samples"][0]["substituted"], 3, "{warm}");
    let fill = &warm["cache_fill"];
    assert_eq!(fill["method"], "attic-api", "{fill}");
    assert_eq!(fill["closure_paths"], 4);
    assert_eq!(fill["already_present"], 0);
    assert_eq!(fill["uploaded_paths"], 4);
    assert_eq!(fill["uploaded_bytes"], 400 + 336 + 288 + 144);
    assert_eq!(fill["stored_bytes"], 400 + 336 + 288 + 144);
    assert!(case(&results, "cold").get("cache_fill").is_none());
    assert_eq!(server.counts(|c| c.puts), 4);
    assert_eq!(server.narinfo_files("main").len(), 4);
    assert!(
        server.counts(|c| c
            .log
            .iter()
            .any(|l| l.starts_with("GET /main/") && l.contains(".narinfo -> 200"))),
        "Nix read the narinfos the harness uploaded"
    );

    // A second run finds every path present and uploads nothing.
    let second = tmp.path().join("second.json");
    let out2 = run_ok(
        attic_run(repo.path(), &config, &second, &["--scenario", "warm"])
            .env("PATH", path_with(&bin)),
    );
    let results2 = read_json(&second);
    let fill = &case(&results2, "warm")["cache_fill"];
    assert_eq!(fill["uploaded_paths"], 0, "{fill}");
    assert_eq!(fill["already_present"], 4);
    assert_eq!(server.counts(|c| c.puts), 4, "no PUT the second time");

    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(
        argv.contains("store dump-path --store"),
        "NARs came from the primed store: {argv}"
    );
    assert!(
        argv.lines()
            .any(|l| l.starts_with("path-info --json -r --store")),
        "{argv}"
    );
    let mut texts = vec![
        (
            "the first results",
            std::fs::read_to_string(&first).unwrap(),
        ),
        (
            "the second results",
            std::fs::read_to_string(&second).unwrap(),
        ),
        ("every nix command line", argv),
    ];
    texts.extend(out_texts(&out));
    texts.extend(out_texts(&out2));
    assert_no_token(&token, &texts);
}

#[test]
fn under_nix_2_26_the_closure_is_filled_and_substituted_the_same() {
    // Nix 2.26 prints `path-info --json` as an object; the fill reads it the same way.
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let token = server.token(&[("main", PUSH)]);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let repo = closure_repo();
    main_profile(&work, &server, FROM_ENV);
    let out = Debian13::new()
        .with_harness()
        .bind(&work, "/work")
        .ro_bind(repo.path(), "/repo")
        .setenv(TOKEN_ENV, &token)
        .chdir("/work")
        .output(
            GUEST_HARNESS,
            &[
                "run",
                "--repo",
                "/repo",
                "--system",
                "nix",
                "--scenario",
                "warm",
                "--samples",
                "1",
                "--warmups",
                "0",
                "--profile",
                "attic",
                "--config",
                "/work/bench.toml",
                "--output",
                "/work/results.json",
                "--work-dir",
                "/work",
            ],
        );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read_json(&work.join("results.json"));
    assert!(results["environment"]["tools"]["nix"]["version"]
        .as_str()
        .unwrap()
        .contains("2.26"));
    let warm = case(&results, "warm");
    assert_eq!(warm["cache_fill"]["uploaded_paths"], 4, "{warm}");
    assert_eq!(warm["cache_fill"]["uploaded_bytes"], 400 + 336 + 288 + 144);
    assert_eq!(
        (
            warm["samples"][0]["built"].as_u64(),
            warm["samples"][0]["substituted"].as_u64()
        ),
        (Some(0), Some(3)),
        "{warm}"
    );
    assert_eq!(server.counts(|c| c.puts), 4);
}

#[test]
fn no_fill_measures_warm_with_a_pull_only_token_and_writes_nothing() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let repo = closure_repo();
    // Prefill through the API with a push token.
    let pusher = server.token(&[("main", PUSH)]);
    let config = main_profile(tmp.path(), &server, FROM_ENV);
    run_ok(
        attic_run(
            repo.path(),
            &config,
            &tmp.path().join("fill.json"),
            &["--scenario", "warm"],
        )
        .env(TOKEN_ENV, &pusher),
    );
    let (puts, queries) = server.counts(|c| (c.puts, c.missing_queries));
    assert_eq!(puts, 4);

    // Read-only, with a token that may only pull.
    let reader = server.token(&[("main", PULL)]);
    let (bin, argv_log) = recording_nix(tmp.path());
    let output = tmp.path().join("read-only.json");
    let out = run_ok(
        attic_run(
            repo.path(),
            &config,
            &output,
            &["--scenario", "warm", "--no-fill"],
        )
        .env(TOKEN_ENV, &reader)
        .env("PATH", path_with(&bin)),
    );
    assert_eq!(
        server.counts(|c| (c.puts, c.missing_queries)),
        (puts, queries),
        "no upload and no push-permission question"
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    assert_eq!(results["settings"]["fill"], false);
    let warm = case(&results, "warm");
    assert_eq!(warm["outcome"], "ok", "{warm}");
    assert_eq!(warm["cache_fill"]["method"], "read-only");
    assert_eq!(warm["cache_fill"]["hit_ratio"], 1.0, "the evidence: {warm}");
    assert_eq!(warm["samples"][0]["built"], 0);
    assert_eq!(warm["samples"][0]["substituted"], 3);
    // No priming build: the only build is the sample, reading the cache (besides the
    // run's sandbox probe).
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    let builds: Vec<&str> = argv
        .lines()
        .filter(|l| l.starts_with("build ") && !l.contains("sandbox-probe"))
        .collect();
    assert_eq!(builds.len(), 1, "{argv}");
    assert!(builds[0].contains("substituters"), "{argv}");
    let mut texts = vec![
        ("the results", std::fs::read_to_string(&output).unwrap()),
        ("nix command lines", argv),
    ];
    texts.extend(out_texts(&out));
    assert_no_token(&reader, &texts);
}

/// `fill` against Attic: each sample is a cold build whose closure then goes through the
/// API into a fresh cache the harness creates on the server and destroys after. The first
/// sample uploads every NAR; Attic keeps one copy of a NAR for all its caches, so later
/// samples' uploads are deduplicated, and the results say so.
#[test]
fn fill_against_attic_fills_a_fresh_cache_per_sample_and_destroys_it() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    // Creating caches next to `main` needs a grant beyond it.
    let token = server.token(&[("*", PUSH)]);
    let config = main_profile(tmp.path(), &server, FROM_ENV);
    let output = tmp.path().join("fill.json");
    let repo = closure_repo();
    let mut run = bin();
    run.current_dir(repo_root())
        .args(["run", "--system", "nix", "--warmups", "0", "--samples", "3"])
        .args(["--verdicts", "warn", "--profile", "attic"])
        .args(["--scenario", "cold", "--scenario", "fill"])
        .arg("--repo")
        .arg(repo.path())
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(&output)
        .env(TOKEN_ENV, &token);
    let out = run_ok(&mut run);
    let results = read_json(&output);
    assert_valid_results(&results);
    let fill = case(&results, "fill");
    assert_eq!(fill["outcome"], "ok", "{fill}");
    assert_eq!(fill["cache"]["backend"], "attic");
    let samples = fill["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    for (i, s) in samples.iter().enumerate() {
        let sent = &s["fill"];
        assert_eq!(sent["method"], "attic-api", "{s}");
        // The whole closure every time: each cache starts empty.
        assert_eq!(sent["closure_paths"], 4, "{s}");
        assert_eq!(sent["already_present"], 0, "{s}");
        assert_eq!(sent["uploaded_paths"], 4, "{s}");
        assert_eq!(sent["uploaded_bytes"], 1168, "{s}");
        let deduplicated = if i == 0 { 0 } else { 4 };
        assert_eq!(sent["deduplicated_paths"], deduplicated, "sample {i}: {s}");
        assert_eq!(s["from_team_cache"], 0, "a fill sample reads no cache: {s}");
    }
    assert_eq!(server.counts(|c| c.puts), 12);
    assert_eq!(
        server.cache_names(),
        vec!["main".to_string()],
        "every fresh cache destroyed, the team cache untouched"
    );
    assert!(server.narinfo_files("main").is_empty());
    let row = &results["fills"][0];
    assert_eq!(row["method"], "attic-api");
    assert_eq!(row["pairs"], 3, "{row}");
    let penalty = row["penalty"]["ratio"].as_f64().unwrap();
    assert!(
        row["penalty"]["ci_low"].as_f64().unwrap() <= penalty,
        "{row}"
    );
    assert!(
        row["penalty"]["ci_high"].as_f64().unwrap() >= penalty,
        "{row}"
    );
    assert_no_token(&token, &out_texts(&out));
    // The lead's evidence run keeps the file: FLYWHEEL_FILL_EVIDENCE=results/evidence/....
    if let Some(keep) = std::env::var_os("FLYWHEEL_FILL_EVIDENCE") {
        std::fs::copy(&output, repo_root().join(keep)).unwrap();
    }
}

/// A token that may not create caches: the fill case fails naming the permission.
#[test]
fn fill_without_the_right_to_create_caches_names_it() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let token = server.token(&[("main", PUSH)]);
    let config = main_profile(tmp.path(), &server, FROM_ENV);
    let output = tmp.path().join("fill.json");
    let out = run_exits(
        attic_run(
            closure_repo().path(),
            &config,
            &output,
            &["--scenario", "fill"],
        )
        .env(TOKEN_ENV, &token),
        1,
    );
    let results = read_json(&output);
    let fill = case(&results, "fill");
    assert_eq!(fill["outcome"], "failed", "{fill}");
    let reason = fill["reason"].as_str().unwrap();
    assert!(
        reason.contains("fresh Attic cache") && reason.contains("create-cache"),
        "{reason}"
    );
    assert_eq!(server.counts(|c| c.puts), 0, "nothing uploaded");
    assert_no_token(&token, &out_texts(&out));
}

#[test]
fn refusals_name_the_missing_permission_and_never_the_token() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let key = server.public_key("main");
    let refused = |cache: &str, key: &str, extra: &str, token: &str, flags: &[&str]| -> String {
        let config = profile(
            tmp.path(),
            &server.endpoint(),
            cache,
            key,
            &format!("{FROM_ENV}\n{extra}"),
        );
        let out = tiny_nix_run(&[&["--profile", "attic", "--scenario", "warm"], flags].concat())
            .env(TOKEN_ENV, token)
            .env("PATH", "/usr/bin:/bin")
            .arg("--config")
            .arg(&config)
            .arg("--output")
            .arg(tmp.path().join("refused.json"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(!err.contains(token), "the token leaked: {err}");
        err
    };
    let puller = server.token(&[("main", PULL)]);
    let err = refused("main", &key, "", &puller, &[]);
    assert!(
        err.contains("POST /_api/v1/get-missing-paths")
            && err.contains("403 Forbidden")
            && err.contains("lacks push permission"),
        "{err}"
    );
    assert!(err.contains("--no-fill"), "{err}");
    let err = refused("main", &key, "", "not-a-token-anyone-made", &[]);
    assert!(
        err.contains("GET /_api/v1/cache-config")
            && err.contains("401 Unauthorized")
            && err.contains("may not pull"),
        "{err}"
    );
    let everywhere = server.token(&[("*", PUSH)]);
    let err = refused("nope", &key, "", &everywhere, &[]);
    assert!(
        err.contains("the Attic cache `nope` does not exist"),
        "{err}"
    );
    let err = refused("main", "main-attic-test:AAAA", "", &everywhere, &[]);
    assert!(
        err.contains("is not the key the Attic cache `main` signs with") && err.contains(&key),
        "{err}"
    );
    // The CLI only when asked for, and then it must be there.
    let err = refused("main", &key, "push = \"cli\"", &everywhere, &[]);
    assert!(
        err.contains("`attic` CLI") && err.contains("push = \"api\""),
        "{err}"
    );
}

#[test]
fn a_nar_the_server_refuses_fails_the_case_naming_the_path() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    // Every NAR arrives with a flipped byte, as through a corrupting network.
    server.corrupt_uploads(true);
    let token = server.token(&[("main", PUSH)]);
    let config = main_profile(tmp.path(), &server, FROM_ENV);
    let output = tmp.path().join("r.json");
    let out = run_exits(
        attic_run(
            closure_repo().path(),
            &config,
            &output,
            &["--scenario", "warm"],
        )
        .env(TOKEN_ENV, &token),
        1,
    );
    let results = read_json(&output);
    let warm = case(&results, "warm");
    assert_eq!(warm["outcome"], "failed");
    let reason = warm["reason"].as_str().unwrap();
    assert!(
        reason.contains("uploading /nix/store/") && reason.contains("-refs-data to Attic failed"),
        "names the path: {reason}"
    );
    assert!(
        reason.contains("400 (RequestError: General request error: Bad NAR Hash or Size)"),
        "{reason}"
    );
    assert!(
        server.narinfo_files("main").is_empty(),
        "nothing was accepted"
    );
    assert_no_token(&token, &out_texts(&out));
}

#[test]
fn an_unreachable_attic_is_a_clear_preflight_error_without_the_token() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = profile(
        tmp.path(),
        "http://127.0.0.1:1",
        "main",
        "main:AAAA",
        FROM_ENV,
    );
    let token = "flywheel-attic-token-7f3a9c";
    let out = tiny_nix_run(&["--profile", "attic", "--scenario", "warm"])
        .env(TOKEN_ENV, token)
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(tmp.path().join("r.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the Attic cache http://127.0.0.1:1/main cannot be used: GET http://127.0.0.1:1/_api/v1/cache-config/main: "),
        "{err}"
    );
    assert!(!err.contains(token));
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

#[test]
fn the_attic_cli_is_used_when_the_profile_asks_and_never_sees_the_token() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let token = server.token(&[("main", PUSH)]);
    // The stand-in `attic`: records its arguments and store, checks its config names the
    // server, uploads nothing (no real CLI can be built here).
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = tmp.path().join("attic-calls.log");
    let stand_in = format!(
        "#!/bin/sh\nset -e\necho \"args: $*\" >> {log}\necho \"NIX_REMOTE=$NIX_REMOTE\" >> {log}\ngrep -q '^\\[servers.flywheel-bench\\]' \"$HOME/.config/attic/config.toml\"\n[ \"$1\" = push ] && [ \"$2\" = flywheel-bench:main ]\n",
        log = log.display(),
    );
    executable(&bin.join("attic"), &stand_in);
    let config = main_profile(
        tmp.path(),
        &server,
        &format!(
            "{FROM_ENV}
push = \"cli\""
        ),
    );
    let output = tmp.path().join("r.json");
    let out = run_ok(
        tiny_nix_run(&["--profile", "attic", "--scenario", "warm", "--samples", "1"])
            .env(TOKEN_ENV, &token)
            .env("PATH", path_with(&bin))
            .arg("--config")
            .arg(&config)
            .arg("--output")
            .arg(&output),
    );
    let results = read_json(&output);
    assert_eq!(case(&results, "warm")["cache_fill"]["method"], "attic-cli");
    assert_eq!(
        server.counts(|c| c.puts),
        0,
        "the CLI pushes, not the harness"
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
    let mut texts = vec![
        (
            "the results file",
            std::fs::read_to_string(&output).unwrap(),
        ),
        ("attic's arguments", calls),
    ];
    texts.extend(out_texts(&out));
    assert_no_token(&token, &texts);
}
