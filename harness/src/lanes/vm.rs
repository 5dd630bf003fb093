//! The `vm` lane: the harness boots a QEMU virtual machine and runs its own cases inside
//! it. The guest sees the host's root read-only over 9p (so it has the same tools and the
//! same harness binary), a job folder read-write (a typed job file in, the cases' events
//! out), and the host's loopback as 10.0.2.2 through user-mode networking (so it reaches
//! the cache).
//!
//! Acceleration is proved, not assumed: a tiny VM must boot and exit under KVM within a
//! timeout, else the lane runs under TCG and says so (its timings are then correctness
//! evidence, not KVM figures). /dev/kvm alone proves nothing: nested PVM devices exist on
//! which stock kernels crawl and then fail.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, IoContext, Result};
use crate::exec::process::{CommandSpec, Executor, Exit};
use crate::exec::scratch::write_private;
use crate::lanes::initramfs::{cpio_newc, load_order, Entry};
use crate::lanes::{GuestRole, Need};
use crate::plan::cache::{BazelCache, BazelEndpoint, Fill, NixCache};
use crate::plan::config::{BazelSetup, Login, NixSetup, Secret, VmSettings};
use crate::plan::{Lane, Plan, Source};
use crate::results::{Environment, LaneIdentity};

/// What the guest needs: virtio PCI, 9p over virtio, and a virtio network card.
const MODULES: &[&str] = &["virtio_pci", "9p", "9pnet_virtio", "virtio_net"];
const BUSYBOX: &str = "/bin/busybox";
const ACCEL_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// The guest's view of the host's loopback (QEMU user-mode networking).
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A bootable kernel and the initramfs that runs the job.
#[derive(Debug, Clone)]
pub struct VmImage {
    pub kernel_release: String,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
}

/// The newest kernel under /boot that has its modules installed.
fn find_kernel() -> Result<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let release = name.strip_prefix("vmlinuz-")?.to_string();
            Path::new("/lib/modules")
                .join(&release)
                .join("modules.dep")
                .is_file()
                .then(|| (release, e.path()))
        })
        .collect();
    found.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    found.pop().ok_or_else(|| {
        Error::Environment(
            "the vm lane needs a Linux kernel with its modules: none under /boot\n  fix: `sudo apt-get install linux-image-amd64` (or your distribution's kernel package)".into(),
        )
    })
}

/// Orders version strings by their numbers: `6.1.0-10` after `6.1.0-9`.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (number, tail) = rest.split_at(digits);
            let text = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            out.push((number.parse().unwrap_or(0), tail[..text].to_string()));
            rest = &tail[text..];
        }
        out
    }
    chunks(a).cmp(&chunks(b))
}

/// Boots through the kernel's PVH entry, which needs the uncompressed ELF inside vmlinuz.
fn extract_vmlinux(vmlinuz: &Path, dir: &Path, exec: &dyn Executor) -> Result<PathBuf> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let image = std::fs::read(vmlinuz).context(|| format!("reading {}", vmlinuz.display()))?;
    let at = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or_else(|| {
            Error::Environment(format!(
                "{} has no xz payload to boot from (only xz-compressed kernels are supported)",
                vmlinuz.display()
            ))
        })?;
    let payload = dir.join("vmlinux.xz");
    std::fs::write(&payload, &image[at..]).context(|| format!("writing {}", payload.display()))?;
    let vmlinux = dir.join("vmlinux");
    let mut spec =
        CommandSpec::new("xz", vec!["-dc".into()], Duration::from_secs(120)).stdin(&payload);
    spec.stdout = vmlinux.clone();
    spec.stderr = dir.join("xz.log");
    // xz complains about the bytes after the payload; the payload itself is complete.
    exec.run(&spec)?;
    let elf = std::fs::read(&vmlinux)
        .map(|b| b.starts_with(b"\x7fELF"))
        .unwrap_or(false);
    if !elf {
        return Err(Error::Environment(format!(
            "could not extract vmlinux from {} (is xz installed?)",
            vmlinuz.display()
        )));
    }
    Ok(vmlinux)
}

/// Whether an ELF executable asks for a dynamic loader (PT_INTERP): then it cannot run
/// alone in the initramfs.
fn is_dynamic(elf: &[u8]) -> bool {
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = elf.get(at..at + len)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return true;
    };
    (0..phnum).any(|i| read((phoff + i * phentsize) as usize, 4) == Some(3))
}

/// The guest's /init: modules, shares, network, a writable scratch over the read-only host
/// root, then the job run in the host's tree as the new root; its exit status leaves
/// through QEMU's isa-debug-exit port.
fn init_script(modules: &[String]) -> String {
    let names: Vec<&str> = modules
        .iter()
        .map(|m| m.rsplit('/').next().unwrap_or(m))
        .collect();
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts -o ptmxmode=0666 devpts /dev/pts; mount -t tmpfs shm /dev/shm
# Nix's build sandbox needs user namespaces, which this minimal boot leaves at zero.
echo 15000 > /proc/sys/user/max_user_namespaces
for m in {modules}; do insmod /lib/modules/$m || echo "flywheel-vm: insmod $m failed"; done
mkdir -p /host /job
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,ro hostroot /host || echo "flywheel-vm: cannot mount the host root"
mount -t 9p -o $opts job /job || echo "flywheel-vm: cannot mount the job folder"
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via {host}
mount -t tmpfs -o size=80% scratch /host/tmp
mkdir -p /host/tmp/job && mount --bind /job /host/tmp/job
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount --rbind /dev /host/dev
# switch_root, not chroot: the kernel refuses user namespaces (Nix's build sandbox) to a
# chrooted process. The host tree has busybox too (the lane requires busybox-static).
exec switch_root /host /bin/busybox sh -c '/bin/sh /tmp/job/job.sh > /tmp/job/job.log 2>&1; rc=$?; sync; printf "\\$(printf %03o $rc)" | /bin/busybox dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; /bin/busybox poweroff -f'
"#,
        modules = names.join(" "),
        host = HOST_FROM_GUEST
    )
}

/// Builds the kernel and initramfs once per run into `dir`.
pub fn build_image(dir: &Path, exec: &dyn Executor) -> Result<VmImage> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let (release, vmlinuz) = find_kernel()?;
    let vmlinux = extract_vmlinux(&vmlinuz, dir, exec)?;
    let modules_dir = Path::new("/lib/modules").join(&release);
    let dep = std::fs::read_to_string(modules_dir.join("modules.dep"))
        .context(|| format!("reading {}/modules.dep", modules_dir.display()))?;
    let modules = load_order(&dep, MODULES).map_err(Error::Environment)?;
    let busybox = std::fs::read(BUSYBOX).map_err(|_| {
        Error::Environment("the vm lane needs a static busybox at /bin/busybox\n  fix: `sudo apt-get install busybox-static`".into())
    })?;
    if is_dynamic(&busybox) {
        return Err(Error::Environment(
            "/bin/busybox is dynamically linked and cannot run alone in the VM\n  fix: `sudo apt-get install busybox-static`".into(),
        ));
    }
    let module_files: Vec<(String, Vec<u8>)> = modules
        .iter()
        .map(|m| {
            let path = modules_dir.join(m);
            let name = m.rsplit('/').next().unwrap_or(m).to_string();
            std::fs::read(&path)
                .map(|data| (format!("lib/modules/{name}"), data))
                .context(|| format!("reading {}", path.display()))
        })
        .collect::<Result<_>>()?;
    let init = init_script(&modules);
    let mut entries = vec![
        Entry::Dir { path: "bin" },
        Entry::Dir { path: "proc" },
        Entry::Dir { path: "sys" },
        Entry::Dir { path: "dev" },
        Entry::Dir { path: "lib" },
        Entry::Dir {
            path: "lib/modules",
        },
        Entry::File {
            path: "bin/busybox",
            mode: 0o755,
            data: &busybox,
        },
        Entry::File {
            path: "init",
            mode: 0o755,
            data: init.as_bytes(),
        },
    ];
    entries.extend(module_files.iter().map(|(path, data)| Entry::File {
        path,
        mode: 0o644,
        data,
    }));
    let initramfs = dir.join("initramfs.cpio");
    std::fs::write(&initramfs, cpio_newc(&entries))
        .context(|| format!("writing {}", initramfs.display()))?;
    Ok(VmImage {
        kernel_release: release,
        vmlinux,
        initramfs,
    })
}

/// What the vm lane needs here (`doctor --lane vm`), each with what was found or its fix:
/// QEMU, a kernel with its virtio and 9p modules, a static busybox and xz, then the guest
/// image built from them in `dir`. KVM is proved only by booting a test VM under it (up
/// to 30 s), which `probe_kvm` asks for; without it the lane runs under TCG.
pub fn needs(
    exec: &dyn Executor,
    (qemu, search_path): (Option<&Path>, &OsStr),
    dir: &Path,
    probe_kvm: bool,
) -> Vec<Need> {
    let mut needs = vec![Need {
        what: "QEMU (qemu-system-x86_64)",
        found: qemu
            .map(|q| q.display().to_string())
            .ok_or_else(|| crate::tools::install_hint("qemu-system-x86_64").to_string()),
        required: true,
    }];
    let kernel = find_kernel();
    needs.push(Need {
        what: "a Linux kernel with its modules (/boot, /lib/modules)",
        found: kernel
            .as_ref()
            .map(|(release, path)| format!("Linux {release} ({})", path.display()))
            .map_err(ToString::to_string),
        required: true,
    });
    if let Ok((release, _)) = &kernel {
        let dep = Path::new("/lib/modules").join(release).join("modules.dep");
        let modules = std::fs::read_to_string(&dep)
            .map_err(|e| format!("cannot read {}: {e}", dep.display()))
            .and_then(|text| load_order(&text, MODULES))
            .map(|order| format!("{} modules in load order", order.len()));
        needs.push(Need {
            what: "the guest's virtio and 9p modules (virtio_pci, 9p, 9pnet_virtio, virtio_net)",
            found: modules,
            required: true,
        });
    }
    let busybox = match std::fs::read(BUSYBOX) {
        Ok(bytes) if !is_dynamic(&bytes) => Ok(format!("{BUSYBOX}, statically linked")),
        Ok(_) => Err(format!(
            "{BUSYBOX} is dynamically linked: `sudo apt-get install busybox-static`"
        )),
        Err(_) => Err(format!(
            "no {BUSYBOX}: `sudo apt-get install busybox-static`"
        )),
    };
    needs.push(Need {
        what: "a static busybox (the guest's init)",
        found: busybox,
        required: true,
    });
    needs.push(Need {
        what: "xz (unpacks the kernel to boot)",
        found: crate::tools::find("xz", search_path)
            .map(|p| p.display().to_string())
            .ok_or_else(|| "xz is not on PATH: `sudo apt-get install xz-utils`".into()),
        required: true,
    });
    let ready = needs.iter().all(|n| n.found.is_ok());
    let image = if ready {
        build_image(&dir.join("image"), exec).map_err(|e| e.to_string())
    } else {
        Err("not built: something above is missing".into())
    };
    needs.push(Need {
        what: "the guest image (vmlinux and an initramfs)",
        found: image
            .as_ref()
            .map(|i| format!("built for Linux {}", i.kernel_release))
            .map_err(Clone::clone),
        required: true,
    });
    let kvm = match (qemu, &image) {
        _ if !Path::new("/dev/kvm").exists() => {
            Err("no /dev/kvm: the lane runs under TCG (correctness evidence, not KVM timings)".into())
        }
        (Some(qemu), Ok(image)) if probe_kvm => match probe_accel(exec, qemu, image, dir) {
            Ok((Accel::Kvm, note)) => Ok(note),
            Ok((Accel::Tcg, note)) => Err(format!("{note}: the lane runs under TCG")),
            Err(e) => Err(format!("the KVM probe could not run: {e}")),
        },
        _ if probe_kvm => Err("/dev/kvm exists; not probed: the guest image is missing".into()),
        _ => Err(format!(
            "/dev/kvm exists but only a boot proves it works: pass --kvm-probe to boot a test VM under KVM (up to {} s), as every run does",
            ACCEL_PROBE_TIMEOUT.as_secs()
        )),
    };
    needs.push(Need {
        what: "KVM acceleration (else TCG)",
        found: kvm,
        required: false,
    });
    needs
}

/// A machine to boot: the emulator, the image, how it is accelerated and its size.
#[derive(Clone, Copy)]
pub struct Machine<'a> {
    pub qemu: &'a Path,
    pub image: &'a VmImage,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
}

/// The QEMU command that boots the machine and runs `job_dir/job.sh` in the guest.
pub fn qemu_command(machine: Machine, job_dir: &Path, timeout: Duration) -> CommandSpec {
    let Machine {
        qemu,
        image,
        accel,
        memory_mb,
        cpus,
    } = machine;
    let share = |path: &Path, tag: &str, extra: &str| -> OsString {
        format!(
            "local,path={},mount_tag={tag},security_model=none,multidevs=remap{extra}",
            path.display()
        )
        .into()
    };
    let args: Vec<OsString> = vec![
        "-accel".into(),
        accel.name().into(),
        "-m".into(),
        memory_mb.to_string().into(),
        "-smp".into(),
        cpus.to_string().into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        image.vmlinux.clone().into(),
        "-initrd".into(),
        image.initramfs.clone().into(),
        "-append".into(),
        "console=ttyS0 panic=-1 quiet".into(),
        "-virtfs".into(),
        share(Path::new("/"), "hostroot", ",readonly=on"),
        "-virtfs".into(),
        share(job_dir, "job", ""),
        "-netdev".into(),
        "user,id=net0".into(),
        "-device".into(),
        "virtio-net-pci,netdev=net0,romfile=".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
    ];
    let mut spec = CommandSpec::new(qemu, args, timeout);
    spec.stdout = job_dir.join("console.log");
    spec.stderr = job_dir.join("qemu.log");
    spec
}

/// How a VM run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// The job ran; its exit status.
    Job(i32),
    /// The VM ended without reporting a status (kernel panic, crash) or was killed.
    Lost(String),
}

/// isa-debug-exit makes QEMU exit with `(value << 1) | 1`.
pub fn decode_exit(exit: Exit) -> GuestExit {
    match exit {
        Exit::Code(c) if c % 2 == 1 => GuestExit::Job(c >> 1),
        Exit::Code(c) => GuestExit::Lost(format!("QEMU exited with {c} before the job reported")),
        Exit::Signal(s) => GuestExit::Lost(format!("QEMU was killed by signal {s}")),
        Exit::TimedOut => GuestExit::Lost("the VM ran past its timeout and was killed".into()),
    }
}

/// Runs `script` (a POSIX shell script run as root in the host's tree) in a VM.
pub fn run_job(
    exec: &dyn Executor,
    machine: Machine,
    job_dir: &Path,
    script: &str,
    timeout: Duration,
) -> Result<GuestExit> {
    std::fs::create_dir_all(job_dir).context(|| format!("creating {}", job_dir.display()))?;
    std::fs::write(job_dir.join("job.sh"), script)
        .context(|| format!("writing {}/job.sh", job_dir.display()))?;
    let outcome = exec.run(&qemu_command(machine, job_dir, timeout))?;
    Ok(decode_exit(outcome.exit))
}

/// Boots a VM that only exits, under KVM, within a timeout. KVM is used only if that works.
pub fn probe_accel(
    exec: &dyn Executor,
    qemu: &Path,
    image: &VmImage,
    dir: &Path,
) -> Result<(Accel, String)> {
    if !Path::new("/dev/kvm").exists() {
        return Ok((Accel::Tcg, "no /dev/kvm".into()));
    }
    let probe = dir.join("kvm-probe");
    let machine = Machine {
        qemu,
        image,
        accel: Accel::Kvm,
        memory_mb: 256,
        cpus: 1,
    };
    let exit = run_job(exec, machine, &probe, "exit 42\n", ACCEL_PROBE_TIMEOUT)?;
    Ok(match exit {
        GuestExit::Job(42) => (Accel::Kvm, "a test VM booted and exited under KVM".into()),
        GuestExit::Job(other) => (Accel::Tcg, format!("a test VM under KVM exited with {other}, not 42")),
        GuestExit::Lost(why) => (Accel::Tcg, format!("a test VM under KVM failed ({why}) within {} s: /dev/kvm is there but does not work", ACCEL_PROBE_TIMEOUT.as_secs())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_the_debug_port() {
        assert_eq!(decode_exit(Exit::Code(7)), GuestExit::Job(3));
        assert_eq!(decode_exit(Exit::Code(1)), GuestExit::Job(0));
        assert!(matches!(decode_exit(Exit::Code(0)), GuestExit::Lost(_)));
        assert!(matches!(decode_exit(Exit::TimedOut), GuestExit::Lost(_)));
    }

    #[test]
    fn the_init_script_loads_modules_and_reports_the_job_status() {
        let init = init_script(&["kernel/fs/9p/9p.ko".into()]);
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(init.contains("for m in 9p.ko;"));
        assert!(init.contains("exec switch_root /host"));
        assert!(init.contains("/bin/sh /tmp/job/job.sh"));
        assert!(init.contains("seek=244"));
    }

    #[test]
    fn the_newest_kernel_is_chosen_by_version_numbers() {
        let mut releases = [
            "6.1.0-10-amd64",
            "6.1.0-9-amd64",
            "5.10.0-28-amd64",
            "6.1.0-9-rt-amd64",
        ];
        releases.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(releases.last(), Some(&"6.1.0-10-amd64"));
        assert_eq!(releases.first(), Some(&"5.10.0-28-amd64"));
    }

    #[test]
    fn tells_static_from_dynamic_executables() {
        let this_test = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(
            is_dynamic(&this_test),
            "a Rust test binary links glibc dynamically"
        );
        assert!(is_dynamic(b"not an elf"));
    }
}

/// What the harness inside the VM runs, and against what: the plan (its repos resolved to
/// paths the guest sees through the shared root), the caches as the guest reaches them
/// (their credentials in private files of the job folder), and how the host accelerated it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestJob {
    pub plan: Plan,
    pub nix_cache: Option<NixCache>,
    pub bazel_cache: Option<BazelCache>,
    /// The caches' credentials, which the job names and never holds.
    pub secrets: GuestSecrets,
    pub nix: NixSetup,
    pub bazel: BazelSetup,
    pub acceleration: String,
    pub acceleration_note: String,
    /// The lane's bootstrap as the host timed it (the job's steps, the host's checks, the
    /// VM's image and KVM probe); the guest adds its own checks.
    #[serde(default)]
    pub bootstrap: crate::results::lifecycle::Bootstrap,
    /// Where the guest writes its events, one JSON line each.
    pub events: PathBuf,
    /// Where the guest keeps its scratch folder (a tmpfs).
    pub work_dir: PathBuf,
}

/// Private (0600) files of the job folder, as the guest sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GuestSecrets {
    /// The Nix cache's login: its user on the first line, its password (an Attic token) on
    /// the second.
    pub nix_login: Option<PathBuf>,
    /// The Bazel cache's headers, one `Name=Value` a line.
    pub bazel_headers: Option<PathBuf>,
}

impl GuestJob {
    /// Writes the job for `plan` into the host's `job` folder: the caches as the guest
    /// reaches them (loopback URLs through 10.0.2.2), their credentials and signing key
    /// in private files beside the job, and `job.json`.
    pub fn write(
        job: &Path,
        plan: &Plan,
        (nix_cache, bazel_cache): (Option<&NixCache>, Option<&BazelCache>),
        (nix, bazel): (&NixSetup, &BazelSetup),
        role: GuestRole,
    ) -> Result<GuestJob> {
        let mut files = 0;
        let mut private = |write: &dyn Fn(&Path) -> Result<()>| -> Result<PathBuf> {
            let name = format!("secret-{files}");
            files += 1;
            write(&job.join(&name))?;
            Ok(Path::new(GUEST_JOB_DIR).join(name))
        };
        let mut secrets = GuestSecrets::default();
        let mut nix_cache = nix_cache.map(for_guest);
        if let Some(cache) = nix_cache.as_mut() {
            if let Some(login) = &cache.login {
                let text = format!("{}\n{}\n", login.user, login.password.expose());
                secrets.nix_login = Some(private(&|to| write_private(to, text.as_bytes()))?);
            }
            if let Fill::NixCopy {
                secret_key_file: Some(key),
                ..
            } = &mut cache.fill
            {
                let from = key.clone();
                *key = private(&|to| crate::exec::scratch::copy_private(&from, to))?;
            }
        }
        let mut bazel_cache = bazel_cache.cloned();
        if let Some(cache) = bazel_cache.as_mut() {
            if let BazelEndpoint::Remote(url) = &mut cache.endpoint {
                *url = guest_url(url);
            }
            if !cache.headers.is_empty() {
                let lines: String = cache
                    .headers
                    .iter()
                    .map(|h| format!("{}\n", h.expose()))
                    .collect();
                secrets.bazel_headers = Some(private(&|to| write_private(to, lines.as_bytes()))?);
            }
        }
        // The guest builds from the host's checkouts: a git URL is only a name there, and
        // its credentials stay on the host.
        let mut plan = plan.clone();
        for repo in &mut plan.repos {
            if let Source::Git { url, .. }
            | Source::Fetched { url, .. }
            | Source::Unavailable { url, .. } = &mut repo.source
            {
                *url = crate::boundary::redact_urls(url);
            }
        }
        let spec = GuestJob {
            plan,
            nix_cache,
            bazel_cache,
            secrets,
            nix: NixSetup {
                upstream: nix.upstream.iter().map(for_guest).collect(),
                ..nix.clone()
            },
            bazel: bazel.clone(),
            acceleration: role.acceleration,
            acceleration_note: role.acceleration_note,
            bootstrap: role.bootstrap,
            events: Path::new(GUEST_JOB_DIR).join("events.jsonl"),
            work_dir: PathBuf::from("/tmp"),
        };
        let json = serde_json::to_vec_pretty(&spec).expect("a guest job always serialises");
        let file = job.join("job.json");
        std::fs::write(&file, json).context(|| format!("writing {}", file.display()))?;
        Ok(spec)
    }

    /// Inside the guest: the job the host wrote at `file`, the caches' credentials read
    /// back from their private files.
    pub fn read(file: &Path) -> Result<GuestJob> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("reading the guest job {}", file.display()), e))?;
        let mut job: GuestJob = serde_json::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "{}: not a guest job of this harness ({e})",
                file.display()
            ))
        })?;
        let read = |path: &Path| {
            std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))
        };
        if let (Some(cache), Some(path)) = (job.nix_cache.as_mut(), &job.secrets.nix_login) {
            let text = read(path)?;
            let mut lines = text.lines();
            cache.login = Some(Login {
                user: lines.next().unwrap_or_default().to_string(),
                password: Secret::new(lines.next().unwrap_or_default()),
            });
        }
        if let (Some(cache), Some(path)) = (job.bazel_cache.as_mut(), &job.secrets.bazel_headers) {
            cache.headers = read(path)?.lines().map(Secret::new).collect();
        }
        Ok(job)
    }
}

/// A Nix cache as the guest reaches it.
fn for_guest(cache: &NixCache) -> NixCache {
    NixCache {
        url: guest_url(&cache.url),
        ..cache.clone()
    }
}

/// The job folder as the guest sees it (the guest's own /tmp is a tmpfs).
const GUEST_JOB_DIR: &str = "/tmp/job";

/// The vm lane, ready to boot: its image and the acceleration proved for it.
pub struct GuestLane<'a> {
    exec: &'a dyn Executor,
    qemu: &'a Path,
    image: VmImage,
    accel: Accel,
    note: String,
    vm: VmSettings,
    dir: PathBuf,
    nix_cache: Option<NixCache>,
    bazel_cache: Option<BazelCache>,
    nix: NixSetup,
    bazel: BazelSetup,
    /// The run's `$PATH`, which the guest's harness gets (the guest shares the host's root).
    search_path: OsString,
    /// The run's bootstrap with the VM's image build and KVM probe.
    bootstrap: crate::results::lifecycle::Bootstrap,
}

impl<'a> GuestLane<'a> {
    /// Builds the VM image and proves KVM (else TCG, with the reason).
    pub fn prepare(ctx: &super::LaneContext<'a>) -> Result<GuestLane<'a>> {
        // The session has required QEMU for the vm lane; this guards other callers.
        let qemu = ctx.qemu.ok_or_else(|| Error::MissingTool {
            tool: "qemu-system-x86_64",
            needed_for: "for the vm lane".into(),
            fix: crate::tools::install_hint("qemu-system-x86_64"),
        })?;
        use crate::results::lifecycle::TimedStep;
        let (image, image_step) = TimedStep::time("vm image (kernel and initramfs)", || {
            build_image(&ctx.dir.join("image"), ctx.exec)
        });
        let image = image?;
        let (probed, probe_step) =
            TimedStep::time("kvm probe", || probe_accel(ctx.exec, qemu, &image, ctx.dir));
        let (accel, note) = probed?;
        let mut bootstrap = ctx.bootstrap.clone();
        bootstrap.checks.push(image_step);
        bootstrap
            .checks
            .push(probe_step.with_detail(format!("{}: {note}", accel.name())));
        eprintln!(
            "vm lane: Linux {} under {} ({note})",
            image.kernel_release,
            accel.name()
        );
        Ok(GuestLane {
            exec: ctx.exec,
            qemu,
            image,
            accel,
            note,
            vm: ctx.vm,
            dir: ctx.dir.to_path_buf(),
            nix_cache: ctx.nix_cache.cloned(),
            bazel_cache: ctx.bazel_cache.cloned(),
            nix: ctx.nix.clone(),
            bazel: ctx.bazel.clone(),
            search_path: ctx.search_path.to_owned(),
            bootstrap,
        })
    }

    /// Who the lane is until its guest describes itself from inside.
    pub fn provisional_identity(&self, host: &Environment) -> LaneIdentity {
        let env = Environment {
            hostname: "vm".into(),
            kernel: self.image.kernel_release.clone(),
            os: "unknown".into(),
            cpu_model: "unknown".into(),
            cores: self.vm.cpus as usize,
            memory_bytes: u64::from(self.vm.memory_mb) << 20,
            tools: host.tools.clone(),
            fingerprint: None,
        };
        self.describe(LaneIdentity::of(Lane::Vm, &env))
    }

    fn describe(&self, mut identity: LaneIdentity) -> LaneIdentity {
        identity.virtualization = Some("qemu".into());
        identity.acceleration = Some(self.accel.name().into());
        identity.acceleration_note = Some(self.note.clone());
        identity.bootstrap = Some(self.bootstrap.clone());
        identity
    }

    /// Boots the VM and runs `plan` in it, handing each line of the guest's event log to
    /// `on_event` as it arrives; returns how the guest ended. The caller (the scheduler)
    /// turns the lines into events and reports the cases the guest never finished.
    pub fn run(
        self,
        plan: &Plan,
        on_event: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<GuestEnd> {
        let job = self.dir.join("job");
        std::fs::create_dir_all(&job).context(|| format!("creating {}", job.display()))?;
        let guest = self.write_job(plan, &job)?;
        let events = job.join("events.jsonl");
        let machine = Machine {
            qemu: self.qemu,
            image: &self.image,
            accel: self.accel,
            memory_mb: self.vm.memory_mb,
            cpus: self.vm.cpus,
        };
        let exit = std::thread::scope(|scope| -> Result<GuestExit> {
            let vm = scope.spawn(|| run_job(self.exec, machine, &job, &guest, self.vm.timeout));
            let (mut event_lines, mut log_lines) = (LineTail::default(), LineTail::default());
            loop {
                let done = vm.is_finished();
                // Guest warnings and errors go to its log; show them as they come.
                for line in log_lines.read(&job.join("job.log"))? {
                    eprintln!("  [vm] {line}");
                }
                for line in event_lines.read(&events)? {
                    on_event(&line)?;
                }
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            vm.join().map_err(|_| {
                Error::Environment("the thread that ran the vm lane's VM panicked".into())
            })?
        });
        let exit = exit?;
        let log = std::fs::read_to_string(job.join("job.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        Ok(GuestEnd {
            how: match exit {
                GuestExit::Job(rc) => format!("the guest's harness exited with {rc}"),
                GuestExit::Lost(why) => why,
            },
            log_tail: lines[lines.len().saturating_sub(8)..].join(" | "),
        })
    }

    /// Writes the job file, the guest's script and the caches' secrets (private copies).
    fn write_job(&self, plan: &Plan, job: &Path) -> Result<String> {
        let role = GuestRole {
            acceleration: self.accel.name().into(),
            acceleration_note: self.note.clone(),
            bootstrap: self.bootstrap.clone(),
        };
        let caches = (self.nix_cache.as_ref(), self.bazel_cache.as_ref());
        GuestJob::write(job, plan, caches, (&self.nix, &self.bazel), role)?;
        guest_script(&self.search_path)
    }
}

/// How a vm lane's guest ended, for the cases it did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestEnd {
    /// "the guest's harness exited with 1", "the VM ran past its timeout and was killed".
    pub how: String,
    /// The last lines of the guest's log, joined with ` | `.
    pub log_tail: String,
}

/// The job's script: this harness, from the shared host root, serving the job.
fn guest_script(search_path: &OsStr) -> Result<String> {
    use crate::exec::process::shell_quote;
    let exe = std::env::current_exe().context(|| "finding the harness's own executable".into())?;
    let path = search_path.to_string_lossy();
    Ok(format!(
        "export HOME=/tmp/home PATH={path}\nmkdir -p \"$HOME\"\ncd /tmp\nexec {exe} guest {job}\n",
        path = shell_quote(&path),
        exe = shell_quote(&exe.to_string_lossy()),
        job = shell_quote(&format!("{GUEST_JOB_DIR}/job.json")),
    ))
}

/// Reads the whole lines a file gained since the last read.
#[derive(Default)]
struct LineTail {
    consumed: usize,
}

impl LineTail {
    fn read(&mut self, path: &Path) -> Result<Vec<String>> {
        use std::io::{Read, Seek, SeekFrom};
        let failed = |e| Error::io(format!("reading {}", path.display()), e);
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(failed(e)),
        };
        // Only what came after the last whole line read, not the whole file every tick.
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(self.consumed as u64))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(failed)?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.consumed += complete;
        Ok(String::from_utf8_lossy(&text[..complete])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }
}

/// A cache URL as the guest must write it: the host's loopback is 10.0.2.2 there.
pub fn guest_url(url: &Url) -> Url {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let mut guest = url.clone();
    if loopback {
        // A URL with a host can always take another.
        let _ = guest.set_host(Some(HOST_FROM_GUEST));
    }
    guest
}

#[cfg(test)]
mod lane_tests {
    use super::*;

    #[test]
    fn loopback_caches_are_reached_through_the_host_address() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            guest_url(&url("http://127.0.0.1:8080/nix")).as_str(),
            "http://10.0.2.2:8080/nix"
        );
        assert_eq!(
            guest_url(&url("grpc://localhost:9092")).as_str(),
            "grpc://10.0.2.2:9092"
        );
        assert_eq!(
            guest_url(&url("https://cache.example/nix")).as_str(),
            "https://cache.example/nix"
        );
    }

    #[test]
    fn a_disk_backend_profile_gives_the_guest_the_folder_and_secrets_stay_private() {
        use crate::cache::{CacheNeeds, Caches};
        use crate::plan::config::{Env, RunConfig};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk-cache");
        let text = format!(
            "[profiles.p.bazel]\nbackend = \"disk\"\npath = \"{}\"\n[profiles.p.nix]\nbackend = \"attic\"\nendpoint = \"http://127.0.0.1:8080\"\ncache = \"main\"\npublic_key = \"main:K\"\ntoken_env = \"T\"\n",
            disk.display()
        );
        let profile = crate::plan::profile::parse(&text, Path::new("bench.toml"), "p").unwrap();
        let env = Env::with_vars(&[("T", "s3cr3t-token")], dir.path());
        let config = RunConfig::resolve(&Default::default(), &profile, &env).unwrap();
        let needs = CacheNeeds {
            nix: None,
            bazel: true,
            nginx: None,
            fill: true,
            proxies: &config.proxies,
            compression: config.settings.compression,
        };
        let cache_dir = dir.path().join("cache");
        let exec = crate::exec::process::ProcessExecutor;
        let caches = Caches::provision(
            &config.nix_cache,
            &config.bazel_cache,
            needs,
            &cache_dir,
            &exec,
        )
        .unwrap();
        let crate::plan::config::NixCacheConfig::External(nix) = &config.nix_cache else {
            panic!("{:?}", config.nix_cache)
        };
        let job_dir = dir.path().join("job");
        std::fs::create_dir(&job_dir).unwrap();
        let mut plan = crate::testing::plan(&[crate::plan::Scenario::Warm], Default::default());
        // A git source with credentials in its URL: the guest gets its name only.
        plan.repos[0].source = Source::Fetched {
            checkout: dir.path().to_path_buf(),
            url: "https://bot:s3cr3t-pw@git.example.com/r".into(),
            rev: "a".repeat(40),
        };
        let role = GuestRole {
            acceleration: "tcg".into(),
            acceleration_note: "test".into(),
            bootstrap: Default::default(),
        };
        let job = GuestJob::write(
            &job_dir,
            &plan,
            (Some(nix), caches.bazel.as_ref()),
            (&Default::default(), &Default::default()),
            role,
        )
        .unwrap();
        let bazel = job.bazel_cache.unwrap();
        assert_eq!(
            bazel.endpoint,
            BazelEndpoint::Disk(disk),
            "a folder, not a URL"
        );
        let nix = job.nix_cache.unwrap();
        assert_eq!(nix.url.as_str(), "http://10.0.2.2:8080/main");
        assert_eq!(
            job.secrets.nix_login.as_deref(),
            Some(Path::new("/tmp/job/secret-0"))
        );
        let copy = job_dir.join("secret-0");
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(copy)
            .unwrap()
            .contains("s3cr3t-token"));
        let written = std::fs::read_to_string(job_dir.join("job.json")).unwrap();
        assert!(
            !written.contains("s3cr3t-token") && !written.contains("s3cr3t-pw"),
            "the job file names secrets, never holds them"
        );
        assert!(written.contains("https://git.example.com/r"), "{written}");
        // The guest reads the token back (here with the job folder where the host has it).
        let moved = dir.path().join("moved.json");
        let host_paths = written.replace("/tmp/job/", &format!("{}/", job_dir.display()));
        std::fs::write(&moved, host_paths).unwrap();
        let read = GuestJob::read(&moved).unwrap();
        let login = read.nix_cache.unwrap().login.unwrap();
        assert_eq!(
            (login.user.as_str(), login.password),
            ("flywheel-bench", Secret::new("s3cr3t-token"))
        );
    }

    #[test]
    fn the_tail_reads_only_whole_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut tail = LineTail::default();
        assert!(tail.read(&path).unwrap().is_empty(), "no file yet");
        let first = "{\"event\":\"case-started\",\"index\":0}";
        let second = "{\"event\":\"case-started\",\"index\":1}";
        std::fs::write(&path, format!("{first}\n{}", &second[..10])).unwrap();
        assert_eq!(tail.read(&path).unwrap(), vec![first]);
        std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
        assert_eq!(tail.read(&path).unwrap(), vec![second]);
        assert!(tail.read(&path).unwrap().is_empty());
    }
}
