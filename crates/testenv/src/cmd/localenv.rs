//! `make run`: the local control plane, the operator, the samples, and
//! `kubectl get wib -A` settling, until Ctrl-C tears it all down.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use wib_testenv::{ControlPlane, Operator, Options};

#[derive(Parser)]
#[command(about = "Run wib locally: control plane, operator, samples")]
struct Args {
    /// The wib-controller binary.
    #[arg(long)]
    operator: PathBuf,
    /// Directory of sample manifests to apply.
    #[arg(long)]
    samples: PathBuf,
    /// Exit once every binding has a Ready condition for its current
    /// generation instead of waiting for Ctrl-C (used by the smoke test).
    #[arg(long)]
    exit_when_settled: bool,
    /// Where to copy the admin kubeconfig for other terminals.
    #[arg(long, default_value_os_t = default_kubeconfig())]
    kubeconfig_out: PathBuf,
    /// Once everything runs, write where it is (kubeconfig, fakes, metrics)
    /// to this file, for the e2e suite to attach to (`WIB_E2E_CLUSTER`).
    #[arg(long)]
    describe: Option<PathBuf>,
    /// How often the operator re-reads every binding from the clouds.
    #[arg(long, default_value_t = 30)]
    resync_seconds: u64,
    /// The GCP project of the samples and of the operator's own account.
    #[arg(long, default_value = "wib-local")]
    gcp_project: String,
}

fn default_kubeconfig() -> PathBuf {
    let cache = std::env::var_os("WIB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wib")))
        .unwrap_or_else(|| PathBuf::from("."));
    cache.join("run/kubeconfig")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Installed first, so Ctrl-C at any point below tears down instead of
    // killing this process and orphaning the temp directory.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!(
        "==> starting the local control plane (etcd, kube-apiserver, kube-controller-manager)"
    );
    let cp = ControlPlane::start(Options::default()).await?;
    if let Some(parent) = args.kubeconfig_out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(cp.kubeconfig(), &args.kubeconfig_out)?;
    println!("    API server and OIDC issuer: {}", cp.server());
    println!("    export KUBECONFIG={}", args.kubeconfig_out.display());

    println!("==> starting the Azure fake (ARM, Authorization, Entra token endpoint)");
    let azure = wib_testenv::azure::AzureFake::start(&cp).await?;
    println!("    Azure fake: {}", azure.url);
    println!("==> starting moto (AWS IAM and STS), installed from PyPI on first use");
    let moto = wib_testenv::moto::Moto::start(&cp).await?;
    println!("    moto: {}", moto.url);
    println!("==> starting the EKS fake (pod identity associations, EKS Auth, the node agent)");
    let eks = wib_testenv::eks::EksFake::start(&cp, &moto.url).await?;
    println!("    EKS fake: {}", eks.url);
    println!("==> starting the GCP fake (IAM, Resource Manager, STS, IAM Credentials)");
    let gcp = wib_testenv::gcp::GcpFake::start(&cp, &args.gcp_project).await?;
    println!("    GCP fake: {}", gcp.url);
    let webhook_env = wib_testenv::webhook::operator_env(Some(&azure.url), Some(&gcp.url));
    let envs: Vec<(&str, &str)> = azure
        .operator_env
        .iter()
        .chain(moto.operator_env.iter())
        .chain(eks.operator_env.iter())
        .chain(gcp.operator_env.iter())
        .chain(webhook_env.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    println!(
        "==> starting wib-controller (logs: {}/wib-controller-0.log)",
        cp.dir().display()
    );
    let metrics_port = wib_testenv::ports::free()?;
    let webhook_port = wib_testenv::ports::free()?;
    let webhook_url = format!("https://127.0.0.1:{webhook_port}/mutate-pods");
    // Where the webhook keeps its certificate, as in a chart install.
    apply_json(
        &cp,
        &serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": wib_testenv::fakes::OPERATOR_NAMESPACE}}),
    )?;
    let mut operator = Operator::start_binary(
        &args.operator,
        cp.kubeconfig(),
        cp.dir(),
        &[
            &format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            &format!("--resync-seconds={}", args.resync_seconds),
            "--provider-resync-seconds=5",
            &format!("--webhook-addr=127.0.0.1:{webhook_port}"),
        ],
        &envs,
    )?;
    apply_json(&cp, &wib_testenv::webhook::configuration(&webhook_url))?;
    println!(
        "    pod webhook: {webhook_url} (pods labelled wib.dev/inject: \"true\" or azure.workload.identity/use: \"true\" get their identity)"
    );

    println!("==> applying {}", args.samples.display());
    let applied = cp
        .kubectl()
        .args(["apply", "-R", "-f"])
        .arg(&args.samples)
        .status()?;
    if !applied.success() {
        bail!("kubectl apply failed");
    }

    if let Some(path) = &args.describe {
        wib_testenv::Attached {
            kubeconfig: Some(args.kubeconfig_out.clone()),
            azure_url: azure.url.clone(),
            aws_url: moto.url.clone(),
            eks_url: Some(eks.url.clone()),
            gcp_url: gcp.url.clone(),
            gcp_project: args.gcp_project.clone(),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            operator_logs: vec![
                "tail".into(),
                "-n".into(),
                "200".into(),
                cp.dir().join("wib-controller-0.log").display().to_string(),
            ],
        }
        .write(path)?;
        println!(
            "    described for the e2e suite: {}={}",
            wib_testenv::attached::ENV_VAR,
            path.display()
        );
    }

    if args.exit_when_settled {
        let settled = wait_settled(&cp).await;
        // What the README tells a newcomer to type.
        let _ = cp.kubectl().args(["get", "cip"]).status();
        let _ = cp.kubectl().args(["get", "wib", "-A"]).status();
        show_injection(&cp);
        operator.stop();
        drop(gcp);
        drop(eks);
        drop(moto);
        drop(azure);
        return settled;
    }

    println!("==> kubectl get wib -A --watch   (Ctrl-C to stop and tear everything down)");
    let _ = cp.kubectl().args(["get", "cip"]).status();
    let mut watch = tokio::process::Command::from(cp.kubectl());
    watch
        .args(["get", "wib", "-A", "--watch"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut watch = watch.spawn().context("kubectl get --watch")?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        _ = watch.wait() => {}
    }
    println!("\n==> tearing down");
    let _ = watch.kill().await;
    operator.stop();
    drop(gcp);
    drop(moto);
    drop(azure);
    drop(cp);
    Ok(())
}

/// `kubectl apply` of one object.
fn apply_json(cp: &ControlPlane, object: &serde_json::Value) -> Result<()> {
    use std::io::Write as _;
    let mut child = cp
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(object.to_string().as_bytes())?;
    if !child.wait()?.success() {
        bail!("kubectl apply failed");
    }
    Ok(())
}

/// The pod side, shown: the Azure sample's pod as the webhook admits it
/// (a server-side dry run: nothing runs pods here), its injected env.
fn show_injection(cp: &ControlPlane) {
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app1-pod", "namespace": "team-a",
                     "labels": {"azure.workload.identity/use": "true"}},
        "spec": {"serviceAccountName": "app1", "containers": [{"name": "app", "image": "app"}]}});
    let Ok(mut child) = cp
        .kubectl()
        .args(["create", "--dry-run=server", "-o", "json", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(pod.to_string().as_bytes());
    }
    let Ok(out) = child.wait_with_output() else {
        return;
    };
    let admitted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    println!("==> the Azure sample's pod as the webhook admits it (dry run):");
    for var in admitted["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "    {}={}",
            var["name"].as_str().unwrap_or_default(),
            var["value"].as_str().unwrap_or_default()
        );
    }
}

/// Waits until every binding has settled for its current generation.
async fn wait_settled(cp: &ControlPlane) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // Stalled can be momentary (a binding seen before its provider is in the
    // cache): settled means it stays so for a few seconds.
    let mut settled_since: Option<tokio::time::Instant> = None;
    loop {
        let out = cp
            .kubectl()
            .args(["get", "wib", "-A", "-o", "json"])
            .output()?;
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        // Settled: Ready is True, or Stalled says only a human can help;
        // a binding still Reconciling is on its way.
        let settled = !items.is_empty()
            && items.iter().all(|b| {
                let generation = &b["metadata"]["generation"];
                let conditions = b["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let is = |t: &str| {
                    conditions.iter().any(|c| {
                        c["type"] == t
                            && c["status"] == "True"
                            && &c["observedGeneration"] == generation
                    })
                };
                is("Ready") || is("Stalled")
            });
        if !settled {
            settled_since = None;
        } else if settled_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(4)) {
            return Ok(());
        } else if settled_since.is_none() {
            settled_since = Some(tokio::time::Instant::now());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("bindings did not settle within 120s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
