//! The official Python SDKs (azure-identity, google-auth, boto3, from PyPI
//! into a virtualenv by `e2e/sdk/install.sh`), run as a user's pod runs
//! them, against wib's bindings and the fakes: one token per cloud. Proves
//! the fakes speak what those clients parse (Entra's discovery document
//! over https, GCP's whole-second `expireTime`), not only what our own
//! Rust SDK builds accept.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use wib_api::conditions::READY;
use wib_e2e::{Env, GCP_PROJECT};
use wib_testenv::gcp::{POOL, POOL_PROVIDER, PROJECT_NUMBER};

const NS: &str = "sdk-users";

/// The SDKs' python, installed (or found) by the script the suite runs.
fn sdk_python(root: &std::path::Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(root.join("e2e/sdk/install.sh"))
        .output()
        .expect("install.sh runs");
    assert!(
        out.status.success(),
        "installing the SDKs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `pod.py <cloud>` with only `envs`, as a webhook-injected pod sees them.
fn pod(cloud: &str, envs: &[(&str, &OsStr)]) -> (bool, String) {
    let root = wib_testenv::binaries::repo_root();
    let out = Command::new(sdk_python(&root))
        .arg(root.join("e2e/sdk/pod.py"))
        .arg(cloud)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("pod runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("token acquired"),
        text,
    )
}

/// The suite's provider, its GCP block with a workload identity pool (a
/// pod's token is exchanged through STS, not GKE's metadata server).
/// The projected token of `app-<cloud>` for `audience`, in a file as the
/// kubelet mounts it.
async fn token_file(env: &Env, cloud: &str, audience: &str) -> PathBuf {
    let token = env
        .cp
        .service_account_token(NS, &format!("app-{cloud}"), audience)
        .await
        .expect("token");
    let file = env.cp.dir().join(format!("sdk-{cloud}-token"));
    std::fs::write(&file, token).expect("token file");
    file
}

fn provider() -> String {
    let gcp = format!("    projectId: {GCP_PROJECT}\n");
    let with_pool = format!(
        "{gcp}    projectNumber: \"{PROJECT_NUMBER}\"\n    workloadIdentityPool: {POOL}\n    workloadIdentityProvider: {POOL_PROVIDER}\n"
    );
    let yaml = wib_e2e::provider_yaml("sdks", true, None);
    assert!(yaml.ends_with(&gcp), "{yaml}");
    yaml.replace(&gcp, &with_pool)
}

fn binding(name: &str, cloud: &str) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  serviceAccount:\n    name: {name}\n  {cloud}: {{}}\n"
    )
}

#[tokio::test]
async fn each_clouds_official_python_sdk_gets_a_token_through_wibs_binding() {
    let env = Env::start().await.expect("env");
    let wib_e2e::Cluster::Local(cp) = &env.cp else {
        panic!("the pods here run on this machine");
    };
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider()).await.expect("provider");
    for cloud in ["azure", "aws", "gcp"] {
        env.apply(&binding(&format!("app-{cloud}"), cloud))
            .await
            .expect("binding");
    }
    env.apply(&format!(
        "{}    mode: PodIdentity\n",
        binding("app-eks", "aws").replace("aws: {}", "aws:")
    ))
    .await
    .expect("PodIdentity binding");
    let mut status = std::collections::BTreeMap::new();
    for cloud in ["azure", "aws", "gcp"] {
        let b = env
            .wait_condition(NS, &format!("app-{cloud}"), READY, "True", "Provisioned")
            .await
            .expect("Ready");
        status.insert(cloud, b.status.expect("status"));
    }
    let dir = cp.dir();
    let ca = cp.ca_cert_path().as_os_str();

    // Azure: azure-identity's WorkloadIdentityCredential (MSAL underneath)
    // reads Entra's discovery document over https, then the token endpoint.
    let file = token_file(&env, "azure", wib_testenv::azure::AZURE_AUDIENCE).await;
    let client_id = status["azure"].identity.clone().expect("client ID");
    let authority = env
        .azure()
        .https_url
        .clone()
        .expect("the fake serves https");
    let (ok, out) = pod(
        "azure",
        &[
            ("AZURE_CLIENT_ID", client_id.as_ref()),
            ("AZURE_TENANT_ID", wib_testenv::azure::AZURE_TENANT.as_ref()),
            ("AZURE_FEDERATED_TOKEN_FILE", file.as_os_str()),
            ("AZURE_AUTHORITY_HOST", authority.as_ref()),
            ("REQUESTS_CA_BUNDLE", ca),
        ],
    );
    assert!(ok, "azure-identity: {out}");

    // GCP: google-auth's identity_pool credentials: STS, then impersonation.
    let file = token_file(&env, "gcp", &wib_testenv::gcp::token_audience()).await;
    let email = status["gcp"].identity.clone().expect("email");
    let config = dir.join("sdk-gcp-credentials.json");
    std::fs::write(
        &config,
        env.gcp().credential_config(&file, &email).to_string(),
    )
    .expect("config");
    let (ok, out) = pod(
        "gcp",
        &[("GOOGLE_APPLICATION_CREDENTIALS", config.as_os_str())],
    );
    assert!(ok, "google-auth: {out}");

    // AWS: boto3's web identity provider (AssumeRoleWithWebIdentity), then
    // a signed call with the role's session.
    let file = token_file(&env, "aws", wib_testenv::moto::STS_AUDIENCE).await;
    let role = status["aws"].identity.clone().expect("role ARN");
    let (ok, out) = pod(
        "aws",
        &[
            ("AWS_ROLE_ARN", role.as_ref()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file.as_os_str()),
            ("AWS_ROLE_SESSION_NAME", "pod".as_ref()),
            ("AWS_ENDPOINT_URL", env.moto().url.as_ref()),
            // EKS's webhook injects both; botocore reads the second.
            ("AWS_REGION", wib_testenv::moto::REGION.as_ref()),
            ("AWS_DEFAULT_REGION", wib_testenv::moto::REGION.as_ref()),
            ("AWS_EC2_METADATA_DISABLED", "true".as_ref()),
        ],
    );
    assert!(ok, "boto3: {out}");
    assert!(out.contains("assumed-role"), "{out}");

    // AWS mode PodIdentity: botocore's container provider sends the token
    // file's token to the node agent, which asks EKS Auth, which checks the
    // role's trust policy.
    let b = env
        .wait_condition(NS, "app-eks", READY, "True", "Provisioned")
        .await
        .expect("PodIdentity Ready");
    let role = b.status.and_then(|s| s.identity).expect("role ARN");
    let file = token_file(&env, "eks", wib_testenv::eks::AUDIENCE).await;
    let agent = env.eks().container_credentials_env(&file);
    let mut envs: Vec<(&str, &OsStr)> = agent
        .iter()
        .map(|(k, v)| (k.as_str(), OsStr::new(v.as_str())))
        .collect();
    envs.extend([
        ("AWS_ENDPOINT_URL", env.moto().url.as_ref()),
        ("AWS_DEFAULT_REGION", wib_testenv::moto::REGION.as_ref()),
        ("AWS_EC2_METADATA_DISABLED", "true".as_ref()),
    ]);
    let (ok, out) = pod("aws", &envs);
    assert!(ok, "boto3 through EKS Pod Identity: {out}");
    let role_name = role.rsplit('/').next().unwrap_or_default();
    assert!(out.contains(&format!("assumed-role/{role_name}/")), "{out}");
}
