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
    /// Also serve https on `--tls-listen` with this certificate (PEM), for
    /// clients that refuse plain http (MSAL's authority).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Address of the https listener (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub tls_listen: std::net::SocketAddr,
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

    /// Binds, prints `listening on http://<addr>` (the line the harness
    /// waits for; then `listening on https://<addr>` with a certificate) and
    /// serves `app` until killed.
    pub async fn serve(&self, app: axum::Router) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                Some(crate::tls::TlsListener::bind(self.tls_listen, cert, key).await?)
            }
            _ => None,
        };
        println!("listening on http://{}", listener.local_addr()?);
        let Some(tls) = tls else {
            axum::serve(listener, app).await?;
            return Ok(());
        };
        println!(
            "listening on https://{}",
            axum::serve::Listener::local_addr(&tls)?
        );
        let plain = axum::serve(listener, app.clone());
        let secure = axum::serve(tls, app);
        tokio::try_join!(async { plain.await }, async { secure.await })?;
        Ok(())
    }
}
