//! Locates (building on first use) the Kubernetes and etcd binaries.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The directory holding `etcd`, `kube-apiserver`, `kube-controller-manager`
/// and `kubectl`: `$WIB_K8S_BIN_DIR` when set, else the cache that
/// `e2e/controlplane/build.sh` fills (a no-op once built).
pub fn ensure() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WIB_K8S_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    run_installer("e2e/controlplane/build.sh")
}

/// moto's server at the version pinned in `e2e/moto/VERSION`, with the IAM
/// actions `e2e/moto/server.py` adds: `$WIB_MOTO_SERVER` when set (it must
/// serve those actions too), else `server.py` run by the virtualenv
/// `e2e/moto/install.sh` fills from PyPI (a no-op once installed).
pub fn moto_server() -> Result<Command> {
    if let Some(path) = std::env::var_os("WIB_MOTO_SERVER") {
        return Ok(Command::new(path));
    }
    let moto_server = run_installer("e2e/moto/install.sh")?;
    let mut command = Command::new(moto_server.with_file_name("python"));
    command.arg(repo_root().join("e2e/moto/server.py"));
    Ok(command)
}

/// Runs an install script (locked and idempotent) and returns the path it
/// prints last.
fn run_installer(relative: &str) -> Result<PathBuf> {
    let script = repo_root().join(relative);
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    let dir = stdout
        .lines()
        .last()
        .with_context(|| format!("{relative} printed no path"))?;
    Ok(PathBuf::from(dir.trim()))
}

/// The repository this crate was built from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
