//! GCP end to end: the operator binary, the local control plane and the GCP
//! fake, reached only through the official Google Cloud Rust crates; the
//! operator authenticates by workload identity federation (STS exchange of
//! its projected token, then impersonation), and so does a pod stand-in.

use std::time::Duration;

use serde_json::{Value, json};
use wib_api::conditions::READY;
use wib_e2e::scenarios::{self, CloudUnderTest, Refusal, Snapshot};
use wib_e2e::{Env, GCP_PROJECT};
use wib_testenv::gcp::{POOL, POOL_PROVIDER, PROJECT_NUMBER, token_audience};

const NS: &str = "gke-ns";
const CLUSTER: &str = "gke-qa";
const WI_USER: &str = "roles/iam.workloadIdentityUser";

fn provider(pool: bool, extra: &str) -> String {
    let pool = if pool {
        format!(
            "\n    projectNumber: \"{PROJECT_NUMBER}\"\n    workloadIdentityPool: {POOL}\n    workloadIdentityProvider: {POOL_PROVIDER}"
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: ClusterIdentityProvider\nmetadata:\n  name: gcp\n  annotations:\n    wib.dev/is-default-provider: \"true\"\nspec:\n  clusterName: {CLUSTER}\n  allowedScopes: [projects/{GCP_PROJECT}]{extra}\n  gcp:\n    projectId: {GCP_PROJECT}{pool}\n"
    )
}

fn binding(name: &str, gcp: &str) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  gcp:\n{gcp}"
    )
}

fn email(binding: &str) -> String {
    wib_cloud::gcp::naming::email(
        &wib_cloud::gcp::naming::account_id(CLUSTER, NS, binding),
        GCP_PROJECT,
    )
}

async fn env(pool: bool, extra: &str) -> Env {
    let env = Env::start_gcp()
        .await
        .expect("control plane, fakes, operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider(pool, extra)).await.expect("provider");
    env
}

fn account(state: &Value, email: &str) -> Option<Value> {
    state["serviceAccounts"]
        .as_array()?
        .iter()
        .find(|a| a["email"] == email)
        .cloned()
}

fn members(state: &Value, resource: &str, role: &str) -> Vec<String> {
    state["policies"][resource]["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role)
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

fn project() -> String {
    format!("projects/{GCP_PROJECT}")
}

fn account_resource(email: &str) -> String {
    format!("projects/{GCP_PROJECT}/serviceAccounts/{email}")
}

async fn wait_state(env: &Env, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wib_e2e::poll_until(wib_e2e::WAIT, what, async || {
        let state = env.gcp().state().await.map_err(|e| e.to_string())?;
        if check(&state) {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    })
    .await
    .expect(what)
}

/// Read-modify-write of a policy as another writer (the project owner),
/// at policy version 3 as the console and gcloud do.
async fn edit_policy(env: &Env, resource: &str, edit: impl Fn(&mut Value)) {
    let (api, verb) = if resource.contains("/serviceAccounts/") {
        ("v1", resource.to_string())
    } else {
        ("v3", resource.to_string())
    };
    let mut policy = env
        .gcp()
        .post(
            &format!("/{api}/{verb}:getIamPolicy"),
            json!({"options": {"requestedPolicyVersion": 3}}),
        )
        .await
        .expect("get policy");
    edit(&mut policy);
    policy["version"] = json!(3);
    env.gcp()
        .post(
            &format!("/{api}/{verb}:setIamPolicy"),
            json!({"policy": policy}),
        )
        .await
        .expect("set policy");
}

#[tokio::test]
async fn public_gke_guide_binding_becomes_ready_with_exactly_the_expected_account_and_roles() {
    let env = env(false, "").await;
    env.apply(&binding(
        "app",
        "    roles:\n      - role: roles/storage.objectViewer\n",
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "app", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let email = email("app");
    let member = format!("serviceAccount:{GCP_PROJECT}.svc.id.goog[{NS}/app]");
    let status = b.status.clone().expect("status").gcp.expect("status.gcp");
    assert_eq!(status.email.as_deref(), Some(email.as_str()));
    assert_eq!(status.member.as_deref(), Some(member.as_str()));

    let state = env.gcp().state().await.expect("state");
    let sa = account(&state, &email).expect("service account");
    let description = sa["description"].as_str().unwrap_or_default();
    assert!(
        description.contains(&format!("wib.dev_cluster={CLUSTER}")),
        "{description}"
    );
    assert!(description.contains("wib.dev_binding=app"), "{description}");
    assert_eq!(sa["displayName"], format!("wib {NS}/app"));
    assert_eq!(
        members(&state, &account_resource(&email), WI_USER),
        vec![member]
    );
    assert_eq!(
        members(&state, &project(), "roles/storage.objectViewer"),
        vec![format!("serviceAccount:{email}")]
    );
    env.wait_service_account(NS, "app", "annotated", |sa| {
        sa.and_then(|sa| sa.metadata.annotations.as_ref())
            .and_then(|a| a.get("iam.gke.io/gcp-service-account"))
            == Some(&email)
    })
    .await
    .expect("annotation");

    // Steady state: resyncs (every 2 s) make no writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = env.gcp().calls().await.expect("calls");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = env.gcp().calls().await.expect("calls");
    assert_eq!(before["writes"], after["writes"], "{before} -> {after}");
    assert_ne!(
        before["operations"], after["operations"],
        "no resync read anything"
    );
}

#[tokio::test]
async fn a_pod_token_is_exchanged_through_sts_and_impersonation_until_the_binding_is_deleted() {
    let env = env(true, "").await;
    env.apply(&binding("fed", "    roles: []\n"))
        .await
        .expect("binding");
    let b = env
        .wait_condition(NS, "fed", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let member = b.status.clone().and_then(|s| s.gcp).and_then(|g| g.member);
    assert_eq!(
        member.as_deref(),
        Some(format!("principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{POOL}/subject/system:serviceaccount:{NS}:fed").as_str())
    );
    let token = env
        .cp
        .service_account_token(NS, "fed", &token_audience())
        .await
        .expect("token");
    let (ok, out) = env.gcp_exchange(&token, &email("fed"));
    assert!(ok, "{out}");

    env.delete_binding(NS, "fed").await.expect("deleted");
    let (ok, out) = env.gcp_exchange(&token, &email("fed"));
    assert!(!ok, "still exchanges after deletion: {out}");
    let state = env.gcp().state().await.expect("state");
    assert!(
        account(&state, &email("fed")).is_none(),
        "account left behind"
    );
}

#[tokio::test]
async fn a_concurrent_policy_writer_and_wib_both_keep_their_bindings() {
    let env = env(false, "").await;
    // wib's write of the project policy waits 1.5 s before it is served; the
    // other writer changes the policy meanwhile, so wib's etag is stale.
    env.gcp()
        .inject(
            json!({"operation": "cloudresourcemanager.projects.setIamPolicy", "latencyMs": 1500}),
        )
        .await
        .expect("fault");
    env.apply(&binding(
        "busy",
        "    roles:\n      - role: roles/logging.logWriter\n",
    ))
    .await
    .expect("binding");
    wib_e2e::poll_until(wib_e2e::WAIT, "wib writes the project policy", async || {
        let calls = env.gcp().calls().await.map_err(|e| e.to_string())?;
        let written = calls["operations"]["cloudresourcemanager.projects.setIamPolicy"].as_u64();
        if written >= Some(1) {
            Ok(())
        } else {
            Err(calls.to_string())
        }
    })
    .await
    .expect("wib writes");
    edit_policy(&env, &project(), |p| {
        let bindings = p["bindings"].as_array().cloned().unwrap_or_default();
        let mut bindings = bindings;
        bindings.push(json!({"role": "roles/viewer", "members": ["user:alice@example.com"]}));
        p["bindings"] = Value::Array(bindings);
    })
    .await;
    env.wait_condition(NS, "busy", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let state = env.gcp().state().await.expect("state");
    assert_eq!(
        members(&state, &project(), "roles/viewer"),
        vec!["user:alice@example.com"]
    );
    assert_eq!(
        members(&state, &project(), "roles/logging.logWriter"),
        vec![format!("serviceAccount:{}", email("busy"))]
    );
    let calls = env.gcp().calls().await.expect("calls");
    assert!(
        calls["operations"]["cloudresourcemanager.projects.setIamPolicy"].as_u64() >= Some(3),
        "wib did not retry its read-modify-write: {calls}"
    );
}

/// GCP in the shared scenarios: a GKE-pool member, one project role.
struct Gcp;

const SUBSCRIBER: &str = "roles/pubsub.subscriber";

impl CloudUnderTest for Gcp {
    const NAMESPACE: &'static str = NS;
    const ANNOTATION: (&'static str, Option<&'static str>) =
        ("iam.gke.io/gcp-service-account", None);

    async fn start() -> Env {
        env(false, "").await
    }

    fn binding(name: &str, extra: &str) -> String {
        let roles = format!("    roles:\n      - role: {SUBSCRIBER}\n");
        format!("{}{extra}", binding(name, &roles))
    }

    async fn snapshot(env: &Env, name: &str) -> Snapshot {
        let state = env.gcp().state().await.expect("state");
        let email = email(name);
        let federated = !members(&state, &account_resource(&email), WI_USER).is_empty();
        Snapshot {
            identities: usize::from(account(&state, &email).is_some()),
            federated,
            grants: members(&state, &project(), SUBSCRIBER)
                .iter()
                .filter(|m| **m == format!("serviceAccount:{email}"))
                .count(),
        }
    }

    async fn remove_federation_and_grant(env: &Env, name: &str) {
        edit_policy(env, &project(), |p| p["bindings"] = json!([])).await;
        edit_policy(env, &account_resource(&email(name)), |p| {
            p["bindings"] = json!([])
        })
        .await;
    }

    async fn hold_grant_write(env: &Env) {
        env.gcp()
            .inject(json!({"operation": "cloudresourcemanager.projects.setIamPolicy", "latencyMs": 5000, "times": 1}))
            .await
            .expect("latency");
    }

    async fn grant_write_reached(env: &Env) -> bool {
        let calls = env.gcp().calls().await.expect("calls");
        calls["operations"]["cloudresourcemanager.projects.setIamPolicy"].as_u64() >= Some(1)
    }

    async fn refusals(env: &Env) -> Vec<Refusal> {
        // An account of the wanted ID that wib did not create.
        env.gcp()
            .post(
                &format!("/v1/projects/{GCP_PROJECT}/serviceAccounts"),
                json!({"accountId": "team-owned-account", "serviceAccount": {"description": "the team's own"}}),
            )
            .await
            .expect("foreign account");
        vec![
            Refusal {
                name: "owner",
                yaml: binding("owner", "    roles:\n      - role: roles/owner\n"),
                reason: "RoleNotAllowed",
                names: "roles/owner",
            },
            Refusal {
                name: "taken",
                yaml: binding("taken", "    accountId: team-owned-account\n"),
                reason: "AdoptionNotAllowed",
                names: "team-owned-account",
            },
        ]
    }

    async fn writes(env: &Env) -> u64 {
        let calls = env.gcp().calls().await.expect("calls");
        calls["writes"].as_u64().unwrap_or_default()
    }
}

#[tokio::test]
async fn drift_is_put_back_with_an_event() {
    scenarios::drift_is_put_back_with_an_event::<Gcp>().await;
}

#[tokio::test]
async fn a_crash_while_a_grant_is_written_leaves_no_duplicates() {
    scenarios::a_crash_while_a_grant_is_written_leaves_no_duplicates::<Gcp>().await;
}

#[tokio::test]
async fn retain_keeps_the_account_and_its_role_and_drops_only_the_federation() {
    scenarios::retain_keeps_the_identity_and_grant_and_drops_only_the_federation::<Gcp>().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_nothing_written() {
    scenarios::bad_input_is_refused_with_nothing_written::<Gcp>().await;
}

#[tokio::test]
async fn an_account_is_never_deleted_while_a_member_wib_did_not_add_remains() {
    let env = env(true, "").await;
    env.apply(&binding(
        "kept-alive",
        "    roles:\n      - role: roles/storage.objectViewer\n",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "kept-alive", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    // Someone else lets another principal act as the account.
    let resource = account_resource(&email("kept-alive"));
    let foreign = "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/other/subject/elsewhere";
    edit_policy(&env, &resource, |policy| {
        let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
        match bindings.iter_mut().find(|b| b["role"] == WI_USER) {
            Some(b) => b["members"]
                .as_array_mut()
                .expect("members")
                .push(json!(foreign)),
            None => bindings.push(json!({"role": WI_USER, "members": [foreign]})),
        }
        policy["bindings"] = json!(bindings);
    })
    .await;
    env.delete_binding(NS, "kept-alive").await.expect("deleted");
    let state = env.gcp().state().await.expect("state");
    assert!(
        account(&state, &email("kept-alive")).is_some(),
        "deleted while a member wib did not add remains"
    );
    assert_eq!(members(&state, &resource, WI_USER), [foreign.to_string()]);
    assert!(
        members(&state, &project(), "roles/storage.objectViewer").is_empty(),
        "the maker's grants went with it"
    );
}

/// A binding with an IAM Condition, as someone else writes one.
fn conditional(role: &str, member: &str, title: &str) -> Value {
    json!({"role": role, "members": [member], "condition": {
        "title": title,
        "expression": "request.time < timestamp('2030-01-01T00:00:00Z')",
    }})
}

fn push_binding(policy: &mut Value, binding: Value) {
    match policy["bindings"].as_array_mut() {
        Some(bindings) => bindings.push(binding),
        None => policy["bindings"] = json!([binding]),
    }
}

fn conditions_of(state: &Value, resource: &str) -> Vec<Value> {
    state["policies"][resource]["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b.get("condition").is_some())
        .cloned()
        .collect()
}

#[tokio::test]
async fn policies_with_iam_conditions_written_by_others_are_read_and_kept_at_version_3() {
    let env = env(false, "").await;
    // The project already holds a conditional grant of someone else's.
    let theirs = conditional(
        "roles/storage.objectViewer",
        "user:alice@example.com",
        "until-2030",
    );
    edit_policy(&env, &project(), |p| push_binding(p, theirs.clone())).await;
    // A reader that does not ask for version 3 is refused, as by GCP.
    let refused = env
        .gcp()
        .post(&format!("/v3/{}:getIamPolicy", project()), json!({}))
        .await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("version 3")),
        "the fake models policy versions"
    );

    env.apply(&binding(
        "conditions",
        "    roles:\n      - role: roles/storage.objectViewer\n",
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "conditions", READY, "True", "Provisioned")
        .await
        .expect("Ready on a project with IAM Conditions");
    let email = email("conditions");
    let ours = format!("serviceAccount:{email}");

    // Someone adds a conditional binding to the account's own policy.
    let on_account = conditional(
        "roles/iam.serviceAccountTokenCreator",
        "user:bob@example.com",
        "bob-until-2030",
    );
    edit_policy(&env, &account_resource(&email), |p| {
        push_binding(p, on_account.clone())
    })
    .await;

    // A spec change makes wib read and write both policies again.
    env.apply(&binding(
        "conditions",
        "    roles:\n      - role: roles/storage.objectViewer\n      - role: roles/logging.viewer\n",
    ))
    .await
    .expect("spec change");
    let state = wait_state(&env, "granted the new role", |s| {
        members(s, &project(), "roles/logging.viewer").contains(&ours)
    })
    .await;
    env.wait_condition(NS, "conditions", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    assert_eq!(
        conditions_of(&state, &project()),
        vec![theirs.clone()],
        "{state}"
    );
    assert_eq!(
        conditions_of(&state, &account_resource(&email)),
        vec![on_account],
        "{state}"
    );
    assert_eq!(state["policies"][project()]["version"], 3, "{state}");
    assert!(
        members(&state, &account_resource(&email), WI_USER).contains(&format!(
            "serviceAccount:{GCP_PROJECT}.svc.id.goog[{NS}/conditions]"
        )),
        "{state}"
    );

    // Deleted: wib's grants go, the conditional one stays as it was.
    env.delete_binding(NS, "conditions").await.expect("deleted");
    let state = env.gcp().state().await.expect("state");
    assert!(!members(&state, &project(), "roles/logging.viewer").contains(&ours));
    assert_eq!(conditions_of(&state, &project()), vec![theirs], "{state}");
}

#[tokio::test]
async fn roles_on_a_project_dropped_from_the_spec_are_revoked() {
    let env = Env::start_gcp()
        .await
        .expect("control plane, fakes, operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let other = "wib-other";
    env.gcp().add_project(other).await.expect("project");
    env.apply(&provider(false, "").replace(
        &format!("allowedScopes: [projects/{GCP_PROJECT}]"),
        &format!("allowedScopes: [projects/{GCP_PROJECT}, projects/{other}]"),
    ))
    .await
    .expect("provider");
    let elsewhere = format!("projects/{other}");
    env.apply(&binding(
        "moving",
        &format!(
            "    roles:\n      - role: roles/storage.objectViewer\n        resource: {elsewhere}\n"
        ),
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "moving", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let member = format!("serviceAccount:{}", email("moving"));
    let state = env.gcp().state().await.expect("state");
    assert!(
        members(&state, &elsewhere, "roles/storage.objectViewer").contains(&member),
        "{state}"
    );

    // The project leaves the spec altogether: only the status remembers it.
    env.apply(&binding(
        "moving",
        "    roles:\n      - role: roles/logging.viewer\n",
    ))
    .await
    .expect("spec change");
    wait_state(&env, "revoked on the dropped project", |s| {
        !members(s, &elsewhere, "roles/storage.objectViewer").contains(&member)
            && members(s, &project(), "roles/logging.viewer").contains(&member)
    })
    .await;
}

#[tokio::test]
async fn wib_keeps_reconciling_across_an_access_token_expiry_and_a_token_file_rotation() {
    let env = env(false, "").await;
    wib_e2e::survives_expiry_and_rotation(&env, env.gcp(), NS, |name| {
        binding(name, "    roles: []\n")
    })
    .await;
}

#[tokio::test]
async fn a_throttled_call_is_tried_again_no_sooner_than_its_retry_info_asks() {
    let env = env(false, "").await;
    const CREATE: &str = "iam.projects.serviceAccounts.create";
    // RESOURCE_EXHAUSTED with a RetryInfo of 3 s, twice.
    env.gcp()
        .inject(json!({"operation": CREATE, "status": 429, "retryAfter": 3, "times": 2}))
        .await
        .expect("fault");
    env.apply(&binding("patient", "    roles: []\n"))
        .await
        .expect("binding");
    env.wait_condition(NS, "patient", READY, "True", "Provisioned")
        .await
        .expect("Ready once GCP lets it through");

    // From the fake's log (from the first fault on: the harness created
    // wib's own account before): both faults served, each retry at least
    // 3 s after the one before.
    let calls = env.gcp().calls().await.expect("calls");
    let creates: Vec<&Value> = calls["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|c| c["operation"] == CREATE)
        .skip_while(|c| c.get("fault").is_none())
        .collect();
    assert!(creates.len() >= 3, "{creates:?}");
    assert!(
        creates[..2].iter().all(|c| c["fault"] == 429),
        "{creates:?}"
    );
    for pair in creates[..3].windows(2) {
        let gap = pair[1]["atMs"].as_u64().unwrap_or_default()
            - pair[0]["atMs"].as_u64().unwrap_or_default();
        assert!(
            gap >= 2900,
            "retried after {gap} ms, asked 3000: {creates:?}"
        );
    }
}

/// Mode Direct outside GKE: no Google service account; the role goes to the
/// ServiceAccount's pool principal, which a pod uses with its federated
/// token alone. A role someone else granted that principal stays; drift is
/// put back; a steady state writes nothing; deletion takes wib's role and
/// leaves the project's other grants and no account behind.
#[tokio::test]
async fn direct_mode_grants_the_principal_itself_and_a_pod_uses_its_federated_token() {
    let env = env(true, "").await;
    let principal = format!(
        "principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{POOL}/subject/system:serviceaccount:{NS}:direct"
    );
    // The platform team granted the same principal a role by hand.
    edit_policy(&env, &project(), |policy| {
        let bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
        let mut bindings = bindings;
        bindings.push(json!({"role": "roles/pubsub.subscriber", "members": [principal]}));
        policy["bindings"] = json!(bindings);
    })
    .await;
    let calls_before = env.gcp().calls().await.expect("calls");
    env.apply(&binding(
        "direct",
        "    mode: Direct\n    roles:\n      - role: roles/storage.objectViewer\n",
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "direct", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let status = b.status.clone().expect("status");
    let gcp = status.gcp.clone().expect("status.gcp");
    assert_eq!(gcp.member.as_deref(), Some(principal.as_str()));
    assert_eq!(gcp.email, None);
    assert_eq!(status.identity.as_deref(), Some(principal.as_str()));
    let state = env.gcp().state().await.expect("state");
    assert_eq!(
        members(&state, &project(), "roles/storage.objectViewer"),
        vec![principal.clone()]
    );
    let after = env.gcp().calls().await.expect("calls");
    let created =
        |calls: &Value| calls["operations"]["iam.projects.serviceAccounts.create"].as_u64();
    assert_eq!(
        created(&after),
        created(&calls_before),
        "no service account: {after}"
    );
    assert!(
        members(&state, &account_resource(&email("direct")), WI_USER).is_empty(),
        "no workloadIdentityUser anywhere"
    );
    env.wait_service_account(NS, "direct", "annotated for the webhook", |sa| {
        let annotations = sa
            .and_then(|sa| sa.metadata.annotations.clone())
            .unwrap_or_default();
        !annotations.contains_key("iam.gke.io/gcp-service-account")
            && annotations.contains_key("wib.dev/gcp-workload-identity-provider")
    })
    .await
    .expect("annotations");

    // The pod's federated token is its credential.
    let token = env
        .cp
        .service_account_token(NS, "direct", &token_audience())
        .await
        .expect("token");
    let (ok, out) = env.gcp_direct_access(&token, GCP_PROJECT);
    assert!(ok && out.contains("storage.objects.get"), "{out}");

    // Steady state: no writes.
    let before = env.gcp().calls().await.expect("calls");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = env.gcp().calls().await.expect("calls");
    assert_eq!(before["writes"], after["writes"], "{before} -> {after}");

    // Drift: the owner removes wib's grant; wib puts it back.
    edit_policy(&env, &project(), |policy| {
        if let Some(bindings) = policy["bindings"].as_array_mut() {
            bindings.retain(|b| b["role"] != "roles/storage.objectViewer");
        }
    })
    .await;
    wait_state(&env, "the grant put back", |state| {
        members(state, &project(), "roles/storage.objectViewer") == [principal.clone()]
    })
    .await;

    // Deletion takes wib's grant only.
    env.delete_binding(NS, "direct").await.expect("deleted");
    let state = env.gcp().state().await.expect("state");
    assert!(
        members(&state, &project(), "roles/storage.objectViewer").is_empty(),
        "{state}"
    );
    assert_eq!(
        members(&state, &project(), "roles/pubsub.subscriber"),
        vec![principal.clone()],
        "the platform's own grant to the principal stays"
    );
    let (ok, out) = env.gcp_direct_access(&token, GCP_PROJECT);
    assert!(!ok, "still holds a permission after deletion: {out}");
}
