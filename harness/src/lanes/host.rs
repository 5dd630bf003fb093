//! The host lane's identity, read from /proc, /sys and /etc, and its speed probe.

use std::ffi::OsStr;
use std::hint::black_box;
use std::time::Instant;

use crate::exec::process::Executor;
use crate::results::machine::{fnv1a, CpuFingerprint, ProbeReading};
use crate::results::Environment;

/// Describes this machine and the tools the harness can use on it.
pub fn identity(exec: &dyn Executor, search_path: &OsStr) -> Environment {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    Environment {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os: os_name(&read("/etc/os-release")).unwrap_or_else(|| "unknown".into()),
        cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: mem_total_bytes(&read("/proc/meminfo")).unwrap_or(0),
        tools: crate::tools::probe_all(exec, search_path),
        fingerprint: Some(fingerprint(&read("/proc/cpuinfo"), &caches(), hypervisor)),
    }
}

/// cpu0's cache levels and sizes as sysfs lists them: (level, type, size text).
fn caches() -> Vec<(String, String, String)> {
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8)
        .map(|i| dir.join(format!("index{i}")))
        .take_while(|d| d.is_dir())
        .map(|d| {
            (
                read(d.join("level")),
                read(d.join("type")),
                read(d.join("size")),
            )
        })
        .collect()
}

/// The hypervisor's CPUID signature (leaf 0x4000_0000), where the CPU says it runs under
/// one.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is an unsafe fn in Rust 1.86, safe in later releases.
fn hypervisor() -> Option<String> {
    // SAFETY: CPUID exists on every x86_64 CPU; leaves above the maximum only return
    // other leaves' values, and this one is read only when the hypervisor bit is set.
    let r = unsafe { std::arch::x86_64::__cpuid(0x4000_0000) };
    let bytes: Vec<u8> = [r.ebx, r.ecx, r.edx]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let name: String = String::from_utf8_lossy(&bytes)
        .trim_matches(char::from(0))
        .trim()
        .to_string();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() || c == ' ')).then_some(name)
}

#[cfg(not(target_arch = "x86_64"))]
fn hypervisor() -> Option<String> {
    None
}

/// The fingerprint from /proc/cpuinfo's first processor, cpu0's caches and, where the
/// `hypervisor` flag is set, what `hypervisor` names.
fn fingerprint(
    cpuinfo: &str,
    caches: &[(String, String, String)],
    hypervisor: fn() -> Option<String>,
) -> CpuFingerprint {
    let first = cpuinfo.split("\n\n").next().unwrap_or_default();
    let field = |name: &str| {
        first.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let number = |name: &str| field(name).and_then(|v| v.parse().ok());
    let mut flags: Vec<String> = field("flags")
        .or_else(|| field("Features"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    let under_hypervisor = flags.iter().any(|f| f == "hypervisor");
    let cache = |level: &str| {
        caches
            .iter()
            .find(|(l, kind, _)| l == level && kind == "Unified")
            .and_then(|(_, _, size)| cache_bytes(size))
    };
    CpuFingerprint {
        vendor: field("vendor_id").unwrap_or_else(|| "unknown".into()),
        family: number("cpu family"),
        model: number("model"),
        stepping: number("stepping"),
        microcode: field("microcode"),
        flags_hash: format!("{:016x}", fnv1a(flags.join(" ").as_bytes())),
        flags: flags.len(),
        hypervisor: under_hypervisor.then(|| hypervisor().unwrap_or_else(|| "unknown".into())),
        l2_bytes: cache("2"),
        l3_bytes: cache("3"),
    }
}

/// sysfs's cache size, e.g. `1024K`, `32M`.
fn cache_bytes(size: &str) -> Option<u64> {
    let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "K" => Some(n << 10),
        "M" => Some(n << 20),
        "G" => Some(n << 30),
        _ => None,
    }
}

/// What the speed probe runs, as results name it: two runs compare probes only when
/// this is the same.
pub const PROBE_WORKLOAD: &str =
    "v2: 7 repeats each of 4M rounds of 64-bit multiply-xorshift (CPU) and 250k dependent loads over a 32 MiB random cycle (memory)";
const PROBE_REPEATS: usize = 7;
const PROBE_CPU_ROUNDS: u64 = 4_000_000;
const PROBE_MEMORY_WORDS: usize = 4 << 20;
const PROBE_MEMORY_LOADS: usize = 250_000;

/// Times the probe's workload on this machine: about 0.35 s on this 2-core VM (a memory
/// load there takes ~160 ns; v1's million loads made a reading 1.2 s).
pub fn speed_probe() -> ProbeReading {
    let cycle = random_cycle(PROBE_MEMORY_WORDS);
    let mut reading = ProbeReading {
        cpu_s: Vec::with_capacity(PROBE_REPEATS),
        memory_s: Vec::with_capacity(PROBE_REPEATS),
    };
    for _ in 0..PROBE_REPEATS {
        let start = Instant::now();
        black_box(cpu_rounds(black_box(PROBE_CPU_ROUNDS)));
        reading.cpu_s.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        black_box(chase(black_box(&cycle), PROBE_MEMORY_LOADS));
        reading.memory_s.push(start.elapsed().as_secs_f64());
    }
    reading
}

fn cpu_rounds(rounds: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rounds {
        x = (x ^ (x >> 31))
            .wrapping_mul(0xBF58_476D_1CE4_E5B9)
            .wrapping_add(i);
    }
    x
}

/// One cycle through every slot in a fixed pseudo-random order (Sattolo's shuffle): each
/// load depends on the one before, so it measures memory latency, not bandwidth.
fn random_cycle(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut state: u64 = 0x5EED;
    for i in (1..n).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let j = ((state >> 33) as usize) % i;
        order.swap(i, j);
    }
    let mut next = vec![0u32; n];
    for w in 0..n {
        next[order[w] as usize] = order[(w + 1) % n];
    }
    next
}

fn chase(next: &[u32], loads: usize) -> u32 {
    let mut at = 0u32;
    for _ in 0..loads {
        at = next[at as usize];
    }
    at
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn os_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_etc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 9B14"));
        assert_eq!(
            mem_total_bytes("MemTotal:       24578420 kB\nMemFree: 1 kB\n"),
            Some(24578420 * 1024)
        );
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn a_fingerprint_reads_the_first_processor_and_the_unified_caches() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 7\nmicrocode\t: 0x5003604\nflags\t\t: sse2 fpu hypervisor avx512f\n\nprocessor\t: 1\nmodel\t\t: 99\n";
        let caches = [
            ("1".to_string(), "Data".to_string(), "32K".to_string()),
            ("2".into(), "Unified".into(), "1024K".into()),
            ("3".into(), "Unified".into(), "32M".into()),
        ];
        let f = fingerprint(cpuinfo, &caches, || Some("KVMKVMKVM".into()));
        assert_eq!(
            (f.vendor.as_str(), f.family, f.model, f.stepping),
            ("GenuineIntel", Some(6), Some(85), Some(7))
        );
        assert_eq!(f.microcode.as_deref(), Some("0x5003604"));
        assert_eq!((f.l2_bytes, f.l3_bytes), (Some(1 << 20), Some(32 << 20)));
        assert_eq!(f.hypervisor.as_deref(), Some("KVMKVMKVM"));
        assert_eq!(f.flags, 4);
        // The flags' order does not matter; their set does.
        let reordered = cpuinfo.replace("sse2 fpu hypervisor", "hypervisor fpu sse2");
        assert_eq!(
            fingerprint(&reordered, &caches, || None).flags_hash,
            f.flags_hash
        );
        let fewer = cpuinfo.replace(" avx512f", "");
        assert_ne!(
            fingerprint(&fewer, &caches, || None).flags_hash,
            f.flags_hash
        );
        // Without the hypervisor flag nothing is asked; without a name it is unknown.
        let metal = cpuinfo.replace(" hypervisor", "");
        assert_eq!(
            fingerprint(&metal, &caches, || Some("x".into())).hypervisor,
            None
        );
        assert_eq!(
            fingerprint(cpuinfo, &[], || None).hypervisor.as_deref(),
            Some("unknown")
        );
        assert_eq!(fingerprint("", &[], || None).vendor, "unknown");
        assert_eq!(cache_bytes("12x"), None);
    }

    #[test]
    fn the_speed_probe_times_both_parts_and_walks_all_its_memory() {
        let reading = speed_probe();
        assert_eq!(
            (reading.cpu_s.len(), reading.memory_s.len()),
            (PROBE_REPEATS, PROBE_REPEATS)
        );
        assert!(reading.seconds().unwrap() > 0.0);
        // No timing bound (a flaky test on a shared machine): the memory part must walk
        // one cycle through every slot, or it would measure a cache-sized loop.
        let cycle = random_cycle(1000);
        let mut seen = vec![false; 1000];
        let mut at = 0u32;
        for _ in 0..1000 {
            seen[at as usize] = true;
            at = cycle[at as usize];
        }
        assert!(
            seen.iter().all(|s| *s) && at == 0,
            "one cycle through every slot"
        );
    }

    #[test]
    fn identity_of_this_machine_is_filled_in() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let env = identity(&crate::exec::process::ProcessExecutor, &path);
        assert!(!env.kernel.is_empty() && env.cores >= 1 && env.memory_bytes > 0);
    }
}
