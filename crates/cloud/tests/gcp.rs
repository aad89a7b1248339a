//! The GCP cloud on its own: `GcpProvider` driven through observe → plan →
//! execute against the GCP fake, with no controller and no CRDs. A control
//! plane runs only as the OIDC issuer of wib's own token (the fake's STS
//! verifies it), so each case is a few calls, and many fit in one test.

mod common;

use std::sync::Arc;

use common::Wib;

use serde_json::{Value, json};
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::Reason;
use wib_cloud::gcp::{GcpProvider, Settings};
use wib_testenv::ControlPlane;
use wib_testenv::gcp::GcpFake;

const PROJECT: &str = "wib-tier";

/// One control plane (issuer only), the GCP fake and wib's GCP cloud.
struct Rig {
    fake: GcpFake,
    wib: Wib<GcpProvider>,
    _cp: ControlPlane,
}

impl Rig {
    async fn start() -> Self {
        Self::with_fleet_ttl(std::time::Duration::ZERO).await
    }

    async fn with_fleet_ttl(ttl: std::time::Duration) -> Self {
        Self::with(ttl, json!({})).await
    }

    /// `guardrails`: provider fields on top of the tier's scope.
    async fn with(ttl: std::time::Duration, guardrails: Value) -> Self {
        let cp = common::issuer_only_control_plane().await;
        let fake = GcpFake::start(&cp, PROJECT).await.expect("GCP fake");
        let credentials = fake
            .operator_env
            .iter()
            .find(|(k, _)| k == "GOOGLE_APPLICATION_CREDENTIALS")
            .map(|(_, file)| std::fs::read(file).expect("credential configuration"))
            .map(|bytes| serde_json::from_slice(&bytes).expect("JSON"));
        let cloud = GcpProvider::new(
            Arc::new(wib_cloud::calls::Unobserved),
            Settings {
                iam_endpoint: fake.url.clone(),
                projects_endpoint: fake.url.clone(),
                credentials,
                // The fake has no quota; the cases are many.
                limits: wib_cloud::limiter::Limits::flat(1000.0),
                // Zero: every pass lists afresh, so drift made a moment ago
                // is seen.
                fleet_snapshot_ttl: ttl,
            },
        );
        let mut provider = json!({"clusterName": "tier", "allowedScopes": [format!("projects/{PROJECT}")],
                     "gcp": {"projectId": PROJECT}});
        for (field, value) in guardrails.as_object().into_iter().flatten() {
            provider[field] = value.clone();
        }
        let wib = Wib::new(cloud, provider, &cp);
        Self { fake, wib, _cp: cp }
    }

    /// Calls the fake served of one operation.
    async fn served_of(&self, operation: &str) -> u64 {
        self.fake.calls().await.expect("calls")["operations"][operation]
            .as_u64()
            .unwrap_or_default()
    }

    async fn writes(&self) -> u64 {
        self.fake.calls().await.expect("calls")["writes"]
            .as_u64()
            .unwrap_or_default()
    }

    /// Every call the fake served so far.
    async fn served(&self) -> u64 {
        let calls = self.fake.calls().await.expect("calls");
        calls["operations"]
            .as_object()
            .map(|ops| ops.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or_default()
    }

    /// The account's roles on the project, and who may act as it.
    async fn grants(&self, email: &str) -> (Vec<String>, Vec<String>) {
        let state = self.fake.state().await.expect("state");
        let member = format!("serviceAccount:{email}");
        let project_roles = bindings_of(&state["policies"][format!("projects/{PROJECT}")])
            .filter(|(_, members)| members.contains(&member))
            .map(|(role, _)| role)
            .collect();
        let account = format!("projects/{PROJECT}/serviceAccounts/{email}");
        let federated = bindings_of(&state["policies"][account])
            .filter(|(role, _)| role == "roles/iam.workloadIdentityUser")
            .flat_map(|(_, members)| members)
            .collect();
        (project_roles, federated)
    }

    async fn accounts_named(&self, email: &str) -> usize {
        let state = self.fake.state().await.expect("state");
        state["serviceAccounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["email"] == email)
            .count()
    }
}

fn bindings_of(policy: &Value) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let members = b["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect();
            (b["role"].as_str().unwrap_or_default().to_string(), members)
        })
}

fn binding(name: &str, uid: &str, roles: &[&str]) -> WorkloadIdentityBinding {
    let roles: Vec<Value> = roles.iter().map(|r| json!({"role": r})).collect();
    let gcp = json!({"accountId": name, "roles": roles});
    common::binding(
        name,
        "team",
        uid,
        json!({"serviceAccount": {"name": name}, "gcp": gcp}),
    )
}

fn email(account: &str) -> String {
    format!("{account}@{PROJECT}.iam.gserviceaccount.com")
}

#[tokio::test]
async fn create_steady_state_spec_change_and_cleanup_through_the_steps() {
    let rig = Rig::start().await;
    let b = binding("app-one", "u1", &["roles/storage.objectViewer"]);
    let outcome = rig.wib.reconcile(&b).await.expect("created");
    assert_eq!(outcome.writes.len(), 3, "{:?}", outcome.writes);
    assert_eq!(
        rig.grants(&email("app-one")).await,
        (
            vec!["roles/storage.objectViewer".to_string()],
            vec![format!(
                "serviceAccount:{PROJECT}.svc.id.goog[team/app-one]"
            )]
        )
    );

    let before = rig.writes().await;
    let steady = rig.wib.reconcile(&b).await.expect("steady");
    assert!(steady.writes.is_empty(), "{:?}", steady.writes);
    assert_eq!(rig.writes().await, before, "a steady state writes nothing");

    let edited = binding("app-one", "u1", &["roles/logging.viewer"]);
    let changed = rig.wib.reconcile(&edited).await.expect("spec changed");
    let account = format!("serviceAccount:{}", email("app-one"));
    assert_eq!(
        changed.writes,
        [format!(
            "granted roles/logging.viewer to {account}, revoked roles/storage.objectViewer from {account} on projects/{PROJECT}"
        )]
    );

    rig.wib.cleanup(&edited).await.expect("cleanup");
    assert_eq!(rig.accounts_named(&email("app-one")).await, 0);
    assert_eq!(rig.grants(&email("app-one")).await, (vec![], vec![]));
}

#[tokio::test]
async fn a_failure_between_actions_is_finished_by_the_next_pass_without_duplicates() {
    let rig = Rig::start().await;
    rig.fake
        .inject(json!({"operation": "cloudresourcemanager.projects.setIamPolicy", "status": 500, "times": 1}))
        .await
        .expect("fault");
    let b = binding("half-made", "u2", &["roles/storage.objectViewer"]);
    let failed = rig.wib.reconcile(&b).await.expect_err("the grant fails");
    assert_eq!(failed.reason, Reason::TransientError, "{failed}");
    assert_eq!(
        rig.accounts_named(&email("half-made")).await,
        1,
        "created before the failure"
    );

    let outcome = rig.wib.reconcile(&b).await.expect("finished");
    assert_eq!(
        outcome.writes,
        [format!(
            "granted roles/storage.objectViewer to serviceAccount:{} on projects/{PROJECT}",
            email("half-made")
        )],
        "only what was left"
    );
    assert_eq!(rig.accounts_named(&email("half-made")).await, 1);
}

#[tokio::test]
async fn throttling_reports_the_wait_gcp_names() {
    let rig = Rig::start().await;
    rig.fake
        .inject(json!({"operation": "iam.projects.serviceAccounts.get", "status": 429, "retryAfter": 7, "times": 10}))
        .await
        .expect("fault");
    let error = rig
        .wib
        .reconcile(&binding("patient", "u3", &[]))
        .await
        .expect_err("throttled");
    assert_eq!(error.reason, Reason::Throttled, "{error}");
    assert_eq!(error.retry_after, Some(std::time::Duration::from_secs(7)));
}

/// New bindings reconciled at once all edit the project's one policy: their
/// edits share reads and writes instead of racing each other on the etag,
/// and one binding's role that GCP refuses fails that binding alone.
#[tokio::test]
async fn concurrent_bindings_share_project_policy_writes_and_a_refused_role_fails_alone() {
    let retired = format!("projects/{PROJECT}/roles/retired");
    let rig = Rig::with(
        std::time::Duration::ZERO,
        json!({"allowedRoles": ["roles/storage.objectViewer", retired]}),
    )
    .await;
    const SET: &str = "cloudresourcemanager.projects.setIamPolicy";
    let bindings: Vec<WorkloadIdentityBinding> = (0..20)
        .map(|i| {
            binding(
                &format!("batch-{i:02}"),
                &format!("batch-uid-{i}"),
                &["roles/storage.objectViewer"],
            )
        })
        .collect();
    let outcomes = futures::future::join_all(bindings.iter().map(|b| rig.wib.reconcile(b))).await;
    for (b, outcome) in bindings.iter().zip(&outcomes) {
        assert!(outcome.is_ok(), "{:?}: {outcome:?}", b.metadata.name);
    }
    for i in 0..20 {
        let account = email(&format!("batch-{i:02}"));
        assert_eq!(rig.grants(&account).await.0, ["roles/storage.objectViewer"]);
    }
    let shared = rig.served_of(SET).await;
    assert!(
        shared < 20,
        "20 new bindings took {shared} project policy writes"
    );

    // A refused role in the middle of a shared write.
    let mut mixed: Vec<WorkloadIdentityBinding> = (0..6)
        .map(|i| {
            binding(
                &format!("mixed-{i}"),
                &format!("mixed-uid-{i}"),
                &["roles/storage.objectViewer"],
            )
        })
        .collect();
    mixed.push(binding("refused", "refused-uid", &[retired.as_str()]));
    let outcomes = futures::future::join_all(mixed.iter().map(|b| rig.wib.reconcile(b))).await;
    let refused = outcomes
        .last()
        .and_then(|o| o.as_ref().err())
        .expect("refused");
    assert_eq!(refused.reason, Reason::RoleNotFound, "{refused}");
    assert!(refused.message.contains("does not exist"), "{refused}");
    for (i, outcome) in outcomes.iter().take(6).enumerate() {
        assert!(outcome.is_ok(), "mixed-{i}: {outcome:?}");
        let account = email(&format!("mixed-{i}"));
        assert_eq!(rig.grants(&account).await.0, ["roles/storage.objectViewer"]);
    }
}

/// A project policy at GCP's limit of 1,500 principals: the binding that
/// would pass it is told so (QuotaExceeded, GCP's words), the others of the
/// same shared write are granted, and what others granted is kept.
#[tokio::test]
async fn a_project_policy_at_its_principal_limit_refuses_only_the_binding_past_it() {
    let rig = Rig::start().await;
    let others: Vec<String> = (0..1497)
        .map(|i| format!("user:someone-{i}@example.com"))
        .collect();
    rig.fake
        .post(
            &format!("/v3/projects/{PROJECT}:setIamPolicy"),
            json!({"policy": {"bindings": [{"role": "roles/viewer", "members": others}]}}),
        )
        .await
        .expect("someone else's grants");
    let bindings: Vec<WorkloadIdentityBinding> = (0..4)
        .map(|i| {
            binding(
                &format!("full-{i}"),
                &format!("full-uid-{i}"),
                &["roles/storage.objectViewer"],
            )
        })
        .collect();
    let outcomes = futures::future::join_all(bindings.iter().map(|b| rig.wib.reconcile(b))).await;
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(refused.len(), 1, "{outcomes:?}");
    assert_eq!(refused[0].reason, Reason::QuotaExceeded, "{}", refused[0]);
    assert!(
        refused[0].message.contains("maximum allowed size 1500"),
        "{}",
        refused[0]
    );
    let state = rig.fake.state().await.expect("state");
    let policy = &state["policies"][format!("projects/{PROJECT}")];
    let viewers = bindings_of(policy)
        .find(|(role, _)| role == "roles/viewer")
        .map(|(_, members)| members.len());
    assert_eq!(viewers, Some(1497), "others' grants kept");
}

/// Many bindings, one pass each way: each is created with exactly its
/// grants, a second pass writes nothing, and cleanup leaves nothing.
#[tokio::test]
async fn fifty_bindings_round_trip_with_no_steady_state_writes() {
    // A fleet read lasts two seconds: the steady pass after it is served
    // by one listing and one read of the project's policy.
    let ttl = std::time::Duration::from_secs(2);
    let rig = Rig::with_fleet_ttl(ttl).await;
    let roles = ["roles/storage.objectViewer", "roles/logging.viewer"];
    let bindings: Vec<WorkloadIdentityBinding> = (0..50)
        .map(|i| {
            binding(
                &format!("app-{i:02}"),
                &format!("uid-{i}"),
                &roles[..1 + i % 2],
            )
        })
        .collect();
    rig.wib.create_all(&bindings, ttl).await;
    let before = rig.writes().await;
    let calls_before = rig.served().await;
    rig.wib.steady_pass(&bindings).await;
    assert_eq!(rig.writes().await, before);
    // Each account's own policy (who may act as it: no list returns it),
    // one page of accounts and the project's policy: at most 1.1 a binding.
    let reads = rig.served().await - calls_before;
    assert!(reads <= 55, "steady-state reads of 50 bindings: {reads}");
    for (i, b) in bindings.iter().enumerate() {
        let account = email(&format!("app-{i:02}"));
        assert_eq!(rig.grants(&account).await.0.len(), 1 + i % 2, "{account}");
        rig.wib.cleanup(b).await.expect("cleanup");
        assert_eq!(rig.accounts_named(&account).await, 0, "{account}");
    }
}
