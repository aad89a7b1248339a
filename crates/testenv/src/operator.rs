//! Runs the `wib-controller` binary out of cluster against a control plane,
//! as the e2e tests and `make run` do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::process::Process;

/// A running operator process; stopped on drop.
pub struct Operator {
    process: Option<Process>,
    binary: PathBuf,
    log_dir: PathBuf,
    kubeconfig: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    restarts: u32,
}

impl Operator {
    /// Starts the operator with `kubeconfig`; logs go to `log_dir/wib-controller-<n>.log`.
    pub fn start(
        kubeconfig: &Path,
        log_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_binary(&binary()?, kubeconfig, log_dir, args, envs)
    }

    /// Like [`Operator::start`], with an explicit binary.
    pub fn start_binary(
        binary: &Path,
        kubeconfig: &Path,
        log_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        let mut this = Self {
            process: None,
            binary: binary.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            restarts: 0,
        };
        this.spawn()?;
        Ok(this)
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::ZERO);
        }
    }

    /// Starts the operator again after [`Operator::kill`] or [`Operator::stop`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.restarts += 1;
        self.spawn()
    }

    /// Restarts the operator with `key` set to `value`, as an edited
    /// Deployment rolls its pod (killed, not drained).
    pub fn restart_with_env(&mut self, key: &str, value: &str) -> Result<()> {
        self.kill();
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_string(), value.to_string()));
        self.restart()
    }

    /// The value of an environment variable the operator is started with.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.envs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Graceful stop: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Everything the current process has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.log_dir.join(format!("{}.log", self.process_name()))
    }

    fn process_name(&self) -> String {
        format!("wib-controller-{}", self.restarts)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("WIB_TEST_LOG")
                    .unwrap_or_else(|_| "info,wib_controller=debug".into()),
            )
            .env("WIB_LOG_FORMAT", "text")
            .args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.process = Some(Process::spawn(&self.process_name(), cmd, &self.log_dir)?);
        Ok(())
    }
}

/// The operator binary: `$WIB_CONTROLLER_BIN`, else `wib-controller` in the
/// cargo target directory this test binary was built into.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WIB_CONTROLLER_BIN") {
        return Ok(PathBuf::from(path));
    }
    workspace_binary("wib-controller")
}

/// A binary of this workspace, found next to the running test binary
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(name))
        .collect();
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "{name} not found next to {} (looked at {candidates:?}); run `cargo build --workspace --bins`",
            exe.display()
        ),
    }
}
