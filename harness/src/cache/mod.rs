//! Caches the warm builds read from. Today: the embedded cache (nginx on loopback with a
//! per-run signing key); external backends plug in behind the same `NixCache` value.

pub mod http;
pub mod nginx;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::run::process::{run_captured, Executor};
use crate::tools::nix::NixCache;
use nginx::Nginx;

const KEY_TIMEOUT: Duration = Duration::from_secs(60);
const NIX_CACHE_INFO: &str = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";

/// nginx plus a signing key made for this run only; both gone when dropped.
pub struct EmbeddedCache {
    server: Nginx,
    nix: NixCache,
}

impl EmbeddedCache {
    /// `dir` must be private to the harness: it holds the secret signing key.
    pub fn start(nginx: &Path, nix: &Path, dir: &Path, exec: &dyn Executor) -> Result<Self> {
        let server = Nginx::start(nginx, &dir.join("nginx"))?;
        let info = server.root().join("nix/nix-cache-info");
        std::fs::write(&info, NIX_CACHE_INFO).context(|| format!("writing {}", info.display()))?;
        let secret = dir.join("signing-key.sec");
        let key_name = format!("flywheel-bench-{}", server.addr().port());
        let generated = nix_key(
            exec,
            nix,
            &["generate-secret", "--key-name", &key_name],
            None,
        )?;
        write_private(&secret, generated.as_bytes())?;
        let public_key = nix_key(exec, nix, &["convert-secret-to-public"], Some(&secret))?;
        let nix_cache = NixCache {
            backend: "embedded-nginx".into(),
            substituter: server.url("nix"),
            public_key: public_key.trim().to_string(),
            push_url: format!("{}?secret-key={}", server.url("nix"), secret.display()),
        };
        Ok(EmbeddedCache {
            server,
            nix: nix_cache,
        })
    }

    pub fn nix(&self) -> &NixCache {
        &self.nix
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }
}

/// `nix key ...`; the secret key goes in on standard input, never on a command line.
fn nix_key(exec: &dyn Executor, nix: &Path, args: &[&str], stdin: Option<&Path>) -> Result<String> {
    let argv: Vec<OsString> = ["--extra-experimental-features", "nix-command", "key"]
        .into_iter()
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let out = run_captured(exec, nix, &argv, &[], stdin, KEY_TIMEOUT)?;
    if !out.outcome.success() || out.stdout.trim().is_empty() {
        return Err(Error::Environment(format!(
            "`nix key {}` failed: {}\n  fix: check that `nix --version` works (Nix 2.8 or newer)",
            args[0],
            out.stderr.trim()
        )));
    }
    Ok(out.stdout)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .context(|| format!("writing {}", path.display()))
}
