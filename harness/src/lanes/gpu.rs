//! The `gpu` lane: a preflight that says which GPU (or why none); where this runner keeps
//! the CUDA toolkit and the driver's library, symlinks resolved, so Nix builds see them
//! (`cuda_home`, sandbox paths); the shell the cases run in, decided from the flake's
//! outputs (`nix develop FLAKE#gpu`, or `ambient`, with the reason); and what a runner
//! needs, for `doctor --lane gpu`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exec::process::{run_captured, CommandSpec, Executor};
use crate::plan::{ParamValue, RepoManifest};
use crate::results::GpuInfo;

const SMI_TIMEOUT: Duration = Duration::from_secs(30);
const LDCONFIG_TIMEOUT: Duration = Duration::from_secs(30);
/// Evaluating the flake may fetch its inputs (nixpkgs) first.
const EVAL_TIMEOUT: Duration = Duration::from_secs(600);
/// Entering the shell the first time may download the CUDA toolkit.
const SHELL_TIMEOUT: Duration = Duration::from_secs(3600);

/// The parameter that names the CUDA toolkit's folder.
pub const CUDA_HOME: &str = "cuda_home";
/// `cuda_home = "auto"`: the lane finds the toolkit.
pub const AUTO: &str = "auto";
/// Where NVIDIA's packages and images put the toolkit (often a link to `cuda-X.Y`).
pub const DEFAULT_CUDA_HOME: &str = "/usr/local/cuda";
/// Device files CUDA programs open besides the GPUs' own, and how to get each.
pub const DEVICE_FILES: [(&str, &str); 2] = [
    (
        "nvidiactl",
        "the driver's control device: load the NVIDIA driver, or pass /dev/nvidiactl into the container",
    ),
    (
        "nvidia-uvm",
        "unified memory (cudaMallocManaged): `modprobe nvidia-uvm` (or run nvidia-smi once as root), or pass /dev/nvidia-uvm into the container",
    ),
];

/// The GPU and the nvidia-smi that described it, or a clean reason to skip the lane.
pub fn preflight(exec: &dyn Executor, search_path: &OsStr) -> Result<(GpuInfo, PathBuf), String> {
    let smi = crate::tools::find("nvidia-smi", search_path)
        .ok_or_else(|| "no NVIDIA GPU: nvidia-smi is not on PATH".to_string())?;
    let query = CommandSpec::new(
        &smi,
        [
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ]
        .map(OsString::from)
        .to_vec(),
        SMI_TIMEOUT,
    );
    let out = run_captured(exec, query).map_err(|e| format!("no usable NVIDIA GPU: {e}"))?;
    if !out.outcome.success() {
        return Err(format!(
            "no usable NVIDIA GPU: nvidia-smi {}: {}",
            out.outcome.describe(),
            out.stderr.trim()
        ));
    }
    let banner = run_captured(exec, CommandSpec::new(&smi, Vec::new(), SMI_TIMEOUT))
        .map(|o| o.stdout)
        .unwrap_or_default();
    let gpu = parse_query(&out.stdout, &banner).ok_or_else(|| {
        format!(
            "no NVIDIA GPU listed by nvidia-smi: {:?}",
            out.stdout.trim()
        )
    })?;
    Ok((gpu, smi))
}

/// The first GPU of `nvidia-smi --query-gpu=name,driver_version,memory.total
/// --format=csv,noheader`, with the CUDA version from the plain banner.
pub fn parse_query(csv: &str, banner: &str) -> Option<GpuInfo> {
    let line = csv.lines().find(|l| !l.trim().is_empty())?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [name, driver, memory] = fields.as_slice() else {
        return None;
    };
    let cuda = banner
        .split("CUDA Version:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string);
    Some(GpuInfo {
        name: name.to_string(),
        driver: driver.to_string(),
        memory: memory.to_string(),
        cuda,
        count: csv.lines().filter(|l| !l.trim().is_empty()).count(),
        ..GpuInfo::default()
    })
}

/// The toolkit's real folder and how it was found: the prefix of `nvcc` on PATH, else
/// `default` (`/usr/local/cuda`), every symlink resolved.
pub fn discover_cuda_home(
    nvcc: Option<&Path>,
    default: &Path,
) -> Result<(PathBuf, String), String> {
    if let Some(nvcc) = nvcc {
        let real = nvcc
            .canonicalize()
            .map_err(|e| format!("{}: {e}", nvcc.display()))?;
        let prefix = real
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} is not in a toolkit's bin/ folder", real.display()))?;
        return Ok((
            prefix.to_path_buf(),
            format!("nvcc on PATH ({})", nvcc.display()),
        ));
    }
    let real = default
        .canonicalize()
        .map_err(|e| format!("no nvcc on PATH and no {} ({e})", default.display()))?;
    Ok((real, default.display().to_string()))
}

/// The folder of `libcuda.so.1` (the driver's library) in `ldconfig -p` output.
pub fn parse_ldconfig(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (name, path) = line.split_once("=>")?;
        (name.split_whitespace().next()? == "libcuda.so.1")
            .then(|| Path::new(path.trim()).parent().map(Path::to_path_buf))
            .flatten()
    })
}

/// `ldconfig -p`'s answer for libcuda.so.1 (ldconfig lives in sbin, often not on PATH).
pub fn libcuda_dir(exec: &dyn Executor, search_path: &OsStr) -> Result<PathBuf, String> {
    let ldconfig = crate::tools::find("ldconfig", search_path)
        .or_else(|| {
            ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
                .map(PathBuf::from)
                .into_iter()
                .find(|p| p.is_file())
        })
        .ok_or("ldconfig was not found")?;
    let out = run_captured(
        exec,
        CommandSpec::new(&ldconfig, vec!["-p".into()], LDCONFIG_TIMEOUT),
    )
    .map_err(|e| e.to_string())?;
    parse_ldconfig(&out.stdout).ok_or_else(|| "ldconfig -p lists no libcuda.so.1".into())
}

/// Where this runner keeps what CUDA builds need.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaLayout {
    /// For repos that leave `cuda_home` to the lane: the folder and how it was found.
    pub cuda_home: Result<(PathBuf, String), String>,
    pub libcuda_dir: Result<PathBuf, String>,
}

impl CudaLayout {
    pub fn discover(exec: &dyn Executor, search_path: &OsStr) -> CudaLayout {
        let nvcc = crate::tools::find("nvcc", search_path);
        CudaLayout {
            cuda_home: discover_cuda_home(nvcc.as_deref(), Path::new(DEFAULT_CUDA_HOME)),
            libcuda_dir: libcuda_dir(exec, search_path),
        }
    }

    /// The repos as the lane builds them: each `cuda_home` parameter resolved (`auto`: the
    /// discovered folder; a path: its real folder), that folder and the driver library's
    /// added to the Nix sandbox, and `gpu` told what was resolved. A skip reason when a
    /// repo leaves the toolkit to the lane and there is none.
    pub fn apply(&self, repos: &mut [RepoManifest], gpu: &mut GpuInfo) -> Option<String> {
        let mut added: Vec<PathBuf> = self.libcuda_dir.iter().cloned().collect();
        gpu.libcuda_dir = self
            .libcuda_dir
            .as_ref()
            .ok()
            .map(|d| d.display().to_string());
        if let Ok((home, from)) = &self.cuda_home {
            gpu.cuda_home = Some(home.display().to_string());
            gpu.cuda_home_from = Some(from.clone());
        }
        for repo in repos.iter_mut() {
            let mut extra = added.clone();
            if let Some(ParamValue::Str(given)) = repo.parameters.get(CUDA_HOME) {
                let (home, from) = if given == AUTO {
                    match &self.cuda_home {
                        Ok(found) => found.clone(),
                        Err(why) => {
                            return Some(format!(
                                "no CUDA toolkit for `{}` (cuda_home = \"auto\"): {why}; fix: put nvcc on PATH or pass --param cuda_home=DIR",
                                repo.name
                            ))
                        }
                    }
                } else {
                    resolve_given(given)
                };
                gpu.cuda_home = Some(home.display().to_string());
                gpu.cuda_home_from = Some(from);
                repo.parameters.insert(
                    CUDA_HOME.into(),
                    ParamValue::Str(home.display().to_string()),
                );
                extra.push(home);
            }
            for path in extra {
                if !repo.nix_sandbox_paths.contains(&path) {
                    repo.nix_sandbox_paths.push(path.clone());
                }
                if !added.contains(&path) {
                    added.push(path);
                }
            }
        }
        gpu.sandbox_paths = added.iter().map(|p| p.display().to_string()).collect();
        None
    }
}

/// A `cuda_home` a repo or `--param` gave: its real folder where it exists (a link into
/// /etc/alternatives dangles in the build sandbox), else as given.
fn resolve_given(given: &str) -> (PathBuf, String) {
    match Path::new(given).canonicalize() {
        Ok(real) if real == Path::new(given) => (real, "parameter".into()),
        Ok(real) => {
            let from = format!("parameter {given} -> {}", real.display());
            (real, from)
        }
        Err(e) => (PathBuf::from(given), format!("parameter {given} ({e})")),
    }
}

/// The shell the lane's cases run in.
#[derive(Debug, Clone, PartialEq)]
pub enum Shell {
    /// `nix develop FLAKE#gpu --command ...`.
    Flake { name: String, prefix: Vec<OsString> },
    /// The harness's own environment, and why.
    Ambient { reason: String },
}

/// Nix's name for this machine's platform, e.g. `x86_64-linux`.
pub fn nix_system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Decides the shell from the flake's outputs: `nix eval` of `devShells.SYSTEM` (the names
/// only) with the harness's private configuration and a chroot store in `dir`, so the
/// host's /nix is not written. Offline, a flake whose inputs are not at hand cannot be
/// evaluated, and its shell could not be entered either: ambient, with Nix's reason.
pub fn choose_shell(
    exec: &dyn Executor,
    nix: Option<&Path>,
    flake_dir: &Path,
    dir: &Path,
) -> Shell {
    let ambient = |reason: String| Shell::Ambient { reason };
    let Some(nix) = nix else {
        return ambient("nix is not on PATH".into());
    };
    if !flake_dir.join("flake.nix").is_file() {
        return ambient(format!("no flake.nix in {}", flake_dir.display()));
    }
    let system = nix_system();
    let flake = flake_dir.display().to_string();
    let names = match eval_shell_names(exec, nix, &flake, &system, dir) {
        Ok(names) => names,
        Err(why) => {
            return ambient(format!(
                "`nix eval {flake}#devShells.{system}` failed: {why}"
            ))
        }
    };
    if !names.iter().any(|n| n == "gpu") {
        return ambient(format!(
            "the flake has no devShells.{system}.gpu (it has: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
    }
    Shell::Flake {
        name: format!("nix develop {flake}#gpu"),
        prefix: vec![
            nix.into(),
            "--extra-experimental-features".into(),
            "nix-command flakes".into(),
            "develop".into(),
            format!("{flake}#gpu").into(),
            "--command".into(),
        ],
    }
}

fn eval_shell_names(
    exec: &dyn Executor,
    nix: &Path,
    flake: &str,
    system: &str,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let conf =
        crate::tools::nix::write_private_conf(&dir.join("nix-conf")).map_err(|e| e.to_string())?;
    let args: Vec<OsString> = vec![
        "eval".into(),
        "--json".into(),
        // Never rewrite the checkout's flake.lock.
        "--no-write-lock-file".into(),
        "--store".into(),
        dir.join("eval-store").into(),
        format!("{flake}#devShells.{system}").into(),
        "--apply".into(),
        "builtins.attrNames".into(),
    ];
    let env = crate::tools::nix::private_env(&conf, &dir.join("xdg-cache"));
    let out = run_captured(exec, CommandSpec::new(nix, args, EVAL_TIMEOUT).env(env))
        .map_err(|e| e.to_string())?;
    if !out.outcome.success() {
        let lines: Vec<&str> = out.stderr.lines().map(str::trim).collect();
        let why = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("error:"))
            .or_else(|| lines.iter().rev().find(|l| !l.is_empty()))
            .copied()
            .unwrap_or("it printed nothing");
        return Err(format!("{}: {why}", out.outcome.describe()));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("unexpected output ({e})"))
}

/// What entering the shell costs each command: it is entered once to realise it (which may
/// download it), then once more, timed.
pub fn shell_startup(exec: &dyn Executor, prefix: &[OsString]) -> Result<f64, String> {
    let (program, args) = prefix.split_first().ok_or("an empty shell command")?;
    let enter = || {
        let mut args = args.to_vec();
        args.push("true".into());
        let out = run_captured(exec, CommandSpec::new(program, args, SHELL_TIMEOUT))
            .map_err(|e| e.to_string())?;
        if out.outcome.success() {
            Ok(out.outcome.wall.as_secs_f64())
        } else {
            Err(format!(
                "{}: {}",
                out.outcome.describe(),
                out.stderr.lines().last().unwrap_or("").trim()
            ))
        }
    };
    enter()?;
    enter()
}

pub use super::Need;

/// The device files CUDA programs open, as found under `dev` (`/dev`).
pub fn device_needs(dev: &Path) -> Vec<Need> {
    let mut gpus: Vec<String> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("nvidia")
                .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    gpus.sort();
    let mut needs = vec![Need {
        what: "nvidiaN (a GPU's device file)",
        found: if gpus.is_empty() {
            Err(format!(
                "no nvidia[0-9]* in {}: load the NVIDIA driver, or pass the devices into the container (--gpus all)",
                dev.display()
            ))
        } else {
            Ok(gpus.join(" "))
        },
        required: true,
    }];
    for (name, fix) in DEVICE_FILES {
        let path = dev.join(name);
        needs.push(Need {
            what: name,
            found: if path.exists() {
                Ok(path.display().to_string())
            } else {
                Err(format!("{} is missing: {fix}", path.display()))
            },
            required: true,
        });
    }
    needs
}

/// Everything the gpu lane needs on this runner (`doctor --lane gpu`).
pub fn needs(exec: &dyn Executor, search_path: &OsStr, flake_dir: &Path, dir: &Path) -> Vec<Need> {
    let need = |what, found, required| Need {
        what,
        found,
        required,
    };
    let gpu = preflight(exec, search_path).map(|(gpu, smi)| {
        let cuda = gpu.cuda.as_deref().unwrap_or("?");
        format!(
            "{} (driver {}, CUDA {cuda}) via {}",
            gpu.name,
            gpu.driver,
            smi.display()
        )
    });
    let mut needs = vec![need(
        "an NVIDIA GPU (nvidia-smi)",
        gpu.map_err(|why| {
            format!("{why}: install the NVIDIA driver; nvidia-smi comes with it (often in /usr/local/nvidia/bin: add it to PATH)")
        }),
        true,
    )];
    needs.extend(device_needs(Path::new("/dev")));
    let layout = CudaLayout::discover(exec, search_path);
    let libcuda = layout.libcuda_dir.map(|d| d.display().to_string());
    needs.push(need(
        "the driver's libcuda.so.1 (ldconfig -p)",
        libcuda.map_err(|why| format!("{why}: install the driver's libraries and run ldconfig")),
        true,
    ));
    let toolkit = layout
        .cuda_home
        .map(|(home, from)| format!("{} (from {from})", home.display()));
    needs.push(need(
        "a CUDA toolkit (cuda_home = \"auto\")",
        toolkit.map_err(|why| {
            format!("{why}: install the toolkit and put its bin/ on PATH, or pass --param cuda_home=DIR")
        }),
        true,
    ));
    for (tool, what) in [
        ("nix", "Nix (builds)"),
        ("nginx", "nginx (the embedded cache of warm cases)"),
    ] {
        let found = crate::tools::find(tool, search_path).map(|p| p.display().to_string());
        needs.push(need(
            what,
            found.ok_or_else(|| {
                format!("{tool} is not on PATH: see docs/lanes-and-gpu.md for bringing it to a runner without a registry")
            }),
            true,
        ));
    }
    let namespaces = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map(|n| format!("up to {n}"));
    needs.push(need(
        "user namespaces (Nix's build sandbox)",
        namespaces.ok_or_else(|| {
            "they are off (/proc/sys/user/max_user_namespaces): chroot-store builds fail; run on a host or in a container that allows them".to_string()
        }),
        true,
    ));
    let nix = crate::tools::find("nix", search_path);
    let shell = match choose_shell(exec, nix.as_deref(), flake_dir, dir) {
        Shell::Flake { name, .. } => Ok(name),
        Shell::Ambient { reason } => Err(format!("cases run in the ambient environment: {reason}")),
    };
    needs.push(need("the flake's gpu dev shell", shell, false));
    needs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn recorded(name: &str) -> String {
        crate::tools::fixture(&format!("gpu-lane-h100/{name}"))
    }

    #[test]
    fn parses_the_recorded_query_and_banner() {
        let gpu = parse_query(
            &recorded("query-gpu.csv"),
            &recorded("nvidia-smi-banner.txt"),
        )
        .unwrap();
        assert_eq!(gpu.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpu.driver, "580.159.04");
        assert_eq!(gpu.memory, "81559 MiB");
        assert_eq!(gpu.cuda.as_deref(), Some("13.0"));
        assert_eq!(gpu.count, 1);
        assert_eq!(parse_query("", "CUDA Version: 13.0"), None);
    }

    #[test]
    fn finds_libcuda_in_the_recorded_ldconfig_output() {
        assert_eq!(
            parse_ldconfig(&recorded("ldconfig-cuda.txt")),
            Some(PathBuf::from("/usr/local/nvidia/lib64")),
            "libcuda.so.1, not libcudart or libcuda.so"
        );
        assert_eq!(
            parse_ldconfig("\tlibcuda.so (libc6,x86-64) => /lib/libcuda.so\n"),
            None
        );
    }

    /// `root/usr/local/cuda -> root/etc/alternatives/cuda -> root/usr/local/cuda-13.0`, the
    /// recorded runner's layout (`cuda-links.txt`) under a temporary root.
    fn runner_layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("usr/local/cuda-13.0");
        std::fs::create_dir_all(real.join("bin")).unwrap();
        std::fs::write(real.join("bin/nvcc"), "").unwrap();
        std::fs::create_dir_all(root.path().join("etc/alternatives")).unwrap();
        symlink(&real, root.path().join("etc/alternatives/cuda")).unwrap();
        let link = root.path().join("usr/local/cuda");
        symlink(root.path().join("etc/alternatives/cuda"), &link).unwrap();
        (root, link, real.canonicalize().unwrap())
    }

    #[test]
    fn cuda_home_is_nvcc_s_real_prefix_else_the_resolved_default() {
        let (root, link, real) = runner_layout();
        // nvcc on PATH through the link: its real prefix.
        let (home, from) =
            discover_cuda_home(Some(&link.join("bin/nvcc")), Path::new("/nowhere")).unwrap();
        assert_eq!(home, real);
        assert!(from.starts_with("nvcc on PATH"), "{from}");
        // No nvcc: the default link, resolved.
        let (home, from) = discover_cuda_home(None, &link).unwrap();
        assert_eq!((home, from), (real.clone(), link.display().to_string()));
        let err = discover_cuda_home(None, &root.path().join("none")).unwrap_err();
        assert!(err.starts_with("no nvcc on PATH and no "), "{err}");
        // The search goes through the PATH it is given.
        let path = std::env::join_paths([root.path().join("bin"), link.join("bin")]).unwrap();
        std::fs::set_permissions(
            real.join("bin/nvcc"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            crate::tools::find("nvcc", &path),
            Some(link.join("bin/nvcc"))
        );
    }

    fn cuda_repo(cuda_home: &str, sandbox: &[&Path]) -> RepoManifest {
        let text = format!(
            "name = \"cuda\"\ndescription = \"d\"\n[source]\npath = \".\"\n[parameters]\ncuda_home = \"{cuda_home}\"\n[nix]\nfile = \"default.nix\"\n"
        );
        let mut repo = crate::plan::manifest::parse(&text, Path::new("/tmp/repo.toml")).unwrap();
        repo.nix_sandbox_paths = sandbox.iter().map(|p| p.to_path_buf()).collect();
        repo
    }

    #[test]
    fn a_symlinked_cuda_home_resolves_in_the_parameter_and_the_sandbox() {
        let (_root, link, real) = runner_layout();
        let layout = CudaLayout {
            cuda_home: Err("not asked".into()),
            libcuda_dir: Ok("/usr/local/nvidia/lib64".into()),
        };
        let mut repos = vec![cuda_repo(&link.display().to_string(), &[&link])];
        let mut gpu = GpuInfo::default();
        assert_eq!(layout.apply(&mut repos, &mut gpu), None);
        let repo = &repos[0];
        assert_eq!(
            repo.parameters[CUDA_HOME],
            ParamValue::Str(real.display().to_string())
        );
        assert_eq!(
            repo.nix_sandbox_paths,
            vec![
                link.clone(),
                PathBuf::from("/usr/local/nvidia/lib64"),
                real.clone()
            ]
        );
        assert_eq!(gpu.cuda_home.as_deref(), Some(real.to_str().unwrap()));
        assert_eq!(
            gpu.cuda_home_from,
            Some(format!(
                "parameter {} -> {}",
                link.display(),
                real.display()
            ))
        );
        assert_eq!(gpu.libcuda_dir.as_deref(), Some("/usr/local/nvidia/lib64"));
        assert_eq!(
            gpu.sandbox_paths,
            [
                "/usr/local/nvidia/lib64".to_string(),
                real.display().to_string()
            ]
        );
        // What Nix is then given: the toolkit's real folder, and the manifest's link mounted
        // onto it at every step of its chain (the alternatives link is outside the sandbox).
        let entries = crate::tools::nix_sandbox::sandbox_entries(&repo.nix_sandbox_paths);
        let real_s = real.display().to_string();
        assert!(
            entries.contains(&format!("{}={real_s}", link.display())),
            "{entries:?}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e.ends_with(&format!("etc/alternatives/cuda={real_s}"))),
            "{entries:?}"
        );
        assert!(entries.contains(&real_s), "{entries:?}");
    }

    #[test]
    fn auto_takes_the_discovered_toolkit_or_skips_with_a_reason() {
        let found = CudaLayout {
            cuda_home: Ok((
                "/usr/local/cuda-13.0".into(),
                "nvcc on PATH (/usr/local/cuda/bin/nvcc)".into(),
            )),
            libcuda_dir: Err("ldconfig -p lists no libcuda.so.1".into()),
        };
        let mut repos = vec![cuda_repo(AUTO, &[])];
        let mut gpu = GpuInfo::default();
        assert_eq!(found.apply(&mut repos, &mut gpu), None);
        assert_eq!(
            repos[0].parameters[CUDA_HOME],
            ParamValue::Str("/usr/local/cuda-13.0".into())
        );
        assert_eq!(
            repos[0].nix_sandbox_paths,
            vec![PathBuf::from("/usr/local/cuda-13.0")]
        );
        assert_eq!(gpu.libcuda_dir, None);
        let missing = CudaLayout {
            cuda_home: Err(
                "no nvcc on PATH and no /usr/local/cuda (No such file or directory)".into(),
            ),
            ..found
        };
        let reason = missing
            .apply(&mut [cuda_repo(AUTO, &[])], &mut GpuInfo::default())
            .unwrap();
        assert!(
            reason.starts_with("no CUDA toolkit for `cuda`") && reason.contains("fix:"),
            "{reason}"
        );
    }

    #[test]
    fn the_shell_s_start_up_is_timed_after_one_entry_that_realises_it() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = tmp.path().join("entries");
        let script = format!("echo in >> {}; sleep 0.2; exec \"$@\"", entries.display());
        let prefix: Vec<OsString> = ["sh", "-c", &script, "shell"].map(OsString::from).to_vec();
        let seconds = shell_startup(&crate::exec::process::ProcessExecutor, &prefix).unwrap();
        assert!(seconds >= 0.2, "{seconds}");
        assert_eq!(std::fs::read_to_string(&entries).unwrap(), "in\nin\n");
        let broken: Vec<OsString> = [
            "sh",
            "-c",
            "echo 'cannot build the shell' >&2; exit 1",
            "shell",
        ]
        .map(OsString::from)
        .to_vec();
        assert_eq!(
            shell_startup(&crate::exec::process::ProcessExecutor, &broken),
            Err("exit code 1: cannot build the shell".into())
        );
    }

    #[test]
    fn device_files_are_named_when_missing() {
        let dev = tempfile::tempdir().unwrap();
        let needs = device_needs(dev.path());
        assert_eq!(needs.len(), 3);
        assert!(needs.iter().all(|n| n.required && n.found.is_err()));
        for name in [
            "nvidia0",
            "nvidia1",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
        ] {
            std::fs::write(dev.path().join(name), "").unwrap();
        }
        let needs = device_needs(dev.path());
        assert_eq!(needs[0].found, Ok("nvidia0 nvidia1".into()));
        assert!(needs.iter().all(|n| n.found.is_ok()), "{needs:?}");
    }

    #[test]
    fn without_a_gpu_the_preflight_gives_a_reason() {
        // This machine has no NVIDIA GPU (CI neither); where one exists the test still holds
        // by checking the shape of the answer.
        let path = std::env::var_os("PATH").unwrap_or_default();
        match preflight(&crate::exec::process::ProcessExecutor, &path) {
            Ok((gpu, _)) => assert!(!gpu.name.is_empty()),
            Err(reason) => assert!(reason.starts_with("no "), "{reason}"),
        }
        let err = preflight(&crate::exec::process::ProcessExecutor, OsStr::new("")).unwrap_err();
        assert_eq!(err, "no NVIDIA GPU: nvidia-smi is not on PATH");
    }
}
