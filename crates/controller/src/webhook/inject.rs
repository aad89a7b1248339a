//! What a pod needs to act as its ServiceAccount's cloud identities, worked
//! out from the ServiceAccount's annotations alone (no client required) and
//! laid onto the pod the way the clouds' own webhooks lay it, so SDKs and
//! existing code work unchanged: azure-workload-identity's env and token
//! path, amazon-eks-pod-identity-webhook's, and for GCP outside GKE an
//! `external_account` configuration delivered through the downward API
//! instead of a ConfigMap per workload.
//!
//! Nothing the pod already sets is overwritten: an env var, volume or mount
//! of the same name (or mount path) wins over wib's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIProjection, DownwardAPIVolumeFile, EnvVar, ObjectFieldSelector, Pod,
    ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use serde_json::json;

/// Pod annotation holding the GCP credential configuration the pod's
/// downward-API volume projects as a file.
pub const GCP_CREDENTIALS_ANNOTATION: &str = "wib.dev/gcp-credential-configuration";
/// ServiceAccount annotation wib writes for clusters federated through a
/// workload identity pool: `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
pub const GCP_POOL_PROVIDER_ANNOTATION: &str = "wib.dev/gcp-workload-identity-provider";
/// Pod annotation naming containers (`,` or `;` separated) wib leaves alone.
pub const SKIP_CONTAINERS_ANNOTATION: &str = "wib.dev/skip-containers";

pub const AZURE_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
pub const AZURE_TOKEN_FILE: &str = "azure-identity-token";
pub const AWS_TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub const GCP_DIR: &str = "/var/run/secrets/wib/gcp";

/// What the cluster says about its clouds' endpoints (the operator's
/// settings, the same for every pod).
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub azure_authority_host: String,
    pub aws_region: Option<String>,
    pub gcp_sts_url: String,
    pub gcp_credentials_url: String,
}

/// One cloud's part of a pod: env for every container, one projected
/// volume mounted read-only, and pod annotations the volume reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    pub cloud: wib_api::Cloud,
    pub env: Vec<(String, String)>,
    pub volume: Volume,
    pub mount_path: String,
    pub pod_annotations: BTreeMap<String, String>,
    /// Pod annotation listing containers to leave alone, besides wib's.
    pub skip_annotation: Option<(&'static str, char)>,
}

/// The injections a ServiceAccount's annotations call for, and why any
/// cloud it is bound to gets none.
pub fn injections(
    annotations: &BTreeMap<String, String>,
    endpoints: &Endpoints,
) -> (Vec<Injection>, Vec<String>) {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    found.extend(azure(annotations, endpoints));
    found.extend(aws(annotations, endpoints));
    match gcp(annotations, endpoints) {
        Ok(injection) => found.extend(injection),
        Err(warning) => warnings.push(warning),
    }
    (found, warnings)
}

fn azure(annotations: &BTreeMap<String, String>, endpoints: &Endpoints) -> Option<Injection> {
    let client_id = annotations.get("azure.workload.identity/client-id")?;
    let tenant_id = annotations
        .get("azure.workload.identity/tenant-id")
        .cloned()
        .unwrap_or_default();
    let expiration = seconds(
        annotations.get("azure.workload.identity/service-account-token-expiration"),
        3600,
    );
    Some(Injection {
        cloud: wib_api::Cloud::Azure,
        env: vec![
            ("AZURE_CLIENT_ID".into(), client_id.clone()),
            ("AZURE_TENANT_ID".into(), tenant_id),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                format!("{AZURE_TOKEN_DIR}/{AZURE_TOKEN_FILE}"),
            ),
            (
                "AZURE_AUTHORITY_HOST".into(),
                endpoints.azure_authority_host.clone(),
            ),
        ],
        volume: token_volume(
            "azure-identity-token",
            AZURE_TOKEN_FILE,
            "api://AzureADTokenExchange",
            expiration,
            None,
        ),
        mount_path: AZURE_TOKEN_DIR.into(),
        pod_annotations: BTreeMap::new(),
        skip_annotation: Some(("azure.workload.identity/skip-containers", ';')),
    })
}

fn aws(annotations: &BTreeMap<String, String>, endpoints: &Endpoints) -> Option<Injection> {
    let role_arn = annotations.get("eks.amazonaws.com/role-arn")?;
    let audience = annotations
        .get("eks.amazonaws.com/audience")
        .map_or("sts.amazonaws.com", String::as_str);
    let expiration = seconds(annotations.get("eks.amazonaws.com/token-expiration"), 86400);
    let mut env = vec![
        ("AWS_ROLE_ARN".to_string(), role_arn.clone()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            format!("{AWS_TOKEN_DIR}/token"),
        ),
    ];
    if annotations
        .get("eks.amazonaws.com/sts-regional-endpoints")
        .is_some_and(|v| v == "true")
    {
        env.push(("AWS_STS_REGIONAL_ENDPOINTS".into(), "regional".into()));
    }
    if let Some(region) = &endpoints.aws_region {
        env.push(("AWS_DEFAULT_REGION".into(), region.clone()));
        env.push(("AWS_REGION".into(), region.clone()));
    }
    Some(Injection {
        cloud: wib_api::Cloud::Aws,
        env,
        volume: token_volume("aws-iam-token", "token", audience, expiration, None),
        mount_path: AWS_TOKEN_DIR.into(),
        pod_annotations: BTreeMap::new(),
        skip_annotation: Some(("eks.amazonaws.com/skip-containers", ',')),
    })
}

/// Outside GKE only: on GKE (no pool provider annotation) the metadata
/// server hands pods their token and nothing is injected. Without a Google
/// service account (mode Direct) the pod uses the federated token itself.
fn gcp(
    annotations: &BTreeMap<String, String>,
    endpoints: &Endpoints,
) -> Result<Option<Injection>, String> {
    let email = annotations
        .get("iam.gke.io/gcp-service-account")
        .map(String::as_str);
    let Some(pool_provider) = annotations.get(GCP_POOL_PROVIDER_ANNOTATION) else {
        return Ok(None);
    };
    if !pool_provider.starts_with("projects/") || pool_provider.contains(['"', '\\']) {
        return Err(format!(
            "the ServiceAccount's {GCP_POOL_PROVIDER_ANNOTATION} is not a workload identity pool provider: {pool_provider:?}"
        ));
    }
    let configuration = gcp_credential_configuration(pool_provider, email, endpoints);
    let file = DownwardAPIProjection {
        items: Some(vec![DownwardAPIVolumeFile {
            path: "credential-configuration.json".into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.annotations['{GCP_CREDENTIALS_ANNOTATION}']"),
                ..Default::default()
            }),
            ..Default::default()
        }]),
    };
    Ok(Some(Injection {
        cloud: wib_api::Cloud::Gcp,
        env: vec![(
            "GOOGLE_APPLICATION_CREDENTIALS".into(),
            format!("{GCP_DIR}/credential-configuration.json"),
        )],
        volume: token_volume(
            "wib-gcp-credentials",
            "token",
            &format!("https://iam.googleapis.com/{pool_provider}"),
            3600,
            Some(file),
        ),
        mount_path: GCP_DIR.into(),
        pod_annotations: BTreeMap::from([(
            GCP_CREDENTIALS_ANNOTATION.to_string(),
            configuration.to_string(),
        )]),
        skip_annotation: None,
    }))
}

/// The `external_account` configuration through the pool provider, reading
/// the token where the webhook mounts it: impersonating `email`, or (mode
/// Direct, no email) using the federated token as it is.
pub fn gcp_credential_configuration(
    pool_provider: &str,
    email: Option<&str>,
    endpoints: &Endpoints,
) -> serde_json::Value {
    let mut configuration = json!({
        "type": "external_account",
        "audience": format!("//iam.googleapis.com/{pool_provider}"),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": endpoints.gcp_sts_url,
        "credential_source": {"file": format!("{GCP_DIR}/token"), "format": {"type": "text"}},
    });
    if let Some(email) = email {
        configuration["service_account_impersonation_url"] = json!(format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            endpoints.gcp_credentials_url.trim_end_matches('/')
        ));
    }
    configuration
}

fn seconds(annotation: Option<&String>, default: i64) -> i64 {
    annotation.and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn token_volume(
    name: &str,
    path: &str,
    audience: &str,
    expiration_seconds: i64,
    also: Option<DownwardAPIProjection>,
) -> Volume {
    let mut sources = vec![VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            audience: Some(audience.to_string()),
            expiration_seconds: Some(expiration_seconds),
            path: path.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(downward_api) = also {
        sources.push(VolumeProjection {
            downward_api: Some(downward_api),
            ..Default::default()
        });
    }
    Volume {
        name: name.to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o444),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Lays `injections` onto `pod`: volumes, pod annotations, and every
/// container's and init container's env and mount, except those the pod's
/// skip annotations name. Returns the clouds it changed something for.
pub fn apply(pod: &mut Pod, injections: &[Injection]) -> Vec<wib_api::Cloud> {
    let mut changed = Vec::new();
    for injection in injections {
        let skipped = skipped_containers(pod, injection);
        let mut touched = false;
        let Some(spec) = pod.spec.as_mut() else {
            return changed;
        };
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        if !volumes.iter().any(|v| v.name == injection.volume.name) {
            volumes.push(injection.volume.clone());
            touched = true;
        }
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for container in containers.filter(|c| !skipped.contains(&c.name)) {
            touched |= inject_container(container, injection);
        }
        if !injection.pod_annotations.is_empty() {
            let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
            for (key, value) in &injection.pod_annotations {
                if !annotations.contains_key(key) {
                    annotations.insert(key.clone(), value.clone());
                    touched = true;
                }
            }
        }
        if touched {
            changed.push(injection.cloud);
        }
    }
    changed
}

fn skipped_containers(pod: &Pod, injection: &Injection) -> Vec<String> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let mut lists = vec![(SKIP_CONTAINERS_ANNOTATION, ';')];
    lists.extend(injection.skip_annotation);
    lists
        .into_iter()
        .filter_map(|(key, _)| annotations.get(key))
        .flat_map(|list| {
            list.split([';', ','])
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn inject_container(container: &mut Container, injection: &Injection) -> bool {
    let mut touched = false;
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in &injection.env {
        if !env.iter().any(|e| &e.name == name) {
            env.push(EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                ..Default::default()
            });
            touched = true;
        }
    }
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts
        .iter()
        .any(|m| m.name == injection.volume.name || m.mount_path == injection.mount_path)
    {
        mounts.push(VolumeMount {
            name: injection.volume.name.clone(),
            mount_path: injection.mount_path.clone(),
            read_only: Some(true),
            ..Default::default()
        });
        touched = true;
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            azure_authority_host: "https://login.microsoftonline.com/".into(),
            aws_region: Some("eu-west-1".into()),
            gcp_sts_url: "https://sts.googleapis.com/v1/token".into(),
            gcp_credentials_url: "https://iamcredentials.googleapis.com".into(),
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    fn env_of(container: &Container) -> BTreeMap<String, String> {
        container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn azure_gets_what_azure_workload_identity_injects() {
        let sa = annotations(&[
            ("azure.workload.identity/client-id", "cid"),
            ("azure.workload.identity/tenant-id", "tid"),
            (
                "azure.workload.identity/service-account-token-expiration",
                "7200",
            ),
        ]);
        let (found, warnings) = injections(&sa, &endpoints());
        assert!(warnings.is_empty());
        let mut p = pod(json!({"spec": {"containers": [{"name": "app", "image": "x"}]}}));
        assert_eq!(apply(&mut p, &found), [wib_api::Cloud::Azure]);
        let spec = p.spec.as_ref().expect("spec");
        let env = env_of(&spec.containers[0]);
        assert_eq!(env["AZURE_CLIENT_ID"], "cid");
        assert_eq!(env["AZURE_TENANT_ID"], "tid");
        assert_eq!(
            env["AZURE_FEDERATED_TOKEN_FILE"],
            "/var/run/secrets/azure/tokens/azure-identity-token"
        );
        assert_eq!(
            env["AZURE_AUTHORITY_HOST"],
            "https://login.microsoftonline.com/"
        );
        let volume =
            serde_json::to_value(&spec.volumes.as_ref().expect("volumes")[0]).expect("json");
        assert_eq!(
            volume,
            json!({"name": "azure-identity-token", "projected": {"defaultMode": 292, "sources": [
                {"serviceAccountToken": {"audience": "api://AzureADTokenExchange",
                 "expirationSeconds": 7200, "path": "azure-identity-token"}}]}})
        );
        let mount = &spec.containers[0].volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(mount.mount_path, "/var/run/secrets/azure/tokens");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn aws_gets_what_the_eks_pod_identity_webhook_injects() {
        let sa = annotations(&[
            ("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/r"),
            ("eks.amazonaws.com/audience", "aud"),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
        ]);
        let (found, _) = injections(&sa, &endpoints());
        let mut p = pod(json!({"spec": {
            "containers": [{"name": "app", "image": "x"}],
            "initContainers": [{"name": "init", "image": "x"}]}}));
        apply(&mut p, &found);
        let spec = p.spec.as_ref().expect("spec");
        for container in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let env = env_of(container);
            assert_eq!(env["AWS_ROLE_ARN"], "arn:aws:iam::1:role/r");
            assert_eq!(
                env["AWS_WEB_IDENTITY_TOKEN_FILE"],
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
            );
            assert_eq!(env["AWS_STS_REGIONAL_ENDPOINTS"], "regional");
            assert_eq!(env["AWS_REGION"], "eu-west-1");
            assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
        }
        let token = spec.volumes.as_ref().expect("volumes")[0]
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .and_then(|s| s[0].service_account_token.clone())
            .expect("token");
        assert_eq!(token.audience.as_deref(), Some("aud"));
        assert_eq!(token.expiration_seconds, Some(86400));
    }

    #[test]
    fn gcp_outside_gke_gets_a_credential_configuration_through_the_downward_api() {
        let provider = "projects/123/locations/global/workloadIdentityPools/p/providers/x";
        let sa = annotations(&[
            (
                "iam.gke.io/gcp-service-account",
                "a@proj.iam.gserviceaccount.com",
            ),
            (GCP_POOL_PROVIDER_ANNOTATION, provider),
        ]);
        let (found, _) = injections(&sa, &endpoints());
        let mut p = pod(json!({"spec": {"containers": [{"name": "app", "image": "x"}]}}));
        apply(&mut p, &found);
        let config: serde_json::Value = serde_json::from_str(
            &p.metadata.annotations.as_ref().expect("annotations")[GCP_CREDENTIALS_ANNOTATION],
        )
        .expect("json");
        assert_eq!(
            config["audience"],
            format!("//iam.googleapis.com/{provider}")
        );
        assert_eq!(config["token_url"], "https://sts.googleapis.com/v1/token");
        assert_eq!(
            config["service_account_impersonation_url"],
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@proj.iam.gserviceaccount.com:generateAccessToken"
        );
        assert_eq!(
            config["credential_source"]["file"],
            "/var/run/secrets/wib/gcp/token"
        );
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(
            env_of(&spec.containers[0])["GOOGLE_APPLICATION_CREDENTIALS"],
            "/var/run/secrets/wib/gcp/credential-configuration.json"
        );
        let sources = spec.volumes.as_ref().expect("volumes")[0]
            .projected
            .as_ref()
            .and_then(|p| p.sources.clone())
            .expect("sources");
        assert_eq!(
            sources[0]
                .service_account_token
                .as_ref()
                .and_then(|t| t.audience.as_deref()),
            Some(format!("https://iam.googleapis.com/{provider}").as_str())
        );
        assert!(sources[1].downward_api.is_some());
    }

    #[test]
    fn gcp_direct_mode_outside_gke_uses_the_federated_token_without_impersonation() {
        let provider = "projects/123/locations/global/workloadIdentityPools/p/providers/x";
        let sa = annotations(&[(GCP_POOL_PROVIDER_ANNOTATION, provider)]);
        let (found, _) = injections(&sa, &endpoints());
        let mut p = pod(json!({"spec": {"containers": [{"name": "app", "image": "x"}]}}));
        apply(&mut p, &found);
        let config: serde_json::Value = serde_json::from_str(
            &p.metadata.annotations.as_ref().expect("annotations")[GCP_CREDENTIALS_ANNOTATION],
        )
        .expect("json");
        assert_eq!(
            config["audience"],
            format!("//iam.googleapis.com/{provider}")
        );
        assert!(
            config.get("service_account_impersonation_url").is_none(),
            "{config}"
        );
    }

    #[test]
    fn on_gke_and_for_unbound_accounts_nothing_is_injected() {
        let gke = annotations(&[(
            "iam.gke.io/gcp-service-account",
            "a@p.iam.gserviceaccount.com",
        )]);
        assert_eq!(injections(&gke, &endpoints()).0, []);
        assert_eq!(injections(&BTreeMap::new(), &endpoints()).0, []);
        let forged = annotations(&[
            (
                "iam.gke.io/gcp-service-account",
                "a@p.iam.gserviceaccount.com",
            ),
            (
                GCP_POOL_PROVIDER_ANNOTATION,
                "x\"}, \"token_url\": \"https://evil",
            ),
        ]);
        let (found, warnings) = injections(&forged, &endpoints());
        assert!(found.is_empty());
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn what_the_pod_sets_itself_wins_and_skipped_containers_are_left_alone() {
        let sa = annotations(&[
            ("azure.workload.identity/client-id", "cid"),
            ("eks.amazonaws.com/role-arn", "arn:aws:iam::1:role/r"),
        ]);
        let (found, _) = injections(&sa, &endpoints());
        let mut p = pod(json!({
        "metadata": {"annotations": {"azure.workload.identity/skip-containers": "proxy"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "x", "env": [{"name": "AZURE_CLIENT_ID", "value": "mine"}]},
                {"name": "proxy", "image": "x"},
            ],
            "volumes": [{"name": "aws-iam-token", "emptyDir": {}}],
        }}));
        apply(&mut p, &found);
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(env_of(&spec.containers[0])["AZURE_CLIENT_ID"], "mine");
        assert_eq!(env_of(&spec.containers[0])["AZURE_TENANT_ID"], "");
        let proxy = env_of(&spec.containers[1]);
        assert!(!proxy.contains_key("AZURE_CLIENT_ID"), "skipped for Azure");
        assert!(proxy.contains_key("AWS_ROLE_ARN"), "not skipped for AWS");
        let volumes = spec.volumes.as_ref().expect("volumes");
        assert_eq!(volumes.len(), 2);
        assert!(volumes[0].empty_dir.is_some(), "the pod's own volume stays");
        let again = apply(&mut p, &found);
        assert!(again.is_empty(), "a second pass changes nothing: {again:?}");
    }
}
