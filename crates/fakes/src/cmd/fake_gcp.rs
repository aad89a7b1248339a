//! Serves the GCP fake until killed, on `--listen` (a free 127.0.0.1 port by
//! default; `0.0.0.0:8080` in a pod). Prints `listening on <url>`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// PEM bundle trusted when reading OIDC issuers (the local cluster's CA).
    #[arg(long)]
    issuer_ca_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_ansi(false).init();
    let args = Args::parse();
    let ca = args
        .issuer_ca_file
        .as_ref()
        .map(std::fs::read)
        .transpose()?;
    let fake = wib_fakes::gcp::GcpFake::new(ca.as_deref())?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, wib_fakes::gcp::router(fake)).await?;
    Ok(())
}
