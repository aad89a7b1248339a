//! What every fake's binary shares: where to listen, which CA to trust when
//! reading OIDC issuers, and the `listening on <url>` line the test harness
//! waits for.

use std::path::PathBuf;

/// Command-line options every fake takes.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// PEM bundle trusted when reading OIDC issuers (the cluster's CA).
    #[arg(long)]
    pub issuer_ca_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The issuer CA bundle, when one was named.
    pub fn issuer_ca(&self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .issuer_ca_file
            .as_ref()
            .map(std::fs::read)
            .transpose()?)
    }

    /// Binds, prints `listening on http://<addr>` and serves
    /// `app` until killed.
    pub async fn serve(&self, app: axum::Router) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    }
}
