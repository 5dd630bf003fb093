//! The host lane's identity, read from /proc and /etc.

use std::ffi::OsStr;

use crate::exec::process::Executor;
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
    }
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
    fn identity_of_this_machine_is_filled_in() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let env = identity(&crate::exec::process::ProcessExecutor, &path);
        assert!(!env.kernel.is_empty() && env.cores >= 1 && env.memory_bytes > 0);
    }
}
