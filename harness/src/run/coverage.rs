//! `flywheel-bench coverage`: how much of each bench repo's Nix closure a cache holds now,
//! without building anything. The effects live here: each repo's targets instantiated in a
//! private chroot store (`nix derivation show [-r]`), every output path's narinfo asked of
//! the team cache (and, for what it lacks, of the upstream caches), concurrently and
//! bounded, authenticated as pulls are; a Bazel execution log's action digests asked of the
//! action cache. Classifying and rendering are pure (`results::coverage`,
//! `report::coverage`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::error::{exit_code, Error, IoContext, Result};
use crate::exec::http::{concurrently, Client, Method, Request};
use crate::exec::process::{self, run_captured, CommandSpec, Executor, ProcessExecutor};
use crate::exec::scratch::remove_tree;
use crate::plan::args::CoverageArgs;
use crate::plan::cache::BazelEndpoint;
use crate::plan::config::{parse_url, BazelCacheConfig, Env, NixCacheConfig, RunConfig};
use crate::plan::{manifest, RepoManifest};
use crate::results::coverage::Derivation;
use crate::results::coverage::{
    classify_actions, classify_closure, json_schema, Answer, BazelCoverage, Coverage,
    MissingAction, NixCoverage, RepoCoverage, COVERAGE_SCHEMA_VERSION,
};
use crate::results::CacheBackend;
use crate::tools::bazel_log::{Digest, ExecLogReader};
use crate::tools::narinfo::{narinfo_field, narinfo_name, NarinfoSource};
use crate::tools::nix::{target_args, NixDriver};
use crate::tools::nix_derivations::{parse_derivations, show_command};
use crate::tools::nix_log::NixVersion;

/// One action-cache request may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The team cache of the run's configuration, as coverage reads it.
pub fn team_source(config: &NixCacheConfig) -> Result<NarinfoSource> {
    match config {
        NixCacheConfig::Embedded => Err(Error::Usage(
            "coverage asks an existing cache, but the profile's Nix cache is the embedded one, which exists only during a run\n  fix: pass --nix-cache URL --nix-cache-public-key KEY, or --profile NAME with an attic, http or file backend".into(),
        )),
        NixCacheConfig::External(cache) => NarinfoSource::of(cache)
            .map_err(|why| Error::Usage(format!("coverage cannot ask the Nix cache: {why}"))),
    }
}

/// What `cache` holds of `path`: its narinfo's references when it has one.
pub fn ask(client: &Client, cache: &NarinfoSource, path: &str) -> Answer {
    match cache.narinfo(client, path) {
        Ok(reply) if reply.status == 200 => present(&reply.body),
        Ok(reply) if matches!(reply.status, 404 | 410) => Answer::Missing,
        Ok(reply) => Answer::Failed(format!(
            "GET {}/{} answered {}",
            cache.describe().trim_end_matches('/'),
            narinfo_name(path).unwrap_or_default(),
            reply.status
        )),
        Err(e) => Answer::Failed(e),
    }
}

/// A narinfo's answer: present, with the full paths of its `References:` and its `NarSize:`.
fn present(narinfo: &str) -> Answer {
    let references = narinfo_field(narinfo, "References")
        .unwrap_or_default()
        .split_whitespace()
        .map(|base| format!("/nix/store/{base}"))
        .collect();
    let nar_size = narinfo_field(narinfo, "NarSize").and_then(|n| n.parse().ok());
    Answer::Present {
        references,
        nar_size,
    }
}

/// Asks `cache` about every path, at most `limit` at a time; answers in the paths' order.
pub fn ask_all(
    client: &Client,
    cache: &NarinfoSource,
    paths: &[String],
    limit: usize,
) -> Vec<Answer> {
    concurrently(paths, limit, |path| ask(client, cache, path))
}

/// Every output path of the closure, and what the team cache (then the upstream caches,
/// for what it lacks) says about each.
pub fn answers_for(
    client: &Client,
    team: &NarinfoSource,
    upstream: &[NarinfoSource],
    derivations: &[Derivation],
    limit: usize,
) -> BTreeMap<String, Answer> {
    let paths: Vec<String> = derivations
        .iter()
        .flat_map(|d| d.outputs.values().flatten().cloned())
        .collect();
    let mut answers: BTreeMap<String, Answer> = paths
        .iter()
        .cloned()
        .zip(ask_all(client, team, &paths, limit))
        .collect();
    for cache in upstream {
        let lacking: Vec<String> = answers
            .iter()
            .filter(|(_, a)| **a == Answer::Missing)
            .map(|(p, _)| p.clone())
            .collect();
        for (path, answer) in lacking.iter().zip(ask_all(client, cache, &lacking, limit)) {
            if let Answer::Present {
                references,
                nar_size,
            } = answer
            {
                answers.insert(
                    path.clone(),
                    Answer::Upstream {
                        references,
                        nar_size,
                    },
                );
            }
        }
    }
    answers
}

/// How targets are instantiated: Nix with the driver's private configuration.
struct Instantiator<'a> {
    driver: &'a NixDriver,
    nix: &'a Path,
    version: Option<NixVersion>,
    timeout: Duration,
    exec: &'a dyn Executor,
}

impl Instantiator<'_> {
    /// Instantiates `repo`'s Nix targets into `store` (nothing is built): the derivations
    /// of the targets, from evaluating them once, then of their whole closure, read from
    /// the derivations now in the store.
    fn instantiate(
        &self,
        repo: &RepoManifest,
        source: &Path,
        store: &Path,
    ) -> std::result::Result<(Vec<Derivation>, Vec<Derivation>), String> {
        let targets = repo
            .nix
            .as_ref()
            .ok_or_else(|| format!("{} has no [nix] targets", repo.name))?;
        let show = |what: Vec<OsString>| -> std::result::Result<Vec<Derivation>, String> {
            let mut args: Vec<OsString> = show_command(self.version)
                .iter()
                .map(OsString::from)
                .collect();
            args.extend(["--store".into(), store.as_os_str().to_owned()]);
            args.extend(what);
            let env = self.driver.env(&store.with_extension("xdg-cache"));
            let spec = CommandSpec::new(self.nix, args, self.timeout).env(env);
            let out = run_captured(self.exec, spec).map_err(|e| e.to_string())?;
            if !out.outcome.success() {
                return Err(format!(
                    "instantiating the Nix targets failed ({}): {}",
                    out.outcome.describe(),
                    out.stderr.trim()
                ));
            }
            parse_derivations(&out.stdout)
        };
        let roots = show(target_args(targets, source, &repo.tool_parameters()))?;
        let mut closure_of: Vec<OsString> = vec!["-r".into()];
        closure_of.extend(roots.iter().map(|d| OsString::from(&d.drv)));
        let closure = show(closure_of)?;
        Ok((roots, closure))
    }
}

/// Only what coverage reads of a spawn.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpawnDigest {
    #[serde(default)]
    digest: Option<Digest>,
    #[serde(default)]
    mnemonic: String,
    #[serde(default)]
    listed_outputs: Vec<String>,
    #[serde(default)]
    remote_cacheable: bool,
}

/// The remote-cacheable actions of an execution log that carry a digest, and how many
/// spawns it has in all.
pub fn logged_actions(log: &Path) -> Result<(Vec<MissingAction>, usize)> {
    let file = std::fs::File::open(log).context(|| format!("opening {}", log.display()))?;
    let mut reader = ExecLogReader::new(std::io::BufReader::new(file), &log.display().to_string());
    let mut actions = Vec::new();
    let mut spawns = 0;
    while let Some(spawn) = reader.next_as::<SpawnDigest>().map_err(Error::Usage)? {
        spawns += 1;
        if let (Some(digest), true) = (spawn.digest, spawn.remote_cacheable) {
            actions.push(MissingAction {
                digest: digest.text(),
                mnemonic: spawn.mnemonic,
                output: spawn.listed_outputs.into_iter().next(),
            });
        }
    }
    Ok((actions, spawns))
}

/// An action cache as coverage asks it.
enum ActionCache {
    Http {
        base: Url,
        headers: Vec<(String, String)>,
    },
    /// A `--disk_cache` folder (`ac/<hash>` or, since Bazel 5, `ac/<2 chars>/<hash>`).
    Folder(PathBuf),
}

impl ActionCache {
    /// The profile's Bazel cache, or why it cannot be asked.
    fn from_config(config: &BazelCacheConfig) -> std::result::Result<ActionCache, String> {
        let cache =
            match config {
                BazelCacheConfig::Embedded => return Err(
                    "the profile's Bazel cache is the embedded one, which exists only during a run"
                        .into(),
                ),
                BazelCacheConfig::External(cache) => cache,
            };
        match &cache.endpoint {
            BazelEndpoint::Disk(path) => Ok(ActionCache::Folder(path.clone())),
            BazelEndpoint::Remote(url) if cache.backend == CacheBackend::Grpc => Err(format!(
                "{url} speaks gRPC, and the harness has no gRPC client for GetActionResult; bazel-remote's HTTP port serves the same entries under /ac/"
            )),
            BazelEndpoint::Remote(url) => Ok(ActionCache::Http {
                base: url.clone(),
                headers: cache
                    .headers
                    .iter()
                    .filter_map(|h| h.expose().split_once('='))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect(),
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            ActionCache::Http { base, .. } => crate::boundary::public_url(base),
            ActionCache::Folder(dir) => dir.display().to_string(),
        }
    }

    fn ask(&self, client: &Client, action: &MissingAction) -> Answer {
        let hash = action.digest.split('/').next().unwrap_or_default();
        match self {
            ActionCache::Folder(dir) => {
                let nested = dir
                    .join("ac")
                    .join(hash.get(..2).unwrap_or(hash))
                    .join(hash);
                let flat = dir.join("ac").join(hash);
                if nested.is_file() || flat.is_file() {
                    Answer::held()
                } else {
                    Answer::Missing
                }
            }
            ActionCache::Http { base, headers } => {
                let text = format!("{}/ac/{hash}", base.as_str().trim_end_matches('/'));
                let url = match Url::parse(&text) {
                    Ok(url) => url,
                    Err(e) => return Answer::Failed(format!("{text}: {e}")),
                };
                let mut request = Request::new(Method::Get, &url, REQUEST_TIMEOUT);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                match client.send(request) {
                    Ok(a) if a.status == 200 => Answer::held(),
                    Ok(a) if a.status == 404 => Answer::Missing,
                    Ok(a) => Answer::Failed(format!("GET {url} answered {}", a.status)),
                    Err(e) => Answer::Failed(e.to_string()),
                }
            }
        }
    }
}

/// Why a Bazel repo without an execution log is not measured.
const NO_LOG: &str = "Bazel action digests come only from an execution log of a build (pass --bazel-exec-log FILE from a build with --execution_log_json_file); the harness does not guess them";

fn bazel_coverage(
    client: &Client,
    cache: &std::result::Result<ActionCache, String>,
    log: &Path,
    limit: usize,
) -> Result<BazelCoverage> {
    let (actions, spawns) = logged_actions(log)?;
    if actions.is_empty() {
        return Ok(BazelCoverage::not_measured(format!(
            "the execution log {} has no action digests in its {spawns} spawns (Bazel 4.2.3's JSON log records none; a log that records `digest` per spawn, written with a remote or disk cache on, can be checked)",
            log.display()
        )));
    }
    let cache = match cache {
        Ok(cache) => cache,
        Err(why) => return Ok(BazelCoverage::not_measured(why.clone())),
    };
    let answers = concurrently(&actions, limit, |a| cache.ask(client, a));
    Ok(classify_actions(
        &actions.into_iter().zip(answers).collect::<Vec<_>>(),
    ))
}

/// `nix --version`, parsed.
fn nix_version(nix: &Path, exec: &dyn Executor) -> Option<NixVersion> {
    let spec = CommandSpec::new(nix, vec!["--version".into()], Duration::from_secs(20));
    let out = run_captured(exec, spec).ok()?;
    NixVersion::parse(&out.stdout)
}

/// The coverage subcommand: writes the JSON, prints the Markdown. Exits 1 when a repo could
/// not be measured (its `errors` say why).
/// The coverage subcommand: resolves the configuration as `run` does, measures every
/// selected repo and writes the JSON and Markdown. `command` is recorded as given.
pub fn run(args: &CoverageArgs, env: &Env, command: Vec<String>) -> Result<i32> {
    if args.schema {
        print!("{}", json_schema());
        return Ok(exit_code::OK);
    }
    let profile = crate::plan::profile::load_from(args.config.as_deref(), &env.cwd, &args.profile)?;
    let config = RunConfig::resolve(&args.run_args(), &profile, env)?;
    let output = args.output.clone().unwrap_or_else(|| {
        let stamp = env.now.format("%Y-%m-%dT%H-%M-%SZ");
        env.cwd
            .join("results")
            .join(format!("coverage-{stamp}.json"))
    });
    crate::exec::checks::check_output_paths([
        ("--output", Some(output.as_path())),
        ("--markdown", args.markdown.as_deref()),
    ])?;
    crate::exec::checks::check_work_dir(&config.work_dir)?;
    // The profile's upstream layer, then any named with --upstream.
    let mut upstream: Vec<Url> = config.nix.upstream.iter().map(|u| u.url.clone()).collect();
    for u in &args.upstream {
        let url = parse_url(u, "--upstream", "https://cache.nixos.org")?;
        upstream.push(url);
    }
    let upstream = upstream
        .iter()
        .map(|url| NarinfoSource::at(url, None).map_err(Error::Usage))
        .collect::<Result<Vec<_>>>()?;
    process::install_interrupt_handler()?;
    let exec = ProcessExecutor;
    // Every selected repo, whichever lanes it declares: coverage builds nothing.
    let mut repos = manifest::select(&config.repos)?;
    crate::plan::require_repos(&repos)?;
    crate::run::sources::fetch_sources(&mut repos, &exec, &config.checkout_cache)?;
    let doc = measure(args, &config, &repos, upstream, command, &exec)?;
    let json = serde_json::to_string_pretty(&doc).expect("the document serialises") + "\n";
    crate::results::writer::write_atomic(&output, json.as_bytes())?;
    let markdown = crate::report::coverage::render(&doc);
    if let Some(path) = &args.markdown {
        crate::results::writer::write_atomic(path, markdown.as_bytes())?;
    }
    print!("{markdown}");
    println!("coverage: {}", output.display());
    Ok(if doc.repos.iter().any(|r| !r.errors.is_empty()) {
        exit_code::CASE_FAILED
    } else {
        exit_code::OK
    })
}

/// What the caches hold of each of `repos`, asked concurrently; a repo that cannot be
/// measured carries its errors and the others go on.
fn measure(
    args: &CoverageArgs,
    config: &RunConfig,
    repos: &[RepoManifest],
    upstream: Vec<NarinfoSource>,
    command: Vec<String>,
    exec: &dyn Executor,
) -> Result<Coverage> {
    let client = Client::new(&config.proxies).map_err(Error::Environment)?;
    let uses_nix = repos.iter().any(|r| r.nix.is_some());
    let team = uses_nix
        .then(|| team_source(&config.nix_cache))
        .transpose()?;
    if let Some(team) = &team {
        team.check(&client).map_err(|why| {
            Error::Environment(format!(
                "the cache {} cannot be read: {why}\n  fix: check the URL, and that the token (if any) may pull from it",
                team.describe()
            ))
        })?;
    }
    let bazel_repos = repos.iter().filter(|r| r.bazel.is_some()).count();
    if args.bazel_exec_log.is_some() && bazel_repos != 1 {
        return Err(Error::Usage(format!(
            "--bazel-exec-log belongs to one repo's build, and {bazel_repos} of the selected repos have Bazel targets\n  fix: select that repo alone with --repo"
        )));
    }
    let action_cache = ActionCache::from_config(&config.bazel_cache);
    let mut doc = Coverage {
        schema_version: COVERAGE_SCHEMA_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").into(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command,
        profile: config.profile.clone(),
        nix_cache: team.as_ref().map(NarinfoSource::describe),
        upstream: upstream.iter().map(NarinfoSource::describe).collect(),
        bazel_cache: action_cache.as_ref().ok().map(ActionCache::describe),
        repos: Vec::new(),
    };
    let nix = uses_nix
        .then(|| {
            crate::tools::require("nix", "to instantiate the Nix targets", &config.search_path)
        })
        .transpose()?;
    let scratch = crate::run::session::new_scratch(&config.work_dir)?;
    let driver = nix
        .as_ref()
        .map(|nix| {
            NixDriver::new(
                nix.clone(),
                &scratch.path().join("nix"),
                None,
                config.nix.clone(),
            )
        })
        .transpose()?;
    let measurer = Measurer {
        args,
        client: &client,
        upstream: &upstream,
        action_cache: &action_cache,
        nix: match (&nix, &driver, &team) {
            (Some(nix), Some(driver), Some(team)) => Some((
                Instantiator {
                    driver,
                    nix,
                    version: nix_version(nix, exec),
                    timeout: config.settings.timeout,
                    exec,
                },
                team,
            )),
            _ => None,
        },
        scratch: scratch.path(),
    };
    for (index, repo) in repos.iter().enumerate() {
        process::check_interrupted()?;
        doc.repos.push(measurer.repo(index, repo)?);
    }
    Ok(doc)
}

/// What one repo's coverage is measured with.
struct Measurer<'a> {
    args: &'a CoverageArgs,
    client: &'a Client,
    upstream: &'a [NarinfoSource],
    action_cache: &'a std::result::Result<ActionCache, String>,
    /// With Nix targets to measure: how to instantiate them, and the team cache.
    nix: Option<(Instantiator<'a>, &'a NarinfoSource)>,
    scratch: &'a Path,
}

impl Measurer<'_> {
    /// Repo `index` of the selection; its temporary store is removed before this returns.
    fn repo(&self, index: usize, repo: &RepoManifest) -> Result<RepoCoverage> {
        let mut entry = RepoCoverage {
            repo: repo.name.clone(),
            parameters: repo.parameters.clone(),
            nix: None,
            bazel: None,
            errors: Vec::new(),
        };
        if let (Some((instantiator, team)), Some(_)) = (&self.nix, &repo.nix) {
            let store = self.scratch.join(format!("store-{index}"));
            let measured = repo
                .source
                .local_path()
                .ok_or_else(|| "its source could not be fetched".to_string())
                .and_then(|source| instantiator.instantiate(repo, source, &store))
                .map(|(roots, closure)| -> NixCoverage {
                    let roots: Vec<String> = roots.into_iter().map(|d| d.drv).collect();
                    let answers = answers_for(
                        self.client,
                        team,
                        self.upstream,
                        &closure,
                        self.args.concurrency,
                    );
                    classify_closure(&closure, &roots, &answers)
                });
            remove_tree(&store).context(|| format!("removing {}", store.display()))?;
            match measured {
                Ok(coverage) => entry.nix = Some(coverage),
                Err(why) => entry.errors.push(format!("Nix: {why}")),
            }
        }
        if repo.bazel.is_some() {
            entry.bazel = Some(match &self.args.bazel_exec_log {
                Some(log) => {
                    bazel_coverage(self.client, self.action_cache, log, self.args.concurrency)?
                }
                None => BazelCoverage::not_measured(NO_LOG),
            });
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narinfo_references_become_full_paths() {
        let text = "StorePath: /nix/store/abc-app\nNarSize: 16816\nReferences: def-lib ghi-data\nSig: k:x\n";
        assert_eq!(
            present(text),
            Answer::Present {
                references: vec!["/nix/store/def-lib".into(), "/nix/store/ghi-data".into()],
                nar_size: Some(16816),
            }
        );
        assert_eq!(
            present("StorePath: /nix/store/abc-app\nReferences: \n"),
            Answer::held()
        );
    }

    #[test]
    fn folders_and_urls_of_caches() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_file_path(dir.path()).unwrap();
        let cache = NarinfoSource::at(&url, None).unwrap();
        let client = Client::new(&Default::default()).unwrap();
        std::fs::write(
            dir.path().join("abcd1234abcd1234abcd1234abcd1234.narinfo"),
            "References: \n",
        )
        .unwrap();
        assert_eq!(
            ask(
                &client,
                &cache,
                "/nix/store/abcd1234abcd1234abcd1234abcd1234-x"
            ),
            Answer::held()
        );
        assert_eq!(
            ask(
                &client,
                &cache,
                "/nix/store/0000000000000000000000000000000-y"
            ),
            Answer::Missing
        );
        assert!(team_source(&NixCacheConfig::Embedded)
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("--nix-cache URL"));
    }

    #[test]
    fn a_log_without_digests_is_said_to_have_none() {
        // Recorded with Bazel 4.2.3: its JSON execution log has no action digests.
        let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bazel/warm.exec.json");
        let (actions, spawns) = logged_actions(&log).unwrap();
        assert!(actions.is_empty() && spawns > 0);
        let client = Client::new(&Default::default()).unwrap();
        let c = bazel_coverage(&client, &Err("unused".into()), &log, 4).unwrap();
        assert!(!c.measured);
        assert!(c.reason.unwrap().contains("no action digests"));
    }

    #[test]
    fn logged_digests_are_looked_up_in_a_disk_cache() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("exec.json");
        // The shape of a log that records `digest` (spawn.proto's SpawnExec field 19).
        std::fs::write(
            &log,
            r#"{"mnemonic":"CppCompile","listedOutputs":["bazel-out/a.o"],"remoteCacheable":true,"digest":{"hash":"aa11","sizeBytes":"140","hashFunctionName":"SHA-256"}}
{"mnemonic":"CppLink","listedOutputs":["bazel-out/app"],"remoteCacheable":true,"digest":{"hash":"bb22","sizeBytes":"99"}}
{"mnemonic":"Genrule","remoteCacheable":false,"digest":{"hash":"cc33","sizeBytes":"1"}}"#,
        )
        .unwrap();
        let disk = dir.path().join("disk");
        std::fs::create_dir_all(disk.join("ac/aa")).unwrap();
        std::fs::write(disk.join("ac/aa/aa11"), b"x").unwrap();
        let client = Client::new(&Default::default()).unwrap();
        let c = bazel_coverage(&client, &Ok(ActionCache::Folder(disk)), &log, 4).unwrap();
        assert!(c.measured);
        assert_eq!(
            (c.actions, c.present, c.missing),
            (2, 1, 1),
            "the uncacheable spawn is left out"
        );
        assert_eq!(c.missing_actions[0].digest, "bb22/99");
        assert_eq!(
            c.missing_actions[0].output.as_deref(),
            Some("bazel-out/app")
        );
        assert!(ActionCache::from_config(&BazelCacheConfig::External(
            crate::plan::cache::BazelCache {
                backend: CacheBackend::Grpc,
                endpoint: BazelEndpoint::Remote(Url::parse("grpc://c:9092").unwrap()),
                headers: vec![],
                read_only: false,
                fill_root: None,
            }
        ))
        .err()
        .unwrap()
        .contains("gRPC"));
    }
}
