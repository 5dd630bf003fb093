//! /proc: who a process is (start time, group), what it used (CPU ticks, peak memory),
//! what it was started with and where it works, for accounting, for telling a live owner
//! from a reused pid, and for finding and killing what a run left behind.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `Z` (zombie), `X` (dead), `R`, `S`, ...
    pub state: char,
    pub process_group: i32,
    /// User time, its own and that of the children it waited for, in clock ticks.
    pub user_ticks: u64,
    /// System time, likewise.
    pub sys_ticks: u64,
    /// Clock ticks after boot when it started: with the pid, names one process for good.
    pub start_ticks: u64,
}

impl Stat {
    pub fn of(pid: i32) -> Option<Stat> {
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Running or sleeping: neither a zombie nor gone.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }

    pub fn cpu_ticks(&self) -> u64 {
        self.user_ticks + self.sys_ticks
    }
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from its last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of proc(5).
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        state: fields.first()?.chars().next()?,
        process_group: fields.get(5 - 3)?.parse().ok()?,
        // utime + cutime, stime + cstime: a server's reaped workers count as its own.
        user_ticks: field(14)? + field(16)?,
        sys_ticks: field(15)? + field(17)?,
        start_ticks: field(22)?,
    })
}

/// Peak resident memory (`VmHWM`) in bytes; `None` for kernel threads and gone processes.
pub fn peak_rss_bytes(pid: i32) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The command line, arguments joined by spaces (empty when the process is gone).
pub fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Whether `pid`'s command line or mount table names the path `needle` or a path in it.
/// Nix's sandboxed builders name nothing on their command line, but their mounts name the
/// store they build in.
pub fn mentions(pid: i32, needle: &str) -> bool {
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    names_path(&cmdline(pid), needle) || names_path(&mounts, needle)
}

/// Whether `text` holds `path` ending at a path component's end (`root3` is not `root30`).
pub fn names_path(text: &str, path: &str) -> bool {
    !path.is_empty()
        && text.match_indices(path).any(|(at, _)| {
            text[at + path.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        })
}

/// This user's live processes (never the harness itself) that `chosen` picks.
pub fn find_processes(chosen: impl Fn(i32) -> bool) -> Vec<i32> {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let own = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == me))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != own && Stat::of(pid).is_some_and(|s| s.alive()))
        .filter(|&pid| chosen(pid))
        .collect()
}

/// SIGKILLs this user's live processes (never the harness itself) that `chosen` picks, and
/// waits up to 5 s for them to go. Returns their pids.
pub fn kill_processes(chosen: impl Fn(i32) -> bool) -> Vec<i32> {
    let pids = find_processes(chosen);
    for &pid in &pids {
        // SAFETY: plain syscall on a pid just checked to be this user's and chosen.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| Stat::of(p).is_some_and(|s| s.alive())) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    pids
}

/// This boot's id: a pid and start time name one process only within one boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Clock ticks as a duration.
pub fn ticks(count: u64) -> Duration {
    // SAFETY: sysconf only reads a constant of the running system.
    let per_second = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    Duration::from_nanos(count.saturating_mul(1_000_000_000) / per_second)
}

/// Pids listed in a `cgroup.procs` (or any file of one pid a line).
pub fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_even_with_a_hostile_command_name() {
        // The command name `a) R 1 (b` tries to shift every field.
        let line = "4242 (a) R 1 (b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 987654 1000 100 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.process_group, 4242);
        assert_eq!((stat.user_ticks, stat.sys_ticks), (257, 53));
        assert_eq!(stat.start_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = Stat::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        assert!(me.start_ticks > 0);
        assert!(peak_rss_bytes(std::process::id() as i32).unwrap() > 1024 * 1024);
        assert!(cmdline(std::process::id() as i32).contains("flywheel"));
        assert_eq!(boot_id().len(), 36);
    }

    #[test]
    fn names_whole_path_components_only() {
        assert!(names_path(
            "nix build --store /t/fb-x/root3 -f",
            "fb-x/root3"
        ));
        assert!(names_path(
            "123 1 0:1 /t/fb-x/root3/nix/store / rw",
            "fb-x/root3"
        ));
        assert!(names_path("/t/fb-x/root3", "fb-x/root3"));
        assert!(!names_path("/t/fb-x/root30/nix", "fb-x/root3"));
        assert!(!names_path("anything", ""));
    }

    #[test]
    fn parses_the_peak_memory_line() {
        let status = "Name:\tbazel\nVmPeak:\t  999 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tkthreadd\n"), None);
    }
}
