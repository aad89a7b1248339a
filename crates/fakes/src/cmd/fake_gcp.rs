//! Serves the GCP fake until killed, on `--listen` (a free 127.0.0.1 port by
//! default; `0.0.0.0:8080` in a pod). Prints `listening on <url>`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: wib_fakes::serve::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_ansi(false).init();
    let args = Args::parse();
    let ca = args.serve.issuer_ca()?;
    let fake = wib_fakes::gcp::GcpCloud::new(ca.as_deref())?;
    args.serve.serve(wib_fakes::gcp::router(fake)).await
}
