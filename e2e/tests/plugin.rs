//! `kubectl wib` against the local control plane: a namespace moved from AAD
//! Pod Identity with one command and a review of its output (the migrated
//! pod exchanges a token as the same identity), then `status`, `check-pod`
//! and `reconcile` as the team's own user.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use wib_api::conditions::READY;
use wib_e2e::{Cluster, Env, poll_until};

const NS: &str = "apps";
const SUB: &str = "/subscriptions/00000000-0000-0000-0000-00000000aaaa";

/// Runs the plugin as kubectl would (KUBECONFIG names the user):
/// (exit success, stdout + stderr).
fn kubectl_wib(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let binary = wib_testenv::operator::workspace_binary("kubectl-wib").expect("plugin built");
    let out = std::process::Command::new(binary)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl-wib runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn local(env: &Env) -> &wib_testenv::ControlPlane {
    match &env.cp {
        Cluster::Local(cp) => cp,
        _ => panic!("the plugin scenarios run on the local control plane"),
    }
}

/// A user-assigned identity made outside wib, tagged by its owner so
/// namespace `apps` may adopt it: (resource ID, client ID).
async fn legacy_identity(env: &Env) -> (String, String) {
    let (status, body) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &format!("{SUB}/resourceGroups/wib-e2e/providers/Microsoft.ManagedIdentity/userAssignedIdentities/legacy-id?api-version=2023-01-31"),
            Some(json!({"location": "westeurope", "tags": {"wib.dev_adopt-into": NS}})),
        )
        .await
        .expect("arrange an Azure identity");
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().expect("id").to_string(),
        body["properties"]["clientId"]
            .as_str()
            .expect("clientId")
            .to_string(),
    )
}

/// AAD Pod Identity's objects, as a namespace that used it holds them: a
/// user-assigned identity its Deployment selects, a service principal with
/// a secret, and a pod running as the default ServiceAccount.
async fn aad_pod_identity_namespace(env: &Env, resource_id: &str, client_id: &str) {
    env.apply(include_str!("../aad-pod-identity/crds.yaml"))
        .await
        .expect("AAD Pod Identity CRDs");
    let objects = format!(
        r#"apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {{name: legacy, namespace: {NS}}}
spec: {{type: 0, resourceID: "{resource_id}", clientID: "{client_id}"}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {{name: legacy-binding, namespace: {NS}}}
spec: {{azureIdentity: legacy, selector: legacy}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {{name: robot, namespace: {NS}}}
spec: {{type: 1, tenantID: 72f988bf-86f1-41af-91ab-2d7cd011db47, clientID: 11111111-2222-3333-4444-555555555555, clientPassword: {{name: robot-secret, namespace: {NS}}}}}
---
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {{name: robot-binding, namespace: {NS}}}
spec: {{azureIdentity: robot, selector: robot}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: web, namespace: {NS}}}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web, aadpodidbinding: legacy}}}}
    spec: {{serviceAccountName: web, containers: [{{name: app, image: web}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: lonely, namespace: {NS}, labels: {{aadpodidbinding: legacy}}}}
spec: {{containers: [{{name: app, image: x}}]}}
"#
    );
    poll_until(
        Duration::from_secs(30),
        "AAD Pod Identity's objects",
        async || env.apply(&objects).await.map_err(|e| format!("{e:#}")),
    )
    .await
    .expect("objects");
}

async fn pods_labelled(env: &Env, selector: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(env.client.clone(), NS);
    poll_until(Duration::from_secs(30), selector, async || {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| e.to_string())?;
        match list.items.is_empty() {
            true => Err("none yet".into()),
            false => Ok(list.items),
        }
    })
    .await
    .expect("pods")
}

#[tokio::test]
async fn a_namespace_moves_from_aad_pod_identity_with_one_command_and_the_plugin_tells_its_state() {
    let env = Env::start_azure()
        .await
        .expect("control plane, Azure fake, operator");
    env.install_pod_webhook().await.expect("webhook");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&format!(
        "{}  adoption: AllowUntagged\n",
        wib_e2e::provider_yaml("aks", true, None)
    ))
    .await
    .expect("provider");
    let (resource_id, client_id) = legacy_identity(&env).await;
    aad_pod_identity_namespace(&env, &resource_id, &client_id).await;
    let before = pods_labelled(&env, "app=web").await;
    let admin = local(&env).kubeconfig().to_path_buf();

    // The platform engineer's one command: YAML to review, what it cannot
    // move and why, and the steps around it.
    let (complete, yaml) = kubectl_wib(&admin, &["migrate", "aad-pod-identity", "-A"]);
    assert!(
        !complete,
        "two things cannot be migrated, so it says so:\n{yaml}"
    );
    for expected in [
        format!("az identity update --ids {resource_id} --tags wib.dev_adopt-into={NS}"),
        format!("kubectl patch deployment/web -n {NS}"),
        "AzureIdentity \"robot\" is type 1 (a service principal with a client secret)".to_string(),
        format!("pod {NS}/lonely"),
        "identityName: legacy-id".to_string(),
    ] {
        assert!(yaml.contains(&expected), "missing {expected:?} in:\n{yaml}");
    }
    env.apply(&yaml).await.expect("the reviewed output applies");
    let ready = env
        .wait_condition(NS, "web", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    assert_eq!(
        ready.status.as_ref().and_then(|s| s.identity.as_deref()),
        Some(client_id.as_str()),
        "the same identity, adopted"
    );
    // AAD Pod Identity's objects are left for their owner to remove.
    let identities = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("aadpodidentity.k8s.io", "v1", "AzureIdentity"),
        "azureidentities",
    );
    Api::<kube::api::DynamicObject>::namespaced_with(env.client.clone(), NS, &identities)
        .get("legacy")
        .await
        .expect("AzureIdentity kept");

    // The label change the output asks for; the new pod gets the identity
    // from wib's webhook and exchanges a token as it.
    Api::<Deployment>::namespaced(env.client.clone(), NS)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"labels": {"azure.workload.identity/use": "true"}}}}})),
        )
        .await
        .expect("label");
    let migrated = pods_labelled(&env, "app=web,azure.workload.identity/use=true").await;
    let pod = &migrated[0];
    let (ok, out) = env
        .run_admitted_pod(pod, "app", "wib-e2e-pod-azure", &[])
        .await;
    assert!(ok && out.contains("token acquired"), "{out}");

    // The team's own view, as its user.
    let tenant = env.tenant_who_runs_pods("dev", NS).await.expect("tenant");
    drop(tenant);
    let dev = local(&env).user_kubeconfig("dev").expect("kubeconfig");
    let (ok, status) = kubectl_wib(&dev, &["status", "-n", NS]);
    assert!(ok, "{status}");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{NS} ")) && l.contains(" web "))
        .unwrap_or_else(|| panic!("no line for web:\n{status}"));
    for column in ["Azure", client_id.as_str(), "True", "Provisioned"] {
        assert!(line.contains(column), "{column} in {line:?}");
    }
    let pod_name = pod.metadata.name.clone().expect("name");
    let (ok, check) = kubectl_wib(&dev, &["check-pod", &pod_name, "-n", NS]);
    assert!(ok, "{check}");
    assert!(
        check.contains(&format!("AZURE_CLIENT_ID: app: {client_id}")),
        "{check}"
    );
    assert!(
        check.contains("audience api://AzureADTokenExchange"),
        "{check}"
    );
    assert!(
        check.contains("runs with the binding's current identity"),
        "{check}"
    );
    let old = before[0].metadata.name.clone().expect("name");
    let (ok, check) = kubectl_wib(&dev, &["check-pod", &old, "-n", NS]);
    assert!(!ok && check.contains("no opt-in label"), "{check}");
    let (ok, reconciled) = kubectl_wib(&dev, &["reconcile", "web", "-n", NS]);
    assert!(
        ok && reconciled.contains("reconciled: Ready=True"),
        "{reconciled}"
    );

    // A team cannot read across namespaces through it.
    let (ok, denied) = kubectl_wib(&dev, &["migrate", "aad-pod-identity", "-A"]);
    assert!(!ok && denied.contains("forbidden"), "{denied}");
    let (ok, denied) = kubectl_wib(&dev, &["status", "-A"]);
    assert!(!ok && denied.contains("forbidden"), "{denied}");
}

/// A reconcile requested by annotation runs now, not at the next resync
/// (ten minutes here): a federated credential deleted out of band is put
/// back on request, and the request is recorded as handled.
#[tokio::test]
async fn a_requested_reconcile_repairs_drift_now_and_is_recorded() {
    let env = Env::start_with_resync("600").await.expect("env");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&wib_e2e::provider_yaml("aks", true, None))
        .await
        .expect("provider");
    env.apply(&format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: app\n  namespace: {NS}\nspec:\n  azure: {{}}\n"
    ))
    .await
    .expect("binding");
    let ready = env
        .wait_condition(NS, "app", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let azure = ready.status.and_then(|s| s.azure).expect("azure status");
    let credential = format!(
        "{}/federatedIdentityCredentials/{}?api-version=2023-01-31",
        azure.resource_id.expect("resource ID"),
        azure.federated_credential.expect("credential")
    );
    let (status, _) = env
        .azure()
        .arm(reqwest::Method::DELETE, &credential, None)
        .await
        .expect("out-of-band delete");
    assert_eq!(status, 200);

    let admin = local(&env).kubeconfig().to_path_buf();
    let (ok, out) = kubectl_wib(&admin, &["reconcile", "app", "-n", NS, "--timeout", "30"]);
    assert!(ok && out.contains("reconciled: Ready=True"), "{out}");
    let (status, body) = env
        .azure()
        .arm(reqwest::Method::GET, &credential, None)
        .await
        .expect("read back");
    assert_eq!(status, 200, "put back on request: {body}");
    let binding = env.bindings(NS).get("app").await.expect("binding");
    let requested = binding
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(wib_api::keys::RECONCILE_REQUESTED_ANNOTATION))
        .cloned();
    assert!(requested.is_some());
    assert_eq!(
        binding.status.and_then(|s| s.last_handled_reconcile_at),
        requested
    );
}
