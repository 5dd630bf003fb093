//! Bench repo manifests (`repo.toml`): parsing and validation. Pure apart from reading the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::{Compression, Scenario};
use crate::results::Claim;
use crate::results::ParamValue;

pub const MANIFEST_FILE: &str = "repo.toml";
const FORMAT_HELP: &str = "see bench-repos/README.md for the repo.toml format";

/// A validated bench repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoManifest {
    pub name: String,
    pub description: String,
    /// The `repo.toml` this came from (named in every error about it).
    pub manifest_path: PathBuf,
    pub source: Source,
    /// Defaults from the manifest, after `--param` overrides.
    pub parameters: BTreeMap<String, ParamValue>,
    pub nix: Option<NixTargets>,
    /// Host paths the Nix build sandbox may also see (`[nix] sandbox_paths`), e.g. GPU
    /// devices; paths that do not exist on a machine are left out there.
    pub nix_sandbox_paths: Vec<PathBuf>,
    pub bazel: Option<BazelTargets>,
    /// The lanes this repo runs on (`lanes = ["gpu"]`); `None` means every lane.
    pub lanes: Option<Vec<crate::plan::Lane>>,
    /// What the platform claims about this repo's builds (`[[claims]]`), shown beside
    /// what was measured.
    pub claims: Vec<Claim>,
    /// A command run on the built output after every build (`[check]`).
    pub check: Option<CheckSpec>,
}

/// `[check]`: proves the output works (tests, a smoke run, a GPU kernel), whether it was
/// built, substituted or already there. It runs outside the build and any cache, timed
/// apart from the build, with `FLYWHEEL_OUTPUT` naming the output on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// The program and its arguments; a relative program path with a `/` is taken from the
    /// repo's source, a bare name from PATH.
    pub command: Vec<String>,
    pub timeout: std::time::Duration,
}

/// A check gets this long unless `[check] timeout_s` says otherwise.
pub const DEFAULT_CHECK_TIMEOUT_S: u64 = 600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Source {
    /// An embedded fixture: an absolute folder on this machine.
    Path(PathBuf),
    /// A remote repository pinned by commit (before the fetch step).
    Git { url: String, rev: String },
    /// A git source the fetch step checked out: where, and from what.
    Fetched {
        checkout: PathBuf,
        url: String,
        rev: String,
    },
    /// A git source the fetch step could not get (offline, say): its cases are skipped.
    Unavailable {
        url: String,
        rev: String,
        reason: String,
    },
}

impl RepoManifest {
    /// The error for a build of `system` this repo has no targets for.
    pub fn no_targets(&self, system: crate::plan::System) -> Error {
        Error::Usage(format!(
            "bench repo `{}` has no [{}] targets\n  fix: add a [{}] table to {}",
            self.name,
            system.name(),
            system.name(),
            self.manifest_path.display()
        ))
    }
}

impl Source {
    /// The folder to build in, once the source is on this machine.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Source::Path(path) | Source::Fetched { checkout: path, .. } => Some(path),
            Source::Git { .. } | Source::Unavailable { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NixTargets {
    /// `nix build -f FILE [ATTR...]`, parameters passed as function arguments.
    File { file: PathBuf, attrs: Vec<String> },
    /// Flake installables relative to the source, e.g. `.#default`; parameters are not passed.
    Flake { installables: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BazelTargets {
    /// Labels or patterns for `bazel build`, e.g. `//...`.
    pub targets: Vec<String>,
    /// A `.bzl` file (relative to the source) the harness rewrites in its copy of the
    /// workspace as `NAME = value` lines, one per parameter, upper-cased.
    pub parameters_file: Option<PathBuf>,
    /// The Bazel the repo pins (its `.bazelversion`): bazelisk honours it; another Bazel
    /// on PATH is refused for this repo rather than measured.
    pub version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    description: String,
    source: RawSource,
    #[serde(default)]
    parameters: BTreeMap<String, toml::Value>,
    nix: Option<RawNix>,
    bazel: Option<RawBazel>,
    lanes: Option<Vec<crate::plan::Lane>>,
    #[serde(default)]
    claims: Vec<RawClaim>,
    check: Option<RawCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    system: crate::plan::System,
    scenario: String,
    seconds: Option<f64>,
    hit_ratio: Option<f64>,
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    command: Vec<String>,
    timeout_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBazel {
    targets: Vec<String>,
    parameters_file: Option<PathBuf>,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: Option<PathBuf>,
    git: Option<String>,
    rev: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNix {
    file: Option<PathBuf>,
    #[serde(default)]
    attrs: Vec<String>,
    flake: Option<Vec<String>>,
    #[serde(default)]
    sandbox_paths: Vec<PathBuf>,
}

/// How to write `source.git` when a URL is refused.
pub const GIT_URL_FIX: &str = "use an https://, ssh://, git:// or file:// URL, or user@host:path, e.g. git = \"https://github.com/owner/repo\"";

/// The transports a bench repo's source may use: exactly those of the URL forms
/// [`validate_git_url`] allows (scp-like `user@host:path` is ssh). Git refuses all others,
/// remote helpers such as `ext::` and `fd::` included.
pub const ALLOWED_PROTOCOLS: [&str; 4] = ["https", "ssh", "git", "file"];

/// Checks a `source.git` URL before git sees it: only `https://`, `ssh://`, `git://`,
/// `file://` and scp-like `user@host:path`, nothing git could read as an option (a leading
/// `-`, here or in a host or user name, which ssh would read as one), no whitespace or
/// control characters. `Err` names the key and what is wrong; [`GIT_URL_FIX`] is the fix.
pub fn validate_git_url(url: &str) -> Result<(), String> {
    let shown = crate::boundary::redact_urls(url);
    let refuse = |why: &str| Err(format!("key `source.git`: {shown:?} {why}"));
    if url.is_empty() {
        return refuse("is empty");
    }
    if url.starts_with('-') {
        return refuse("starts with `-`, which git would read as an option");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("contains whitespace or a control character");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        if !ALLOWED_PROTOCOLS.contains(&scheme) {
            return refuse(&format!(
                "uses the scheme `{scheme}://`, which is not allowed"
            ));
        }
        let authority = rest.split('/').next().unwrap_or("");
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        if scheme != "file" && host.is_empty() {
            return refuse("names no host");
        }
        if host.starts_with('-') || user.is_some_and(|u| u.is_empty() || u.starts_with('-')) {
            return refuse("has a host or user starting with `-` (or an empty user), which ssh would read as an option");
        }
        if rest.len() <= authority.len() + 1 {
            return refuse("names no repository path");
        }
        return Ok(());
    }
    if url.contains("::") {
        return refuse("asks for a git remote helper (`ext::`, `fd::`, ...), which is not allowed");
    }
    // scp-like: user@host:path, with the colon before any slash (else git reads a local path).
    let Some((user_host, path)) = url
        .split_once(':')
        .filter(|(before, _)| !before.contains('/'))
    else {
        return refuse("is not a URL: local paths and other forms are not allowed");
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return refuse("has no user: scp-like sources are written user@host:path");
    };
    let word = |w: &str, extra: &str| {
        !w.is_empty()
            && !w.starts_with('-')
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    if !word(user, "._-") || !word(host, ".-") {
        return refuse("has a user or host that is empty, starts with `-` or holds characters other than letters, digits, `.`, `_` and `-`");
    }
    if path.is_empty() || path.starts_with('-') {
        return refuse("has a repository path that is empty or starts with `-`");
    }
    Ok(())
}

/// Reads and validates `path` (a `repo.toml`).
pub fn load(path: &Path) -> Result<RepoManifest> {
    let text = crate::boundary::read_text(path, crate::boundary::TEXT_LIMIT).map_err(|why| {
        Error::Manifest {
            path: path.to_path_buf(),
            message: why,
            fix: "check the path; a bench repo is a folder with a repo.toml".into(),
        }
    })?;
    parse(&text, path)
}

/// Parses manifest text; `path` locates relative sources and names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<RepoManifest> {
    let invalid = |message: String, fix: &str| Error::Manifest {
        path: path.to_path_buf(),
        message,
        fix: fix.to_string(),
    };
    let raw: RawManifest = toml::from_str(text)
        .map_err(|e| invalid(e.to_string().trim_end().to_string(), FORMAT_HELP))?;

    // Names become parts of file names and case labels: `..` or `.x` must not be one.
    if !raw.name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid(
            format!("key `name`: {:?} is not a valid bench repo name", raw.name),
            "start with a letter or digit and use letters, digits, `-`, `_` and `.` only, e.g. name = \"my-repo\"",
        ));
    }
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let source = match (raw.source.path, raw.source.git, raw.source.rev) {
        (Some(p), None, None) => {
            let dir = confine(base, &p).map_err(|why| {
                invalid(
                    format!("key `source.path`: {why}"),
                    "keep the sources in the folder of repo.toml (\".\" for the same folder), or pass --repo with the folder that holds both",
                )
            })?;
            if !dir.is_dir() {
                return Err(invalid(
                    format!("key `source.path`: {} is not a folder", dir.display()),
                    "point source.path at the repo's sources, relative to repo.toml (\".\" for the same folder)",
                ));
            }
            Source::Path(std::path::absolute(&dir).unwrap_or(dir))
        }
        (None, Some(url), Some(rev)) => {
            if rev.len() != 40 || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("key `source.rev`: {rev:?} is not a full commit hash"),
                    "pin git sources by a 40-character commit hash, e.g. from `git rev-parse HEAD`",
                ));
            }
            validate_git_url(&url).map_err(|why| invalid(why, GIT_URL_FIX))?;
            Source::Git { url, rev }
        }
        (None, Some(_), None) => {
            return Err(invalid(
                "key `source.rev` is missing: git sources must be pinned".into(),
                "add rev = \"<40-character commit hash>\" to [source]",
            ))
        }
        _ => {
            return Err(invalid(
                "table `[source]` needs exactly one of `path` or `git` (with `rev`)".into(),
                "write either path = \".\" or git = \"https://...\" and rev = \"<commit>\"",
            ))
        }
    };
    let mut parameters = BTreeMap::new();
    for (key, value) in raw.parameters {
        // They become Nix argument names and Starlark constants.
        if !is_identifier(&key) {
            return Err(invalid(
                format!("key `parameters.{key}`: {key:?} is not a parameter name"),
                "name parameters with letters, digits and `_`, starting with a letter, e.g. size = 20",
            ));
        }
        let value = match value {
            toml::Value::Integer(i) => ParamValue::Int(i),
            toml::Value::String(s) => ParamValue::Str(s),
            other => {
                return Err(invalid(
                    format!(
                        "key `parameters.{key}`: a {} is not allowed",
                        other.type_str()
                    ),
                    "parameters are integers or strings",
                ))
            }
        };
        parameters.insert(key, value);
    }
    let nix_sandbox_paths = raw
        .nix
        .as_ref()
        .map(|n| n.sandbox_paths.clone())
        .unwrap_or_default();
    let each = |key: &str,
                values: &[String],
                check: fn(&str) -> std::result::Result<(), String>,
                fix: &str| {
        values.iter().enumerate().try_for_each(|(i, v)| {
            check(v).map_err(|why| invalid(format!("key `{key}[{i}]`: {v:?} {why}"), fix))
        })
    };
    let nix = raw
        .nix
        .map(|n| match (n.file, n.flake) {
            (Some(file), None) => {
                check_relative(&file).map_err(|why| {
                    invalid(
                        format!("key `nix.file`: {why}"),
                        "name a .nix file inside the repo's source, relative to it, e.g. file = \"default.nix\"",
                    )
                })?;
                each(
                    "nix.attrs",
                    &n.attrs,
                    check_attr_path,
                    "write attribute paths, e.g. attrs = [\"app\", \"packages.x86_64-linux.default\"]",
                )?;
                Ok(NixTargets::File {
                    file,
                    attrs: n.attrs,
                })
            }
            (None, Some(installables)) if !installables.is_empty() && n.attrs.is_empty() => {
                each(
                    "nix.flake",
                    &installables,
                    check_flake_installable,
                    "name outputs of the repo's own flake, e.g. flake = [\".#default\"]",
                )?;
                Ok(NixTargets::Flake { installables })
            }
            _ => Err(invalid(
                "table `[nix]` needs exactly one of `file` (with optional `attrs`) or a non-empty `flake` list".into(),
                "write file = \"default.nix\" or flake = [\".#default\"]",
            )),
        })
        .transpose()?;
    let bazel = raw
        .bazel
        .map(|b| {
            if b.targets.is_empty() {
                return Err(invalid(
                    "key `bazel.targets` is empty".into(),
                    "list what to build, e.g. targets = [\"//...\"]",
                ));
            }
            each(
                "bazel.targets",
                &b.targets,
                check_target_pattern,
                "write target patterns, e.g. targets = [\"//...\"] or [\"//app:build\"]",
            )?;
            if let Some(file) = &b.parameters_file {
                check_relative(file).map_err(|why| {
                    invalid(
                        format!("key `bazel.parameters_file`: {why}"),
                        "name a .bzl file inside the workspace, relative to it, e.g. parameters_file = \"size.bzl\"",
                    )
                })?;
            }
            Ok(BazelTargets {
                targets: b.targets,
                parameters_file: b.parameters_file,
                version: b.version,
            })
        })
        .transpose()?;
    let check = raw
        .check
        .map(|c| {
            if c.command.first().is_none_or(|p| p.is_empty()) {
                return Err(invalid(
                    "key `check.command` is empty".into(),
                    "name the program and its arguments, e.g. command = [\"sh\", \"-c\", \"$FLYWHEEL_OUTPUT/bin/app --self-test\"]",
                ));
            }
            if c.timeout_s == Some(0) {
                return Err(invalid(
                    "key `check.timeout_s`: 0 leaves the check no time".into(),
                    "give the seconds it may take, or leave the key out (600)",
                ));
            }
            Ok(CheckSpec {
                command: c.command,
                timeout: std::time::Duration::from_secs(
                    c.timeout_s.unwrap_or(DEFAULT_CHECK_TIMEOUT_S),
                ),
            })
        })
        .transpose()?;
    if nix.is_none() && bazel.is_none() {
        return Err(invalid(
            "no build targets: add a `[nix]` or `[bazel]` table".into(),
            FORMAT_HELP,
        ));
    }
    let claims = raw
        .claims
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let bad = |why: String| {
                invalid(
                    format!("claims[{i}]: {why}"),
                    "write e.g. [[claims]] system = \"nix\", scenario = \"cold\", seconds = 720, source = \"where the platform says so\"",
                )
            };
            let scenario: Scenario = c.scenario.parse().map_err(bad)?;
            if c.source.trim().is_empty() {
                return Err(bad("`source` is empty: a claim names where it was made".into()));
            }
            match (c.seconds, c.hit_ratio) {
                (Some(s), None) if s.is_finite() && s > 0.0 => {}
                (None, Some(h)) if (0.0..=1.0).contains(&h) => {}
                _ => {
                    return Err(bad(
                        "needs exactly one of `seconds` (above 0) or `hit_ratio` (0 to 1)".into(),
                    ))
                }
            }
            Ok(Claim {
                system: c.system,
                scenario,
                seconds: c.seconds,
                hit_ratio: c.hit_ratio,
                source: c.source,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = RepoManifest {
        name: raw.name,
        description: raw.description,
        manifest_path: path.to_path_buf(),
        source,
        parameters,
        nix,
        nix_sandbox_paths,
        bazel,
        lanes: raw.lanes,
        claims,
        check,
    };
    if let Some(dir) = manifest.source.local_path() {
        manifest.check_paths(dir)?;
    }
    Ok(manifest)
}

impl RepoManifest {
    /// The parameters the build tool sees: all but the harness's own `link.*` and
    /// `compression` keys.
    pub fn tool_parameters(&self) -> BTreeMap<String, ParamValue> {
        self.parameters
            .iter()
            .filter(|(k, _)| !is_link_key(k) && *k != Compression::PARAMETER)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The link this repo's warm cases read through: `base` (`--link`) with the repo's
    /// `link.*` parameters (a sweep point) over it; `None`: direct.
    pub fn link(&self, base: Option<crate::plan::Link>) -> Option<crate::plan::Link> {
        let mut link = base;
        for (key, value) in &self.parameters {
            if let Some(key) = key.strip_prefix(crate::plan::Link::PARAMETER_PREFIX) {
                // Checked when the parameter was set (`link_value`).
                let _ = link
                    .get_or_insert_with(Default::default)
                    .set(key, &value.to_string());
            }
        }
        link
    }

    /// The compression of the embedded cache this repo's cases read and fill: its point of
    /// a compression sweep (`--sweep compression=none,xz,zstd`); `None`: the run's.
    pub fn compression(&self) -> Option<Compression> {
        match self.parameters.get(Compression::PARAMETER)? {
            // Checked when the sweep set it (`compression_sweep`).
            ParamValue::Str(name) => Compression::parse(name).ok(),
            ParamValue::Int(_) => None,
        }
    }

    /// Whether this is a point of a link sweep: only its warm cases read through a link,
    /// so only they run (cold and no-op run once, at the sweep's direct point).
    pub fn is_link_point(&self) -> bool {
        self.parameters.keys().any(|k| is_link_key(k))
    }

    /// Every path the manifest names, resolved in the repo's source folder `source`: none
    /// may lead out of it through a symbolic link, and the parameters file, which the
    /// harness writes in its copy of the workspace, may pass through no link at all.
    /// Checked when the manifest is read (a local source) or fetched (a git source).
    pub fn check_paths(&self, source: &Path) -> Result<()> {
        let invalid = |key: &str, why: String, fix: &str| Error::Manifest {
            path: self.manifest_path.clone(),
            message: format!("key `{key}`: {why}"),
            fix: fix.to_string(),
        };
        if let Some(NixTargets::File { file, .. }) = &self.nix {
            confine(source, file).map_err(|why| {
                invalid("nix.file", why, "name a .nix file inside the repo's source")
            })?;
        }
        if let Some(file) = self.bazel.as_ref().and_then(|b| b.parameters_file.as_ref()) {
            let fix = "name the parameters file by its own path in the workspace (the harness writes it there), not through a symbolic link";
            confine(source, file).map_err(|why| invalid("bazel.parameters_file", why, fix))?;
            if let Some(link) = first_link(source, file) {
                return Err(invalid(
                    "bazel.parameters_file",
                    format!(
                        "{} is a symbolic link: the harness never writes through one",
                        link.display()
                    ),
                    fix,
                ));
            }
        }
        if let Some(program) = self.check.as_ref().and_then(|c| c.command.first()) {
            // A relative program path with a `/` is the repo's own script.
            if program.contains('/') && Path::new(program).is_relative() {
                confine(source, Path::new(program)).map_err(|why| {
                    invalid(
                        "check.command[0]",
                        why,
                        "run a script of the repo's source (e.g. \"./check.sh\") or a program on PATH",
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// A path a manifest names relative to a folder: not absolute, no `..`, not empty.
fn check_relative(path: &Path) -> std::result::Result<(), String> {
    use std::path::Component;
    if path.as_os_str().is_empty() {
        return Err("is empty".into());
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{} is absolute or holds `..`: paths are relative to the repo's folder and stay inside it",
            path.display()
        ));
    }
    Ok(())
}

/// `root.join(rel)` once it is known to stay inside `root`: `rel` is relative without `..`
/// and no symbolic link on its way leads out of `root` (or nowhere). The part that does
/// not exist yet cannot hold a link.
pub fn confine(root: &Path, rel: &Path) -> std::result::Result<PathBuf, String> {
    check_relative(rel)?;
    let real_root = std::fs::canonicalize(root)
        .map_err(|e| format!("the folder {} cannot be resolved: {e}", root.display()))?;
    let mut walked = real_root.clone();
    for part in rel.components() {
        walked.push(part);
        if std::fs::symlink_metadata(&walked).is_err() {
            break;
        }
        walked = std::fs::canonicalize(&walked).map_err(|e| {
            format!(
                "{} is a symbolic link that leads nowhere ({e})",
                root.join(rel).display()
            )
        })?;
        if !walked.starts_with(&real_root) {
            return Err(format!(
                "{} leads out of {} (to {}) through a symbolic link",
                root.join(rel).display(),
                root.display(),
                walked.display()
            ));
        }
    }
    Ok(root.join(rel))
}

/// The first symbolic link on the way from `root` to `root.join(rel)`.
pub fn first_link(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut walked = root.to_path_buf();
    rel.components().find_map(|part| {
        walked.push(part);
        std::fs::symlink_metadata(&walked)
            .is_ok_and(|m| m.file_type().is_symlink())
            .then(|| walked.clone())
    })
}

/// Letters, digits and `_`, starting with a letter or `_`.
fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Nix attribute path: names joined by `.`, each a Nix identifier (letters, digits, `_`,
/// `'` and `-`, not starting with `-`) or a quoted name; never something Nix reads as an
/// option.
pub fn check_attr_path(text: &str) -> std::result::Result<(), String> {
    if text.starts_with('-') {
        return Err("starts with `-`, which Nix would read as an option".into());
    }
    let mut rest = text;
    loop {
        let name_len = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or("has a quoted name without its closing `\"`")?;
            let name = &quoted[..end];
            if name
                .chars()
                .any(|c| c.is_control() || c == '\\' || c == '$')
            {
                return Err("has a quoted name with a control character, `\\` or `$`".into());
            }
            end + 2
        } else {
            let len = rest.find('.').unwrap_or(rest.len());
            let name = &rest[..len];
            let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_'-".contains(c));
            if !ok {
                return Err(
                    "is not an attribute path (names of letters, digits, `_`, `'` and `-` joined by `.`, or \"quoted\")"
                        .into(),
                );
            }
            len
        };
        match rest[name_len..].strip_prefix('.') {
            Some(next) => rest = next,
            None if name_len == rest.len() => return Ok(()),
            None => return Err("has text after a quoted name that is not `.`".into()),
        }
    }
}

/// An output of the repo's own flake: `.` or `.#ATTRPATH` (another flake would be
/// fetched from elsewhere).
pub fn check_flake_installable(text: &str) -> std::result::Result<(), String> {
    match text.strip_prefix(".#") {
        _ if text == "." => Ok(()),
        Some(path) => check_attr_path(path),
        None if text.starts_with('-') => {
            Err("starts with `-`, which Nix would read as an option".into())
        }
        None => Err("is not an output of the repo's own flake (`.#NAME`)".into()),
    }
}

/// A Bazel target pattern (`//pkg:target`, `//...`, `@repo//x`, `:name`, `pkg/...`):
/// printable, no spaces, and not starting with `-`, which Bazel reads as an option (or,
/// after `--`, as a pattern to subtract).
pub fn check_target_pattern(text: &str) -> std::result::Result<(), String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    if text.starts_with('-') {
        return Err("starts with `-`, which Bazel would read as an option".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space or a control character".into());
    }
    Ok(())
}

/// Finds a bench repo by name (a folder of `bench_repos`) or by path (any folder with a repo.toml).
pub fn resolve(arg: &str, bench_repos: Option<&Path>) -> Result<RepoManifest> {
    let as_path = Path::new(arg);
    if arg.contains('/') || as_path.is_dir() {
        return load(&as_path.join(MANIFEST_FILE));
    }
    let Some(dir) = bench_repos else {
        return Err(Error::Usage(format!(
            "--repo {arg}: no bench-repos folder was found to look it up in (none at ./bench-repos or beside the binary)\n  fix: run from the repository root, pass --bench-repos DIR (or set $FLYWHEEL_BENCH_REPOS), or give a path to a folder with a repo.toml"
        )));
    };
    let manifest = dir.join(arg).join(MANIFEST_FILE);
    if !manifest.is_file() {
        let known: Vec<String> = discover(dir)?.into_iter().map(|m| m.name).collect();
        return Err(Error::Usage(format!(
            "--repo {arg}: no such bench repo in {}{}\n  known: {}\n  fix: use one of those names or a path to a folder with a repo.toml",
            dir.display(),
            crate::error::suggestion(arg, known.iter().map(String::as_str)),
            known.join(", ")
        )));
    }
    load(&manifest)
}

/// Every bench repo under `dir`, sorted by folder name.
pub fn discover(dir: &Path) -> Result<Vec<RepoManifest>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("listing bench repos in {}", dir.display()), e))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .collect();
    folders.sort();
    folders
        .iter()
        .map(|f| load(&f.join(MANIFEST_FILE)))
        .collect()
}

/// The selected bench repos with their overrides applied: the named ones, or every
/// embedded one (offline, quick; git-sourced repos such as the tranche-1 ones run when named).
pub fn select(selection: &crate::plan::config::RepoSelection) -> Result<Vec<RepoManifest>> {
    let dir = selection.bench_repos.as_path();
    let mut repos = if selection.names.is_empty() {
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "no bench-repos folder at {}\n  fix: run from the flywheel-bench checkout, pass --bench-repos DIR, or --repo PATH",
                dir.display()
            )));
        }
        discover(dir)?
            .into_iter()
            .filter(|r| matches!(r.source, Source::Path(_)))
            .collect()
    } else {
        let lookup = dir.is_dir().then_some(dir);
        selection
            .names
            .iter()
            .map(|r| resolve(r, lookup))
            .collect::<Result<Vec<_>>>()?
    };
    // The same repo twice would run every case twice under one name.
    for (i, repo) in repos.iter().enumerate() {
        if let Some(first) = repos[..i].iter().find(|r| r.name == repo.name) {
            return Err(Error::Usage(format!(
                "bench repo `{}` is selected twice ({} and {})\n  fix: name each bench repo once with --repo",
                repo.name,
                first.manifest_path.display(),
                repo.manifest_path.display()
            )));
        }
    }
    apply_profile_params(&mut repos, &selection.profile_params)?;
    apply_overrides(&mut repos, &selection.params)?;
    match &selection.sweep {
        Some((key, values)) => sweep(repos, key, values),
        None => Ok(repos),
    }
}

fn is_link_key(key: &str) -> bool {
    crate::plan::Link::is_parameter(key)
}

/// A `link.*` value as the link takes it, or the error naming the flag.
fn link_value(key: &str, value: &ParamValue, flag: &str) -> Result<ParamValue> {
    let name = &key[crate::plan::Link::PARAMETER_PREFIX.len()..];
    crate::plan::Link::default()
        .set(name, &value.to_string())
        .map_err(|why| {
            Error::Usage(format!(
                "{flag} {key}={value}: {why}\n  fix: e.g. {flag} link.rtt_ms=0,10,40,160 or link.bandwidth=100mbit"
            ))
        })?;
    Ok(value.clone())
}

/// A link sweep (`--sweep link.rtt_ms=0,10,40`): every repo once directly (all its
/// scenarios, no proxy) and then at each value (warm only, through the proxy).
fn link_sweep(
    repos: Vec<RepoManifest>,
    key: &str,
    values: &[ParamValue],
) -> Result<Vec<RepoManifest>> {
    let mut points = Vec::new();
    for repo in repos {
        for value in values {
            let mut point = repo.clone();
            point
                .parameters
                .insert(key.to_string(), link_value(key, value, "--sweep")?);
            points.push(point);
        }
        points.insert(points.len() - values.len(), repo);
    }
    Ok(points)
}

/// A compression sweep (`--sweep compression=none,xz,zstd`): each repo with Nix targets
/// once per compression, in order (the first point runs every scenario, the others only
/// those that read or fill a cache: `Plan::build`); the others as they are, since
/// Bazel's cache stores blobs as they are, without NAR compression.
fn compression_sweep(repos: Vec<RepoManifest>, values: &[ParamValue]) -> Result<Vec<RepoManifest>> {
    let key = Compression::PARAMETER;
    let mut compressions = Vec::new();
    for value in values {
        let compression = Compression::parse(&value.to_string()).map_err(|why| {
            Error::Usage(format!(
                "--sweep {key}={value}: {why}\n  fix: e.g. --sweep {key}=none,xz,zstd"
            ))
        })?;
        compressions.push(compression);
    }
    if let Some(repo) = repos.iter().find(|r| r.parameters.contains_key(key)) {
        return Err(Error::Usage(format!(
            "--sweep {key}=...: bench repo `{}` declares a parameter `{key}` of its own ({}), which the harness's compression sweep would hide from its build\n  fix: rename that parameter in its repo.toml",
            repo.name,
            repo.manifest_path.display()
        )));
    }
    if !repos.iter().any(|r| r.nix.is_some()) {
        let names: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "--sweep {key}=...: none of the selected bench repos ({}) builds with Nix; compression is how the embedded cache stores Nix's NARs, and Bazel's cache stores blobs as they are, so every point would run the same builds\n  fix: select a repo with Nix targets (e.g. --repo fixture-c-dag), or drop the sweep",
            names.join(", ")
        )));
    }
    Ok(repos
        .into_iter()
        .flat_map(|repo| {
            if repo.nix.is_none() {
                return vec![repo];
            }
            compressions
                .iter()
                .map(|c| {
                    let mut point = repo.clone();
                    point
                        .parameters
                        .insert(key.to_string(), ParamValue::Str(c.name().to_string()));
                    point
                })
                .collect()
        })
        .collect())
}

/// Each repo that declares `key`, once per value (in order); the others as they are.
pub fn sweep(
    repos: Vec<RepoManifest>,
    key: &str,
    values: &[ParamValue],
) -> Result<Vec<RepoManifest>> {
    if is_link_key(key) {
        return link_sweep(repos, key, values);
    }
    if key == Compression::PARAMETER {
        return compression_sweep(repos, values);
    }
    if !repos.iter().any(|r| r.parameters.contains_key(key)) {
        return Err(Error::Usage(format!(
            "--sweep {key}=...: none of the selected bench repos has a parameter `{key}`{}\n  fix: check the [parameters] table of the repo's repo.toml",
            suggest_parameter(&repos, key)
        )));
    }
    repos
        .into_iter()
        .flat_map(|repo| {
            if !repo.parameters.contains_key(key) {
                return vec![Ok(repo)];
            }
            values
                .iter()
                .map(|value| {
                    let mut point = repo.clone();
                    let typed = typed_value(&repo, key, value, "--sweep")?;
                    point.parameters.insert(key.to_string(), typed);
                    Ok(point)
                })
                .collect::<Vec<Result<RepoManifest>>>()
        })
        .collect()
}

/// `value` as the type of `repo`'s default for `key`: a string parameter takes any value
/// (`5` as the text "5"), an integer one only a whole number, so a bad value is refused
/// before anything is built rather than failing every build.
fn typed_value(
    repo: &RepoManifest,
    key: &str,
    value: &ParamValue,
    flag: &str,
) -> Result<ParamValue> {
    match (repo.parameters.get(key), value) {
        (Some(ParamValue::Str(_)), ParamValue::Int(i)) => Ok(ParamValue::Str(i.to_string())),
        (Some(ParamValue::Int(default)), ParamValue::Str(text)) => Err(Error::Usage(format!(
            "{flag} {key}={text}: bench repo `{}` declares `{key}` as a whole number ({default} in {})\n  fix: pass a whole number, e.g. {flag} {key}={default}",
            repo.name,
            repo.manifest_path.display()
        ))),
        _ => Ok(value.clone()),
    }
}

/// Applies `--param key=value` overrides to every repo that declares the key.
/// A key that no selected repo declares is an error, so typos do not pass silently.
/// "did you mean" among the selected repos' parameters.
fn suggest_parameter(repos: &[RepoManifest], key: &str) -> String {
    crate::error::suggestion(
        key,
        repos
            .iter()
            .flat_map(|r| r.parameters.keys().map(String::as_str)),
    )
}

/// The profile's `[params.REPO]` values on the selected repo of that name (a profile may
/// name repos this run does not select); a key that repo does not declare is an error.
fn apply_profile_params(
    repos: &mut [RepoManifest],
    params: &BTreeMap<String, Vec<(String, ParamValue)>>,
) -> Result<()> {
    for repo in repos.iter_mut() {
        for (key, value) in params.get(&repo.name).into_iter().flatten() {
            if !repo.parameters.contains_key(key) {
                return Err(Error::Usage(format!(
                    "the profile's [params.{}] sets `{key}`, which bench repo `{}` does not declare{}\n  fix: check the [parameters] table of {}",
                    repo.name,
                    repo.name,
                    suggest_parameter(std::slice::from_ref(repo), key),
                    repo.manifest_path.display()
                )));
            }
            let typed = typed_value(repo, key, value, &format!("[params.{}]", repo.name))?;
            repo.parameters.insert(key.clone(), typed);
        }
    }
    Ok(())
}

pub fn apply_overrides(
    repos: &mut [RepoManifest],
    overrides: &[(String, ParamValue)],
) -> Result<()> {
    for (key, value) in overrides {
        if is_link_key(key) {
            let value = link_value(key, value, "--param")?;
            for repo in repos.iter_mut() {
                repo.parameters.insert(key.clone(), value.clone());
            }
            continue;
        }
        if key == Compression::PARAMETER {
            return Err(Error::Usage(format!(
                "--param {key}={value}: the embedded cache's compression is a setting of the run, not a repo parameter\n  fix: pass --compression {value} (or sweep it: --sweep {key}=none,xz,zstd)"
            )));
        }
        let mut used = false;
        for repo in repos.iter_mut() {
            if repo.parameters.contains_key(key) {
                let typed = typed_value(repo, key, value, "--param")?;
                repo.parameters.insert(key.clone(), typed);
                used = true;
            }
        }
        if !used {
            return Err(Error::Usage(format!(
                "--param {key}={value}: none of the selected bench repos has a parameter `{key}`{}\n  fix: check the [parameters] table of the repo's repo.toml",
                suggest_parameter(repos, key)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(text: &str) -> Result<RepoManifest> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        parse(text, &path)
    }

    const GOOD: &str = r#"
name = "fixture"
description = "a fixture"
[source]
path = "."
[parameters]
size = 20
flavour = "plain"
[nix]
file = "default.nix"
"#;

    #[test]
    fn parses_a_valid_manifest() {
        let m = parse_in(GOOD).unwrap();
        assert_eq!(m.name, "fixture");
        assert!(matches!(m.source, Source::Path(ref p) if p.is_absolute()));
        assert_eq!(m.parameters["size"], ParamValue::Int(20));
        assert_eq!(m.parameters["flavour"], ParamValue::Str("plain".into()));
        assert_eq!(
            m.nix,
            Some(NixTargets::File {
                file: "default.nix".into(),
                attrs: vec![]
            })
        );
    }

    fn error_of(text: &str) -> String {
        parse_in(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = error_of(&GOOD.replace("description", "descripton"));
        assert!(err.contains("repo.toml"), "{err}");
        assert!(err.contains("descripton"), "{err}");
        assert!(err.contains("line"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }

    #[test]
    fn rejects_bad_sources() {
        let err = error_of(&GOOD.replace("path = \".\"", "path = \"missing\""));
        assert!(
            err.contains("source.path") && err.contains("not a folder"),
            "{err}"
        );
        let err = error_of(&GOOD.replace("path = \".\"", "git = \"https://x/y\""));
        assert!(err.contains("source.rev"), "{err}");
        let err = error_of(&GOOD.replace("path = \".\"", "git = \"https://x/y\"\nrev = \"main\""));
        assert!(err.contains("40-character"), "{err}");
        let err = error_of(&GOOD.replace("path = \".\"", "path = \".\"\ngit = \"https://x/y\""));
        assert!(err.contains("exactly one of"), "{err}");
    }

    #[test]
    fn accepts_pinned_git_sources() {
        let rev = "0123456789abcdef0123456789abcdef01234567";
        let text = GOOD.replace(
            "path = \".\"",
            &format!("git = \"https://x/y\"\nrev = \"{rev}\""),
        );
        let m = parse_in(&text).unwrap();
        assert_eq!(
            m.source,
            Source::Git {
                url: "https://x/y".into(),
                rev: rev.into()
            }
        );
    }

    #[test]
    fn rejects_bad_names_parameters_and_targets() {
        assert!(error_of(&GOOD.replace("\"fixture\"", "\"a b\"")).contains("key `name`"));
        assert!(error_of(&GOOD.replace("size = 20", "size = 2.5")).contains("parameters.size"));
        let err = error_of(&GOOD.replace(
            "file = \"default.nix\"",
            "file = \"d.nix\"\nflake = [\".#x\"]",
        ));
        assert!(err.contains("[nix]"), "{err}");
        let no_targets = GOOD.split("[nix]").next().unwrap();
        assert!(error_of(no_targets).contains("no build targets"));
    }

    #[test]
    fn bazel_targets() {
        let text = GOOD.replace(
            "[nix]\nfile = \"default.nix\"\n",
            "[bazel]\ntargets = [\"//...\"]\nparameters_file = \"size.bzl\"\n",
        );
        let m = parse_in(&text).unwrap();
        assert_eq!(m.nix, None);
        assert_eq!(
            m.bazel,
            Some(BazelTargets {
                targets: vec!["//...".into()],
                parameters_file: Some("size.bzl".into()),
                version: None,
            })
        );
        let empty = GOOD.replace("[nix]\nfile = \"default.nix\"\n", "[bazel]\ntargets = []\n");
        assert!(error_of(&empty).contains("bazel.targets"));
    }

    #[test]
    fn claims_name_their_source_and_one_measure() {
        let claim = |body: &str| format!("{GOOD}[[claims]]\nsystem = \"nix\"\n{body}");
        let m = parse_in(&claim(
            "scenario = \"cold\"\nseconds = 720\nsource = \"README\"\n",
        ))
        .unwrap();
        assert_eq!(m.claims[0].scenario, Scenario::Cold);
        assert_eq!(m.claims[0].seconds, Some(720.0));
        let err = error_of(&claim(
            "scenario = \"cold\"\nseconds = 720\nsource = \"\"\n",
        ));
        assert!(err.contains("claims[0]") && err.contains("source"), "{err}");
        let err = error_of(&claim(
            "scenario = \"warm\"\nseconds = 1\nhit_ratio = 0.9\nsource = \"x\"\n",
        ));
        assert!(err.contains("exactly one"), "{err}");
        let err = error_of(&claim(
            "scenario = \"lukewarm\"\nseconds = 1\nsource = \"x\"\n",
        ));
        assert!(err.contains("unknown scenario"), "{err}");
    }

    #[test]
    fn lanes_restrict_where_a_repo_runs() {
        let m = parse_in(&format!("lanes = [\"gpu\"]\n{GOOD}")).unwrap();
        assert_eq!(m.lanes, Some(vec![crate::plan::Lane::Gpu]));
        assert!(error_of(&format!("lanes = [\"moon\"]\n{GOOD}")).contains("moon"));
    }

    #[test]
    fn a_check_runs_a_command_within_its_timeout() {
        assert_eq!(parse_in(GOOD).unwrap().check, None);
        let m = parse_in(&format!(
            "{GOOD}[check]\ncommand = [\"sh\", \"-c\", \"true\"]\ntimeout_s = 30\n"
        ))
        .unwrap();
        let check = m.check.unwrap();
        assert_eq!(check.command, ["sh", "-c", "true"]);
        assert_eq!(check.timeout, std::time::Duration::from_secs(30));
        let m = parse_in(&format!("{GOOD}[check]\ncommand = [\"true\"]\n")).unwrap();
        assert_eq!(m.check.unwrap().timeout.as_secs(), DEFAULT_CHECK_TIMEOUT_S);
        let err = error_of(&format!("{GOOD}[check]\ncommand = []\n"));
        assert!(
            err.contains("check.command") && err.contains("fix:"),
            "{err}"
        );
        let err = error_of(&format!(
            "{GOOD}[check]\ncommand = [\"true\"]\ntimeout_s = 0\n"
        ));
        assert!(err.contains("check.timeout_s"), "{err}");
        let err = error_of(&format!("{GOOD}[check]\ncmd = [\"true\"]\n"));
        assert!(err.contains("cmd"), "{err}");
    }

    #[test]
    fn flake_targets() {
        let m =
            parse_in(&GOOD.replace("file = \"default.nix\"", "flake = [\".#default\"]")).unwrap();
        assert_eq!(
            m.nix,
            Some(NixTargets::Flake {
                installables: vec![".#default".into()]
            })
        );
    }

    #[test]
    fn overrides_apply_or_fail_loudly() {
        let mut repos = vec![parse_in(GOOD).unwrap()];
        apply_overrides(&mut repos, &[("size".into(), ParamValue::parse("5"))]).unwrap();
        assert_eq!(repos[0].parameters["size"], ParamValue::Int(5));
        let err =
            apply_overrides(&mut repos, &[("sise".into(), ParamValue::parse("5"))]).unwrap_err();
        assert!(err.to_string().contains("sise"));
        assert!(err.to_string().contains("did you mean `size`?"), "{err}");
        let err =
            apply_overrides(&mut repos, &[("siz".into(), ParamValue::parse("3"))]).unwrap_err();
        assert!(err.to_string().contains("did you mean `size`?"), "{err}");
    }

    #[test]
    fn resolve_names_the_known_repos_on_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("fixture");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join(MANIFEST_FILE), GOOD).unwrap();
        assert_eq!(
            resolve("fixture", Some(dir.path())).unwrap().name,
            "fixture"
        );
        let err = resolve("nope", Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("known: fixture"), "{err}");
        let err = resolve("fixtrue", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `fixture`?"), "{err}");
        let by_path = resolve(repo.to_str().unwrap(), None).unwrap();
        assert_eq!(by_path.name, "fixture");
    }

    #[test]
    fn the_embedded_bench_repos_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-repos");
        let repos = discover(&dir).unwrap();
        assert!(repos.iter().any(|r| r.name == "fixture-c-dag"));
    }

    /// A repo folder holding `repo.toml` (from `text`) and `files`.
    fn repo_with(text: &str, files: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        for f in files {
            std::fs::write(repo.join(f), "x").unwrap();
        }
        std::fs::write(repo.join(MANIFEST_FILE), text).unwrap();
        (dir, repo)
    }

    #[test]
    fn attrs_installables_and_targets_that_look_like_options_are_refused() {
        let nix = |attrs: &str| {
            GOOD.replace(
                "file = \"default.nix\"",
                &format!("file = \"default.nix\"\nattrs = {attrs}"),
            )
        };
        let err = error_of(&nix("[\"--store\", \"/tmp/x/altstore\"]"));
        assert!(
            err.contains("key `nix.attrs[0]`: \"--store\" starts with `-`") && err.contains("fix:"),
            "{err}"
        );
        let err = error_of(&nix("[\"app\", \"a b\"]"));
        assert!(err.contains("key `nix.attrs[1]`"), "{err}");
        for good in [
            "app",
            "packages.x86_64-linux.default",
            "\\\"-x\\\".y",
            "_a'1",
            "0",
        ] {
            let text = nix(&format!("[\"{good}\"]"));
            parse_in(&text).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let flake = |list: &str| GOOD.replace("file = \"default.nix\"", &format!("flake = {list}"));
        let err = error_of(&flake("[\"--store\"]"));
        assert!(err.contains("key `nix.flake[0]`"), "{err}");
        let err = error_of(&flake("[\"path:/etc#x\"]"));
        assert!(err.contains("repo's own flake"), "{err}");
        parse_in(&flake("[\".\", \".#devShells.x86_64-linux.default\"]")).unwrap();
        let bazel = |targets: &str| {
            GOOD.replace(
                "[nix]\nfile = \"default.nix\"\n",
                &format!("[bazel]\ntargets = {targets}\n"),
            )
        };
        let err = error_of(&bazel("[\"--disk_cache=/tmp/x/dc\", \"//...\"]"));
        assert!(
            err.contains("key `bazel.targets[0]`: \"--disk_cache=/tmp/x/dc\" starts with `-`"),
            "{err}"
        );
        assert!(error_of(&bazel("[\"//a b\"]")).contains("bazel.targets[0]"));
        parse_in(&bazel("[\"//...\", \"@r//x:y\", \":z\", \"pkg/...\"]")).unwrap();
        let err = error_of(&GOOD.replace("size = 20", "\"--store\" = 20"));
        assert!(err.contains("is not a parameter name"), "{err}");
    }

    #[test]
    fn every_path_a_manifest_names_stays_inside_its_source() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.bzl");
        std::fs::write(&victim, "SIZE = 1\n").unwrap();
        let file = |f: &str| GOOD.replace("\"default.nix\"", &format!("\"{f}\""));
        let err = error_of(&file("../../../../etc/passwd"));
        assert!(
            err.contains("key `nix.file`") && err.contains("`..`"),
            "{err}"
        );
        assert!(error_of(&file("/etc/passwd")).contains("absolute"));
        // A link out of the source is refused; one inside it is fine.
        let (_dir, repo) = repo_with(&file("default.nix"), &["real.nix"]);
        std::os::unix::fs::symlink("/etc/passwd", repo.join("default.nix")).unwrap();
        let err = load(&repo.join(MANIFEST_FILE)).unwrap_err().to_string();
        assert!(
            err.contains("key `nix.file`") && err.contains("leads out of"),
            "{err}"
        );
        std::fs::remove_file(repo.join("default.nix")).unwrap();
        std::os::unix::fs::symlink("real.nix", repo.join("default.nix")).unwrap();
        load(&repo.join(MANIFEST_FILE)).unwrap();

        let bazel = |f: &str| {
            GOOD.replace(
                "[nix]\nfile = \"default.nix\"\n",
                &format!("[bazel]\ntargets = [\"//...\"]\nparameters_file = \"{f}\"\n"),
            )
        };
        assert!(error_of(&bazel("/tmp/x/victim.bzl")).contains("key `bazel.parameters_file`"));
        assert!(error_of(&bazel("../victim.bzl")).contains("key `bazel.parameters_file`"));
        let (_dir, repo) = repo_with(&bazel("size.bzl"), &["real.bzl"]);
        std::os::unix::fs::symlink(&victim, repo.join("size.bzl")).unwrap();
        let err = load(&repo.join(MANIFEST_FILE)).unwrap_err().to_string();
        assert!(err.contains("leads out of"), "{err}");
        // Even a link that stays inside would be written through.
        std::fs::remove_file(repo.join("size.bzl")).unwrap();
        std::os::unix::fs::symlink("real.bzl", repo.join("size.bzl")).unwrap();
        let err = load(&repo.join(MANIFEST_FILE)).unwrap_err().to_string();
        assert!(err.contains("never writes through one"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "SIZE = 1\n");

        let err = error_of(&GOOD.replace("path = \".\"", "path = \"../..\""));
        assert!(err.contains("key `source.path`"), "{err}");
        let err = error_of(&format!("{GOOD}[check]\ncommand = [\"./../../bin/sh\"]\n"));
        assert!(err.contains("key `check.command[0]`"), "{err}");
        parse_in(&format!(
            "{GOOD}[check]\ncommand = [\"sh\", \"-c\", \"true\"]\n"
        ))
        .unwrap();
    }

    #[test]
    fn repo_names_cannot_be_path_tricks() {
        for bad in ["..", ".", ".hidden", "-x", ""] {
            let err = error_of(&GOOD.replace("\"fixture\"", &format!("{bad:?}")));
            assert!(err.contains("key `name`"), "{bad}: {err}");
        }
        parse_in(&GOOD.replace("\"fixture\"", "\"a.b-c_1\"")).unwrap();
    }

    #[test]
    fn overrides_take_the_type_of_the_default() {
        let mut repos = vec![parse_in(GOOD).unwrap()];
        let err =
            apply_overrides(&mut repos, &[("size".into(), ParamValue::parse("abc"))]).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::INVALID_INPUT);
        let err = err.to_string();
        assert!(
            err.contains("--param size=abc") && err.contains("whole number (20"),
            "{err}"
        );
        apply_overrides(&mut repos, &[("flavour".into(), ParamValue::parse("5"))]).unwrap();
        assert_eq!(repos[0].parameters["flavour"], ParamValue::Str("5".into()));
        let err = sweep(repos, "size", &[ParamValue::Int(1), ParamValue::parse("x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--sweep size=x"), "{err}");
    }

    #[test]
    fn a_link_sweep_runs_each_repo_directly_then_at_each_value() {
        let repos = vec![parse_in(GOOD).unwrap()];
        let values = [ParamValue::Int(0), ParamValue::Int(40)];
        let points = sweep(repos, "link.rtt_ms", &values).unwrap();
        assert_eq!(points.len(), 3);
        assert!(!points[0].is_link_point() && points[0].link(None).is_none());
        let link = points[2].link(None).unwrap();
        assert_eq!(link.rtt_ms, 40);
        // The build tool never sees the link, and the points share one primed state.
        assert_eq!(points[2].tool_parameters(), points[0].parameters);
        let base = crate::plan::Link::parse("bandwidth=1mbit").unwrap();
        assert_eq!(
            points[1].link(Some(base)).unwrap(),
            crate::plan::Link {
                rtt_ms: 0,
                bandwidth_bytes_per_s: Some(125_000)
            },
            "the sweep's key over --link's"
        );
        let err = sweep(
            vec![parse_in(GOOD).unwrap()],
            "link.rtt",
            &[ParamValue::Int(1)],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown link key `rtt`"), "{err}");
        let plan = crate::plan::Plan::build(
            points,
            None,
            &[Scenario::Cold, Scenario::Warm],
            crate::plan::Lane::Host,
            crate::plan::Settings::default(),
        )
        .unwrap();
        let planned: Vec<(usize, Scenario)> =
            plan.cases.iter().map(|c| (c.repo, c.scenario)).collect();
        assert_eq!(
            planned,
            [
                (0, Scenario::Cold),
                (0, Scenario::Warm),
                (1, Scenario::Warm),
                (2, Scenario::Warm)
            ],
            "cold runs once, directly"
        );
    }

    /// GOOD with both Nix and Bazel targets, and one with Bazel's only.
    fn nix_and_bazel() -> (RepoManifest, RepoManifest) {
        let both = GOOD.to_string() + "[bazel]\ntargets = [\"//...\"]\n";
        let bazel_only = GOOD.replace("\"fixture\"", "\"cc\"").replace(
            "[nix]\nfile = \"default.nix\"\n",
            "[bazel]\ntargets = [\"//...\"]\n",
        );
        (parse_in(&both).unwrap(), parse_in(&bazel_only).unwrap())
    }

    #[test]
    fn a_compression_sweep_makes_a_point_per_compression_of_each_nix_repo() {
        use crate::plan::{Compression, Lane, Plan, Settings, System};
        let (both, bazel_only) = nix_and_bazel();
        let values = ["none", "xz", "zstd"].map(ParamValue::parse);
        let points = sweep(vec![both, bazel_only], "compression", &values).unwrap();
        let at: Vec<(&str, Option<Compression>)> = points
            .iter()
            .map(|r| (r.name.as_str(), r.compression()))
            .collect();
        assert_eq!(
            at,
            [
                ("fixture", Some(Compression::None)),
                ("fixture", Some(Compression::Xz)),
                ("fixture", Some(Compression::Zstd)),
                ("cc", None),
            ],
            "a Bazel-only repo is left as it is: its cache has no NAR compression"
        );
        // The build tool never sees it, so the points share one primed state.
        assert_eq!(points[1].tool_parameters(), points[3].tool_parameters());
        assert!(!points[1].tool_parameters().contains_key("compression"));
        let scenarios = [
            Scenario::Cold,
            Scenario::Warm,
            Scenario::Noop,
            Scenario::Fill,
        ];
        let plan = Plan::build(points, None, &scenarios, Lane::Host, Settings::default()).unwrap();
        let planned: Vec<(usize, System, Scenario)> = plan
            .cases
            .iter()
            .map(|c| (c.repo, c.system, c.scenario))
            .collect();
        let (nix, bazel) = (System::Nix, System::Bazel);
        assert_eq!(
            planned,
            [
                (0, nix, Scenario::Cold),
                (0, nix, Scenario::Warm),
                (0, nix, Scenario::Noop),
                (0, nix, Scenario::Fill),
                (0, bazel, Scenario::Cold),
                (0, bazel, Scenario::Warm),
                (0, bazel, Scenario::Noop),
                (0, bazel, Scenario::Fill),
                (1, nix, Scenario::Warm),
                (1, nix, Scenario::Fill),
                (2, nix, Scenario::Warm),
                (2, nix, Scenario::Fill),
                (3, bazel, Scenario::Cold),
                (3, bazel, Scenario::Warm),
                (3, bazel, Scenario::Noop),
                (3, bazel, Scenario::Fill),
            ],
            "later points run only what reads or fills a cache, with Nix only"
        );
        // The first point's Bazel cases are there to be skipped with the reason.
        let reason = crate::plan::compression_skip(&plan.repos[0], bazel).unwrap();
        assert!(
            reason.contains("bazel's cache stores blobs as they are")
                && reason.contains("fix: sweep compression with --system nix"),
            "{reason}"
        );
        assert_eq!(crate::plan::compression_skip(&plan.repos[0], nix), None);
        assert_eq!(crate::plan::compression_skip(&plan.repos[3], bazel), None);
    }

    #[test]
    fn a_compression_sweep_refuses_what_it_cannot_run() {
        let (both, bazel_only) = nix_and_bazel();
        let err = |repos: Vec<RepoManifest>, values: &[&str]| {
            let values: Vec<ParamValue> = values.iter().map(|v| ParamValue::parse(v)).collect();
            let e = sweep(repos, "compression", &values).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::exit_code::INVALID_INPUT);
            e.to_string()
        };
        let gzip = err(vec![both.clone()], &["xz", "gzip"]);
        assert!(
            gzip.contains("--sweep compression=gzip")
                && gzip.contains("none, xz, zstd")
                && gzip.contains("fix: e.g. --sweep compression=none,xz,zstd"),
            "{gzip}"
        );
        let bazel = err(vec![bazel_only], &["xz", "zstd"]);
        assert!(
            bazel.contains("none of the selected bench repos (cc) builds with Nix")
                && bazel.contains("fix: select a repo with Nix targets"),
            "{bazel}"
        );
        let mut own = both.clone();
        own.parameters
            .insert("compression".into(), ParamValue::parse("high"));
        let own = err(vec![own], &["xz", "zstd"]);
        assert!(
            own.contains("declares a parameter `compression` of its own"),
            "{own}"
        );
        let mut repos = vec![both];
        let param = apply_overrides(
            &mut repos,
            &[("compression".into(), ParamValue::parse("xz"))],
        )
        .unwrap_err()
        .to_string();
        assert!(param.contains("fix: pass --compression xz"), "{param}");
    }

    #[test]
    fn profile_params_apply_to_their_repo_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("fixture");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join(MANIFEST_FILE), GOOD).unwrap();
        let selection = |profile: &[(&str, ParamValue)], flags: &[(&str, ParamValue)]| {
            crate::plan::config::RepoSelection {
                names: vec!["fixture".into()],
                bench_repos: dir.path().to_path_buf(),
                params: flags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                profile_params: BTreeMap::from([
                    (
                        "fixture".to_string(),
                        profile
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
                    ),
                    // A repo the run does not select is no error.
                    (
                        "other".to_string(),
                        vec![("nope".into(), ParamValue::Int(1))],
                    ),
                ]),
                sweep: None,
            }
        };
        let got = select(&selection(&[("size", ParamValue::Int(300))], &[])).unwrap();
        assert_eq!(got[0].parameters["size"], ParamValue::Int(300));
        let got = select(&selection(
            &[("size", ParamValue::Int(300))],
            &[("size", ParamValue::Int(7))],
        ))
        .unwrap();
        assert_eq!(got[0].parameters["size"], ParamValue::Int(7));
        let err = select(&selection(&[("sise", ParamValue::Int(3))], &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[params.fixture] sets `sise`") && err.contains("size"),
            "{err}"
        );
        let err = select(&selection(&[("size", ParamValue::parse("big"))], &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[params.fixture] size=big"), "{err}");
    }

    #[test]
    fn the_same_repo_selected_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("fixture");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join(MANIFEST_FILE), GOOD).unwrap();
        let selection = |names: &[&str]| crate::plan::config::RepoSelection {
            names: names.iter().map(|n| n.to_string()).collect(),
            bench_repos: dir.path().to_path_buf(),
            params: Vec::new(),
            profile_params: BTreeMap::new(),
            sweep: None,
        };
        assert_eq!(select(&selection(&["fixture"])).unwrap().len(), 1);
        let path = repo.display().to_string();
        let err = select(&selection(&["fixture", &path]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bench repo `fixture` is selected twice"),
            "{err}"
        );
    }
}
