//! The AWS cloud on its own: `AwsProvider` driven through observe → plan →
//! execute against moto, with no controller and no CRDs. A control plane
//! runs only as the issuer of wib's own web identity token (the file moto's
//! STS exchanges), so each case is a few calls, and many fit in one test.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::Wib;

use aws_sdk_iam::Client as IamClient;
use serde_json::{Value, json};
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::Reason;
use wib_cloud::aws::credentials::WebIdentity;
use wib_cloud::aws::{AwsProvider, Settings, naming, policy};
use wib_testenv::ControlPlane;
use wib_testenv::moto::{ACCOUNT, Moto, REGION, STS_AUDIENCE};

const CLUSTER: &str = "tier";
const NS: &str = "team";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

/// One control plane (issuer only), moto and wib's AWS cloud.
struct Rig {
    moto: Moto,
    wib: Wib<AwsProvider>,
    /// A client of its own, to make and read changes as someone else would.
    iam: IamClient,
    _cp: ControlPlane,
}

/// The settings moto's operator environment describes, read from it rather
/// than from the process environment (the tests run in parallel threads).
fn settings(moto: &Moto) -> Settings {
    let env: BTreeMap<&str, &str> = moto
        .operator_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let var = |key: &str| env.get(key).map(|v| v.to_string()).expect(key);
    Settings {
        region: var("AWS_REGION"),
        endpoint: Some(var("AWS_ENDPOINT_URL")),
        web_identity: Some(WebIdentity {
            token_file: var("AWS_WEB_IDENTITY_TOKEN_FILE").into(),
            role_arn: var("AWS_ROLE_ARN"),
            session_name: var("AWS_ROLE_SESSION_NAME"),
        }),
        // moto has no quota; the cases are many.
        limits: wib_cloud::limiter::Limits::flat(1000.0),
        trust_policy_max_chars: policy::TRUST_POLICY_MAX_CHARS,
        // Every pass reads the fleet afresh: drift made a moment ago is seen.
        fleet_snapshot_ttl: Duration::ZERO,
    }
}

/// moto accepts any access key; wib's cloud itself uses web identity.
fn iam_client(moto: &Moto) -> IamClient {
    let credentials =
        aws_credential_types::Credentials::new("testing", "testing", None, None, "wib-tier");
    let config = aws_sdk_iam::config::Builder::new()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(aws_sdk_iam::config::Region::new(REGION))
        .endpoint_url(&moto.url)
        .credentials_provider(credentials)
        .http_client(wib_cloud::aws::http_client().expect("HTTP client"))
        .build();
    IamClient::from_conf(config)
}

impl Rig {
    async fn start() -> Self {
        Self::with_fleet_ttl(Duration::ZERO).await
    }

    async fn with_fleet_ttl(ttl: Duration) -> Self {
        let cp = common::issuer_only_control_plane().await;
        let moto = Moto::start(&cp).await.expect("moto");
        let mut settings = settings(&moto);
        settings.fleet_snapshot_ttl = ttl;
        let cloud = AwsProvider::new(Arc::new(wib_cloud::calls::Unobserved), settings)
            .await
            .expect("AWS cloud");
        let wib = Wib::new(
            cloud,
            json!({"clusterName": CLUSTER,
                     "allowedScopes": ["arn:aws:iam::aws:policy", format!("arn:aws:iam::{ACCOUNT}:policy")],
                     "aws": {"accountId": ACCOUNT, "createOidcProvider": true}}),
            &cp,
        );
        Self {
            iam: iam_client(&moto),
            moto,
            wib,
            _cp: cp,
        }
    }

    /// The IAM calls moto served since `start_recording`, by action:
    /// (writes, reads).
    async fn recorded(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let calls = self.moto.recorded_actions("iam").await.expect("recording");
        calls
            .into_iter()
            .partition(|(action, _)| wib_cloud::calls::is_write(action))
    }

    /// The issuer as IAM keys its trust conditions.
    fn issuer_key(&self) -> String {
        naming::issuer_key(&self.wib.issuer)
    }

    /// Roles IAM holds whose name contains `part`.
    async fn roles_named(&self, part: &str) -> usize {
        let roles = self
            .iam
            .list_roles()
            .max_items(1000)
            .send()
            .await
            .expect("roles");
        roles
            .roles()
            .iter()
            .filter(|r| r.role_name().contains(part))
            .count()
    }
}

/// A role as IAM holds it: trust policy, attached policies, inline ones.
#[derive(Debug)]
struct RoleState {
    trust: Value,
    tags: BTreeMap<String, String>,
    attached: Vec<String>,
    inline: BTreeMap<String, Value>,
}

impl RoleState {
    /// Whether the trust policy holds exactly `statement` and nothing else.
    fn trusts_only(&self, statement: &Value) -> bool {
        match self.trust["Statement"].as_array().map(Vec::as_slice) {
            Some([one]) => policy::same(one, statement),
            _ => false,
        }
    }
}

impl Rig {
    async fn role_state(&self, name: &str) -> Option<RoleState> {
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(out) => out.role?,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                return None;
            }
            Err(e) => panic!("GetRole {name}: {e:?}"),
        };
        let listed = self.iam.list_attached_role_policies().role_name(name);
        let attached = listed.send().await.expect("attachments");
        let names = self.iam.list_role_policies().role_name(name).send();
        let mut inline = BTreeMap::new();
        for policy_name in names.await.expect("inline").policy_names() {
            let read = self.iam.get_role_policy().role_name(name);
            let doc = read.policy_name(policy_name).send().await.expect("inline");
            let parsed = policy::parse(doc.policy_document()).expect("inline JSON");
            inline.insert(policy_name.clone(), parsed);
        }
        let tags = self.iam.list_role_tags().role_name(name).send();
        let tags = tags.await.expect("tags");
        Some(RoleState {
            tags: tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            trust: policy::parse(role.assume_role_policy_document().unwrap_or_default())
                .expect("trust JSON"),
            attached: attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect(),
            inline,
        })
    }

    /// The trust statements that let someone in.
    async fn allowed(&self, role: &str) -> Vec<Value> {
        let state = self.role_state(role).await.expect("role");
        let statements = state.trust["Statement"].as_array().cloned();
        statements
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["Effect"] == "Allow")
            .collect()
    }

    /// The one trust statement wib writes for `sa`: its OIDC provider, and
    /// exactly that ServiceAccount with STS's audience.
    fn statement_for(&self, sa: &str) -> Value {
        let key = self.issuer_key();
        json!({
            "Sid": naming::statement_id(CLUSTER, NS, sa),
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{key}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{key}:sub"): format!("system:serviceaccount:{NS}:{sa}"),
                format!("{key}:aud"): STS_AUDIENCE,
            }},
        })
    }
}

fn logs_policy(action: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": action, "Resource": "*"}]})
}

/// A binding of ServiceAccount `name` to its role, with `managed` policies
/// attached and, when `inline`, the `logs` inline policy; `extra` goes into
/// the spec as is (a deletion policy).
fn binding(
    name: &str,
    uid: &str,
    managed: &[&str],
    inline: bool,
    extra: Value,
) -> WorkloadIdentityBinding {
    let inline: Vec<Value> = inline
        .then(|| json!({"name": "logs", "document": logs_policy("logs:PutLogEvents").to_string()}))
        .into_iter()
        .collect();
    let mut spec = json!({
        "serviceAccount": {"name": name},
        "aws": {"managedPolicyArns": managed, "inlinePolicies": inline},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    common::binding(name, NS, uid, spec)
}

fn role(binding: &str) -> String {
    naming::role_name(CLUSTER, NS, binding)
}

#[tokio::test]
async fn create_steady_state_spec_change_and_cleanup_through_the_steps() {
    let rig = Rig::start().await;
    let b = binding("app-one", "u1", &[READ_ONLY], true, json!({}));
    let created = rig.wib.reconcile(&b).await.expect("created");
    let name = role("app-one");
    assert_eq!(
        created.writes,
        [
            format!("created IAM OIDC provider for {}", rig.wib.issuer),
            format!("created role {name}"),
            format!("attached {READ_ONLY}"),
            "put inline policy logs".to_string(),
        ]
    );
    let state = rig.role_state(&name).await.expect("role");
    let only = rig.statement_for("app-one");
    assert!(state.trusts_only(&only), "{}", state.trust);
    assert_eq!(state.attached, [READ_ONLY]);
    assert_eq!(state.inline.keys().collect::<Vec<_>>(), ["logs"]);
    assert!(policy::same(
        &state.inline["logs"],
        &logs_policy("logs:PutLogEvents")
    ));

    rig.moto.start_recording().await.expect("recording");
    let steady = rig.wib.reconcile(&b).await.expect("steady");
    assert!(steady.writes.is_empty(), "{:?}", steady.writes);
    let (writes, reads) = rig.recorded().await;
    assert_eq!(writes, BTreeMap::new(), "a steady state writes nothing");
    assert!(
        reads.contains_key("GetAccountAuthorizationDetails"),
        "the pass was recorded: {reads:?}"
    );

    let edited = binding("app-one", "u1", &[S3_READ_ONLY], true, json!({}));
    let changed = rig.wib.reconcile(&edited).await.expect("spec changed");
    // IAM has no tags per attachment, so the role's tags mark which policies
    // are wib's: both policies before the swap, only the new one after it,
    // so a pass cut short in between still knows what to detach.
    let marked = format!("tagged role {name} with the policies wib manages");
    assert_eq!(
        changed.writes,
        [
            marked.clone(),
            format!("attached {S3_READ_ONLY}"),
            format!("detached {READ_ONLY}"),
            marked,
        ]
    );
    let state = rig.role_state(&name).await.expect("role");
    assert_eq!(state.attached, [S3_READ_ONLY]);
    assert_eq!(
        state.tags[naming::TAG_MANAGED_POLICIES],
        naming::marks([S3_READ_ONLY])
    );

    rig.wib.cleanup(&edited).await.expect("cleanup");
    assert!(rig.role_state(&name).await.is_none(), "role left behind");
}

#[tokio::test]
async fn retain_keeps_the_role_and_its_policies_and_drops_only_the_trust_statement() {
    let rig = Rig::start().await;
    let kept = binding(
        "kept",
        "u5",
        &[READ_ONLY],
        true,
        json!({"deletionPolicy": "Retain"}),
    );
    rig.wib.reconcile(&kept).await.expect("created");
    assert_eq!(rig.allowed(&role("kept")).await.len(), 1);

    rig.wib.cleanup(&kept).await.expect("cleanup");
    let state = rig.role_state(&role("kept")).await.expect("role retained");
    assert_eq!(state.attached, [READ_ONLY]);
    assert_eq!(state.inline.keys().collect::<Vec<_>>(), ["logs"]);
    assert_eq!(
        rig.allowed(&role("kept")).await,
        Vec::<Value>::new(),
        "{}",
        state.trust
    );
}

#[tokio::test]
async fn drift_made_in_iam_is_put_back_by_one_reconcile_that_names_it() {
    let rig = Rig::start().await;
    let b = binding("drifty", "u2", &[READ_ONLY], false, json!({}));
    rig.wib.reconcile(&b).await.expect("created");
    let name = role("drifty");

    // Out of band: the policy detached, the trust widened to every
    // ServiceAccount of the cluster.
    let detach = rig.iam.detach_role_policy().role_name(&name);
    detach.policy_arn(READ_ONLY).send().await.expect("detach");
    let mut widened = rig.role_state(&name).await.expect("role").trust;
    widened["Statement"][0]["Condition"] = json!({"StringLike": {
        format!("{}:sub", rig.issuer_key()): "system:serviceaccount:*:*"
    }});
    let update = rig.iam.update_assume_role_policy().role_name(&name);
    update
        .policy_document(widened.to_string())
        .send()
        .await
        .expect("widen");

    let repaired = rig.wib.reconcile(&b).await.expect("repaired");
    assert_eq!(
        repaired.writes,
        [
            format!("put the trust policy of role {name}"),
            format!("attached {READ_ONLY}")
        ]
    );
    let state = rig.role_state(&name).await.expect("role");
    assert_eq!(state.attached, [READ_ONLY]);
    let only = rig.statement_for("drifty");
    assert!(state.trusts_only(&only), "{}", state.trust);
    let steady = rig.wib.reconcile(&b).await.expect("steady");
    assert!(steady.writes.is_empty(), "{:?}", steady.writes);
}

#[tokio::test]
async fn a_failure_between_actions_is_finished_by_the_next_pass_without_duplicates() {
    let rig = Rig::start().await;
    // IAM's answer to a concurrent change: an error the SDK does not retry.
    rig.moto
        .fail("AttachRolePolicy", 409, "ConcurrentModification", 1)
        .await
        .expect("fault");
    let b = binding("half-made", "u3", &[READ_ONLY], true, json!({}));
    let failed = rig
        .wib
        .reconcile(&b)
        .await
        .expect_err("the attachment fails");
    assert_eq!(failed.reason, Reason::TransientError, "{failed}");
    assert_eq!(
        rig.moto.failed("AttachRolePolicy").await.expect("faults"),
        1
    );
    let state = rig
        .role_state(&role("half-made"))
        .await
        .expect("created before the failure");
    assert!(
        state.attached.is_empty() && state.inline.is_empty(),
        "{state:?}"
    );

    let outcome = rig.wib.reconcile(&b).await.expect("finished");
    assert_eq!(
        outcome.writes,
        [
            format!("attached {READ_ONLY}"),
            "put inline policy logs".to_string()
        ],
        "only what was left"
    );
    assert_eq!(rig.roles_named("half-made").await, 1);
    assert_eq!(rig.allowed(&role("half-made")).await.len(), 1);
}

#[tokio::test]
async fn throttling_is_reported_as_throttled_with_no_wait_named() {
    let rig = Rig::start().await;
    // More than the SDK's own attempts: wib sees the throttling.
    rig.moto
        .fail("GetRole", 400, "Throttling", 10)
        .await
        .expect("fault");
    let error = rig
        .wib
        .reconcile(&binding("patient", "u4", &[], false, json!({})))
        .await
        .expect_err("throttled");
    assert_eq!(error.reason, Reason::Throttled, "{error}");
    // IAM names no wait: the controller's backoff decides.
    assert_eq!(error.retry_after, None);
    assert!(rig.moto.failed("GetRole").await.expect("faults") >= 1);
}

/// Many bindings, one pass each way: each is created with exactly its
/// policies, a second pass writes nothing, and cleanup leaves no role.
#[tokio::test]
async fn fifty_bindings_round_trip_with_no_steady_state_writes() {
    // A fleet read lasts two seconds: the steady pass after it is served
    // by one.
    let ttl = Duration::from_secs(2);
    let rig = Rig::with_fleet_ttl(ttl).await;
    let managed = [READ_ONLY, S3_READ_ONLY];
    let bindings: Vec<WorkloadIdentityBinding> = (0..50)
        .map(|i| {
            let name = format!("app-{i:02}");
            binding(
                &name,
                &format!("uid-{i}"),
                &managed[..1 + i % 2],
                i % 3 == 0,
                json!({}),
            )
        })
        .collect();
    rig.wib.create_all(&bindings, ttl).await;
    rig.moto.start_recording().await.expect("recording");
    rig.wib.steady_pass(&bindings).await;
    let (writes, reads) = rig.recorded().await;
    assert_eq!(writes, BTreeMap::new(), "steady writes");
    // One fleet read (a page of roles, a page of session lengths) for all
    // fifty, and the OIDC provider at most once: at most 0.06 a binding.
    assert!(
        reads.values().sum::<u64>() <= 3,
        "steady-state reads of 50 bindings: {reads:?}"
    );
    assert_eq!(
        rig.roles_named(&format!("wib-{CLUSTER}-{NS}-app-")).await,
        50
    );
    for (i, b) in bindings.iter().enumerate() {
        let name = role(&format!("app-{i:02}"));
        let state = rig.role_state(&name).await.expect("role");
        assert_eq!(state.attached.len(), 1 + i % 2, "{name}");
        assert_eq!(state.inline.len(), usize::from(i % 3 == 0), "{name}");
        rig.wib.cleanup(b).await.expect("cleanup");
        assert!(rig.role_state(&name).await.is_none(), "{name}");
    }
    assert_eq!(rig.roles_named(&format!("wib-{CLUSTER}-{NS}-")).await, 0);
}
