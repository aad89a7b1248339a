//! The pod webhook against the real API server: the operator's webhook is
//! registered by URL with the `caBundle` wib publishes, pods are created
//! (as tenants, through admission; no kubelet is needed), come back
//! mutated as each cloud's own webhook would mutate them, and a kubelet
//! stand-in runs each cloud's pod stand-in with exactly that env and those
//! projected files for a real token exchange against the fakes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use wib_api::conditions::READY;
use wib_e2e::{Env, poll_until};
use wib_testenv::gcp::{POOL, POOL_PROVIDER, PROJECT_NUMBER};

const NS: &str = "apps";
const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";
const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

fn provider() -> String {
    format!(
        "{}    projectNumber: \"{PROJECT_NUMBER}\"\n    workloadIdentityPool: {POOL}\n    workloadIdentityProvider: {POOL_PROVIDER}\n",
        wib_e2e::provider_yaml("shared", true, None)
    )
}

fn binding(namespace: &str, name: &str, cloud: &str) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  serviceAccount:\n    name: {name}\n{cloud}"
    )
}

fn azure_block() -> String {
    format!(
        "  azure:\n    roleAssignments:\n      - role: {KEY_VAULT_SECRETS_USER}\n        scope: /subscriptions/{SUB}/resourceGroups/wib-e2e\n"
    )
}

fn azure_binding(namespace: &str, name: &str) -> String {
    binding(namespace, name, &azure_block())
}

async fn env_with_webhook() -> Env {
    let env = Env::start().await.expect("control plane, fakes, operator");
    env.install_pod_webhook().await.expect("webhook registered");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider()).await.expect("provider");
    env
}

async fn ready(env: &Env, namespace: &str, name: &str) {
    env.wait_condition(namespace, name, READY, "True", "Provisioned")
        .await
        .expect("Ready");
}

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .expect("pod")
}

async fn create(client: &kube::Client, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), pod)
        .await
}

fn env_of(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

/// (audience, expirationSeconds, path) of the pod volume `name`'s token.
fn token_of(pod: &Pod, name: &str) -> (String, i64, String) {
    let volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == name))
        .unwrap_or_else(|| panic!("volume {name}"));
    let token = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.iter().find_map(|s| s.service_account_token.clone()))
        .expect("a projected token");
    (
        token.audience.unwrap_or_default(),
        token.expiration_seconds.unwrap_or_default(),
        token.path,
    )
}

fn mount_of(container: &Container, volume: &str) -> (String, bool) {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume)
        .unwrap_or_else(|| panic!("{} mounts {volume}", container.name));
    (mount.mount_path.clone(), mount.read_only == Some(true))
}

async fn annotations(env: &Env, namespace: &str, name: &str) -> BTreeMap<String, String> {
    env.service_accounts(namespace)
        .get(name)
        .await
        .expect("ServiceAccount")
        .metadata
        .annotations
        .unwrap_or_default()
}

/// Rejects ServiceAccounts in `namespace` unless they turn off token
/// automounting, as policy engines enforcing CIS 5.1.6 do; in force once a
/// ServiceAccount that does not is refused.
async fn require_no_automount(env: &Env, namespace: &str) {
    env.apply(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: no-automounted-tokens
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [serviceaccounts]
  validations:
    - expression: "has(object.automountServiceAccountToken) && object.automountServiceAccountToken == false"
      message: ServiceAccounts must set automountServiceAccountToken to false
"#,
    )
    .await
    .expect("policy");
    env.apply(&format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: no-automounted-tokens
spec:
  policyName: no-automounted-tokens
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {namespace}
"#
    ))
    .await
    .expect("policy binding");
    let accounts = env.service_accounts(namespace);
    poll_until(Duration::from_secs(30), "the policy in force", async || {
        let probe: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "probe"}})).expect("sa");
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        match accounts.create(&dry_run, &probe).await {
            Err(kube::Error::Api(e)) if e.message.contains("automountServiceAccountToken") => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("policy");
}

#[tokio::test]
async fn opted_in_pods_get_each_clouds_identity_as_its_own_webhook_gives_it_and_use_it() {
    let env = env_with_webhook().await;
    require_no_automount(&env, NS).await;
    env.apply(&azure_binding(NS, "az-app"))
        .await
        .expect("azure");
    env.apply(&binding(
        NS,
        "aws-app",
        "  aws:\n    managedPolicyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n",
    ))
    .await
    .expect("aws");
    env.apply(&binding(
        NS,
        "gcp-app",
        "  gcp:\n    roles:\n      - role: roles/storage.objectViewer\n",
    ))
    .await
    .expect("gcp");
    for name in ["az-app", "aws-app", "gcp-app"] {
        ready(&env, NS, name).await;
    }
    let tenant = env.tenant_who_runs_pods("dev", NS).await.expect("tenant");

    // Azure: the pod of the public AKS guide, unchanged.
    let azure = create(
        &tenant.client,
        NS,
        &pod(
            "sample-workload-identity",
            json!({"azure.workload.identity/use": "true"}),
            json!({"serviceAccountName": "az-app",
                   "containers": [{"name": "oidc", "image": "ghcr.io/azure/azure-workload-identity/msal-go"}]}),
        ),
    )
    .await
    .expect("admitted");
    let sa = annotations(&env, NS, "az-app").await;
    let container = &azure.spec.as_ref().expect("spec").containers[0];
    assert_eq!(
        env_of(container),
        BTreeMap::from([
            (
                "AZURE_CLIENT_ID".to_string(),
                sa["azure.workload.identity/client-id"].clone()
            ),
            (
                "AZURE_TENANT_ID".into(),
                sa["azure.workload.identity/tenant-id"].clone()
            ),
            (
                "AZURE_FEDERATED_TOKEN_FILE".into(),
                "/var/run/secrets/azure/tokens/azure-identity-token".into()
            ),
            ("AZURE_AUTHORITY_HOST".into(), env.azure().url.clone()),
        ])
    );
    assert_eq!(
        token_of(&azure, "azure-identity-token"),
        (
            "api://AzureADTokenExchange".into(),
            3600,
            "azure-identity-token".into()
        )
    );
    assert_eq!(
        mount_of(container, "azure-identity-token"),
        ("/var/run/secrets/azure/tokens".into(), true)
    );
    let (ok, out) = env
        .run_admitted_pod(&azure, "oidc", "wib-e2e-pod-azure", &[])
        .await;
    assert!(ok && out.contains("token acquired"), "{out}");

    // AWS: opted in by wib's label, no automounted token, an init
    // container too.
    let aws = create(
        &tenant.client,
        NS,
        &pod(
            "aws-pod",
            json!({"wib.dev/inject": "true"}),
            json!({"serviceAccountName": "aws-app", "automountServiceAccountToken": false,
                   "initContainers": [{"name": "setup", "image": "busybox"}],
                   "containers": [{"name": "app", "image": "amazon/aws-cli"}]}),
        ),
    )
    .await
    .expect("admitted");
    let role_arn = annotations(&env, NS, "aws-app").await["eks.amazonaws.com/role-arn"].clone();
    let spec = aws.spec.as_ref().expect("spec");
    assert_eq!(spec.automount_service_account_token, Some(false));
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let env_vars = env_of(container);
        assert_eq!(env_vars["AWS_ROLE_ARN"], role_arn, "{}", container.name);
        assert_eq!(
            env_vars["AWS_WEB_IDENTITY_TOKEN_FILE"],
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
        );
        assert_eq!(env_vars["AWS_REGION"], wib_testenv::moto::REGION);
        assert_eq!(
            mount_of(container, "aws-iam-token"),
            (
                "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
                true
            )
        );
    }
    assert_eq!(
        token_of(&aws, "aws-iam-token"),
        ("sts.amazonaws.com".into(), 86400, "token".into())
    );
    let (ok, out) = env
        .run_admitted_pod(
            &aws,
            "app",
            "wib-e2e-pod-aws",
            &[
                ("AWS_ENDPOINT_URL", env.moto().url.as_str()),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .await;
    assert!(
        ok && out.contains(&format!(
            ":assumed-role/{}/",
            role_arn.rsplit('/').next().unwrap_or_default()
        )),
        "{out}"
    );

    // GCP outside GKE: the credential configuration rides on the pod.
    let gcp = create(
        &tenant.client,
        NS,
        &pod(
            "gcp-pod",
            json!({"wib.dev/inject": "true"}),
            json!({"serviceAccountName": "gcp-app",
                   "containers": [{"name": "app", "image": "google/cloud-sdk"}]}),
        ),
    )
    .await
    .expect("admitted");
    let email = annotations(&env, NS, "gcp-app").await["iam.gke.io/gcp-service-account"].clone();
    let config: Value = serde_json::from_str(
        &gcp.metadata.annotations.as_ref().expect("annotations")
            ["wib.dev/gcp-credential-configuration"],
    )
    .expect("credential configuration");
    let provider = wib_testenv::gcp::pool_provider();
    assert_eq!(config["type"], "external_account");
    assert_eq!(
        config["audience"],
        format!("//iam.googleapis.com/{provider}")
    );
    assert!(
        config["service_account_impersonation_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/serviceAccounts/{email}:generateAccessToken"))),
        "{config}"
    );
    assert_eq!(
        token_of(&gcp, "wib-gcp-credentials"),
        (wib_testenv::gcp::token_audience(), 3600, "token".into())
    );
    let container = &gcp.spec.as_ref().expect("spec").containers[0];
    assert_eq!(
        env_of(container)["GOOGLE_APPLICATION_CREDENTIALS"],
        "/var/run/secrets/wib/gcp/credential-configuration.json"
    );
    let (ok, out) = env
        .run_admitted_pod(&gcp, "app", "wib-e2e-pod-gcp", &[])
        .await;
    assert!(ok && out.contains("token acquired"), "{out}");
    let injected = env
        .metric_sum("wib_webhook_admissions_total", &[r#"result="injected""#])
        .await
        .expect("metrics");
    assert!(injected >= 3.0, "the three pods are counted: {injected}");
}

#[tokio::test]
async fn a_pod_that_asked_for_an_identity_waits_for_the_webhook_and_no_other_pod_does() {
    let mut env = env_with_webhook().await;
    let opted = |name: &str| {
        pod(
            name,
            json!({"wib.dev/inject": "true"}),
            json!({"containers": [{"name": "app", "image": "x"}]}),
        )
    };
    let plain = |name: &str| {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "app", "image": "x"}]}),
        )
    };
    let client = env.client.clone();
    create(&client, NS, &opted("while-up"))
        .await
        .expect("admitted while wib is up");

    env.operator_mut().kill();
    let refused = create(&client, NS, &opted("while-down"))
        .await
        .expect_err("an opted-in pod must not start without its identity");
    assert!(refused.to_string().contains("pods.wib.dev"), "{refused}");
    create(&client, NS, &plain("plain"))
        .await
        .expect("other pods do not depend on wib");
    create(&client, "kube-system", &opted("system"))
        .await
        .expect("kube-system is never sent to wib");

    // The serving certificate lost with its Secret is made again, its CA
    // published, and opted-in pods admitted again.
    let before = env.webhook_trusted(None).await.expect("bundle");
    Api::<Secret>::namespaced(client.clone(), wib_testenv::fakes::OPERATOR_NAMESPACE)
        .delete("wib-webhook-tls", &DeleteParams::default())
        .await
        .expect("Secret deleted");
    env.operator_mut().restart().expect("operator back");
    env.webhook_trusted(Some(&before))
        .await
        .expect("a new CA published");
    poll_until(
        Duration::from_secs(30),
        "an opted-in pod admitted again",
        async || {
            create(&client, NS, &opted("after"))
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await
    .expect("admitted");
}

/// Tenant abuse: a team that writes another team's identity onto its own
/// ServiceAccount (as it may: the ServiceAccount is its own) gets pods
/// carrying that client ID and nothing more: the cloud federates only the
/// other team's ServiceAccount. Nor can it read the webhook's key or
/// change where the API server sends pods.
#[tokio::test]
async fn a_tenant_cannot_borrow_another_teams_identity_or_reach_the_webhooks_key() {
    let env = env_with_webhook().await;
    env.namespace("team-b", &[]).await.expect("namespace");
    env.apply(&azure_binding(NS, "owned"))
        .await
        .expect("binding");
    ready(&env, NS, "owned").await;
    let victim = annotations(&env, NS, "owned").await;
    let thief = env
        .tenant_who_runs_pods("mallory", "team-b")
        .await
        .expect("tenant");

    let forged: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "borrower",
            "labels": {"app.kubernetes.io/managed-by": "wib"},
            "annotations": {
                "azure.workload.identity/client-id": victim["azure.workload.identity/client-id"],
                "azure.workload.identity/tenant-id": victim["azure.workload.identity/tenant-id"]}},
        "automountServiceAccountToken": false,
    }))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(thief.client.clone(), "team-b")
        .create(&PostParams::default(), &forged)
        .await
        .expect("a team may label and annotate its own ServiceAccount");
    let pod = create(
        &thief.client,
        "team-b",
        &pod(
            "borrowed",
            json!({"azure.workload.identity/use": "true"}),
            json!({"serviceAccountName": "borrower", "containers": [{"name": "app", "image": "x"}]}),
        ),
    )
    .await
    .expect("admitted");
    let (ok, out) = env
        .run_admitted_pod(&pod, "app", "wib-e2e-pod-azure", &[])
        .await;
    assert!(
        !ok,
        "team-b's token must not be exchanged for team apps' identity: {out}"
    );
    // Why, in Entra's words: no federated credential matches team-b's subject.
    let token = env
        .cp
        .service_account_token("team-b", "borrower", "api://AzureADTokenExchange")
        .await
        .expect("token");
    let (status, body) = env
        .azure()
        .exchange(&victim["azure.workload.identity/client-id"], &token)
        .await
        .expect("exchange");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS70021")),
        "{body}"
    );

    let secret =
        Api::<Secret>::namespaced(thief.client.clone(), wib_testenv::fakes::OPERATOR_NAMESPACE)
            .get("wib-webhook-tls")
            .await;
    assert!(
        matches!(&secret, Err(kube::Error::Api(e)) if e.code == 403),
        "{secret:?}"
    );
    let configs =
        Api::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>::all(
            thief.client.clone(),
        );
    let patched = configs
        .patch(
            wib_e2e::pods::CONFIGURATION,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"webhooks": []})),
        )
        .await;
    assert!(
        matches!(&patched, Err(kube::Error::Api(e)) if e.code == 403),
        "{patched:?}"
    );
}

fn status_of(binding: &wib_api::WorkloadIdentityBinding) -> wib_api::WorkloadIdentityBindingStatus {
    binding.status.clone().unwrap_or_default()
}

async fn service_account_as(client: &kube::Client, namespace: &str, name: &str) {
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": name}, "automountServiceAccountToken": false,
    }))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount");
}

fn opted(name: &str, account: &str) -> Pod {
    pod(
        name,
        json!({"wib.dev/inject": "true"}),
        json!({"serviceAccountName": account, "containers": [{"name": "app", "image": "x"}]}),
    )
}

#[tokio::test]
async fn pods_started_before_their_identity_are_reported_and_clear_as_they_are_replaced() {
    let env = env_with_webhook().await;
    let tenant = env.tenant_who_runs_pods("dev", NS).await.expect("tenant");
    service_account_as(&tenant.client, NS, "late").await;
    for name in ["early-1", "early-2"] {
        create(&tenant.client, NS, &opted(name, "late"))
            .await
            .expect("admitted without an identity");
    }
    env.apply(&azure_binding(NS, "late"))
        .await
        .expect("binding");
    ready(&env, NS, "late").await;
    let reported = env
        .wait_condition(
            NS,
            "late",
            wib_api::conditions::PODS_READY,
            "False",
            "PodsNeedRestart",
        )
        .await
        .expect("reported");
    let status = status_of(&reported);
    assert_eq!(status.pods_needing_restart, Some(2));
    assert_eq!(status.pods_needing_restart_names, ["early-1", "early-2"]);
    env.wait_events(NS, "late", &["PodsNeedRestart"])
        .await
        .expect("an Event");
    assert_eq!(
        wib_e2e::condition(&reported, READY).map(|c| c.status.as_str()),
        Some("True"),
        "the cloud side is Ready all the same"
    );

    let pods = Api::<Pod>::namespaced(tenant.client.clone(), NS);
    for name in ["early-1", "early-2"] {
        pods.delete(name, &DeleteParams::default())
            .await
            .expect("deleted");
    }
    create(&tenant.client, NS, &opted("replaced", "late"))
        .await
        .expect("admitted with the identity");
    let cleared = env
        .wait_condition(
            NS,
            "late",
            wib_api::conditions::PODS_READY,
            "True",
            "PodsCurrent",
        )
        .await
        .expect("cleared");
    assert_eq!(status_of(&cleared).pods_needing_restart, Some(0));
    assert!(status_of(&cleared).pods_needing_restart_names.is_empty());
}

/// The opt-in restart, as a tenant: the Deployment whose pod started
/// before the identity is rolled once (its new pod carries the identity);
/// a Deployment of a same-named ServiceAccount in another namespace is not
/// touched.
#[tokio::test]
async fn the_opt_in_restart_rolls_the_teams_deployment_once_and_nothing_elsewhere() {
    let env = env_with_webhook().await;
    env.namespace("team-b", &[]).await.expect("namespace");
    let tenant = env.tenant_who_runs_pods("dev", NS).await.expect("tenant");
    let deployment = |namespace: &str| {
        serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(json!({
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "wib.dev/inject": "true"}},
                    "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "x"}]},
                },
            },
        }))
        .expect("deployment")
    };
    service_account_as(&tenant.client, NS, "web").await;
    service_account_as(&env.client, "team-b", "web").await;
    let ours = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(tenant.client.clone(), NS);
    let theirs =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(env.client.clone(), "team-b");
    ours.create(&PostParams::default(), &deployment(NS))
        .await
        .expect("ours");
    theirs
        .create(&PostParams::default(), &deployment("team-b"))
        .await
        .expect("theirs");
    for namespace in [NS, "team-b"] {
        let pods = Api::<Pod>::namespaced(env.client.clone(), namespace);
        poll_until(
            Duration::from_secs(30),
            "the Deployment's pod",
            async || {
                let list = pods
                    .list(&Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                match list.items.len() {
                    1 => Ok(()),
                    n => Err(format!("{n} pods")),
                }
            },
        )
        .await
        .expect("pod");
    }

    tenant
        .apply(&binding(
            NS,
            "web",
            &format!("  restartWorkloads: OnIdentityChange\n{}", azure_block()),
        ))
        .await
        .expect("binding as the tenant");
    let settled = env
        .wait_condition(
            NS,
            "web",
            wib_api::conditions::PODS_READY,
            "True",
            "PodsCurrent",
        )
        .await
        .expect("the rolled pod carries the identity");
    let restarted = status_of(&settled).workloads_restarted.expect("recorded");
    assert_eq!(restarted.workloads, ["Deployment/web"]);
    assert_eq!(
        Some(restarted.identity.as_str()),
        status_of(&settled).identity.as_deref()
    );
    env.wait_events(NS, "web", &["PodsNeedRestart", "WorkloadsRestarted"])
        .await
        .expect("Events");
    // Several resyncs later: still one roll.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rolled = ours.get("web").await.expect("ours");
    assert_eq!(rolled.metadata.generation, Some(2), "rolled once");
    assert!(
        rolled
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .is_some_and(|a| a.contains_key("kubectl.kubernetes.io/restartedAt"))
    );
    let untouched = theirs.get("web").await.expect("theirs");
    assert_eq!(
        untouched.metadata.generation,
        Some(1),
        "another namespace's Deployment"
    );
}
