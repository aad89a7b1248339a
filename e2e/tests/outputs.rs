//! `spec.outputs.configMap`: the identity's facts where workloads read
//! them, written by wib only into a ConfigMap it made for the binding.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use wib_api::conditions::{OUTPUTS_READY, READY};
use wib_e2e::{Env, poll_until};
use wib_testenv::gcp::{POOL, POOL_PROVIDER, PROJECT_NUMBER};

const NS: &str = "apps";

fn binding(name: &str, outputs: &str, cloud: &str) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  outputs:\n    configMap: {outputs}\n{cloud}"
    )
}

async fn env() -> Env {
    let env = Env::start().await.expect("env");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&format!(
        "{}    projectNumber: \"{PROJECT_NUMBER}\"\n    workloadIdentityPool: {POOL}\n    workloadIdentityProvider: {POOL_PROVIDER}\n",
        wib_e2e::provider_yaml("shared", true, None)
    ))
    .await
    .expect("provider");
    env
}

async fn config_map(env: &Env, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .get_opt(name)
        .await
        .expect("read")
}

/// As a tenant: Azure and GCP facts in ConfigMaps the bindings own, no
/// write on later resyncs, gone with the binding.
#[tokio::test]
async fn outputs_hold_the_identitys_facts_and_go_with_the_binding() {
    let env = env().await;
    let tenant = env.tenant("dev", NS).await.expect("tenant");
    tenant
        .apply(&binding("az", "az-identity", "  azure: {}\n"))
        .await
        .expect("azure binding");
    tenant
        .apply(&binding("gc", "gc-identity", "  gcp: {}\n"))
        .await
        .expect("gcp binding");
    let az = env
        .wait_condition(NS, "az", OUTPUTS_READY, "True", "Applied")
        .await
        .expect("outputs");
    let gc = env
        .wait_condition(NS, "gc", OUTPUTS_READY, "True", "Applied")
        .await
        .expect("outputs");
    assert!(wib_e2e::condition(&az, READY).is_some_and(|c| c.status == "True"));
    let azure = az.status.and_then(|s| s.azure).expect("azure status");
    let written = config_map(&env, "az-identity").await.expect("ConfigMap");
    let data = written.data.clone().unwrap_or_default();
    assert_eq!(data["cloud"], "Azure");
    assert_eq!(Some(&data["clientId"]), azure.client_id.as_ref());
    assert_eq!(Some(&data["principalId"]), azure.principal_id.as_ref());
    assert_eq!(
        written
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].uid.clone()),
        az.metadata.uid.clone(),
        "owned by the binding"
    );
    let email = gc
        .status
        .and_then(|s| s.gcp)
        .and_then(|g| g.email)
        .expect("email");
    let gcp = config_map(&env, "gc-identity").await.expect("ConfigMap");
    let gcp_data = gcp.data.unwrap_or_default();
    assert_eq!(gcp_data["email"], email);
    let configuration: Value =
        serde_json::from_str(&gcp_data["credential-configuration.json"]).expect("JSON");
    assert_eq!(configuration["type"], "external_account");
    assert_eq!(
        configuration["audience"],
        format!("//iam.googleapis.com/{}", wib_testenv::gcp::pool_provider())
    );

    // Several resyncs (2 s here) later: not rewritten.
    let version = written.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        config_map(&env, "az-identity")
            .await
            .and_then(|c| c.metadata.resource_version),
        version,
        "no write in a steady state"
    );

    env.delete_binding(NS, "az").await.expect("deleted");
    poll_until(
        Duration::from_secs(30),
        "the ConfigMap collected",
        async || match config_map(&env, "az-identity").await {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        },
    )
    .await
    .expect("deleted with the binding");
}

/// Tenant abuse: a binding naming a ConfigMap it did not make (another
/// app's configuration) writes nothing into it and says why.
#[tokio::test]
async fn a_binding_cannot_write_into_a_config_map_it_did_not_make() {
    let env = env().await;
    let theirs: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app-config"},
        "data": {"setting": "keep me"},
    }))
    .expect("ConfigMap");
    let made = Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &theirs)
        .await
        .expect("someone else's ConfigMap");
    let tenant = env.tenant("dev", NS).await.expect("tenant");
    tenant
        .apply(&binding("grabby", "app-config", "  azure: {}\n"))
        .await
        .expect("binding");
    let refused = env
        .wait_condition(NS, "grabby", OUTPUTS_READY, "False", "OutputConflict")
        .await
        .expect("refused");
    assert!(
        wib_e2e::condition(&refused, READY).is_some_and(|c| c.status == "True"),
        "the identity itself is fine"
    );
    let after = config_map(&env, "app-config").await.expect("still there");
    assert_eq!(
        after.metadata.resource_version,
        made.metadata.resource_version
    );
    assert_eq!(after.data, made.data);
}
