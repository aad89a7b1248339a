//! The Azure cloud on its own: `AzureProvider` driven through observe → plan
//! → execute against the Azure fake, with no controller and no CRDs. A
//! control plane runs only as the OIDC issuer of wib's own token (the fake's
//! Entra verifies it), so each case is a few calls, and many fit in one test.

mod common;

use std::time::Duration;

use common::Wib;

use serde_json::{Value, json};
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::Reason;
use wib_cloud::azure::credential::WorkloadIdentity;
use wib_cloud::azure::naming::{federated_credential_name, identity_name};
use wib_cloud::azure::{AUDIENCE, AzureProvider, Settings};
use wib_testenv::ControlPlane;
use wib_testenv::azure::{AZURE_TENANT, AzureFake};

const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";
const CLUSTER: &str = "tier";
const NS: &str = "team";
const SECRETS_USER: (&str, &str) = (
    "Key Vault Secrets User",
    "4633458b-17de-408a-b874-0445c86b69e6",
);
const VAULT_READER: (&str, &str) = ("Key Vault Reader", "21090545-7ca7-4776-b22c-e363652d74d2");

fn vault() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/qa-rg/providers/Microsoft.KeyVault/vaults/qa-kv")
}

/// One control plane (issuer only), the Azure fake and wib's Azure cloud.
struct Rig {
    fake: AzureFake,
    wib: Wib<AzureProvider>,
    _cp: ControlPlane,
}

impl Rig {
    async fn start() -> Self {
        Self::at_pace(None).await
    }

    /// wib at `limits` (its documented defaults when `None`).
    async fn at_pace(limits: Option<wib_cloud::limiter::Limits>) -> Self {
        Self::build(limits, Duration::ZERO).await
    }

    /// wib keeping a fleet read for `ttl`.
    async fn with_fleet_ttl(ttl: Duration) -> Self {
        Self::build(Some(wib_cloud::limiter::Limits::flat(1000.0)), ttl).await
    }

    async fn build(limits: Option<wib_cloud::limiter::Limits>, ttl: Duration) -> Self {
        let cp = common::issuer_only_control_plane().await;
        let fake = AzureFake::start(&cp).await.expect("Azure fake");
        let mut settings = settings(&fake);
        settings.limits = limits.unwrap_or_else(wib_cloud::azure::observed::arm_limits);
        settings.fleet_snapshot_ttl = ttl;
        let cloud = AzureProvider::from_settings(
            std::sync::Arc::new(wib_cloud::calls::Unobserved),
            settings,
        )
        .expect("Azure cloud");
        let wib = Wib::new(
            cloud,
            json!({"clusterName": CLUSTER,
                     "allowedScopes": [format!("/subscriptions/{SUB}/resourceGroups/qa-rg")],
                     "azure": {"tenantId": AZURE_TENANT, "subscriptionId": SUB,
                               "resourceGroup": "qa-identities", "location": "westeurope"}}),
            &cp,
        );
        Self { fake, wib, _cp: cp }
    }

    /// ARM reads served so far (Entra's token endpoint not counted).
    async fn reads(&self) -> u64 {
        let calls = self.fake.calls().await.expect("calls");
        calls["operations"]
            .as_object()
            .map(|ops| {
                ops.iter()
                    .filter(|(op, _)| !wib_cloud::calls::is_write(op) && *op != "Token")
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or_default()
    }

    async fn writes(&self) -> u64 {
        self.fake.calls().await.expect("calls")["writes"]
            .as_u64()
            .unwrap_or_default()
    }

    /// The identities of this name in the fake (ARM names are case-insensitive).
    async fn identities(&self, name: &str) -> Vec<Value> {
        let state = self.fake.state().await.expect("state");
        items(&state["identities"])
            .filter(|i| {
                i["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
            .collect()
    }

    /// The identity of this name, which must be the only one.
    async fn identity(&self, name: &str) -> Value {
        let found = self.identities(name).await;
        assert_eq!(found.len(), 1, "identity {name}: {found:?}");
        found[0].clone()
    }

    /// The role assignments of `principal`, as (scope, role definition GUID, name).
    async fn assignments(&self, principal: &str) -> Vec<(String, String, String)> {
        let state = self.fake.state().await.expect("state");
        items(&state["roleAssignments"])
            .filter(|a| a["properties"]["principalId"] == principal)
            .map(|a| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let definition = text(&a["properties"]["roleDefinitionId"]);
                let guid = definition.rsplit('/').next().unwrap_or_default();
                (
                    text(&a["properties"]["scope"]),
                    guid.to_string(),
                    text(&a["name"]),
                )
            })
            .collect()
    }

    /// Calls ARM as another writer would, e.g. to make drift.
    async fn arm_delete(&self, id: &str, api_version: &str) {
        let (status, body) = self
            .fake
            .arm(
                reqwest::Method::DELETE,
                &format!("{id}?api-version={api_version}"),
                None,
            )
            .await
            .expect("ARM");
        assert!((200..300).contains(&status), "DELETE {id}: {status} {body}");
    }
}

/// wib's settings as the operator's environment would give them, passed
/// explicitly: the tests run in parallel threads and must not set env vars.
fn settings(fake: &AzureFake) -> Settings {
    let env = |key: &str| {
        fake.operator_env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} in the operator environment"))
    };
    let url = |key: &str| azure_core::Url::parse(&env(key)).expect(key);
    Settings {
        arm_endpoint: url("WIB_AZURE_ARM_ENDPOINT"),
        extra_roots: Vec::new(),
        workload_identity: Some(WorkloadIdentity {
            authority: url("AZURE_AUTHORITY_HOST"),
            tenant_id: env("AZURE_TENANT_ID"),
            client_id: env("AZURE_CLIENT_ID"),
            token_file: env("AZURE_FEDERATED_TOKEN_FILE").into(),
        }),
        // The fake has no quota; the cases are many.
        limits: wib_cloud::limiter::Limits::flat(1000.0),
        // Every pass lists afresh: drift made a moment ago is seen.
        fleet_snapshot_ttl: Duration::ZERO,
    }
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

/// A binding of ServiceAccount `sa` in `NS` with `roles` on the vault.
fn binding(name: &str, uid: &str, sa: &str, roles: &[(&str, &str)]) -> WorkloadIdentityBinding {
    let roles: Vec<Value> = roles
        .iter()
        .map(|(role, _)| json!({"role": role, "scope": vault()}))
        .collect();
    let azure = json!({"roleAssignments": roles});
    common::binding(
        name,
        NS,
        uid,
        json!({"serviceAccount": {"name": sa}, "azure": azure}),
    )
}

fn retained(mut b: WorkloadIdentityBinding) -> WorkloadIdentityBinding {
    b.spec.deletion_policy = wib_api::DeletionPolicy::Retain;
    b
}

fn identity_of(binding: &str) -> String {
    identity_name(CLUSTER, NS, binding)
}

fn credential_of(sa: &str) -> String {
    federated_credential_name(CLUSTER, NS, sa)
}

fn principal(identity: &Value) -> String {
    identity["properties"]["principalId"]
        .as_str()
        .expect("principalId")
        .to_string()
}

/// The identity's federated credentials, as (name, issuer, subject, audiences).
fn credentials(identity: &Value) -> Vec<(String, String, String, Value)> {
    items(&identity["federatedIdentityCredentials"])
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let p = &c["properties"];
            (
                text(&c["name"]),
                text(&p["issuer"]),
                text(&p["subject"]),
                p["audiences"].clone(),
            )
        })
        .collect()
}

/// The name of the one assignment in `assigned`, which must be `role` on the vault.
fn only_assignment(assigned: &[(String, String, String)], role: (&str, &str)) -> String {
    match assigned {
        [(scope, guid, name)] if *scope == vault() && guid == role.1 => name.clone(),
        _ => panic!("want only {} on {}: {assigned:?}", role.0, vault()),
    }
}

/// Creating from nothing takes two rounds in one reconcile (assignments are
/// named after the principal ID the new identity gets), and leaves exactly
/// the identity, its credential for the ServiceAccount and the assignment.
#[tokio::test]
async fn create_steady_state_spec_change_and_cleanup_through_the_steps() {
    let rig = Rig::start().await;
    let b = binding("app1", "u1", "app1-sa", &[SECRETS_USER]);
    let created = rig.wib.reconcile(&b).await.expect("created");
    let (name, fic) = (identity_of("app1"), credential_of("app1-sa"));
    assert_eq!(
        created.writes,
        [
            format!("created identity {name}"),
            format!("created federated credential {fic}"),
            format!("assigned {} on {}", SECRETS_USER.0, vault()),
        ]
    );
    let identity = rig.identity(&name).await;
    let principal = principal(&identity);
    assert_eq!(
        credentials(&identity),
        [(
            fic.clone(),
            rig.wib.issuer.clone(),
            format!("system:serviceaccount:{NS}:app1-sa"),
            json!([AUDIENCE])
        )]
    );
    let assignment = only_assignment(&rig.assignments(&principal).await, SECRETS_USER);
    let azure = created.status.azure.as_ref().expect("azure status");
    assert_eq!(azure.principal_id.as_deref(), Some(principal.as_str()));
    assert_eq!(azure.resource_id.as_deref(), identity["id"].as_str());

    let before = rig.writes().await;
    let steady = rig.wib.reconcile(&b).await.expect("steady");
    assert!(steady.writes.is_empty(), "{:?}", steady.writes);
    assert_eq!(rig.writes().await, before, "a steady state writes nothing");
    assert_eq!(steady.status, created.status);

    let swapped = binding("app1", "u1", "app1-sa", &[VAULT_READER]);
    let changed = rig.wib.reconcile(&swapped).await.expect("spec changed");
    assert_eq!(
        changed.writes,
        [
            format!("assigned {} on {}", VAULT_READER.0, vault()),
            format!("removed role assignment {assignment}"),
        ]
    );
    only_assignment(&rig.assignments(&principal).await, VAULT_READER);

    rig.wib.cleanup(&swapped).await.expect("cleanup");
    assert!(rig.identities(&name).await.is_empty(), "identity deleted");
    assert!(
        rig.assignments(&principal).await.is_empty(),
        "assignment removed"
    );
}

#[tokio::test]
async fn retain_keeps_the_identity_and_its_assignment_and_removes_only_the_credential() {
    let rig = Rig::start().await;
    let b = retained(binding("kept", "u2", "kept-sa", &[SECRETS_USER]));
    rig.wib.reconcile(&b).await.expect("created");
    let name = identity_of("kept");
    let principal = principal(&rig.identity(&name).await);

    rig.wib.cleanup(&b).await.expect("cleanup");
    let identity = rig.identity(&name).await;
    assert!(credentials(&identity).is_empty(), "{identity}");
    only_assignment(&rig.assignments(&principal).await, SECRETS_USER);
}

#[tokio::test]
async fn drift_made_in_azure_is_put_back_by_one_reconcile() {
    let rig = Rig::start().await;
    let b = binding("drifty", "u3", "drifty-sa", &[SECRETS_USER]);
    rig.wib.reconcile(&b).await.expect("created");
    let identity = rig.identity(&identity_of("drifty")).await;
    let id = identity["id"].as_str().expect("id");
    let fic = credential_of("drifty-sa");
    rig.arm_delete(
        &format!("{id}/federatedIdentityCredentials/{fic}"),
        "2023-01-31",
    )
    .await;
    let principal = principal(&identity);
    let assigned = rig.assignments(&principal).await;
    let assignment = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{}",
        vault(),
        only_assignment(&assigned, SECRETS_USER)
    );
    rig.arm_delete(&assignment, "2022-04-01").await;
    assert!(rig.assignments(&principal).await.is_empty(), "drift made");

    let repaired = rig.wib.reconcile(&b).await.expect("repaired");
    assert_eq!(
        repaired.writes,
        [
            format!("created federated credential {fic}"),
            format!("assigned {} on {}", SECRETS_USER.0, vault()),
        ]
    );
    let identity = rig.identity(&identity_of("drifty")).await;
    assert_eq!(credentials(&identity).len(), 1, "{identity}");
    assert_eq!(
        rig.assignments(&principal).await,
        assigned,
        "the same name again"
    );
}

#[tokio::test]
async fn a_failure_between_actions_is_finished_by_the_next_pass_without_duplicates() {
    let rig = Rig::start().await;
    // The SDK tries a 500 four times (three retries) before giving up.
    rig.fake
        .inject(json!({"operation": "RoleAssignments_Create", "status": 500, "times": 4}))
        .await
        .expect("fault");
    let b = binding("half-made", "u4", "half-made-sa", &[SECRETS_USER]);
    let failed = rig
        .wib
        .reconcile(&b)
        .await
        .expect_err("the assignment fails");
    assert_eq!(failed.reason, Reason::TransientError, "{failed}");
    let principal = principal(&rig.identity(&identity_of("half-made")).await);
    assert!(rig.assignments(&principal).await.is_empty());

    let outcome = rig.wib.reconcile(&b).await.expect("finished");
    assert_eq!(
        outcome.writes,
        [format!("assigned {} on {}", SECRETS_USER.0, vault())],
        "only what was left"
    );
    let identity = rig.identity(&identity_of("half-made")).await;
    assert_eq!(credentials(&identity).len(), 1, "{identity}");
    assert_eq!(rig.assignments(&principal).await.len(), 1);
}

#[tokio::test]
async fn throttling_reports_the_wait_arm_names() {
    let rig = Rig::at_pace(Some(wib_cloud::limiter::Limits::flat(1000.0))).await;
    // More than the SDK's four attempts, each waiting the Retry-After.
    rig.fake
        .inject(json!({"operation": "UserAssignedIdentities_Get", "status": 429, "retryAfter": 2, "times": 10}))
        .await
        .expect("fault");
    let error = rig
        .wib
        .reconcile(&binding("patient", "u5", "patient-sa", &[]))
        .await
        .expect_err("throttled");
    assert_eq!(error.reason, Reason::Throttled, "{error}");
    assert_eq!(error.retry_after, Some(Duration::from_secs(2)));
}

async fn throttled_by_the_fake(rig: &Rig) -> u64 {
    rig.fake.calls().await.expect("calls")["throttled"]
        .as_u64()
        .unwrap_or_default()
}

/// Twenty new bindings at once against a fake enforcing ARM's documented
/// limits (identity writes about 2 a second): wib's default pace keeps
/// every call inside them, so no binding sees throttling and the fake
/// serves no 429.
#[tokio::test]
async fn at_the_documented_limits_a_burst_of_new_bindings_meets_no_throttling() {
    let rig = Rig::at_pace(None).await;
    rig.fake.enforce_limits(None).await.expect("limits");
    let bindings: Vec<WorkloadIdentityBinding> = (0..20)
        .map(|i| {
            binding(
                &format!("burst-{i:02}"),
                &format!("b{i}"),
                &format!("burst-{i:02}"),
                &[SECRETS_USER],
            )
        })
        .collect();
    let results = futures::future::join_all(bindings.iter().map(|b| rig.wib.reconcile(b))).await;
    for (b, result) in bindings.iter().zip(results) {
        result.unwrap_or_else(|e| panic!("{:?}: {e}", b.metadata.name));
    }
    assert_eq!(throttled_by_the_fake(&rig).await, 0);
}

/// A subscription busier than the documentation (other tools spend most of
/// its writes: the fake allows 2 a second where wib expects 10): wib slows
/// down at the first 429s, the SDK's retries absorb the ones it meets, and
/// no binding sees throttling.
#[tokio::test]
async fn a_cloud_busier_than_documented_slows_wib_down_and_no_binding_sees_throttling() {
    let rig = Rig::at_pace(None).await;
    rig.fake
        .enforce_limits(Some(json!({"writes": {"perSecond": 2.0, "burst": 2.0}})))
        .await
        .expect("limits");
    let bindings: Vec<WorkloadIdentityBinding> = (0..8)
        .map(|i| {
            binding(
                &format!("busy-{i:02}"),
                &format!("c{i}"),
                &format!("busy-{i:02}"),
                &[SECRETS_USER],
            )
        })
        .collect();
    let results = futures::future::join_all(bindings.iter().map(|b| rig.wib.reconcile(b))).await;
    let throttled = throttled_by_the_fake(&rig).await;
    for (b, result) in bindings.iter().zip(results) {
        result.unwrap_or_else(|e| {
            panic!(
                "{:?} saw {e} ({throttled} writes refused in all)",
                b.metadata.name
            )
        });
    }
    assert!(throttled > 0, "the fake's quota was never reached");
}

/// Many bindings, one pass each way: each is created with exactly its
/// assignments, a second pass writes nothing, and cleanup leaves nothing.
#[tokio::test]
async fn fifty_bindings_round_trip_with_no_steady_state_writes() {
    // A fleet read lasts two seconds: the steady pass after it is served
    // by one listing of identities and one of assignments per scope.
    let ttl = Duration::from_secs(2);
    let rig = Rig::with_fleet_ttl(ttl).await;
    let roles = [SECRETS_USER, VAULT_READER];
    let bindings: Vec<WorkloadIdentityBinding> = (0..50)
        .map(|i| {
            let name = format!("app-{i:02}");
            binding(&name, &format!("uid-{i}"), &name, &roles[..1 + i % 2])
        })
        .collect();
    rig.wib.create_all(&bindings, ttl).await;
    let reads_before = rig.reads().await;
    let before = rig.writes().await;
    rig.wib.steady_pass(&bindings).await;
    assert_eq!(rig.writes().await, before);
    // Each identity's federated credentials (no list returns them across
    // identities) and the fleet's listings: at most 1.1 reads a binding.
    let reads = rig.reads().await - reads_before;
    assert!(reads <= 55, "steady-state reads of 50 bindings: {reads}");
    for (i, b) in bindings.iter().enumerate() {
        let name = identity_of(&format!("app-{i:02}"));
        let principal = principal(&rig.identity(&name).await);
        assert_eq!(rig.assignments(&principal).await.len(), 1 + i % 2, "{name}");
        rig.wib.cleanup(b).await.expect("cleanup");
        assert!(rig.identities(&name).await.is_empty(), "{name}");
        assert!(rig.assignments(&principal).await.is_empty(), "{name}");
    }
}

/// A vault holds its access policies as one array, shared by everyone it
/// grants: twenty bindings writing their identities' entries into it at
/// once, while another principal's entry is there, each keep their own and
/// no other entry is lost; the steady pass after writes nothing, and each
/// binding's cleanup takes its own entry alone.
#[tokio::test]
async fn concurrent_bindings_granting_on_one_vault_keep_each_others_entries() {
    let rig = Rig::with_fleet_ttl(Duration::ZERO).await;
    let others = json!([{"tenantId": AZURE_TENANT, "objectId": "11111111-2222-4333-8444-555555555555",
        "permissions": {"secrets": ["get"]}}]);
    let body = json!({"location": "westeurope", "properties": {"tenantId": AZURE_TENANT,
        "sku": {"family": "A", "name": "standard"}, "accessPolicies": others}});
    let (status, answer) = rig
        .fake
        .arm(
            reqwest::Method::PUT,
            &format!("{}?api-version=2019-09-01", vault()),
            Some(body),
        )
        .await
        .expect("vault");
    assert!(status < 300, "{answer}");
    let bindings: Vec<WorkloadIdentityBinding> = (0..20)
        .map(|i| {
            let policy = json!([{"vault": vault(), "secrets": ["get", "list"]}]);
            common::binding(
                &format!("kv-{i:02}"),
                NS,
                &format!("k{i}"),
                json!({"serviceAccount": {"name": format!("kv-{i:02}")},
                       "azure": {"keyVaultAccessPolicies": policy}}),
            )
        })
        .collect();
    let entries = || async {
        let state = rig.fake.state().await.expect("state");
        items(&state["vaults"][0]["properties"]["accessPolicies"])
            .map(|e| e["objectId"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    // Each reconcile makes its identity, then its entry (two rounds).
    for _ in 0..2 {
        let results =
            futures::future::join_all(bindings.iter().map(|b| rig.wib.reconcile(b))).await;
        for (b, result) in bindings.iter().zip(results) {
            result.unwrap_or_else(|e| panic!("{:?}: {e}", b.metadata.name));
        }
    }
    let held = entries().await;
    assert_eq!(held.len(), 21, "{held:?}");
    assert!(held.contains(&"11111111-2222-4333-8444-555555555555".to_string()));
    let before = rig.writes().await;
    for b in &bindings {
        rig.wib.reconcile(b).await.expect("steady");
    }
    assert_eq!(rig.writes().await, before, "a steady pass wrote");
    futures::future::join_all(bindings.iter().map(|b| rig.wib.cleanup(b)))
        .await
        .into_iter()
        .for_each(|r| r.expect("cleanup"));
    assert_eq!(entries().await, ["11111111-2222-4333-8444-555555555555"]);
}
