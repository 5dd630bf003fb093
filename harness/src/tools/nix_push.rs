//! Fills an Attic cache through its API from a primed chroot store, without the `attic`
//! CLI: the closure's details from `nix path-info --json -r`, the paths the cache lacks
//! from get-missing-paths, then each missing path's NAR (`nix store dump-path`) checked
//! against its NAR hash and uploaded, references before the paths that need them, a few
//! at a time, each request with its own timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::{CaseFailure, IoContext, StepResult};
use crate::exec::http::{concurrently, Client};
use crate::exec::process::{self, run_captured, CommandSpec, Executor};
use crate::exec::scratch::remove_tree;
use crate::plan::cache::NixCache;
use crate::plan::proxies::Proxies;
use crate::results::{CacheFill, FillMethod};
use crate::tools::attic_api::{store_path_hash, AtticApi, UploadAnswer, UploadInfo};
use crate::tools::hex;
use crate::tools::nix_log::{parse_path_details, PathDetails};

/// Uploads in flight at once.
pub const PARALLEL_UPLOADS: usize = 4;
const PATH_INFO_TIMEOUT: Duration = Duration::from_secs(300);

/// A primed store and how to run Nix against it.
pub struct PrimedStore<'a> {
    pub nix: &'a Path,
    pub store: &'a Path,
    /// The driver's private Nix environment.
    pub env: Vec<(String, OsString)>,
    /// A private folder for the NARs on their way out; removed afterwards.
    pub scratch: PathBuf,
}

/// The paths to upload in rounds: each round's references are in the cache (or in an
/// earlier round) before it starts. Pure.
pub fn upload_rounds(paths: Vec<PathDetails>) -> Vec<Vec<PathDetails>> {
    let names: BTreeSet<String> = paths.iter().map(|p| p.path.clone()).collect();
    let mut round_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut left = paths;
    let mut rounds: Vec<Vec<PathDetails>> = Vec::new();
    while !left.is_empty() {
        let (ready, waiting): (Vec<PathDetails>, Vec<PathDetails>) =
            left.into_iter().partition(|p| {
                p.references
                    .iter()
                    .filter(|r| **r != p.path && names.contains(*r))
                    .all(|r| round_of.contains_key(r))
            });
        if ready.is_empty() {
            // A reference cycle cannot come from a store; upload what is left together.
            rounds.push(waiting);
            break;
        }
        for p in &ready {
            round_of.insert(p.path.clone(), rounds.len());
        }
        rounds.push(ready);
        left = waiting;
    }
    rounds
}

/// What the server said about every upload, summed. Pure.
pub fn summarise(closure: usize, uploads: &[(u64, UploadAnswer)], wall: Duration) -> CacheFill {
    let uploaded_bytes: u64 = uploads.iter().map(|(size, _)| size).sum();
    let stored: Vec<u64> = uploads.iter().filter_map(|(_, a)| a.file_size).collect();
    let with_fraction: Vec<(u64, f64)> = uploads
        .iter()
        .filter_map(|(size, a)| a.frac_deduplicated.map(|f| (*size, f)))
        .collect();
    let weight: u64 = with_fraction.iter().map(|(size, _)| size).sum();
    CacheFill {
        method: FillMethod::AtticApi,
        closure_paths: Some(closure as u64),
        already_present: Some((closure - uploads.len()) as u64),
        uploaded_paths: Some(uploads.len() as u64),
        deduplicated_paths: Some(
            uploads
                .iter()
                .filter(|(_, a)| a.kind.as_deref() == Some("Deduplicated"))
                .count() as u64,
        ),
        uploaded_bytes: Some(uploaded_bytes),
        stored_bytes: (!stored.is_empty()).then(|| stored.iter().sum()),
        dedup_fraction: (weight > 0).then(|| {
            with_fraction
                .iter()
                .map(|(size, f)| *size as f64 * f)
                .sum::<f64>()
                / weight as f64
        }),
        wall_s: wall.as_secs_f64(),
        in_build: false,
        hit_ratio: None,
    }
}

/// Uploads the closure of `outputs` that the cache lacks. Every failure of Nix or the server
/// fails the case, naming the path and the server's reason.
pub fn fill_attic(
    cache: &NixCache,
    proxies: &Proxies,
    store: &PrimedStore,
    outputs: &[String],
    exec: &dyn Executor,
    upload_timeout: Duration,
) -> StepResult<CacheFill> {
    let started = Instant::now();
    let closure = closure_details(store, outputs, exec)?;
    let token = cache.token()?;
    let (endpoint, name) = cache.attic_server()?;
    let client = Client::new(proxies).map_err(CaseFailure::new)?;
    let api = AtticApi {
        client: &client,
        endpoint: &endpoint,
        cache: &name,
        token,
    };
    let hashes = closure
        .iter()
        .map(|p| store_path_hash(&p.path))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(CaseFailure::new)?;
    let missing: BTreeSet<String> = api
        .missing_paths(&hashes)
        .map_err(|e| CaseFailure::new(format!("asking Attic which paths it lacks failed: {e}")))?
        .into_iter()
        .collect();
    let to_upload: Vec<PathDetails> = closure
        .iter()
        .zip(&hashes)
        .filter(|(_, hash)| missing.contains(*hash))
        .map(|(p, _)| p.clone())
        .collect();
    std::fs::create_dir_all(&store.scratch)
        .context(|| format!("creating {}", store.scratch.display()))?;
    let mut uploads: Vec<(u64, UploadAnswer)> = Vec::new();
    let outcome = (|| -> StepResult<()> {
        for round in upload_rounds(to_upload) {
            process::check_interrupted()?;
            let answers = concurrently(&round, PARALLEL_UPLOADS, |path| {
                upload_one(&api, store, path, exec, upload_timeout)
            });
            for (path, answer) in round.iter().zip(answers) {
                uploads.push((path.nar_size.unwrap_or(0), answer?));
            }
        }
        Ok(())
    })();
    remove_tree(&store.scratch).context(|| format!("removing {}", store.scratch.display()))?;
    outcome?;
    Ok(summarise(closure.len(), &uploads, started.elapsed()))
}

/// A `fill` sample against Attic: creates the fresh, empty cache `fresh` on the server,
/// fills it through the API with the closure of `outputs`, and destroys it again (also
/// when the fill failed). Attic keeps one copy of a NAR for all its caches, so what it
/// already held from earlier samples is deduplicated: the fill says so.
pub fn fill_fresh_attic(
    cache: &NixCache,
    fresh: &str,
    proxies: &Proxies,
    store: &PrimedStore,
    outputs: &[String],
    exec: &dyn Executor,
    upload_timeout: Duration,
) -> StepResult<CacheFill> {
    let token = cache.token()?;
    let (endpoint, _) = cache.attic_server()?;
    let client = Client::new(proxies).map_err(CaseFailure::new)?;
    let api = AtticApi {
        client: &client,
        endpoint: &endpoint,
        cache: fresh,
        token,
    };
    api.create_cache().map_err(|e| {
        CaseFailure::new(format!(
            "creating the fill sample's fresh Attic cache failed: {e}"
        ))
    })?;
    let target = NixCache {
        url: crate::plan::cache::attic_url(&endpoint, fresh)?,
        ..cache.clone()
    };
    let filled = fill_attic(&target, proxies, store, outputs, exec, upload_timeout);
    let destroyed = api.destroy_cache().map_err(|e| {
        CaseFailure::new(format!(
            "destroying the fill sample's fresh Attic cache failed: {e}"
        ))
    });
    let fill = filled?;
    destroyed?;
    Ok(fill)
}

/// `nix path-info --json -r` of the outputs in the primed store.
pub fn closure_details(
    store: &PrimedStore,
    outputs: &[String],
    exec: &dyn Executor,
) -> StepResult<Vec<PathDetails>> {
    let mut args: Vec<OsString> = ["path-info", "--json", "-r", "--store"]
        .map(OsString::from)
        .into();
    args.push(store.store.into());
    args.extend(outputs.iter().map(OsString::from));
    let out = run_captured(
        exec,
        CommandSpec::new(store.nix, args, PATH_INFO_TIMEOUT).env(store.env.clone()),
    )?;
    if !out.outcome.success() {
        return Err(CaseFailure::new(format!(
            "`nix path-info -r` of the primed outputs failed ({}): {}",
            out.outcome.describe(),
            out.stderr.trim()
        ))
        .into());
    }
    Ok(parse_path_details(&out.stdout).map_err(CaseFailure::new)?)
}

/// Dumps one path's NAR from the primed store, checks it is the NAR `nix path-info`
/// described, and uploads it.
fn upload_one(
    api: &AtticApi,
    store: &PrimedStore,
    path: &PathDetails,
    exec: &dyn Executor,
    timeout: Duration,
) -> StepResult<UploadAnswer> {
    let failed =
        |why: String| CaseFailure::new(format!("uploading {} to Attic failed: {why}", path.path));
    let info = UploadInfo::new(api.cache, path).map_err(failed)?;
    let nar = store.scratch.join(format!("{}.nar", info.store_path_hash));
    let mut spec = CommandSpec::new(
        store.nix,
        vec![
            "store".into(),
            "dump-path".into(),
            "--store".into(),
            store.store.into(),
            path.path.clone().into(),
        ],
        timeout,
    )
    .env(store.env.clone());
    spec.stdout = nar.clone();
    spec.stderr = store
        .scratch
        .join(format!("{}.stderr", info.store_path_hash));
    let outcome = exec.run(&spec)?;
    if !outcome.success() {
        let stderr = std::fs::read_to_string(&spec.stderr).unwrap_or_default();
        return Err(failed(format!(
            "`nix store dump-path` {}: {}",
            outcome.describe(),
            stderr.trim()
        ))
        .into());
    }
    let (digest, size) = sha256_of(&nar).context(|| format!("reading {}", nar.display()))?;
    let dumped = format!("sha256:{}", hex(&digest));
    if dumped != info.nar_hash || size != info.nar_size {
        return Err(failed(format!(
            "the dumped NAR ({dumped}, {size} bytes) is not the one the store records ({}, {} bytes)",
            info.nar_hash, info.nar_size
        ))
        .into());
    }
    let answer = api.upload(&info, &nar, timeout).map_err(failed);
    let _ = std::fs::remove_file(&nar);
    let _ = std::fs::remove_file(&spec.stderr);
    Ok(answer?)
}

fn sha256_of(file: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut reader = std::fs::File::open(file)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> Vec<PathDetails> {
        parse_path_details(&crate::tools::fixture("nix/closure/path-info-r.json")).unwrap()
    }

    #[test]
    fn references_go_up_first() {
        let rounds = upload_rounds(details());
        let names: Vec<Vec<&str>> = rounds
            .iter()
            .map(|r| {
                r.iter()
                    .map(|p| crate::tools::nix_log::store_name(&p.path))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["refs-data", "refs-note"],
                vec!["refs-lib"],
                vec!["refs-app"]
            ]
        );
        // References the cache already has do not hold a path back.
        let only_app: Vec<PathDetails> = details()
            .into_iter()
            .filter(|p| p.path.ends_with("-refs-app"))
            .collect();
        assert_eq!(upload_rounds(only_app).len(), 1);
        assert!(upload_rounds(Vec::new()).is_empty());
    }

    #[test]
    fn sums_what_the_server_said() {
        let answer = |kind: &str, file_size, frac| UploadAnswer {
            kind: Some(kind.into()),
            file_size,
            frac_deduplicated: frac,
        };
        let fill = summarise(
            5,
            &[
                (300, answer("Uploaded", Some(100), Some(0.0))),
                (100, answer("Deduplicated", None, Some(1.0))),
            ],
            Duration::from_millis(1500),
        );
        assert_eq!(fill.method, FillMethod::AtticApi);
        assert_eq!(fill.closure_paths, Some(5));
        assert_eq!(fill.already_present, Some(3));
        assert_eq!(fill.uploaded_paths, Some(2));
        assert_eq!(fill.deduplicated_paths, Some(1));
        assert_eq!(fill.uploaded_bytes, Some(400));
        assert_eq!(fill.stored_bytes, Some(100));
        assert_eq!(fill.dedup_fraction, Some(0.25), "weighted by NAR size");
        assert_eq!(fill.wall_s, 1.5);
        let nothing = summarise(4, &[], Duration::ZERO);
        assert_eq!(
            (nothing.uploaded_paths, nothing.already_present),
            (Some(0), Some(4))
        );
        assert_eq!((nothing.stored_bytes, nothing.dedup_fraction), (None, None));
    }
}
