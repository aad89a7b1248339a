//! What every cloud fake's process shares: starting it and reading the URL
//! it listens on, its admin JSON, and the operator identity the fakes trust
//! (each cloud's own handle is in its module: `azure`, `gcp`, `moto`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::ControlPlane;
use crate::process::Process;

pub const OPERATOR_NAMESPACE: &str = "wib-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "wib-controller";

/// Spawns a fake that prints `listening on <url>` and waits for that line.
pub(crate) async fn spawn_listening(
    cp: &ControlPlane,
    name: &str,
    cmd: Command,
) -> Result<(Process, String)> {
    let process = Process::spawn(name, cmd, cp.dir())?;
    let log = cp.dir().join(format!("{name}.log"));
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(url) = text.lines().find_map(|l| l.strip_prefix("listening on ")) {
            return Ok((process, url.trim().to_string()));
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{name} did not start:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `listening on <scheme>...` URL a started fake printed.
pub(crate) async fn listening_url(cp: &ControlPlane, name: &str, scheme: &str) -> Result<String> {
    let log = cp.dir().join(format!("{name}.log"));
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| l.strip_prefix("listening on "))
            .find(|url| url.starts_with(scheme));
        if let Some(url) = found {
            return Ok(url.trim().to_string());
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("{name} printed no {scheme} URL:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET of a fake's admin JSON.
pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(http.get(url).send().await?.json().await?)
}

/// Sends `request` (a POST of JSON to a fake, at `path`); its JSON answer,
/// or an error naming the status and body on non-2xx.
pub(crate) async fn post_json(request: reqwest::RequestBuilder, path: &str) -> Result<Value> {
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {body}");
    }
    Ok(body)
}
