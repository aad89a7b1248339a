//! `kubectl wib`: what a platform engineer or a team asks of wib from the
//! command line. Each subcommand is a module:
//!
//! - [`status`]: bindings with their cloud identity and reason, one screen.
//! - [`check_pod`]: does this pod get its identity, and if not, why.
//! - [`reconcile`]: ask the controller for an immediate reconcile.
//! - [`migrate`]: WorkloadIdentityBindings from AAD Pod Identity's objects.

mod check_pod;
mod migrate;
mod reconcile;
mod status;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kubectl-wib",
    version,
    about = "wib (Workload Identity Binder) from kubectl"
)]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bindings with their cloud identity, readiness and reason.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Whether a pod gets its cloud identity: binding, ServiceAccount
    /// annotations, injected env and volumes, token audience, and whether
    /// it predates the identity.
    CheckPod { pod: String },
    /// Asks the controller to reconcile a binding now (the
    /// `wib.dev/reconcile-requested-at` annotation) and waits until it has.
    Reconcile {
        binding: String,
        /// Seconds to wait for the controller (0: do not wait).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Writes bindings that carry another tool's identities over to wib.
    Migrate {
        #[command(subcommand)]
        from: migrate::From,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = kube::Config::infer().await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config)?;
    let mut out = std::io::stdout().lock();
    // Whether all is as it should be: the exit status says it to scripts.
    let fine = match cli.command {
        Command::Status { all_namespaces } => {
            let scope = (!all_namespaces).then_some(namespace.as_str());
            status::run(&client, scope, &mut out).await?;
            true
        }
        Command::CheckPod { pod } => check_pod::run(&client, &namespace, &pod, &mut out).await?,
        Command::Reconcile { binding, timeout } => {
            reconcile::run(&client, &namespace, &binding, timeout, &mut out).await?
        }
        Command::Migrate { from } => migrate::run(&client, &namespace, from, &mut out).await?,
    };
    if !fine {
        std::process::exit(1);
    }
    Ok(())
}
