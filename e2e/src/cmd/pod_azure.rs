//! Acts as an application pod after the Azure workload identity webhook's
//! injection: reads AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE
//! and AZURE_AUTHORITY_HOST, and asks azure_identity's workload identity
//! credential for an ARM token. Exit 0 and `token acquired` on success.

use azure_core::auth::TokenCredential;

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
    match credential
        .get_token(&["https://management.azure.com/.default"])
        .await
    {
        Ok(token) => println!("token acquired ({} characters)", token.token.secret().len()),
        Err(e) => {
            eprintln!("token exchange failed: {e:?}");
            std::process::exit(1);
        }
    }
}
