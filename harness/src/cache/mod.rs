//! Caches the warm builds read from. The embedded cache (nginx on loopback, a per-run
//! Nix signing key) and external caches both end up as a `NixCache` / `BazelCache` value.

pub mod attic;
pub mod http;
pub mod nginx;
pub mod proxy;
pub mod reapi;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::run::process::{run_captured, CommandSpec, Executor};
use crate::tools::bazel::BazelCache;
use crate::tools::nix::NixCache;
use nginx::Nginx;

const KEY_TIMEOUT: Duration = Duration::from_secs(60);
const NIX_CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";

/// The embedded cache server: one nginx serving a Nix binary cache under `/nix` and a
/// Bazel HTTP cache under `/bazel`; stopped when dropped.
pub struct EmbeddedCache {
    server: Nginx,
    dir: PathBuf,
}

impl EmbeddedCache {
    /// `dir` must be private to the harness: it will hold the Nix signing key.
    pub fn start(nginx: &Path, dir: &Path) -> Result<Self> {
        let server = Nginx::start(nginx, &dir.join("nginx"))?;
        let info = server.root().join("nix/nix-cache-info");
        std::fs::write(&info, NIX_CACHE_INFO).context(|| format!("writing {}", info.display()))?;
        Ok(EmbeddedCache {
            server,
            dir: dir.to_path_buf(),
        })
    }

    /// The Nix side, with a signing key generated for this run only.
    pub fn nix_cache(&self, nix: &Path, exec: &dyn Executor) -> Result<NixCache> {
        let secret = self.dir.join("signing-key.sec");
        let key_name = format!("flywheel-bench-{}", self.server.addr().port());
        let generated = nix_key(
            exec,
            nix,
            &["generate-secret", "--key-name", &key_name],
            None,
        )?;
        crate::scratch::write_private(&secret, generated.as_bytes())?;
        let public_key = nix_key(exec, nix, &["convert-secret-to-public"], Some(&secret))?;
        let url = self.server.url("nix");
        let mut cache = NixCache::external(&url, public_key.trim(), Some(secret));
        cache.backend = "embedded-nginx".into();
        Ok(cache)
    }

    /// The Bazel side: nginx's WebDAV speaks Bazel's HTTP cache protocol (`/ac/`, `/cas/`).
    pub fn bazel_cache(&self) -> BazelCache {
        BazelCache {
            backend: "embedded-nginx".into(),
            url: self.server.url("bazel"),
            headers: Vec::new(),
        }
    }
}

/// `nix key ...`; the secret key goes in on standard input, never on a command line.
fn nix_key(exec: &dyn Executor, nix: &Path, args: &[&str], stdin: Option<&Path>) -> Result<String> {
    let argv: Vec<OsString> = ["--extra-experimental-features", "nix-command", "key"]
        .into_iter()
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let mut spec = CommandSpec::new(nix, argv, KEY_TIMEOUT);
    if let Some(file) = stdin {
        spec = spec.stdin(file);
    }
    let out = run_captured(exec, spec)?;
    if !out.outcome.success() || out.stdout.trim().is_empty() {
        return Err(Error::Environment(format!(
            "`nix key {}` failed: {}\n  fix: check that `nix --version` works (Nix 2.8 or newer)",
            args[0],
            out.stderr.trim()
        )));
    }
    Ok(out.stdout)
}
