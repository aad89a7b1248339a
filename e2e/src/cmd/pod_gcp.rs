//! Acts as an application pod on a cluster federated to Google Cloud: reads
//! the `external_account` credential configuration in
//! GOOGLE_APPLICATION_CREDENTIALS (STS token exchange of the projected
//! ServiceAccount token, then impersonation of the Google service account)
//! and asks google-cloud-auth for an access token. Exit 0 and `token
//! acquired` on success. With `WIB_POD_GCP_TEST_PERMISSIONS_URL` it then
//! asks that project which permissions the token holds (see
//! `test_permissions`): mode Direct's proof, where there is no service
//! account to impersonate.

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
    let token = match credentials.access_token().await {
        Ok(token) => token.token,
        Err(e) => {
            eprintln!("token exchange failed: {e}");
            std::process::exit(1);
        }
    };
    println!("token acquired ({} characters)", token.len());
    if let Ok(url) = std::env::var("WIB_POD_GCP_TEST_PERMISSIONS_URL") {
        test_permissions(&url, &token).await;
    }
}

/// Asks the project which of a few permissions the token holds, as a
/// workload would find out what its grants let it do: exit 0 and
/// `permissions held: ...` when it holds any, 3 when none.
async fn test_permissions(url: &str, token: &str) {
    let asked = [
        "storage.objects.get",
        "storage.objects.list",
        "resourcemanager.projects.get",
    ];
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({"permissions": asked}))
        .send()
        .await;
    let body: serde_json::Value = match response {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        Ok(r) => {
            eprintln!("testIamPermissions refused: {}", r.status());
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("testIamPermissions unreachable: {e}");
            std::process::exit(1);
        }
    };
    let held: Vec<&str> = body["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    if held.is_empty() {
        eprintln!("no permission held on the project");
        std::process::exit(3);
    }
    println!("permissions held: {}", held.join(","));
}
