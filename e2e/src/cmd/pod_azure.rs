//! Acts as an application pod after the Azure workload identity webhook's
//! injection: reads AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE
//! and AZURE_AUTHORITY_HOST, and asks azure_identity's workload identity
//! credential for an ARM token. Exit 0 and `token acquired` on success.
//!
//! With `WIB_POD_KEYVAULT_SECRET_URL` (a secret's data-plane URL) it asks
//! for a Key Vault token instead and reads the secret with it, as an
//! application using a vault access policy would: exit 0 and `secret read`
//! when the vault lets it, 3 and the vault's answer when it does not.

use azure_core::auth::TokenCredential;

const ARM_SCOPE: &str = "https://management.azure.com/.default";
const VAULT_SCOPE: &str = "https://vault.azure.net/.default";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let credential = match azure_identity::WorkloadIdentityCredential::create(
        azure_identity::TokenCredentialOptions::default(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuring workload identity: {e}");
            std::process::exit(2);
        }
    };
    let secret_url = std::env::var("WIB_POD_KEYVAULT_SECRET_URL").ok();
    let scope = if secret_url.is_some() {
        VAULT_SCOPE
    } else {
        ARM_SCOPE
    };
    let token = match credential.get_token(&[scope]).await {
        Ok(token) => token,
        Err(e) => {
            eprintln!("token exchange failed: {e:?}");
            std::process::exit(1);
        }
    };
    let secret = token.token.secret();
    println!("token acquired ({} characters)", secret.len());
    if let Some(url) = secret_url {
        read_secret(&url, secret).await;
    }
}

async fn read_secret(url: &str, token: &str) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let value = body["value"].as_str().unwrap_or_default();
            println!("secret read ({} characters)", value.len());
        }
        Ok(r) => {
            let status = r.status();
            eprintln!(
                "vault refused: {status} {}",
                r.text().await.unwrap_or_default()
            );
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("vault unreachable: {e}");
            std::process::exit(1);
        }
    }
}
