//! Azure end to end: the operator binary, the local control plane and the
//! Azure fake, reached only through the Azure SDK crates.

use std::time::Duration;

use kube::ResourceExt;
use serde_json::{Value, json};
use wib_api::conditions::{READY, ROLE_ASSIGNMENTS_READY};
use wib_e2e::scenarios::{self, CloudUnderTest, Refusal, Snapshot};
use wib_e2e::{Env, condition};
use wib_testenv::azure::{AZURE_AUDIENCE, AZURE_TENANT};

const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";
const NS: &str = "test-namespace";
const SA: &str = "qa-cluster-app1-sa";
const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

fn vault_scope() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/qa-rg/providers/Microsoft.KeyVault/vaults/qa-kv")
}

/// The test provider; grants may land anywhere in the subscription unless
/// `extra` sets its own allowedScopes.
fn provider(extra: &str) -> String {
    let scopes = if extra.contains("allowedScopes") {
        String::new()
    } else {
        format!("\n  allowedScopes:\n    - /subscriptions/{SUB}")
    };
    format!(
        r#"apiVersion: wib.dev/v1alpha1
kind: ClusterIdentityProvider
metadata:
  name: azure
  annotations:
    wib.dev/is-default-provider: "true"
spec:
  clusterName: qa-cluster
  azure:
    tenantId: {AZURE_TENANT}
    subscriptionId: {SUB}
    resourceGroup: qa-identities
    location: westeurope{scopes}{extra}
"#
    )
}

fn binding(name: &str, sa: &str, role: &str, scope: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: wib.dev/v1alpha1
kind: WorkloadIdentityBinding
metadata:
  name: {name}
  namespace: {NS}
spec:
  serviceAccount:
    name: {sa}{extra}
  azure:
    roleAssignments:
      - role: {role}
        scope: {scope}
"#
    )
}

async fn env() -> Env {
    let env = Env::start_azure()
        .await
        .expect("control plane, Azure fake and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider("")).await.expect("provider");
    env
}

/// Runs the pod stand-in with the environment the Azure webhook injects.
/// An identity another binding of this namespace made, by its tags; its
/// resource ID.
async fn identity_of_another_binding(env: &Env, name: &str) -> String {
    let identity = format!(
        "/subscriptions/{SUB}/resourceGroups/qa-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    );
    let tags = json!({"wib.dev_cluster": "qa-cluster", "wib.dev_namespace": NS, "wib.dev_binding": "owner", "wib.dev_uid": "someone-else"});
    let (status, _) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &format!("{identity}?api-version=2023-01-31"),
            Some(json!({"location": "westeurope", "tags": tags})),
        )
        .await
        .expect("identity");
    assert_eq!(status, 201);
    identity
}

fn identities(state: &Value) -> Vec<Value> {
    state["identities"].as_array().cloned().unwrap_or_default()
}

fn assignments(state: &Value) -> Vec<Value> {
    state["roleAssignments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn public_guide_binding_becomes_ready_and_its_pod_token_exchanges_until_deleted() {
    let env = env().await;
    env.apply(&binding(
        "app1",
        SA,
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "app1", READY, "True", "Provisioned")
        .await
        .expect("Ready");

    // The fake holds exactly the identity, its credential and its assignment.
    let state = env.azure().state().await.expect("state");
    let ids = identities(&state);
    assert_eq!(ids.len(), 1, "{state}");
    let identity = &ids[0];
    let client_id = identity["properties"]["clientId"]
        .as_str()
        .expect("clientId")
        .to_string();
    let principal = identity["properties"]["principalId"]
        .as_str()
        .expect("principalId")
        .to_string();
    assert_eq!(identity["location"], "westeurope");
    assert_eq!(identity["tags"]["wib.dev_cluster"], "qa-cluster");
    assert_eq!(identity["tags"]["wib.dev_namespace"], NS);
    assert_eq!(identity["tags"]["wib.dev_binding"], "app1");
    assert_eq!(identity["tags"]["wib.dev_uid"], b.uid().expect("uid"));
    assert!(
        identity["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("/resourcegroups/qa-identities/"),
        "{identity}"
    );
    let fics = identity["federatedIdentityCredentials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(fics.len(), 1, "{identity}");
    assert_eq!(fics[0]["properties"]["issuer"], env.cp.issuer());
    assert_eq!(
        fics[0]["properties"]["subject"],
        format!("system:serviceaccount:{NS}:{SA}")
    );
    assert_eq!(fics[0]["properties"]["audiences"], json!([AZURE_AUDIENCE]));
    let roles = assignments(&state);
    assert_eq!(roles.len(), 1, "{state}");
    assert_eq!(roles[0]["properties"]["principalId"], principal.as_str());
    assert_eq!(roles[0]["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(roles[0]["properties"]["scope"], vault_scope());
    assert!(
        roles[0]["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap_or_default()
            .ends_with(KEY_VAULT_SECRETS_USER),
        "{state}"
    );

    // Status and ServiceAccount tell the same story.
    let status = b.status.as_ref().expect("status");
    let azure = status.azure.as_ref().expect("azure status");
    assert_eq!(azure.client_id.as_deref(), Some(client_id.as_str()));
    assert_eq!(azure.principal_id.as_deref(), Some(principal.as_str()));
    assert_eq!(azure.tenant_id.as_deref(), Some(AZURE_TENANT));
    assert_eq!(azure.resource_id.as_deref(), identity["id"].as_str());
    assert_eq!(status.identity.as_deref(), Some(client_id.as_str()));
    assert_eq!(status.role_assignments.len(), 1);
    assert!(status.role_assignments[0].ready);
    let sa = env
        .service_accounts(NS)
        .get(SA)
        .await
        .expect("ServiceAccount");
    assert_eq!(
        sa.annotations().get("azure.workload.identity/client-id"),
        Some(&client_id)
    );
    assert_eq!(
        sa.annotations()
            .get("azure.workload.identity/tenant-id")
            .map(String::as_str),
        Some(AZURE_TENANT)
    );
    assert_eq!(
        sa.labels()
            .get("azure.workload.identity/use")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(sa.automount_service_account_token, Some(false));

    // A pod's projected token is exchanged for an Entra token with the Azure SDK.
    let token = env
        .cp
        .service_account_token(NS, SA, AZURE_AUDIENCE)
        .await
        .expect("TokenRequest");
    let (ok, output) = env.azure_exchange(&client_id, &token);
    assert!(ok, "exchange while Ready: {output}");

    // A steady state makes no cloud writes across several resyncs.
    env.azure().reset_calls().await.expect("reset");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(calls["writes"], 0, "steady state wrote: {calls}");
    // Resyncs still look: the identity through the resource group's
    // listing (the fleet snapshot), its credentials one by one.
    let served = |op: &str| calls["operations"][op].as_u64().unwrap_or_default();
    assert!(
        served("UserAssignedIdentities_ListByResourceGroup") >= 1
            && served("FederatedIdentityCredentials_List") >= 2,
        "resyncs re-read the cloud: {calls}"
    );

    // After deletion the same exchange fails, and the fake holds nothing of wib's.
    env.delete_binding(NS, "app1").await.expect("deleted");
    let (ok, output) = env.azure_exchange(&client_id, &token);
    assert!(!ok, "exchange after deletion must fail: {output}");
    let (status, body) = env
        .azure()
        .exchange(&client_id, &token)
        .await
        .expect("token endpoint");
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (400, Some(700016)),
        "the identity is gone: {body}"
    );
    let state = env.azure().state().await.expect("state");
    assert!(
        identities(&state).is_empty() && assignments(&state).is_empty(),
        "{state}"
    );
    assert!(
        env.service_accounts(NS)
            .get_opt(SA)
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_nothing_written() {
    scenarios::bad_input_is_refused_with_nothing_written::<Azure>().await;
}

#[tokio::test]
async fn throttling_server_errors_and_replication_delay_end_ready_without_duplicates() {
    let env = env().await;
    env.azure()
        .configure(json!({"principalReplicationSeconds": 8}))
        .await
        .expect("replication delay");
    env.azure()
        .inject(json!({"operation": "RoleAssignments_Create", "status": 429, "retryAfter": 1, "times": 2}))
        .await
        .expect("429");
    env.azure()
        .inject(json!({"operation": "FederatedIdentityCredentials_CreateOrUpdate", "status": 500, "times": 2}))
        .await
        .expect("500");
    env.apply(&binding(
        "flaky",
        "flaky",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "flaky", READY, "True", "Provisioned")
        .await
        .expect("Ready in the end");
    let state = env.azure().state().await.expect("state");
    assert_eq!(identities(&state).len(), 1, "{state}");
    assert_eq!(assignments(&state).len(), 1, "{state}");
    let b = env.bindings(NS).get("flaky").await.expect("binding");
    assert_eq!(
        condition(&b, ROLE_ASSIGNMENTS_READY).map(|c| c.status.as_str()),
        Some("True")
    );
    env.wait_events(NS, "flaky", &["WaitingForPrincipalReplication"])
        .await
        .expect("Events");
    // Every injected fault was served (the fake's log), so Ready came
    // through them, not around them.
    let calls = env.azure().calls().await.expect("calls");
    let served = |operation: &str, status: u64| {
        calls["log"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["operation"] == operation && c["fault"] == status)
            .count()
    };
    assert_eq!(served("RoleAssignments_Create", 429), 2, "{calls}");
    assert_eq!(
        served("FederatedIdentityCredentials_CreateOrUpdate", 500),
        2,
        "{calls}"
    );
}

/// Azure in the shared scenarios: one Key Vault Secrets User assignment.
struct Azure;

impl CloudUnderTest for Azure {
    const NAMESPACE: &'static str = NS;
    const ANNOTATION: (&'static str, Option<&'static str>) = (
        "azure.workload.identity/service-account-token-expiration",
        Some("7200"),
    );

    async fn start() -> Env {
        env().await
    }

    fn binding(name: &str, extra: &str) -> String {
        let yaml = binding(name, name, "Key Vault Secrets User", &vault_scope(), "");
        let yaml = yaml.replace("  azure:\n", "  azure:\n    tokenExpirationSeconds: 7200\n");
        format!("{yaml}{extra}")
    }

    async fn snapshot(env: &Env, name: &str) -> Snapshot {
        let state = env.azure().state().await.expect("state");
        let identity_name = wib_cloud::azure::naming::identity_name("qa-cluster", NS, name);
        let mine: Vec<Value> = identities(&state)
            .into_iter()
            .filter(|i| {
                i["id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with(&format!("/{identity_name}")))
            })
            .collect();
        let subject = format!("system:serviceaccount:{NS}:{name}");
        let federated = mine.iter().any(|i| {
            i["federatedIdentityCredentials"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["properties"]["subject"] == subject.as_str())
        });
        let principals: Vec<&Value> = mine
            .iter()
            .map(|i| &i["properties"]["principalId"])
            .collect();
        Snapshot {
            identities: mine.len(),
            federated,
            grants: assignments(&state)
                .iter()
                .filter(|a| principals.contains(&&a["properties"]["principalId"]))
                .count(),
        }
    }

    async fn remove_federation_and_grant(env: &Env, name: &str) {
        let state = env.azure().state().await.expect("state");
        let identity_name = wib_cloud::azure::naming::identity_name("qa-cluster", NS, name);
        let identity = identities(&state)
            .into_iter()
            .find(|i| {
                i["id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with(&format!("/{identity_name}")))
            })
            .expect("identity");
        let credential = identity["federatedIdentityCredentials"][0]["id"].clone();
        let assignment = assignments(&state)
            .into_iter()
            .find(|a| a["properties"]["principalId"] == identity["properties"]["principalId"])
            .map(|a| a["id"].clone())
            .expect("assignment");
        for (id, version) in [(assignment, "2022-04-01"), (credential, "2023-01-31")] {
            let id = id.as_str().expect("resource ID").to_string();
            let (status, _) = env
                .azure()
                .arm(
                    reqwest::Method::DELETE,
                    &format!("{id}?api-version={version}"),
                    None,
                )
                .await
                .expect("out-of-band delete");
            assert_eq!(status, 200, "{id}");
        }
    }

    async fn hold_grant_write(env: &Env) {
        env.azure()
            .inject(json!({"operation": "RoleAssignments_Create", "latencyMs": 5000, "times": 1}))
            .await
            .expect("latency");
    }

    async fn grant_write_reached(env: &Env) -> bool {
        let calls = env.azure().calls().await.expect("calls");
        calls["operations"]["RoleAssignments_Create"].as_u64() > Some(0)
    }

    async fn refusals(env: &Env) -> Vec<Refusal> {
        // An identity of the wanted name that wib does not own.
        let path = format!(
            "/subscriptions/{SUB}/resourceGroups/qa-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/foreign?api-version=2023-01-31"
        );
        let body = json!({"location": "westeurope", "tags": {"team": "other"}});
        let (status, _) = env
            .azure()
            .arm(reqwest::Method::PUT, &path, Some(body))
            .await
            .expect("an untagged identity");
        assert_eq!(status, 201);
        let with_role = |name, role| binding(name, name, role, &vault_scope(), "");
        vec![
            Refusal {
                name: "unknown-role",
                yaml: with_role("unknown-role", "No Such Role"),
                reason: "RoleNotFound",
                names: "No Such Role",
            },
            Refusal {
                name: "owner",
                yaml: with_role("owner", "Owner"),
                reason: "RoleNotAllowed",
                names: "Owner",
            },
            Refusal {
                name: "uaa",
                yaml: with_role("uaa", "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"),
                reason: "RoleNotAllowed",
                names: "User Access Administrator",
            },
            Refusal {
                name: "adopter",
                yaml: with_role("adopter", "Key Vault Secrets User")
                    .replace("  azure:\n", "  azure:\n    identityName: foreign\n"),
                reason: "AdoptionNotAllowed",
                names: "foreign",
            },
        ]
    }

    async fn writes(env: &Env) -> u64 {
        let calls = env.azure().calls().await.expect("calls");
        calls["writes"].as_u64().unwrap_or_default()
    }
}

#[tokio::test]
async fn drift_is_put_back_with_an_event() {
    scenarios::drift_is_put_back_with_an_event::<Azure>().await;
}

#[tokio::test]
async fn a_crash_while_a_grant_is_written_leaves_no_duplicates() {
    scenarios::a_crash_while_a_grant_is_written_leaves_no_duplicates::<Azure>().await;
}

#[tokio::test]
async fn retain_keeps_the_identity_and_its_role_and_drops_only_the_federation() {
    scenarios::retain_keeps_the_identity_and_grant_and_drops_only_the_federation::<Azure>().await;
}

#[tokio::test]
async fn role_assignments_follow_the_spec_and_others_are_left_alone() {
    let env = env().await;
    let rg_scope = format!("/subscriptions/{SUB}/resourceGroups/qa-rg");
    let manifest = binding(
        "roles",
        "roles",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ) + &format!("      - role: Reader\n        scope: {rg_scope}\n");
    env.apply(&manifest).await.expect("binding with two roles");
    env.wait_condition(NS, "roles", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let state = env.azure().state().await.expect("state");
    assert_eq!(assignments(&state).len(), 2, "{state}");
    let principal = identities(&state)[0]["properties"]["principalId"]
        .as_str()
        .expect("principal")
        .to_string();

    // Someone else grants the identity a role on their own: wib leaves it be.
    let foreign = format!(
        "{rg_scope}/providers/Microsoft.Authorization/roleAssignments/99999999-9999-4999-8999-999999999999?api-version=2022-04-01"
    );
    let (status, body) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &foreign,
            Some(json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"),
                "principalId": principal,
                "principalType": "ServicePrincipal"}})),
        )
        .await
        .expect("foreign assignment");
    assert_eq!(status, 201, "{body}");

    // Dropping Reader from the spec removes exactly wib's Reader assignment.
    env.apply(&binding(
        "roles",
        "roles",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("one role");
    let roles = wib_e2e::poll_until(wib_e2e::WAIT, "the extra role removed", async || {
        let state = env.azure().state().await.map_err(|e| e.to_string())?;
        let roles: Vec<String> = assignments(&state)
            .iter()
            .filter_map(|a| a["properties"]["roleDefinitionId"].as_str())
            .filter_map(|id| id.rsplit('/').next().map(str::to_string))
            .collect();
        let extra = roles
            .iter()
            .any(|r| r == "acdd72a7-3385-48ef-bd42-f606fba81ae7");
        if roles.len() == 2 && !extra {
            Ok(roles)
        } else {
            Err(format!("{roles:?}"))
        }
    })
    .await
    .expect("removed");
    assert!(
        roles.iter().any(|r| r == KEY_VAULT_SECRETS_USER),
        "{roles:?}"
    );
    assert!(
        roles
            .iter()
            .any(|r| r == "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"),
        "foreign kept: {roles:?}"
    );

    // The same role granted out of band under another name counts as present.
    let state = env.azure().state().await.expect("state");
    let wib_assignment = assignments(&state)
        .into_iter()
        .find(|a| {
            a["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap_or_default()
                .ends_with(KEY_VAULT_SECRETS_USER)
        })
        .expect("wib's assignment");
    let id = wib_assignment["id"].as_str().expect("id");
    env.azure()
        .arm(
            reqwest::Method::DELETE,
            &format!("{id}?api-version=2022-04-01"),
            None,
        )
        .await
        .expect("delete");
    let other_name = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/88888888-8888-4888-8888-888888888888?api-version=2022-04-01",
        vault_scope()
    );
    let (status, _) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &other_name,
            Some(json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{KEY_VAULT_SECRETS_USER}"),
                "principalId": principal,
                "principalType": "ServicePrincipal"}})),
        )
        .await
        .expect("same role, other name");
    assert_eq!(status, 201);
    // Once the status names the equivalent, a reconcile has seen it, and
    // none that saw the gap between delete and put is still running (one
    // binding's reconciles never overlap; Azure refuses such a late create
    // with RoleAssignmentExists anyway).
    wib_e2e::poll_until(
        wib_e2e::WAIT,
        "the status names the equivalent",
        async || {
            let b = env
                .bindings(NS)
                .get("roles")
                .await
                .map_err(|e| e.to_string())?;
            let ids: Vec<String> = b
                .status
                .iter()
                .flat_map(|s| &s.role_assignments)
                .filter_map(|a| a.id.clone())
                .collect();
            match ids
                .iter()
                .any(|id| id.contains("88888888-8888-4888-8888-888888888888"))
            {
                true => Ok(()),
                false => Err(format!("{ids:?}")),
            }
        },
    )
    .await
    .expect("equivalent recorded");
    env.azure().reset_calls().await.expect("reset");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(
        calls["writes"], 0,
        "an equivalent assignment is not duplicated: {calls}"
    );

    // Assignments on a management group and in another subscription are
    // observed where they live: a steady state re-PUTs neither, and
    // deletion finds and removes both.
    let group = "/providers/Microsoft.Management/managementGroups/platform";
    let elsewhere = "/subscriptions/00000000-0000-0000-0000-00000000cccc/resourceGroups/shared";
    env.apply(&provider(&format!(
        "\n  allowedScopes:\n    - /subscriptions/{SUB}\n    - {group}\n    - {elsewhere}"
    )))
    .await
    .expect("provider allowing a management group");
    env.apply(
        &(binding("spread", "spread", "Reader", group, "")
            + &format!("      - role: Reader\n        scope: {elsewhere}\n")),
    )
    .await
    .expect("binding across roots");
    env.wait_condition(NS, "spread", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let placed = |state: &Value| -> usize {
        assignments(state)
            .iter()
            .filter(|a| {
                let scope = a["properties"]["scope"].as_str().unwrap_or_default();
                scope == group || scope == elsewhere
            })
            .count()
    };
    assert_eq!(
        placed(&env.azure().state().await.expect("state")),
        2,
        "both assignments made"
    );
    env.azure().reset_calls().await.expect("reset");
    let events_before = env.settled_event_count(NS, "spread").await.expect("events");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(
        calls["writes"], 0,
        "assignments outside the identity's subscription are seen: {calls}"
    );
    assert_eq!(
        env.events_for(NS, "spread").await.expect("events").len(),
        events_before,
        "a steady state emits no Events"
    );

    // The other subscription's scope leaves the spec: its assignment goes,
    // the management group's stays.
    env.apply(&binding("spread", "spread", "Reader", group, ""))
        .await
        .expect("spec without the other subscription");
    wib_e2e::poll_until(
        wib_e2e::WAIT,
        "the other subscription's assignment removed",
        async || {
            let state = env.azure().state().await.map_err(|e| e.to_string())?;
            let left: Vec<String> = assignments(&state)
                .iter()
                .filter_map(|a| a["properties"]["scope"].as_str().map(str::to_string))
                .filter(|scope| scope == group || scope == elsewhere)
                .collect();
            if left == [group.to_string()] {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await
    .expect("removed");
    env.delete_binding(NS, "spread").await.expect("deleted");
    assert_eq!(
        placed(&env.azure().state().await.expect("state")),
        0,
        "deletion removed the rest"
    );
}

#[tokio::test]
async fn an_identity_at_the_federated_credential_limit_is_reported_and_left_unchanged() {
    let env = env().await;
    // An identity another binding of this namespace made, already at Azure's 20 credentials.
    let identity = identity_of_another_binding(&env, "shared-full").await;
    for i in 0..20 {
        let (status, body) = env
            .azure()
            .arm(
                reqwest::Method::PUT,
                &format!("{identity}/federatedIdentityCredentials/other-{i}?api-version=2023-01-31"),
                Some(json!({"properties": {"issuer": env.cp.issuer(), "subject": format!("system:serviceaccount:other:sa{i}"), "audiences": [AZURE_AUDIENCE]}})),
            )
            .await
            .expect("credential");
        assert_eq!(status, 201, "{body}");
    }
    env.apply(&format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: full\n  namespace: {NS}\nspec:\n  azure:\n    identityName: shared-full\n"
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "full", READY, "False", "FederatedCredentialLimit")
        .await
        .expect("limit");
    assert!(condition(&b, READY).expect("ready").message.contains("20"));
    let state = env.azure().state().await.expect("state");
    assert_eq!(
        identities(&state)[0]["federatedIdentityCredentials"]
            .as_array()
            .map(Vec::len),
        Some(20)
    );
    assert!(assignments(&state).is_empty(), "no role assigned: {state}");
    env.delete_binding(NS, "full").await.expect("deleted");
    let state = env.azure().state().await.expect("state");
    assert_eq!(
        identities(&state).len(),
        1,
        "another binding's identity is never deleted: {state}"
    );
}

#[tokio::test]
async fn an_unreachable_cloud_blocks_deletion_until_it_answers() {
    let env = env().await;
    env.apply(&binding(
        "blocked",
        "blocked",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "blocked", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    // Each failed attempt spends four answers (the SDK retries three times).
    env.azure()
        .inject(json!({"operation": "UserAssignedIdentities_Get", "status": 503, "times": 12}))
        .await
        .expect("outage");
    env.bindings(NS)
        .delete("blocked", &Default::default())
        .await
        .expect("delete requested");
    let b = env
        .wait_condition(NS, "blocked", READY, "False", "DeletionBlocked")
        .await
        .expect("blocked");
    assert!(
        b.finalizers().iter().any(|f| f == "wib.dev/cleanup"),
        "finalizer kept"
    );
    env.delete_binding(NS, "blocked")
        .await
        .expect("deleted once the cloud answers");
    let state = env.azure().state().await.expect("state");
    assert!(identities(&state).is_empty(), "{state}");
}

#[tokio::test]
async fn wib_keeps_reconciling_across_an_access_token_expiry_and_a_token_file_rotation() {
    let env = env().await;
    wib_e2e::survives_expiry_and_rotation(&env, env.azure(), NS, |name| {
        binding(name, name, "Key Vault Secrets User", &vault_scope(), "")
    })
    .await;
}

#[tokio::test]
async fn a_throttled_write_is_tried_again_no_sooner_than_arm_asked() {
    let env = env().await;
    const CREATE: &str = "UserAssignedIdentities_CreateOrUpdate";
    // Each of the SDK's four attempts gets 429 with Retry-After: 3.
    env.azure()
        .inject(json!({"operation": CREATE, "status": 429, "retryAfter": 3, "times": 4}))
        .await
        .expect("fault");
    env.apply(&binding(
        "patient",
        "patient",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "patient", READY, "True", "Provisioned")
        .await
        .expect("Ready once ARM lets it through");
    env.wait_events(NS, "patient", &["Throttled"])
        .await
        .expect("the throttling was reported");

    // From the fake's own log: the faults were served, and no attempt came
    // sooner than Retry-After after the one before, the SDK's retries nor
    // wib's next reconcile (its own backoff would have been about 1 s).
    let calls = env.azure().calls().await.expect("calls");
    let creates: Vec<&Value> = calls["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|c| c["operation"] == CREATE)
        .collect();
    assert!(creates.len() >= 5, "{creates:?}");
    assert!(
        creates[..4].iter().all(|c| c["fault"] == 429),
        "the four 429s were served: {creates:?}"
    );
    assert!(creates[4].get("fault").is_none(), "{creates:?}");
    for pair in creates[..5].windows(2) {
        let gap = pair[1]["atMs"].as_u64().unwrap_or_default()
            - pair[0]["atMs"].as_u64().unwrap_or_default();
        assert!(
            gap >= 2900,
            "retried after {gap} ms, asked 3000: {creates:?}"
        );
    }
}

#[tokio::test]
async fn an_azure_client_that_cannot_start_reports_it_and_keeps_deletion_waiting() {
    let mut env = env().await;
    env.apply(&binding(
        "kept",
        "kept",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "kept", READY, "True", "Provisioned")
        .await
        .expect("Ready");

    // The operator restarts with an Azure configuration its client refuses.
    let good = env
        .operator()
        .env("WIB_AZURE_ARM_ENDPOINT")
        .expect("the harness points wib at the fake")
        .to_string();
    env.operator_mut()
        .restart_with_env("WIB_AZURE_ARM_ENDPOINT", "not a url")
        .expect("restart");

    env.apply(&binding(
        "later",
        "later",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("new binding");
    let later = env
        .wait_condition(NS, "later", READY, "False", "CloudUnavailable")
        .await
        .expect("a precise reason, not CloudNotImplemented");
    let message = &condition(&later, READY).expect("Ready").message;
    assert!(message.contains("WIB_AZURE_ARM_ENDPOINT"), "{message}");

    env.bindings(NS)
        .delete("kept", &Default::default())
        .await
        .expect("delete requested");
    let kept = env
        .wait_condition(NS, "kept", READY, "False", "DeletionBlocked")
        .await
        .expect("deletion waits");
    let message = &condition(&kept, READY).expect("Ready").message;
    assert!(message.contains("client did not start"), "{message}");
    assert!(kept.finalizers().iter().any(|f| f == "wib.dev/cleanup"));
    let state = env.azure().state().await.expect("state");
    assert_eq!(
        identities(&state).len(),
        1,
        "nothing orphaned, nothing deleted: {state}"
    );

    // Fixed and restarted: the deletion completes and takes the identity.
    env.operator_mut()
        .restart_with_env("WIB_AZURE_ARM_ENDPOINT", &good)
        .expect("restart");
    env.delete_binding(NS, "kept")
        .await
        .expect("deleted once the client starts");
    env.delete_binding(NS, "later")
        .await
        .expect("later deleted");
    let state = env.azure().state().await.expect("state");
    assert!(identities(&state).is_empty(), "{state}");
}

#[tokio::test]
async fn several_service_accounts_share_one_identity_with_serialised_credential_writes() {
    let env = env().await;
    // Azure holds a credential write for a while and refuses overlapping ones with 409.
    env.azure()
        .configure(json!({"ficWriteMillis": 800}))
        .await
        .expect("slow credential writes");
    // Sharers declare no grants: an identity's roles are its maker's.
    let shared = |name: &str| {
        format!(
            "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  serviceAccount:\n    name: {name}\n  azure:\n    identityName: shared-id\n"
        )
    };
    env.apply(&format!("{}---\n{}", shared("one"), shared("two")))
        .await
        .expect("two bindings");
    env.wait_condition(NS, "one", READY, "True", "Provisioned")
        .await
        .expect("one Ready");
    env.wait_condition(NS, "two", READY, "True", "Provisioned")
        .await
        .expect("two Ready");
    let state = env.azure().state().await.expect("state");
    assert_eq!(identities(&state).len(), 1, "{state}");
    let subjects: Vec<String> = identities(&state)[0]["federatedIdentityCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            f["properties"]["subject"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.contains(&format!("system:serviceaccount:{NS}:one")));
    assert!(subjects.contains(&format!("system:serviceaccount:{NS}:two")));
    let client_id = identities(&state)[0]["properties"]["clientId"]
        .as_str()
        .expect("client ID")
        .to_string();
    for sa in ["one", "two"] {
        let (ok, output) = env.azure_pod_exchange(NS, sa, &client_id).await;
        assert!(
            ok,
            "{sa}'s pod exchanges its token for the shared identity: {output}"
        );
    }
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(
        calls["operations"]["FederatedIdentityCredentials_CreateOrUpdate"], 2,
        "serialised: no write was refused and retried: {calls}"
    );

    // A sharer that asks for grants is refused: they would land on the
    // maker's principal.
    env.apply(
        &binding(
            "greedy",
            "greedy",
            "Key Vault Secrets User",
            &vault_scope(),
            "",
        )
        .replace("  azure:\n", "  azure:\n    identityName: shared-id\n"),
    )
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "greedy", READY, "False", "RoleNotAllowed")
        .await
        .expect("refused");
    assert!(
        condition(&b, READY).is_some_and(|c| c.message.contains("made by another binding")),
        "{:?}",
        condition(&b, READY)
    );
    env.delete_binding(NS, "greedy").await.expect("deleted");

    // The maker's deletion releases the identity to the last binding that
    // uses it, which deletes it.
    let creator = identities(&state)[0]["tags"]["wib.dev_binding"]
        .as_str()
        .expect("creator tag")
        .to_string();
    let other = if creator == "one" { "two" } else { "one" };
    env.delete_binding(NS, &creator)
        .await
        .expect("creator deleted");
    let state = env.azure().state().await.expect("state");
    assert_eq!(
        identities(&state).len(),
        1,
        "still used by {other}: {state}"
    );
    env.delete_binding(NS, other)
        .await
        .expect("last user deleted");
    let state = env.azure().state().await.expect("state");
    assert!(identities(&state).is_empty(), "{state}");
}

#[tokio::test]
async fn a_credential_of_wibs_name_for_another_subject_is_never_overwritten() {
    let env = env().await;
    // An identity of this namespace carrying, under the name wib gives the
    // credential of `NS/victim`, a credential for another subject.
    let identity = identity_of_another_binding(&env, "planted").await;
    let name = wib_cloud::azure::naming::federated_credential_name("qa-cluster", NS, "victim");
    let (status, body) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &format!("{identity}/federatedIdentityCredentials/{name}?api-version=2023-01-31"),
            Some(json!({"properties": {"issuer": env.cp.issuer(), "subject": "system:serviceaccount:evil:thief", "audiences": [AZURE_AUDIENCE]}})),
        )
        .await
        .expect("credential");
    assert_eq!(status, 201, "{body}");
    env.azure().reset_calls().await.expect("reset");
    env.apply(&format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: victim\n  namespace: {NS}\nspec:\n  azure:\n    identityName: planted\n"
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "victim", READY, "False", "FederationConflict")
        .await
        .expect("conflict");
    assert!(condition(&b, READY).is_some_and(|c| c.message.contains("does not overwrite")));
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(calls["writes"], 0, "{calls}");
    let state = env.azure().state().await.expect("state");
    let subjects: Vec<Value> = identities(&state)[0]["federatedIdentityCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["properties"]["subject"].clone())
        .collect();
    assert_eq!(subjects, [json!("system:serviceaccount:evil:thief")]);
}

#[tokio::test]
async fn an_assignment_a_crash_kept_out_of_the_status_is_still_removed_when_it_leaves_the_spec() {
    let mut env = env().await;
    let elsewhere = "/subscriptions/00000000-0000-0000-0000-00000000cccc/resourceGroups/shared";
    env.apply(&provider(&format!(
        "\n  allowedScopes:\n    - /subscriptions/{SUB}\n    - {elsewhere}"
    )))
    .await
    .expect("provider allowing another subscription");
    env.apply(&binding("forgetful", "forgetful", "Reader", elsewhere, ""))
        .await
        .expect("binding");
    env.wait_condition(NS, "forgetful", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let placed = |state: &Value| {
        assignments(state)
            .iter()
            .filter(|a| a["properties"]["scope"] == elsewhere)
            .count()
    };
    assert_eq!(placed(&env.azure().state().await.expect("state")), 1);

    // As if wib had died between making the assignment and writing status:
    // the status does not name the other subscription, and meanwhile the
    // scope leaves the spec.
    env.operator_mut().kill();
    env.bindings(NS)
        .patch_status(
            "forgetful",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"roleAssignments": []}})),
        )
        .await
        .expect("status forgotten");
    env.apply(&binding(
        "forgetful",
        "forgetful",
        "Reader",
        &format!("/subscriptions/{SUB}/resourceGroups/qa-apps"),
        "",
    ))
    .await
    .expect("scope leaves the spec");
    env.operator_mut().restart().expect("restart");

    wib_e2e::poll_until(
        wib_e2e::WAIT,
        "the forgotten assignment removed",
        async || {
            let state = env.azure().state().await.map_err(|e| e.to_string())?;
            match placed(&state) {
                0 => Ok(()),
                n => Err(format!("{n} left")),
            }
        },
    )
    .await
    .expect("removed");
    env.wait_condition(NS, "forgetful", READY, "True", "Provisioned")
        .await
        .expect("Ready");
}

/// The cluster's issuer changes (a provider's `issuer` set, or a new one
/// discovered): the federated credential is re-keyed in place, not left
/// behind next to a new one, and deletion removes everything wib made.
#[tokio::test]
async fn an_issuer_change_re_keys_the_federated_credential_in_place_and_deletion_leaves_nothing() {
    let env = env().await;
    env.apply(&binding(
        "moved",
        "moved",
        "Key Vault Secrets User",
        &vault_scope(),
        "",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "moved", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let rotated = "https://oidc.example.com/rotated";
    env.apply(&provider(&format!("\n  issuer: {rotated}")))
        .await
        .expect("issuer changed");
    let name = wib_cloud::azure::naming::federated_credential_name("qa-cluster", NS, "moved");
    let fics = wib_e2e::poll_until(wib_e2e::WAIT, "re-keyed to the new issuer", || async {
        let state = env.azure().state().await.map_err(|e| e.to_string())?;
        let fics = identities(&state)
            .first()
            .map(|i| i["federatedIdentityCredentials"].clone())
            .unwrap_or_default();
        match fics.as_array() {
            Some(all) if all.iter().any(|f| f["properties"]["issuer"] == rotated) => {
                Ok(all.clone())
            }
            _ => Err(fics.to_string()),
        }
    })
    .await
    .expect("re-keyed");
    assert_eq!(fics.len(), 1, "one credential, not a second: {fics:?}");
    assert_eq!(fics[0]["name"], name.as_str(), "{fics:?}");
    assert_eq!(
        fics[0]["properties"]["subject"],
        format!("system:serviceaccount:{NS}:moved")
    );
    env.wait_condition(NS, "moved", READY, "True", "Provisioned")
        .await
        .expect("still Ready");
    env.delete_binding(NS, "moved").await.expect("deleted");
    let state = env.azure().state().await.expect("state");
    assert_eq!(identities(&state), Vec::<Value>::new(), "{state}");
    assert_eq!(assignments(&state), Vec::<Value>::new(), "{state}");
}

/// Someone else's principal with an entry in the seed vault's access policies.
const OTHER_PRINCIPAL: &str = "9d4b6c0e-5a1f-4b7e-8c2d-3e6f7a8b9c0d";

/// `OTHER_PRINCIPAL`'s entry in the seed vault: `get` on secrets and keys.
fn their_entry() -> Value {
    json!([{"tenantId": AZURE_TENANT, "objectId": OTHER_PRINCIPAL,
        "permissions": {"secrets": ["get"], "keys": ["get", "wrapKey"]}}])
}

/// A vault admin's merge into vault `id`'s access policies.
async fn merge_into_vault(env: &Env, id: &str, kind: &str, principal: &str, permissions: Value) {
    let body = json!({"properties": {"accessPolicies": [{"tenantId": AZURE_TENANT,
        "objectId": principal, "permissions": permissions}]}});
    let (status, body) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &format!("{id}/accessPolicies/{kind}?api-version=2019-09-01"),
            Some(body),
        )
        .await
        .expect("vault admin's change");
    assert_eq!(status, 200, "{body}");
}

/// The seed scenario with a vault access policy instead of a role: the
/// identity's entry is the only one wib writes, holds exactly what the
/// binding lists (a pod reads the secret with it), is put back after drift
/// and goes with the binding; the other principal's entry is never touched.
#[tokio::test]
async fn a_vault_access_policy_is_the_identitys_own_entry_kept_exact_and_removed_on_delete() {
    let env = env().await;
    let vault = vault_scope();
    env.seed_vault(&vault, false, their_entry()).await;
    let theirs = env.vault_entries(&vault).await[OTHER_PRINCIPAL].clone();
    env.apply(&format!(
        r#"apiVersion: wib.dev/v1alpha1
kind: WorkloadIdentityBinding
metadata:
  name: app1
  namespace: {NS}
spec:
  serviceAccount:
    name: {SA}
  azure:
    keyVaultAccessPolicies:
      - vault: {vault}
        secrets: [get, list]
"#
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "app1", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let azure = b
        .status
        .as_ref()
        .and_then(|s| s.azure.clone())
        .expect("azure status");
    let principal = azure.principal_id.clone().expect("principal");
    let client_id = azure.client_id.clone().expect("client ID");
    assert_eq!(azure.key_vault_access_policies, vec![vault.clone()]);
    let entries = env.vault_entries(&vault).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[&principal], json!({"secrets": ["get", "list"]}));
    assert_eq!(
        entries[OTHER_PRINCIPAL], theirs,
        "another principal's entry"
    );
    assert!(
        assignments(&env.azure().state().await.expect("state")).is_empty(),
        "an access policy is not a role assignment"
    );

    // The pod reads the secret with its own token, as the entry allows.
    let token = env
        .cp
        .service_account_token(NS, SA, AZURE_AUDIENCE)
        .await
        .expect("TokenRequest");
    let (ok, output) = env.azure_read_secret(&client_id, &token, "qa-kv", "db-password");
    assert!(ok && output.contains("secret read"), "{output}");

    // A steady state writes nothing.
    env.azure().reset_calls().await.expect("reset");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(calls["writes"], 0, "steady state wrote: {calls}");

    // Drift: a vault admin takes `list` away and adds `delete`; wib puts
    // the entry back as the binding lists it, and says so.
    merge_into_vault(
        &env,
        &vault,
        "remove",
        &principal,
        json!({"secrets": ["list"]}),
    )
    .await;
    merge_into_vault(
        &env,
        &vault,
        "add",
        &principal,
        json!({"secrets": ["delete"]}),
    )
    .await;
    wib_e2e::poll_until(wib_e2e::WAIT, "the entry restored", || async {
        let entries = env.vault_entries(&vault).await;
        let mut held: Vec<String> = entries[&principal]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        held.sort();
        match held == ["get", "list"] {
            true => Ok(()),
            false => Err(format!("{entries:?}")),
        }
    })
    .await
    .expect("restored");
    let events: Vec<String> = env
        .events_for(NS, "app1")
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert!(
        events.iter().any(|e| e.contains("granted secrets/list"))
            && events.iter().any(|e| e.contains("removed secrets/delete")),
        "{events:?}"
    );
    assert_eq!(env.vault_entries(&vault).await[OTHER_PRINCIPAL], theirs);

    // Deletion takes the entry and nothing else.
    env.delete_binding(NS, "app1").await.expect("deleted");
    let entries = env.vault_entries(&vault).await;
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        vec![OTHER_PRINCIPAL],
        "{entries:?}"
    );
    assert_eq!(entries[OTHER_PRINCIPAL], theirs);
    assert!(identities(&env.azure().state().await.expect("state")).is_empty());
}
