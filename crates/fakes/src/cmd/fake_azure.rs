//! Serves the Azure fake until killed, on `--listen` (a free 127.0.0.1 port
//! by default; `0.0.0.0:8080` in a pod). Prints `listening on <url>`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// The Entra tenant the fake serves.
    #[arg(long, default_value = "72f988bf-86f1-41af-91ab-2d7cd011db47")]
    tenant_id: String,
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
    let fake = wib_fakes::azure::AzureFake::new(args.tenant_id, ca.as_deref())?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, wib_fakes::azure::router(fake)).await?;
    Ok(())
}
