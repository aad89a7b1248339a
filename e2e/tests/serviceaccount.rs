//! The ServiceAccount loop with the operator binary against the local control
//! plane: creation, annotation of an existing ServiceAccount, coexistence of
//! several clouds' bindings, conflicts, zero-write steady state and cleanup.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use wib_api::conditions::{READY, SERVICE_ACCOUNT_READY, STALLED};
use wib_e2e::{Env, condition, provider_yaml};

const NS: &str = "team-a";

fn binding_yaml(name: &str, sa: &str, cloud: &str, create: bool) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  serviceAccount:\n    name: {sa}\n    create: {create}\n  {cloud}: {{}}\n"
    )
}

async fn env() -> Env {
    // moto backs the AWS bindings; GCP bindings stand for a cloud whose
    // step fails, so the ServiceAccount loop is seen on its own.
    let env = Env::start_aws()
        .await
        .expect("control plane, moto and operator start");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider_yaml("default", true, None))
        .await
        .expect("provider");
    env
}

fn labels(sa: &k8s_openapi::api::core::v1::ServiceAccount) -> BTreeMap<String, String> {
    sa.labels().clone()
}

#[tokio::test]
async fn created_service_account_carries_wib_fields_and_is_deleted_with_its_binding() {
    let env = env().await;
    env.apply(&binding_yaml("app1", "app1-sa", "gcp", true))
        .await
        .expect("binding");

    env.wait_condition(NS, "app1", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("ServiceAccount applied");
    // The GCP fake provisions it: Ready, not stalled.
    let b = env
        .wait_condition(NS, "app1", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    assert_eq!(
        condition(&b, STALLED).map(|c| c.status.as_str()),
        Some("False")
    );
    let status = b.status.as_ref().expect("status");
    assert_eq!(status.observed_generation, b.metadata.generation);
    assert_eq!(status.service_account.as_deref(), Some("app1-sa"));
    assert_eq!(status.cloud, Some(wib_api::Cloud::Gcp));
    assert!(b.finalizers().iter().any(|f| f == "wib.dev/cleanup"));

    let sa = env
        .service_accounts(NS)
        .get("app1-sa")
        .await
        .expect("ServiceAccount created");
    assert_eq!(
        sa.automount_service_account_token,
        Some(false),
        "CIS 5.1.5/5.1.6 default"
    );
    assert_eq!(
        labels(&sa)
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("wib")
    );
    assert_eq!(
        sa.annotations()
            .get("wib.dev/gcp-binding")
            .map(String::as_str),
        Some("app1")
    );
    let owners = sa.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "WorkloadIdentityBinding");
    assert_eq!(Some(owners[0].uid.clone()), b.uid());
    assert!(
        sa.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("wib/app1")),
        "applied with the binding's own field manager"
    );

    // Events on the binding for its condition transitions.
    env.wait_events(NS, "app1", &["Provisioned", "Applied"])
        .await
        .expect("Events");

    // The operator logs carry the binding's namespace and name.
    let logs = env.operator().logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("applied ServiceAccount fields")
                && l.contains("namespace=team-a")
                && l.contains("name=app1")),
        "{logs}"
    );

    env.delete_binding(NS, "app1")
        .await
        .expect("binding deleted");
    env.wait_service_account(NS, "app1-sa", "deleted", |sa| sa.is_none())
        .await
        .expect("created ServiceAccount goes with its binding");
}

#[tokio::test]
async fn a_settled_binding_makes_no_writes_on_resync() {
    let env = env().await;
    env.apply(&binding_yaml("quiet", "quiet", "aws", true))
        .await
        .expect("binding");
    let settled = env
        .wait_condition(NS, "quiet", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("settled");
    // Let the first reconcile's own writes (finalizer, status) come back as events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_binding = env.bindings(NS).get("quiet").await.expect("binding");
    let before_sa = env.service_accounts(NS).get("quiet").await.expect("sa");
    let transition = condition(&settled, READY).map(|c| c.last_transition_time.clone());

    // Several resyncs (2 s each) re-run the whole reconcile.
    let reconciles = || {
        env.operator()
            .logs()
            .lines()
            .filter(|l| l.contains("reconciled") && l.contains("name=quiet"))
            .count()
    };
    let reconciles_before = reconciles();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(
        reconciles() >= reconciles_before + 3,
        "resyncs ran: {} -> {}",
        reconciles_before,
        reconciles()
    );

    let after_binding = env.bindings(NS).get("quiet").await.expect("binding");
    let after_sa = env.service_accounts(NS).get("quiet").await.expect("sa");
    assert_eq!(
        before_binding.resource_version(),
        after_binding.resource_version(),
        "no status write at steady state"
    );
    assert_eq!(
        before_sa.resource_version(),
        after_sa.resource_version(),
        "no ServiceAccount write at steady state"
    );
    assert_eq!(
        condition(&after_binding, READY).map(|c| c.last_transition_time.clone()),
        transition
    );
}

#[tokio::test]
async fn existing_service_account_keeps_other_managers_fields_through_reconciles_and_deletion() {
    let env = env().await;
    // A ServiceAccount the app team owns, with fields of its own.
    env.apply_as(
        "team-tooling",
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: shared\n  namespace: {NS}\n  labels:\n    team: a\n  annotations:\n    team.example.com/owner: alice\nautomountServiceAccountToken: true\n"
        ),
    )
    .await
    .expect("team's ServiceAccount");
    env.apply(&binding_yaml("shared-gcp", "shared", "gcp", false))
        .await
        .expect("azure binding");
    env.apply(&binding_yaml("shared-aws", "shared", "aws", false))
        .await
        .expect("aws binding");
    env.wait_condition(NS, "shared-gcp", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("azure applied");
    env.wait_condition(NS, "shared-aws", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("aws applied");

    let sa = env
        .wait_service_account(NS, "shared", "annotated by both bindings", |sa| {
            sa.is_some_and(|sa| {
                sa.annotations().contains_key("wib.dev/gcp-binding")
                    && sa.annotations().contains_key("wib.dev/aws-binding")
            })
        })
        .await
        .expect("both clouds' annotations coexist")
        .expect("present");
    assert_eq!(sa.labels().get("team").map(String::as_str), Some("a"));
    assert_eq!(
        sa.annotations()
            .get("team.example.com/owner")
            .map(String::as_str),
        Some("alice")
    );
    assert_eq!(
        sa.automount_service_account_token,
        Some(true),
        "create: false never changes automount"
    );
    assert!(
        sa.owner_references().is_empty(),
        "wib does not own a ServiceAccount it did not create"
    );

    // Deleting one binding removes exactly its fields.
    env.delete_binding(NS, "shared-gcp").await.expect("deleted");
    let sa = env
        .wait_service_account(NS, "shared", "without the gcp annotation", |sa| {
            sa.is_some_and(|sa| !sa.annotations().contains_key("wib.dev/gcp-binding"))
        })
        .await
        .expect("gcp fields released")
        .expect("ServiceAccount kept");
    assert_eq!(
        sa.annotations()
            .get("wib.dev/aws-binding")
            .map(String::as_str),
        Some("shared-aws")
    );
    assert_eq!(
        sa.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("wib"),
        "still used by the aws binding"
    );

    env.delete_binding(NS, "shared-aws").await.expect("deleted");
    let sa = env
        .wait_service_account(NS, "shared", "without wib's fields", |sa| {
            sa.is_some_and(|sa| !sa.labels().contains_key("app.kubernetes.io/managed-by"))
        })
        .await
        .expect("wib fields released")
        .expect("the team's ServiceAccount survives");
    assert!(
        !sa.annotations().keys().any(|k| k.starts_with("wib.dev/")),
        "{:?}",
        sa.annotations()
    );
    assert_eq!(sa.labels().get("team").map(String::as_str), Some("a"));
    assert_eq!(
        sa.annotations()
            .get("team.example.com/owner")
            .map(String::as_str),
        Some("alice")
    );
    assert_eq!(sa.automount_service_account_token, Some(true));
}

#[tokio::test]
async fn missing_service_account_with_create_false_is_reported_and_picked_up_when_created() {
    let env = env().await;
    env.apply(&binding_yaml("later", "later", "gcp", false))
        .await
        .expect("binding");
    env.wait_condition(
        NS,
        "later",
        SERVICE_ACCOUNT_READY,
        "False",
        "ServiceAccountNotFound",
    )
    .await
    .expect("reported missing");
    assert!(
        env.service_accounts(NS)
            .get_opt("later")
            .await
            .expect("get")
            .is_none(),
        "create: false never creates"
    );

    env.apply_as(
        "team-tooling",
        &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: later\n  namespace: {NS}\n"
        ),
    )
    .await
    .expect("ServiceAccount created by the team");
    env.wait_condition(NS, "later", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("picked up through the ServiceAccount watch");
}

#[tokio::test]
async fn second_binding_for_the_same_service_account_and_cloud_conflicts_and_takes_over_when_the_first_goes()
 {
    let env = env().await;
    env.apply(&binding_yaml("first", "app", "gcp", true))
        .await
        .expect("first");
    env.wait_condition(NS, "first", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("first applied");
    let first_before = env.bindings(NS).get("first").await.expect("first");
    let sa_before = env.service_accounts(NS).get("app").await.expect("sa");

    env.apply(&binding_yaml("second", "app", "gcp", true))
        .await
        .expect("second");
    let second = env
        .wait_condition(NS, "second", READY, "False", "ServiceAccountConflict")
        .await
        .expect("later binding conflicts");
    let message = &condition(&second, READY).expect("ready").message;
    assert!(
        message.contains("\"first\"") && message.contains("\"app\""),
        "{message}"
    );
    assert_eq!(
        condition(&second, STALLED).map(|c| c.status.as_str()),
        Some("True")
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let first_after = env.bindings(NS).get("first").await.expect("first");
    let sa_after = env.service_accounts(NS).get("app").await.expect("sa");
    assert_eq!(
        first_before.resource_version(),
        first_after.resource_version(),
        "earlier binding untouched"
    );
    assert_eq!(
        sa_before.resource_version(),
        sa_after.resource_version(),
        "ServiceAccount untouched"
    );
    assert_eq!(
        sa_after
            .annotations()
            .get("wib.dev/gcp-binding")
            .map(String::as_str),
        Some("first")
    );

    // A binding for another cloud on the same ServiceAccount is no conflict.
    env.apply(&binding_yaml("other-cloud", "app", "aws", true))
        .await
        .expect("aws binding");
    env.wait_condition(NS, "other-cloud", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("aws coexists");

    env.delete_binding(NS, "first")
        .await
        .expect("first deleted");
    env.wait_condition(NS, "second", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("second takes over once first is gone");
    env.wait_service_account(NS, "app", "annotated by second", |sa| {
        sa.is_some_and(|sa| {
            sa.annotations()
                .get("wib.dev/gcp-binding")
                .map(String::as_str)
                == Some("second")
        })
    })
    .await
    .expect("annotation names the new holder");
}

/// What a platform team's admission policy says when it refuses wib's
/// ServiceAccount write: a ValidatingAdmissionPolicy, as Kyverno or
/// Gatekeeper would, denying `automountServiceAccountToken: true` in NS.
const NO_AUTOMOUNT: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: no-automount
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["serviceaccounts"]
  validations:
  - expression: "!has(object.automountServiceAccountToken) || !object.automountServiceAccountToken"
    message: "platform policy: ServiceAccounts must not automount their token"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: no-automount
spec:
  policyName: no-automount
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: team-a
"#;

fn automount_yaml(name: &str, automount: bool) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  serviceAccount:\n    name: {name}\n    automountToken: {automount}\n  gcp: {{}}\n"
    )
}

/// Until the API server enforces the policy, a ServiceAccount that breaks
/// it is still admitted: wait for a dry-run create to be refused.
async fn wait_policy_enforced(env: &Env) {
    let probe: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "policy-probe"}, "automountServiceAccountToken": true}),
    )
    .expect("probe");
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    for _ in 0..100 {
        if env
            .service_accounts(NS)
            .create(&params, &probe)
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the ValidatingAdmissionPolicy was never enforced");
}

#[tokio::test]
async fn a_service_account_write_refused_by_admission_reaches_the_binding_and_clears_when_lifted() {
    let env = env().await;
    env.apply(&automount_yaml("changed", false))
        .await
        .expect("binding");
    env.wait_condition(NS, "changed", READY, "True", "Provisioned")
        .await
        .expect("Ready before the policy");

    env.apply(NO_AUTOMOUNT).await.expect("policy");
    wait_policy_enforced(&env).await;

    // A Ready binding whose spec changes: the refusal is reported for the
    // new generation, not hidden behind the old Ready=True.
    env.apply(&automount_yaml("changed", true))
        .await
        .expect("spec change");
    let changed = env
        .wait_condition(
            NS,
            "changed",
            SERVICE_ACCOUNT_READY,
            "False",
            "ServiceAccountRefused",
        )
        .await
        .expect("refusal reported");
    let ready = condition(&changed, READY).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ServiceAccountRefused")
    );
    assert!(
        ready
            .message
            .contains("platform policy: ServiceAccounts must not automount their token"),
        "the API server's words: {}",
        ready.message
    );
    let status = changed.status.as_ref().expect("status");
    assert_eq!(status.observed_generation, changed.metadata.generation);

    // A new binding: its cloud identity is made, and the refused
    // ServiceAccount step is on its status, not a blank READY column.
    env.apply(&automount_yaml("fresh", true))
        .await
        .expect("new binding");
    let fresh = env
        .wait_condition(NS, "fresh", READY, "False", "ServiceAccountRefused")
        .await
        .expect("new binding reports the refusal");
    assert_eq!(
        condition(&fresh, "IdentityReady").map(|c| c.status.as_str()),
        Some("True"),
        "the cloud identity is in place and said so"
    );
    assert!(
        fresh
            .status
            .as_ref()
            .and_then(|s| s.identity.as_ref())
            .is_some()
    );
    for name in ["changed", "fresh"] {
        env.wait_events(NS, name, &["ServiceAccountRefused"])
            .await
            .expect("a Warning Event says it");
    }

    // Lifting the policy: both turn Ready on their own retries.
    let bindings: kube::Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    > = kube::Api::all(env.client.clone());
    bindings
        .delete("no-automount", &Default::default())
        .await
        .expect("policy lifted");
    for name in ["changed", "fresh"] {
        env.wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .expect("Ready once the policy is lifted");
        let sa = env.service_accounts(NS).get(name).await.expect("sa");
        assert_eq!(sa.automount_service_account_token, Some(true));
    }
}
