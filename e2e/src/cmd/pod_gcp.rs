//! Acts as an application pod on a cluster federated to Google Cloud: reads
//! the `external_account` credential configuration in
//! GOOGLE_APPLICATION_CREDENTIALS (STS token exchange of the projected
//! ServiceAccount token, then impersonation of the Google service account)
//! and asks google-cloud-auth for an access token. Exit 0 and `token
//! acquired` on success.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = std::env::var("GOOGLE_APPLICATION_CREDENTIALS").unwrap_or_default();
    let config: serde_json::Value = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("reading {path}: {e}");
            std::process::exit(2);
        }
    };
    let credentials = match google_cloud_auth::credentials::external_account::Builder::new(config)
        .build_access_token_credentials()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuring the external account: {e}");
            std::process::exit(2);
        }
    };
    match credentials.access_token().await {
        Ok(token) => println!("token acquired ({} characters)", token.token.len()),
        Err(e) => {
            eprintln!("token exchange failed: {e}");
            std::process::exit(1);
        }
    }
}
