//! GitOps health: Argo CD's Lua health check (config/argocd/health.lua, run
//! in a real Lua 5.4) judges the objects wib actually writes — Healthy,
//! Progressing and Degraded — and kstatus, the library Flux uses
//! (sigs.k8s.io/cli-utils, built from e2e/kstatus), reads them as Current,
//! InProgress and Failed.

use mlua::{Lua, LuaSerdeExt};
use serde_json::{Value, json};
use wib_api::conditions::{READY, STALLED};
use wib_e2e::Env;

fn health_lua() -> String {
    let root = wib_testenv::binaries::repo_root();
    std::fs::read_to_string(root.join("config/argocd/health.lua")).expect("health.lua")
}

/// The API server never sends JSON nulls; Argo CD's Lua sees absent fields
/// as nil, so drop them rather than hand Lua a null sentinel.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Runs the health check as Argo CD does: `obj` is the live object.
fn health(obj: &Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals()
        .set(
            "obj",
            lua.to_value(&without_nulls(obj)).expect("obj to Lua"),
        )
        .expect("set obj");
    let result: mlua::Table = lua.load(health_lua()).eval().expect("health.lua runs");
    (
        result.get::<String>("status").expect("status"),
        result
            .get::<Option<String>>("message")
            .expect("message")
            .unwrap_or_default(),
    )
}

/// kstatus of a live object, computed by cli-utils as Flux does.
fn kstatus(obj: &Value) -> (String, String) {
    use std::io::Write;
    let root = wib_testenv::binaries::repo_root();
    let built = std::process::Command::new("bash")
        .arg(root.join("e2e/kstatus/build.sh"))
        .output()
        .expect("e2e/kstatus/build.sh");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let binary = String::from_utf8_lossy(&built.stdout).trim().to_string();
    let mut child = std::process::Command::new(binary)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kstatus");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(without_nulls(obj).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kstatus output");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kstatus: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (
        result["status"].as_str().unwrap_or_default().to_string(),
        result["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn argocd_configmap_patch_carries_the_same_health_check() {
    let root = wib_testenv::binaries::repo_root();
    let patch: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("config/argocd/argocd-cm-patch.yaml")).expect("patch"),
    )
    .expect("yaml");
    for kind in ["WorkloadIdentityBinding", "ClusterIdentityProvider"] {
        let key = format!("resource.customizations.health.wib.dev_{kind}");
        assert_eq!(
            patch["data"][&key].as_str(),
            Some(health_lua().as_str()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn argocd_health_reads_healthy_progressing_and_degraded_from_live_objects() {
    let env = Env::start_azure().await.expect("env");
    env.namespace("apps", &[]).await.expect("ns");
    env.apply(
        r#"apiVersion: wib.dev/v1alpha1
kind: ClusterIdentityProvider
metadata:
  name: default
  annotations:
    wib.dev/is-default-provider: "true"
spec:
  clusterName: gitops
  allowedScopes:
    - /subscriptions/00000000-0000-0000-0000-00000000aaaa
    - projects/wib-e2e
  azure:
    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
    subscriptionId: 00000000-0000-0000-0000-00000000aaaa
    resourceGroup: ids
    location: westeurope
  gcp:
    projectId: wib-e2e
---
apiVersion: wib.dev/v1alpha1
kind: WorkloadIdentityBinding
metadata:
  name: healthy
  namespace: apps
spec:
  azure: {}
---
apiVersion: wib.dev/v1alpha1
kind: WorkloadIdentityBinding
metadata:
  name: degraded
  namespace: apps
spec:
  gcp:
    roles:
      - role: roles/owner
"#,
    )
    .await
    .expect("objects");
    let healthy = env
        .wait_condition("apps", "healthy", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let degraded = env
        .wait_condition("apps", "degraded", STALLED, "True", "RoleNotAllowed")
        .await
        .expect("Stalled");
    let as_json = |o: &wib_api::WorkloadIdentityBinding| serde_json::to_value(o).expect("json");

    assert_eq!(health(&as_json(&healthy)).0, "Healthy");
    let (status, message) = health(&as_json(&degraded));
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("RoleNotAllowed"), "{message}");
    // Flux: Current when Ready, Failed when Stalled.
    assert_eq!(kstatus(&as_json(&healthy)).0, "Current");
    assert_eq!(kstatus(&as_json(&degraded)).0, "Failed");

    // The provider is Healthy once its issuer is readable.
    let providers: kube::Api<wib_api::ClusterIdentityProvider> = kube::Api::all(env.client.clone());
    wib_e2e::poll_until(wib_e2e::WAIT, "the provider Healthy", async || {
        let provider = providers.get("default").await.map_err(|e| e.to_string())?;
        let provider = serde_json::to_value(provider).map_err(|e| e.to_string())?;
        match health(&provider).0.as_str() {
            "Healthy" => Ok(()),
            _ => Err(provider.to_string()),
        }
    })
    .await
    .expect("Healthy");

    // Progressing: no status yet, a generation wib has not observed yet, and
    // a transient failure (Reconciling, not Stalled).
    let mut fresh = as_json(&healthy);
    fresh["status"] = Value::Null;
    assert_eq!(health(&fresh).0, "Progressing");
    let mut newer = as_json(&healthy);
    newer["metadata"]["generation"] =
        json!(newer["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    assert_eq!(health(&newer).0, "Progressing");
    assert_eq!(kstatus(&newer).0, "InProgress");
    env.azure()
        .configure(json!({"principalReplicationSeconds": 60}))
        .await
        .expect("slow replication");
    env.apply("apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: waiting\n  namespace: apps\nspec:\n  azure:\n    roleAssignments:\n      - role: Reader\n        scope: /subscriptions/00000000-0000-0000-0000-00000000aaaa\n")
        .await
        .expect("binding");
    let waiting = env
        .wait_condition(
            "apps",
            "waiting",
            READY,
            "False",
            "WaitingForPrincipalReplication",
        )
        .await
        .expect("waiting");
    assert_eq!(kstatus(&as_json(&waiting)).0, "InProgress");
    let (status, message) = health(&as_json(&waiting));
    assert_eq!(status, "Progressing");
    assert!(
        message.starts_with("WaitingForPrincipalReplication"),
        "{message}"
    );
}
