//! Serves the EKS Pod Identity fake until killed, on `--listen` (a free
//! 127.0.0.1 port by default; `0.0.0.0:8080` in a pod). Prints `listening
//! on <url>`. Roles and credentials come from moto at `--moto-url`.

use clap::Parser;
use wib_fakes::aws::{Config, DEFAULT_ACCOUNT, DEFAULT_REGION, EksCloud, router};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: wib_fakes::serve::ServeArgs,
    /// moto's URL: IAM (role trust policies) and STS (credentials).
    #[arg(long)]
    moto_url: String,
    /// The AWS account the clusters live in.
    #[arg(long, default_value = DEFAULT_ACCOUNT)]
    account: String,
    /// The region the clusters live in.
    #[arg(long, default_value = DEFAULT_REGION)]
    region: String,
    /// An EKS cluster the fake knows (repeat for more).
    #[arg(long = "cluster")]
    clusters: Vec<String>,
    /// The ServiceAccount issuer of those clusters (its JWKS is read over
    /// https, trusting `--issuer-ca-file`).
    #[arg(long)]
    issuer: Option<String>,
    /// The cluster whose pods `GET /v1/credentials` serves (default: the
    /// first `--cluster`).
    #[arg(long)]
    agent_cluster: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_ansi(false).init();
    let args = Args::parse();
    let ca = args.serve.issuer_ca()?;
    let config = Config {
        moto_url: args.moto_url,
        account: args.account,
        region: args.region,
        clusters: args.clusters,
        issuer: args.issuer,
        agent_cluster: args.agent_cluster,
    };
    let fake = EksCloud::new(config, ca.as_deref())?;
    args.serve.serve(router(fake)).await
}
