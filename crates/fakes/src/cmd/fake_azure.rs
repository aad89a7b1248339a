//! Serves the Azure fake until killed, on `--listen` (a free 127.0.0.1 port
//! by default; `0.0.0.0:8080` in a pod). Prints `listening on <url>`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: wib_fakes::serve::ServeArgs,
    /// The Entra tenant the fake serves.
    #[arg(long, default_value = "72f988bf-86f1-41af-91ab-2d7cd011db47")]
    tenant_id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_ansi(false).init();
    let args = Args::parse();
    let ca = args.serve.issuer_ca()?;
    let fake = wib_fakes::azure::AzureCloud::new(args.tenant_id, ca.as_deref())?;
    args.serve.serve(wib_fakes::azure::router(fake)).await
}
