//! Acts as an application pod after EKS's pod identity webhook's injection:
//! reads AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE (IRSA) or
//! AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
//! (EKS Pod Identity), and AWS_ENDPOINT_URL / AWS_REGION, and lets
//! aws-config's default chain get the role's session (STS
//! AssumeRoleWithWebIdentity, or the node agent). Prints the assumed role's
//! ARN from GetCallerIdentity and exits 0 on success.

use aws_credential_types::provider::ProvideCredentials;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let http = match wib_cloud::aws::http_client() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("HTTP client: {e}");
            std::process::exit(2);
        }
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    let Some(provider) = config.credentials_provider() else {
        eprintln!("no credentials provider");
        std::process::exit(2);
    };
    let credentials = match provider.provide_credentials().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("getting the role's session failed: {e:?}");
            std::process::exit(1);
        }
    };
    println!("credentials {}", credentials.access_key_id());
    let sts = aws_sdk_sts::Client::new(&config);
    match sts.get_caller_identity().send().await {
        Ok(me) => println!("caller {}", me.arn().unwrap_or_default()),
        Err(e) => {
            eprintln!("GetCallerIdentity failed: {e:?}");
            std::process::exit(1);
        }
    }
}
