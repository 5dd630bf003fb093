//! The `vm` lane: the harness boots a QEMU virtual machine and runs its own cases inside
//! it. The guest sees the host's root read-only over 9p (so it has the same tools and the
//! same harness binary), a job folder read-write (the script in, the results out), and the
//! host's loopback as 10.0.2.2 through user-mode networking (so it reaches the cache).
//!
//! Acceleration is proved, not assumed: a tiny VM must boot and exit under KVM within a
//! timeout, else the lane runs under TCG and says so (its timings are then correctness
//! evidence, not KVM figures). /dev/kvm alone proves nothing: nested PVM devices exist on
//! which stock kernels crawl and then fail.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::lanes::initramfs::{cpio_newc, load_order, Entry};
use crate::run::process::{CommandSpec, Executor, Exit};

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
    found.sort();
    found.pop().ok_or_else(|| {
        Error::Environment(
            "the vm lane needs a Linux kernel with its modules: none under /boot\n  fix: `sudo apt-get install linux-image-amd64` (or your distribution's kernel package)".into(),
        )
    })
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
    fn tells_static_from_dynamic_executables() {
        let this_test = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(
            is_dynamic(&this_test),
            "a Rust test binary links glibc dynamically"
        );
        assert!(is_dynamic(b"not an elf"));
    }
}

/// Echoes the lines a file gains to stderr, from a helper thread, until dropped.
struct LogEcho {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogEcho {
    fn start(path: PathBuf, prefix: &'static str) -> LogEcho {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut shown = 0;
            loop {
                let done = flag.load(Ordering::Relaxed);
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                // Only whole lines; the rest arrives with the next read.
                let complete = text.rfind('\n').map_or(0, |i| i + 1);
                if complete > shown {
                    for line in text[shown..complete]
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                    {
                        eprintln!("{prefix}{line}");
                    }
                    shown = complete;
                }
                if done {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        LogEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LogEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This run's arguments, for the guest: without the ones the vm lane sets itself.
pub fn guest_args() -> Vec<String> {
    const OWN: &[&str] = &[
        "--lane",
        "--output",
        "-o",
        "--work-dir",
        "--nix-cache",
        "--nix-cache-public-key",
        "--nix-cache-secret-key",
        "--bazel-remote-cache",
        "--vm-memory-mb",
        "--vm-cpus",
        "--vm-timeout",
    ];
    let mut out = Vec::new();
    let mut args = std::env::args().skip_while(|a| a != "run").skip(1);
    while let Some(arg) = args.next() {
        let name = arg.split('=').next().unwrap_or(&arg);
        if OWN.contains(&name) {
            if !arg.contains('=') {
                args.next();
            }
            continue;
        }
        out.push(arg);
    }
    out
}

/// The vm lane's resources (`--vm-memory-mb`, `--vm-cpus`, `--vm-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct VmSettings {
    pub memory_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
}

/// The caches the guest is pointed at (the host's, reached through 10.0.2.2).
pub struct GuestCaches<'a> {
    pub nix: Option<&'a crate::tools::nix::NixCache>,
    pub bazel: Option<&'a crate::tools::bazel::BazelCache>,
}

/// What the vm lane measured, and who it was.
pub struct LaneRun {
    pub identity: crate::results::LaneIdentity,
    pub cases: Vec<crate::results::CaseResult>,
}

/// A cache URL as the guest must write it: the host's loopback is 10.0.2.2 there.
pub fn guest_url(url: &str) -> String {
    for local in ["127.0.0.1", "localhost"] {
        if let Some((scheme, rest)) = url.split_once("://") {
            if let Some(after) = rest.strip_prefix(local) {
                return format!("{scheme}://{HOST_FROM_GUEST}{after}");
            }
        }
    }
    url.to_string()
}

/// Runs `plan` (its cases all on the vm lane) in a VM: this harness, with `guest_args`
/// (the user's `run` arguments), inside the guest, against the host's caches. A guest that
/// produces no results fails every case with the reason and the end of its log.
pub fn run_lane(
    exec: &dyn Executor,
    qemu: &Path,
    plan: &crate::plan::Plan,
    guest_args: &[String],
    caches: GuestCaches,
    dir: &Path,
    vm: VmSettings,
) -> Result<LaneRun> {
    use crate::run::process::shell_quote;
    let image = build_image(&dir.join("image"), exec)?;
    let (accel, note) = probe_accel(exec, qemu, &image, dir)?;
    eprintln!(
        "vm lane: Linux {} under {} ({note})",
        image.kernel_release,
        accel.name()
    );
    let job = dir.join("job");
    std::fs::create_dir_all(&job).context(|| format!("creating {}", job.display()))?;
    // Inside the guest the job folder is /tmp/job (the guest's own /tmp is a tmpfs).
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(guest_args.iter().cloned());
    args.extend(
        [
            "--as-lane",
            "vm",
            "--lane-accel",
            accel.name(),
            "--lane-accel-note",
            &note,
            "--output",
            "/tmp/job/results.json",
            "--work-dir",
            "/tmp",
        ]
        .map(String::from),
    );
    if let Some(nix) = caches.nix {
        args.extend([
            "--nix-cache".into(),
            guest_url(&nix.substituter),
            "--nix-cache-public-key".into(),
            nix.public_key.clone(),
        ]);
        if let Some(key) = &nix.secret_key_file {
            let bytes = std::fs::read(key).context(|| format!("reading {}", key.display()))?;
            crate::scratch::write_private(&job.join("signing-key.sec"), &bytes)?;
            args.extend([
                "--nix-cache-secret-key".into(),
                "/tmp/job/signing-key.sec".into(),
            ]);
        }
    }
    if let Some(bazel) = caches.bazel {
        args.extend(["--bazel-remote-cache".into(), guest_url(&bazel.url)]);
        if !bazel.headers.is_empty() {
            crate::scratch::write_private(
                &job.join("headers"),
                bazel.headers.join("\n").as_bytes(),
            )?;
        }
    }
    let exe = std::env::current_exe().context(|| "finding the harness's own executable".into())?;
    let cwd = std::env::current_dir().context(|| "reading the current folder".into())?;
    let path = std::env::var("PATH").unwrap_or_default();
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let script = format!(
        "export HOME=/tmp/home PATH={path}\nmkdir -p \"$HOME\"\n[ -f /tmp/job/headers ] && export FLYWHEEL_BAZEL_REMOTE_HEADERS=\"$(cat /tmp/job/headers)\"\ncd {cwd}\nexec {exe} {args}\n",
        path = shell_quote(&path),
        cwd = shell_quote(&cwd.to_string_lossy()),
        exe = shell_quote(&exe.to_string_lossy()),
        args = quoted.join(" ")
    );
    let machine = Machine {
        qemu,
        image: &image,
        accel,
        memory_mb: vm.memory_mb,
        cpus: vm.cpus,
    };
    // The guest's harness reports progress into its log; show it as it comes.
    let echo = LogEcho::start(job.join("job.log"), "  [vm] ");
    let exit = run_job(exec, machine, &job, &script, vm.timeout);
    drop(echo);
    let exit = exit?;
    let fallback_identity = || {
        let env = crate::results::Environment {
            hostname: "vm".into(),
            kernel: image.kernel_release.clone(),
            os: "unknown".into(),
            cpu_model: "unknown".into(),
            cores: vm.cpus as usize,
            memory_bytes: u64::from(vm.memory_mb) << 20,
            tools: Default::default(),
        };
        let mut identity = crate::results::LaneIdentity::of(crate::plan::Lane::Vm, &env);
        identity.virtualization = Some("qemu".into());
        identity.acceleration = Some(accel.name().into());
        identity.acceleration_note = Some(note.clone());
        identity
    };
    match crate::results::load(&job.join("results.json")) {
        Ok(guest) => Ok(LaneRun {
            identity: guest
                .lanes
                .into_iter()
                .find(|l| l.lane == crate::plan::Lane::Vm)
                .unwrap_or_else(fallback_identity),
            cases: guest.cases,
        }),
        Err(_) => {
            let log = std::fs::read_to_string(job.join("job.log")).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let reason = format!(
                "the vm lane produced no results ({}); its log ends: {}",
                match &exit {
                    GuestExit::Job(rc) => format!("the guest's harness exited with {rc}"),
                    GuestExit::Lost(why) => why.clone(),
                },
                tail.join(" | ")
            );
            let cases = plan
                .cases
                .iter()
                .map(|case| {
                    let mut result = crate::run::blank_result(plan, case);
                    result.outcome = crate::results::Outcome::Failed;
                    result.reason = Some(reason.clone());
                    result
                })
                .collect();
            Ok(LaneRun {
                identity: fallback_identity(),
                cases,
            })
        }
    }
}

#[cfg(test)]
mod lane_tests {
    use super::*;

    #[test]
    fn loopback_caches_are_reached_through_the_host_address() {
        assert_eq!(
            guest_url("http://127.0.0.1:8080/nix"),
            "http://10.0.2.2:8080/nix"
        );
        assert_eq!(guest_url("grpc://localhost:9092"), "grpc://10.0.2.2:9092");
        assert_eq!(
            guest_url("https://cache.example/nix"),
            "https://cache.example/nix"
        );
    }
}
