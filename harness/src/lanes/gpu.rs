//! The `gpu` lane: a preflight that says which GPU (or why none), and the dev shell the
//! cases run in (`nix develop .#gpu --command ...` when the flake and Nix are there, else
//! the ambient environment, which is recorded as such).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::results::GpuInfo;
use crate::run::process::{run_captured, CommandSpec, Executor};

const SMI_TIMEOUT: Duration = Duration::from_secs(30);

/// The GPU, or a clean reason why the lane must be skipped.
pub fn preflight(exec: &dyn Executor) -> Result<GpuInfo, String> {
    let smi = crate::tools::find("nvidia-smi")
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
    parse_query(&out.stdout, &banner).ok_or_else(|| {
        format!(
            "no NVIDIA GPU listed by nvidia-smi: {:?}",
            out.stdout.trim()
        )
    })
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
    })
}

/// `nix develop FLAKE#gpu --command` when Nix and a flake with that shell are at hand.
pub fn dev_shell_prefix(flake_dir: &Path) -> Option<Vec<OsString>> {
    let nix = crate::tools::find("nix")?;
    let flake = std::fs::read_to_string(flake_dir.join("flake.nix")).ok()?;
    flake.contains("gpu").then(|| {
        vec![
            nix.into(),
            "--extra-experimental-features".into(),
            "nix-command flakes".into(),
            "develop".into(),
            format!("{}#gpu", flake_dir.display()).into(),
            "--command".into(),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_query_and_the_banner() {
        let csv = "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB\n";
        let banner =
            "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |";
        let gpu = parse_query(csv, banner).unwrap();
        assert_eq!(gpu.name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpu.driver, "550.54.15");
        assert_eq!(gpu.memory, "81559 MiB");
        assert_eq!(gpu.cuda.as_deref(), Some("12.4"));
        assert_eq!(gpu.count, 1);
        assert_eq!(parse_query("", banner), None);
    }

    #[test]
    fn without_a_gpu_the_preflight_gives_a_reason() {
        // This machine has no NVIDIA GPU (CI neither); where one exists the test still holds
        // by checking the shape of the answer.
        match preflight(&crate::run::process::ProcessExecutor) {
            Ok(gpu) => assert!(!gpu.name.is_empty()),
            Err(reason) => assert!(reason.starts_with("no "), "{reason}"),
        }
    }
}
