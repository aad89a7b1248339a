//! AWS end to end: the operator binary, the local control plane and moto,
//! reached only through aws-sdk-iam; the operator authenticates with its own
//! web identity, and a pod stand-in exchanges its projected token through
//! aws-config's web-identity provider.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_iam::Client as Iam;
use base64::Engine;
use kube::ResourceExt;
use serde_json::{Value, json};
use wib_api::conditions::READY;
use wib_cloud::aws::policy;
use wib_e2e::Env;
use wib_e2e::scenarios::{self, CloudUnderTest, Refusal, Snapshot};
use wib_testenv::moto::{ACCOUNT, REGION, STS_AUDIENCE};

const CLUSTER: &str = "eks-qa";
const NS: &str = "my-namespace";
const SA: &str = "my-ksa";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

/// The test provider: AWS-managed and the account's own policies may be
/// attached.
fn provider(extra: &str) -> String {
    format!(
        r#"apiVersion: wib.dev/v1alpha1
kind: ClusterIdentityProvider
metadata:
  name: aws
  annotations:
    wib.dev/is-default-provider: "true"
spec:
  clusterName: {CLUSTER}
  allowedScopes:
    - arn:aws:iam::aws:policy
    - arn:aws:iam::{ACCOUNT}:policy
  aws:
    accountId: "{ACCOUNT}"
    createOidcProvider: true{extra}
"#
    )
}

fn binding(name: &str, sa: &str, aws: &str) -> String {
    format!(
        r#"apiVersion: wib.dev/v1alpha1
kind: WorkloadIdentityBinding
metadata:
  name: {name}
  namespace: {NS}
spec:
  serviceAccount:
    name: {sa}
  aws:
{aws}"#
    )
}

async fn env(provider_extra: &str) -> Env {
    let env = Env::start_aws()
        .await
        .expect("control plane, moto and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider(provider_extra))
        .await
        .expect("provider");
    env
}

fn role_name(binding: &str) -> String {
    wib_cloud::aws::naming::role_name(CLUSTER, NS, binding)
}

/// The role as moto holds it: trust policy, tags, attachments, inline policies.
struct RoleState {
    trust: Value,
    tags: BTreeMap<String, String>,
    attached: Vec<String>,
    inline: BTreeMap<String, Value>,
    boundary: Option<String>,
}

async fn role_state(iam: &Iam, name: &str) -> Option<RoleState> {
    let role = match iam.get_role().role_name(name).send().await {
        Ok(out) => out.role?.clone(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            return None;
        }
        Err(e) => panic!("GetRole {name}: {e:?}"),
    };
    let tags = iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .expect("tags")
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .expect("attachments")
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    let mut inline = BTreeMap::new();
    for policy_name in iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .expect("inline")
        .policy_names()
    {
        // Listed, then read: gone in between means absent now (seen once
        // under load: moto answered NoSuchEntity for a policy it had just
        // listed while wib was putting the drifted one back).
        let doc = match iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .send()
            .await
        {
            Ok(doc) => doc,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                continue;
            }
            Err(e) => panic!("inline policy {policy_name}: {e:?}"),
        };
        inline.insert(
            policy_name.clone(),
            policy::parse(doc.policy_document()).expect("inline JSON"),
        );
    }
    Some(RoleState {
        trust: policy::parse(role.assume_role_policy_document().unwrap_or_default())
            .expect("trust JSON"),
        tags,
        attached,
        inline,
        boundary: role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string),
    })
}

fn issuer_key(env: &Env) -> String {
    env.cp
        .issuer()
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// A role made directly in IAM as wib tags one for `binding` (name, uid) of
/// this namespace, trusting `subject` under statement ID `sid`: (ARN, trust
/// policy).
async fn role_as_wib_tagged_it(
    env: &Env,
    name: &str,
    (binding, uid): (&str, &str),
    sid: &str,
    subject: &str,
) -> (String, Value) {
    let key = issuer_key(env);
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Federated": oidc_arn(env)},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{key}:sub"): subject, format!("{key}:aud"): STS_AUDIENCE}},
    }]});
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .expect("tag")
    };
    let arn = env
        .iam()
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .tags(tag("wib.dev_cluster", CLUSTER))
        .tags(tag("wib.dev_namespace", NS))
        .tags(tag("wib.dev_binding", binding))
        .tags(tag("wib.dev_uid", uid))
        .send()
        .await
        .expect("role")
        .role
        .map(|r| r.arn)
        .expect("arn");
    (arn, trust)
}

fn oidc_arn(env: &Env) -> String {
    format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{}", issuer_key(env))
}

/// The JWT's claims, read without verification (moto does not verify them).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

/// Runs the pod stand-in with the environment EKS's webhook injects.
fn pod_exchange(env: &Env, role_arn: &str, token: &str) -> (bool, String) {
    let token_file = env.cp.dir().join("pod-aws-token");
    std::fs::write(&token_file, token).expect("token file");
    wib_e2e::run_pod(
        "wib-e2e-pod-aws",
        &[
            ("AWS_ROLE_ARN", role_arn.as_ref()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_os_str()),
            ("AWS_ROLE_SESSION_NAME", "pod".as_ref()),
            ("AWS_ENDPOINT_URL", env.moto().url.as_ref()),
            ("AWS_REGION", REGION.as_ref()),
            ("AWS_EC2_METADATA_DISABLED", "true".as_ref()),
        ],
    )
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    wib_e2e::poll_until(wib_e2e::WAIT, what, async || {
        check().await.ok_or_else(|| "not yet".to_string())
    })
    .await
    .expect(what)
}

#[tokio::test]
async fn public_eks_guide_binding_becomes_ready_and_the_pod_token_assumes_the_role() {
    let env = env("").await;
    let iam = env.iam();
    env.apply(&binding(
        SA,
        SA,
        &format!(
            r#"    managedPolicyArns: [{READ_ONLY}]
    inlinePolicies:
      - name: s3-read
        document: |
          {{"Version": "2012-10-17", "Statement": [
            {{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::my-bucket/*"}}]}}
    tokenExpirationSeconds: 3600
    stsRegionalEndpoints: true
"#
        ),
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, SA, READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let role = role_name(SA);
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    let status = b.status.clone().expect("status");
    let aws = status.aws.clone().expect("status.aws");
    assert_eq!(aws.role_arn.as_deref(), Some(role_arn.as_str()));
    assert_eq!(
        aws.oidc_provider_arn.as_deref(),
        Some(oidc_arn(&env).as_str())
    );
    assert_eq!(
        aws.policies,
        vec![READ_ONLY.to_string(), "s3-read".to_string()]
    );
    assert_eq!(status.identity.as_deref(), Some(role_arn.as_str()));

    // moto holds exactly the expected role.
    let state = role_state(&iam, &role).await.expect("role exists");
    let key = issuer_key(&env);
    let expected = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_arn(&env)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{key}:sub"): format!("system:serviceaccount:{NS}:{SA}"),
                format!("{key}:aud"): STS_AUDIENCE,
            }},
        }],
    });
    let mut trust = state.trust.clone();
    let sid = trust["Statement"][0]["Sid"].take();
    assert!(sid.as_str().is_some_and(|s| s.starts_with("wib")), "{sid}");
    trust["Statement"][0]
        .as_object_mut()
        .expect("statement")
        .remove("Sid");
    assert!(policy::same(&trust, &expected), "trust policy {trust}");
    assert_eq!(state.attached, vec![READ_ONLY.to_string()]);
    assert_eq!(
        state.inline["s3-read"]["Statement"][0]["Resource"],
        "arn:aws:s3:::my-bucket/*"
    );
    assert_eq!(state.tags["wib.dev_cluster"], CLUSTER);
    assert_eq!(state.tags["wib.dev_namespace"], NS);
    assert_eq!(state.tags["wib.dev_binding"], SA);
    assert_eq!(state.tags["wib.dev_uid"], b.uid().expect("uid"));

    // The IAM OIDC provider was created for the issuer, with the audience.
    let oidc = iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(oidc_arn(&env))
        .send()
        .await
        .expect("OIDC provider");
    assert_eq!(oidc.client_id_list(), [STS_AUDIENCE.to_string()]);

    // The ServiceAccount carries what EKS's webhook reads.
    let sa = env
        .wait_service_account(NS, SA, "annotated", |sa| {
            sa.is_some_and(|sa| sa.annotations().contains_key("eks.amazonaws.com/role-arn"))
        })
        .await
        .expect("SA")
        .expect("exists");
    let annotations = sa.annotations();
    assert_eq!(annotations["eks.amazonaws.com/role-arn"], role_arn);
    assert_eq!(annotations["eks.amazonaws.com/token-expiration"], "3600");
    assert_eq!(
        annotations["eks.amazonaws.com/sts-regional-endpoints"],
        "true"
    );
    assert!(!annotations.contains_key("eks.amazonaws.com/audience"));
    assert_eq!(sa.automount_service_account_token, Some(false));

    // Web identity: the pod's projected token, as EKS would mount it. moto
    // does not evaluate trust policies, so the claims are checked against
    // the role's conditions here.
    let token = env
        .cp
        .service_account_token(NS, SA, STS_AUDIENCE)
        .await
        .expect("token");
    let claims = claims(&token);
    let condition = &state.trust["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(claims["iss"], env.cp.issuer().trim_end_matches('/'));
    assert_eq!(
        format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
            claims["iss"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("https://")
        ),
        state.trust["Statement"][0]["Principal"]["Federated"]
    );
    assert_eq!(claims["sub"], condition[format!("{key}:sub")]);
    let audiences: Vec<String> = match &claims["aud"] {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("aud {other}"),
    };
    assert!(
        audiences
            .iter()
            .any(|a| condition[format!("{key}:aud")] == a.as_str())
    );
    let (ok, out) = pod_exchange(&env, &role_arn, &token);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "caller arn:aws:sts::{ACCOUNT}:assumed-role/{role}/"
        )),
        "{out}"
    );

    // Delete (the default policy): role, attachment and inline policy gone.
    env.delete_binding(NS, SA).await.expect("deleted");
    assert!(role_state(&iam, &role).await.is_none(), "role left behind");
    env.wait_service_account(NS, SA, "deleted", |sa| sa.is_none())
        .await
        .expect("SA gone");
    // The cluster's OIDC provider is shared by every binding: it stays.
    assert!(
        iam.get_open_id_connect_provider()
            .open_id_connect_provider_arn(oidc_arn(&env))
            .send()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_providers_boundary_and_a_custom_audience_are_applied_and_the_boundary_is_put_back() {
    let env = env("\n    permissionsBoundaryArn: arn:aws:iam::aws:policy/PowerUserAccess\n    allowedAudiences: [my-audience]").await;
    let iam = env.iam();
    env.apply(&binding(
        "kept",
        "kept",
        &format!("    managedPolicyArns: [{READ_ONLY}]\n    audience: my-audience\n"),
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "kept", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let role = role_name("kept");
    let state = role_state(&iam, &role).await.expect("role");
    // The provider's permissions boundary is on the role; the audience is
    // in the trust policy and on the ServiceAccount.
    assert_eq!(
        state.boundary.as_deref(),
        Some("arn:aws:iam::aws:policy/PowerUserAccess")
    );
    assert_eq!(
        state.trust["Statement"][0]["Condition"]["StringEquals"]
            [format!("{}:aud", issuer_key(&env))],
        "my-audience"
    );
    env.wait_service_account(NS, "kept", "audience annotation", |sa| {
        sa.is_some_and(|sa| {
            sa.annotations()
                .get("eks.amazonaws.com/audience")
                .map(String::as_str)
                == Some("my-audience")
        })
    })
    .await
    .expect("SA");

    // The boundary is enforced: removed out of band, it is put back.
    iam.delete_role_permissions_boundary()
        .role_name(&role)
        .send()
        .await
        .expect("remove boundary");
    wait_for("boundary restored", async || {
        role_state(&iam, &role)
            .await
            .and_then(|s| s.boundary)
            .filter(|b| b.ends_with("/PowerUserAccess"))
    })
    .await;
}

/// AWS in the shared scenarios: one AWS-managed policy attached.
struct Aws;

impl CloudUnderTest for Aws {
    const NAMESPACE: &'static str = NS;
    const ANNOTATION: (&'static str, Option<&'static str>) = ("eks.amazonaws.com/role-arn", None);

    async fn start() -> Env {
        env("").await
    }

    fn binding(name: &str, extra: &str) -> String {
        let aws = format!("    managedPolicyArns: [{READ_ONLY}]\n");
        format!("{}{extra}", binding(name, name, &aws))
    }

    async fn snapshot(env: &Env, name: &str) -> Snapshot {
        let Some(role) = role_state(&env.iam(), &role_name(name)).await else {
            return Snapshot {
                identities: 0,
                federated: false,
                grants: 0,
            };
        };
        let subject = format!("system:serviceaccount:{NS}:{name}");
        let sub_key = format!("{}:sub", issuer_key(env));
        let federated = role.trust["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                s["Effect"] == "Allow"
                    && s["Condition"]["StringEquals"][&sub_key] == subject.as_str()
            });
        Snapshot {
            identities: 1,
            federated,
            grants: role.attached.iter().filter(|a| *a == READ_ONLY).count(),
        }
    }

    async fn remove_federation_and_grant(env: &Env, name: &str) {
        let iam = env.iam();
        iam.detach_role_policy()
            .role_name(role_name(name))
            .policy_arn(READ_ONLY)
            .send()
            .await
            .expect("detach");
        let foreign = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        iam.update_assume_role_policy()
            .role_name(role_name(name))
            .policy_document(foreign)
            .send()
            .await
            .expect("trust replaced");
    }

    async fn hold_grant_write(env: &Env) {
        env.moto()
            .hold("AttachRolePolicy", 5000, 1)
            .await
            .expect("hold");
    }

    async fn grant_write_reached(env: &Env) -> bool {
        env.moto().held("AttachRolePolicy").await.ok() == Some(1)
    }

    async fn refusals(env: &Env) -> Vec<Refusal> {
        // An untagged role of the wanted name.
        let foreign_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        env.iam()
            .create_role()
            .role_name(role_name("taken"))
            .assume_role_policy_document(foreign_trust)
            .send()
            .await
            .expect("foreign role");
        let with_policy =
            |name, arn: &str| binding(name, name, &format!("    managedPolicyArns: [{arn}]\n"));
        vec![
            Refusal {
                name: "admin",
                yaml: with_policy("admin", "arn:aws:iam::aws:policy/AdministratorAccess"),
                reason: "PolicyNotAllowed",
                names: "AdministratorAccess",
            },
            Refusal {
                name: "missing",
                yaml: with_policy(
                    "missing",
                    &format!("arn:aws:iam::{ACCOUNT}:policy/does-not-exist"),
                ),
                reason: "RoleNotFound",
                names: "does-not-exist",
            },
            Refusal {
                name: "taken",
                yaml: with_policy("taken", READ_ONLY),
                reason: "AdoptionNotAllowed",
                names: "taken",
            },
        ]
    }

    async fn writes(env: &Env) -> u64 {
        let metrics = env.metrics().await.expect("metrics");
        wib_e2e::cloud_calls(&metrics, "aws")
            .iter()
            .filter(|(operation, _)| wib_cloud::calls::is_write(operation))
            .map(|(_, n)| n)
            .sum()
    }
}

#[tokio::test]
async fn drift_is_put_back_with_an_event() {
    scenarios::drift_is_put_back_with_an_event::<Aws>().await;
}

#[tokio::test]
async fn a_crash_while_a_grant_is_written_leaves_no_duplicates() {
    scenarios::a_crash_while_a_grant_is_written_leaves_no_duplicates::<Aws>().await;
}

#[tokio::test]
async fn retain_keeps_the_role_and_its_policy_and_drops_only_the_federation() {
    scenarios::retain_keeps_the_identity_and_grant_and_drops_only_the_federation::<Aws>().await;
}

#[tokio::test]
async fn every_kind_of_drift_is_put_back_and_a_spec_change_detaches_only_wibs_own_policy() {
    let env = env("").await;
    let iam = env.iam();
    let role = role_name("drifty");
    env.apply(&binding(
        "drifty",
        "drifty",
        &format!(
            "    managedPolicyArns: [{READ_ONLY}]\n    inlinePolicies:\n      - name: logs\n        document: '{{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Effect\": \"Allow\", \"Action\": \"logs:PutLogEvents\", \"Resource\": \"*\"}}]}}'\n"
        ),
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "drifty", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let before = env
        .metric_sum("wib_drift_repairs_total", &[r#"cloud="aws""#])
        .await
        .expect("metrics");

    // Out of band: the policy detached, the trust policy widened to every
    // ServiceAccount, the inline policy edited, and someone else's policy
    // attached.
    iam.detach_role_policy()
        .role_name(&role)
        .policy_arn(READ_ONLY)
        .send()
        .await
        .expect("detach");
    let mut widened = role_state(&iam, &role).await.expect("role").trust;
    widened["Statement"][0]["Condition"] = json!({"StringLike": {
        format!("{}:sub", issuer_key(&env)): "system:serviceaccount:*:*"
    }});
    iam.update_assume_role_policy()
        .role_name(&role)
        .policy_document(widened.to_string())
        .send()
        .await
        .expect("widen trust");
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("logs")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("edit inline");
    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn(S3_READ_ONLY)
        .send()
        .await
        .expect("foreign attachment");

    let subject_key = format!("{}:sub", issuer_key(&env));
    let state = wait_for("drift put back", async || {
        let s = role_state(&iam, &role).await?;
        let trust_ok = s.trust["Statement"][0]["Condition"]["StringEquals"][&subject_key]
            == format!("system:serviceaccount:{NS}:drifty");
        let inline_ok = s
            .inline
            .get("logs")
            .is_some_and(|d| d["Statement"][0]["Action"] == "logs:PutLogEvents");
        (trust_ok && inline_ok && s.attached.contains(&READ_ONLY.to_string())).then_some(s)
    })
    .await;
    // What wib did not attach stays.
    assert!(state.attached.contains(&S3_READ_ONLY.to_string()));
    let after = env
        .metric_sum("wib_drift_repairs_total", &[r#"cloud="aws""#])
        .await
        .expect("metrics");
    assert!(after >= before + 3.0, "drift repairs {before} -> {after}");
    env.wait_events(NS, "drifty", &["DriftRepaired"])
        .await
        .expect("Events");

    // The spec drops the managed policy: wib detaches its own, never the foreign one.
    env.apply(&binding("drifty", "drifty", "    managedPolicyArns: []\n"))
        .await
        .expect("update");
    wait_for(
        "ReadOnlyAccess detached and inline policy deleted",
        async || {
            let s = role_state(&iam, &role).await?;
            (!s.attached.contains(&READ_ONLY.to_string()) && s.inline.is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(
        role_state(&iam, &role).await.expect("role").attached,
        vec![S3_READ_ONLY.to_string()]
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_nothing_written() {
    scenarios::bad_input_is_refused_with_nothing_written::<Aws>().await;
}

/// One role shared by ServiceAccounts with long names until its trust
/// policy would pass IAM's 2048 characters.
#[tokio::test]
async fn a_shared_role_whose_trust_policy_would_pass_iams_limit_refuses_only_the_last_binding() {
    let env = env("").await;
    let iam = env.iam();
    // The last one is refused before any write; the others stay Ready.
    let long = |c: char| format!("{}{}", c, "x".repeat(240));
    for (i, c) in ['a', 'b', 'c', 'd'].into_iter().enumerate() {
        env.apply(&binding(
            &format!("shared-{c}"),
            &long(c),
            "    roleName: shared-role\n",
        ))
        .await
        .expect("binding");
        if i < 3 {
            env.wait_condition(NS, &format!("shared-{c}"), READY, "True", "Provisioned")
                .await
                .expect("Ready");
        }
    }
    let b = env
        .wait_condition(NS, "shared-d", READY, "False", "TrustPolicyTooLarge")
        .await
        .expect("TrustPolicyTooLarge");
    let message = wib_e2e::condition(&b, READY)
        .expect("Ready")
        .message
        .clone();
    assert!(message.contains("2048"), "{message}");
    let state = role_state(&iam, "shared-role").await.expect("role");
    assert_eq!(state.trust["Statement"].as_array().map(Vec::len), Some(3));
    assert!(policy::size(&state.trust) <= policy::TRUST_POLICY_MAX_CHARS);
    // Each refusal is an Event too.
    env.wait_events(NS, "shared-d", &["TrustPolicyTooLarge"])
        .await
        .expect("Events");

    // Sharing: removing one binding drops only its statement.
    env.delete_binding(NS, "shared-c").await.expect("deleted");
    let state = role_state(&iam, "shared-role").await.expect("role stays");
    assert_eq!(state.trust["Statement"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn steady_state_makes_no_iam_writes_and_wibs_counts_match_motos_request_log() {
    let env = env("").await;
    env.moto().start_recording().await.expect("recording");
    env.apply(&binding(
        "steady",
        "steady",
        &format!("    managedPolicyArns: [{READ_ONLY}]\n"),
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "steady", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    // Past the first resync, count; several resyncs later, count again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = |text: &str| {
        calls(text)
            .into_iter()
            .filter(|(op, _)| wib_cloud::calls::is_write(op))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let reads = |text: &str| {
        calls(text)
            .into_iter()
            .filter(|(op, _)| !wib_cloud::calls::is_write(op))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let before = env.metrics().await.expect("metrics");
    tokio::time::sleep(Duration::from_secs(4 * 2 + 1)).await;
    let after = env.metrics().await.expect("metrics");
    let (writes_before, writes_after) = (writes(&before), writes(&after));
    let (reads_before, reads_after) = (reads(&before), reads(&after));
    assert_eq!(writes_before, writes_after, "IAM writes in a steady state");
    assert!(
        reads_after > reads_before,
        "no resync happened ({reads_before} -> {reads_after})"
    );

    // Once the binding is gone wib makes no more AWS calls: its own
    // per-operation counts then equal moto's request log exactly.
    env.delete_binding(NS, "steady").await.expect("deleted");
    let recorded = env.moto().recorded_actions("iam").await.expect("recording");
    let counted = calls(&env.metrics().await.expect("metrics"));
    assert_eq!(counted, recorded, "wib's metrics vs moto's request log");
    assert!(recorded.get("CreateRole") == Some(&1), "{recorded:?}");
    assert!(recorded.get("DeleteRole") == Some(&1), "{recorded:?}");
}

fn calls(metrics: &str) -> BTreeMap<String, u64> {
    wib_e2e::cloud_calls(metrics, "aws")
}

#[tokio::test]
async fn adoption_allowed_takes_over_an_untagged_role_and_gives_it_back_on_deletion() {
    let env = env("\n  adoption: AllowUntagged").await;
    let iam = env.iam();
    let role = role_name("adopter");
    let ec2_trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }]});
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(ec2_trust.to_string())
        .send()
        .await
        .expect("existing role");
    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn(S3_READ_ONLY)
        .send()
        .await
        .expect("existing attachment");
    env.apply(&binding(
        "adopter",
        "adopter",
        &format!("    managedPolicyArns: [{READ_ONLY}]\n"),
    ))
    .await
    .expect("binding");
    // The provider allows adoption, but the role's owner has not opted in.
    env.wait_condition(NS, "adopter", READY, "False", "AdoptionNotAllowed")
        .await
        .expect("no opt-in, no adoption");
    let opt_in = aws_sdk_iam::types::Tag::builder()
        .key("wib.dev_adopt-into")
        .value(NS)
        .build()
        .expect("tag");
    iam.tag_role()
        .role_name(&role)
        .tags(opt_in)
        .send()
        .await
        .expect("the owner opts in for this namespace");
    env.wait_condition(NS, "adopter", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let state = role_state(&iam, &role).await.expect("role");
    assert_eq!(state.tags["wib.dev_adopted"], "true");
    let mut attached = state.attached.clone();
    attached.sort();
    assert_eq!(
        attached,
        vec![S3_READ_ONLY.to_string(), READ_ONLY.to_string()]
    );
    // The role's own statement stays beside wib's.
    let statements = state.trust["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(statements.len(), 2, "{}", state.trust);
    assert!(
        statements
            .iter()
            .any(|s| s["Principal"]["Service"] == "ec2.amazonaws.com")
    );

    // Deleting the binding gives the role back as it was found.
    env.delete_binding(NS, "adopter").await.expect("deleted");
    let state = role_state(&iam, &role)
        .await
        .expect("adopted role is never deleted");
    assert_eq!(state.attached, vec![S3_READ_ONLY.to_string()]);
    assert_eq!(
        state.tags,
        BTreeMap::from([("wib.dev_adopt-into".to_string(), NS.to_string())]),
        "only the owner's own tag is left"
    );
    assert!(policy::same(&state.trust, &ec2_trust), "{}", state.trust);
}

#[tokio::test]
async fn a_role_made_under_the_old_default_name_keeps_working_after_the_upgrade() {
    let mut env = env("").await;
    let iam = env.iam();
    // What a release that joined the parts with `-` left behind: a role of
    // that name, tagged for the binding, trusted under the old statement ID,
    // and named in the binding's status. The operator is down meanwhile.
    env.operator_mut().kill();
    env.apply(&binding("legacy", "legacy", "    managedPolicyArns: []\n"))
        .await
        .expect("binding");
    let created = env.bindings(NS).get("legacy").await.expect("binding");
    let uid = created.uid().expect("uid");
    let old_name = format!("wib-{CLUSTER}-{NS}-legacy");
    let subject = format!("system:serviceaccount:{NS}:legacy");
    let sid = format!(
        "wib{}",
        wib_api::naming::short_hash(&format!("{CLUSTER}/{NS}/legacy"))
    );
    let (arn, _) = role_as_wib_tagged_it(&env, &old_name, ("legacy", &uid), &sid, &subject).await;
    env.bindings(NS)
        .patch_status(
            "legacy",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"identity": arn, "aws": {"roleArn": arn}}})),
        )
        .await
        .expect("status as the old release wrote it");
    env.operator_mut().restart().expect("upgraded operator");

    let b = env
        .wait_condition(NS, "legacy", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    assert_eq!(
        b.status.and_then(|s| s.aws).and_then(|a| a.role_arn),
        Some(arn.clone()),
        "the role keeps its name"
    );
    assert!(
        role_state(&iam, &role_name("legacy")).await.is_none(),
        "no second role under the new name"
    );
    let state = role_state(&iam, &old_name).await.expect("legacy role");
    let statements = state.trust["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        statements.len(),
        1,
        "the old statement is ours: {}",
        state.trust
    );
    assert_eq!(
        statements[0]["Condition"]["StringEquals"][format!("{}:sub", issuer_key(&env))],
        subject
    );

    env.delete_binding(NS, "legacy").await.expect("deleted");
    assert!(
        role_state(&iam, &old_name).await.is_none(),
        "deleted by its maker"
    );
}

#[tokio::test]
async fn a_trust_statement_of_wibs_id_for_another_subject_is_never_overwritten() {
    let env = env("").await;
    let iam = env.iam();
    // A role of this namespace whose statement under the ID wib gives
    // `NS/victim` admits another subject.
    let (_, trust) = role_as_wib_tagged_it(
        &env,
        "planted",
        ("owner", "someone-else"),
        &wib_cloud::aws::naming::statement_id(CLUSTER, NS, "victim"),
        "system:serviceaccount:evil:thief",
    )
    .await;
    env.moto().start_recording().await.expect("recording");
    env.apply(&binding("victim", "victim", "    roleName: planted\n"))
        .await
        .expect("binding");
    env.wait_condition(NS, "victim", READY, "False", "FederationConflict")
        .await
        .expect("conflict");
    let recorded = env.moto().recorded_actions("iam").await.expect("recording");
    assert!(
        recorded.keys().all(|op| !wib_cloud::calls::is_write(op)),
        "{recorded:?}"
    );
    let state = role_state(&iam, "planted").await.expect("role");
    assert!(policy::same(&state.trust, &trust), "{}", state.trust);
}

#[tokio::test]
async fn wib_keeps_reconciling_across_a_session_expiry_and_a_token_file_rotation() {
    let env = env("").await;
    wib_e2e::survives_expiry_and_rotation(&env, env.moto(), NS, |name| {
        binding(name, name, "    {}\n")
    })
    .await;
}

#[tokio::test]
async fn an_aws_client_that_cannot_start_reports_it_and_keeps_deletion_waiting() {
    let mut env = env("").await;
    let iam = env.iam();
    env.apply(&binding("kept", "kept", "    {}\n"))
        .await
        .expect("binding");
    env.wait_condition(NS, "kept", READY, "True", "Provisioned")
        .await
        .expect("Ready");

    // Restarted with a setting the AWS client refuses to start with.
    env.operator_mut()
        .restart_with_env("WIB_AWS_TRUST_POLICY_MAX_CHARS", "lots")
        .expect("restart");
    env.apply(&binding("later", "later", "    {}\n"))
        .await
        .expect("binding");
    let later = env
        .wait_condition(NS, "later", READY, "False", "CloudUnavailable")
        .await
        .expect("a precise reason");
    let message = &wib_e2e::condition(&later, READY).expect("Ready").message;
    assert!(
        message.contains("WIB_AWS_TRUST_POLICY_MAX_CHARS"),
        "{message}"
    );
    env.bindings(NS)
        .delete("kept", &Default::default())
        .await
        .expect("delete requested");
    let kept = env
        .wait_condition(NS, "kept", READY, "False", "DeletionBlocked")
        .await
        .expect("deletion waits");
    assert!(kept.finalizers().iter().any(|f| f == "wib.dev/cleanup"));
    assert!(
        role_state(&iam, &role_name("kept")).await.is_some(),
        "the role and its trust stay until wib can ask AWS"
    );

    // Fixed: the deletion completes and takes the role.
    env.operator_mut()
        .restart_with_env("WIB_AWS_TRUST_POLICY_MAX_CHARS", "2048")
        .expect("restart");
    env.delete_binding(NS, "kept")
        .await
        .expect("deleted once the client starts");
    assert!(role_state(&iam, &role_name("kept")).await.is_none());
    env.delete_binding(NS, "later")
        .await
        .expect("later deleted");
}

/// The cluster's issuer changes: the trust statement is re-keyed to the new
/// issuer's IAM OIDC provider (created, as the provider asks), and the one
/// wib created for the old issuer goes once no provider of the cluster has
/// that issuer. OIDC providers wib did not create for this cluster stay.
#[tokio::test]
async fn an_issuer_change_re_keys_the_trust_policy_and_retires_the_oidc_provider_wib_made_for_the_old_one()
 {
    let env = env("").await;
    let iam = env.iam();
    for (url, cluster) in [
        ("https://platform.example.com/own", None),
        ("https://other.example.com/cluster", Some("another-cluster")),
    ] {
        let mut create = iam
            .create_open_id_connect_provider()
            .url(url)
            .client_id_list(STS_AUDIENCE);
        if let Some(cluster) = cluster {
            create = create.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("wib.dev_cluster")
                    .value(cluster)
                    .build()
                    .expect("tag"),
            );
        }
        create.send().await.expect("someone else's OIDC provider");
    }
    env.apply(&binding(
        "moved",
        "moved",
        &format!("    managedPolicyArns: [{READ_ONLY}]\n"),
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "moved", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let old_arn = oidc_arn(&env);
    let new_key = "oidc.example.com/rotated";
    let new_arn = format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{new_key}");
    env.apply(&provider(&format!("\n  issuer: https://{new_key}")))
        .await
        .expect("issuer changed");

    let trust = wait_for("the trust statement names the new issuer", async || {
        let state = role_state(&iam, &role_name("moved")).await?;
        (state.trust["Statement"][0]["Principal"]["Federated"] == new_arn.as_str())
            .then_some(state.trust)
    })
    .await;
    let statements = trust["Statement"].as_array().cloned().unwrap_or_default();
    assert_eq!(statements.len(), 1, "re-keyed, not added: {trust}");
    assert_eq!(
        statements[0]["Condition"]["StringEquals"][format!("{new_key}:sub")],
        format!("system:serviceaccount:{NS}:moved"),
        "{trust}"
    );
    let listed = wait_for("the old issuer's OIDC provider is deleted", async || {
        let arns: Vec<String> = iam
            .list_open_id_connect_providers()
            .send()
            .await
            .ok()?
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn().map(str::to_string))
            .collect();
        (!arns.contains(&old_arn)).then_some(arns)
    })
    .await;
    for kept in [
        new_arn.clone(),
        format!("arn:aws:iam::{ACCOUNT}:oidc-provider/platform.example.com/own"),
        format!("arn:aws:iam::{ACCOUNT}:oidc-provider/other.example.com/cluster"),
    ] {
        assert!(listed.contains(&kept), "{kept} kept: {listed:?}");
    }
    env.wait_condition(NS, "moved", READY, "True", "Provisioned")
        .await
        .expect("still Ready");
    env.delete_binding(NS, "moved").await.expect("deleted");
    assert!(
        role_state(&iam, &role_name("moved")).await.is_none(),
        "role deleted"
    );
}

/// The provider for mode PodIdentity: associations in the EKS fake's
/// cluster, and one other account's `shared/` roles as targets.
fn pod_identity_provider() -> String {
    format!(
        "\n    eksClusterName: {}\n    allowedTargetRoleArns: [\"arn:aws:iam::{OTHER_ACCOUNT}:role/shared/*\"]",
        wib_testenv::eks::CLUSTER
    )
}

const OTHER_ACCOUNT: &str = "222222222222";

/// The EKS fake's associations of `NS`/`sa`, whoever made them.
async fn associations_of(env: &Env, sa: &str) -> Vec<Value> {
    env.eks()
        .associations()
        .await
        .expect("associations")
        .into_iter()
        .filter(|a| a["namespace"] == NS && a["serviceAccount"] == sa)
        .collect()
}

/// A pod of `sa` as EKS sets it up for Pod Identity: the node agent's URL
/// and a token file of audience `pods.eks.amazonaws.com`; the SDK's
/// container-credentials provider fetches the role's session from the agent,
/// which asks EKS Auth, which checks the role's trust policy in moto.
async fn pod_identity_exchange(env: &Env, sa: &str) -> (bool, String) {
    let token = env
        .cp
        .service_account_token(NS, sa, wib_testenv::eks::AUDIENCE)
        .await
        .expect("pod token");
    let file = env.cp.dir().join(format!("pod-identity-token-{sa}"));
    std::fs::write(&file, token).expect("token file");
    let mut vars = env.eks().container_credentials_env(&file);
    vars.extend([
        ("AWS_ENDPOINT_URL".to_string(), env.moto().url.clone()),
        ("AWS_REGION".to_string(), REGION.to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    let vars: Vec<(&str, &std::ffi::OsStr)> = vars
        .iter()
        .map(|(k, v)| (k.as_str(), std::ffi::OsStr::new(v.as_str())))
        .collect();
    wib_e2e::run_pod("wib-e2e-pod-aws", &vars)
}

/// Which ways in the role's trust policy has for `sa`: (IRSA, Pod Identity).
fn ways_in(trust: &Value, sa: &str) -> (bool, bool) {
    let statements = trust["Statement"].as_array().cloned().unwrap_or_default();
    let allows = |s: &&Value| s["Effect"] == "Allow";
    let irsa = statements.iter().filter(allows).any(|s| {
        s["Action"] == policy::WEB_IDENTITY_ACTION
            && s["Condition"]["StringEquals"].as_object().is_some_and(|c| {
                c.values()
                    .any(|v| v == &format!("system:serviceaccount:{NS}:{sa}"))
            })
    });
    let pods = statements.iter().filter(allows).any(|s| {
        s["Principal"]["Service"] == policy::PODS_PRINCIPAL
            && s["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"] == sa
    });
    (irsa, pods)
}

/// Writes to IAM (wib's own counters) and to EKS (the fake's) so far.
async fn aws_writes(env: &Env) -> (u64, Value) {
    let iam: u64 = calls(&env.metrics().await.expect("metrics"))
        .into_iter()
        .filter(|(op, _)| wib_cloud::calls::is_write(op))
        .map(|(_, n)| n)
        .sum();
    let eks = env.eks().calls().await.expect("EKS calls")["writes"].clone();
    (iam, eks)
}

/// Switches `name` to `mode` and samples, until the switch is complete,
/// that the ServiceAccount always has a way in: the association and its
/// trust statement, or the annotation and the IRSA statement. Returns the
/// number of samples taken.
async fn switch_mode_keeping_a_way_in(env: &Env, iam: &Iam, name: &str, mode: &str) -> usize {
    let role = role_name(name);
    env.apply(&binding(name, name, &format!("    mode: {mode}\n")))
        .await
        .expect("mode changed");
    let (want_irsa, want_pods) = (mode == "IRSA", mode == "PodIdentity");
    let mut samples = 0;
    wib_e2e::poll_until(wib_e2e::WAIT, "the mode switch complete", async || {
        samples += 1;
        let trust = role_state(iam, &role).await.expect("role").trust;
        let associated = !associations_of(env, name).await.is_empty();
        let annotated = env
            .service_accounts(NS)
            .get(name)
            .await
            .expect("SA")
            .annotations()
            .contains_key("eks.amazonaws.com/role-arn");
        let (irsa, pods) = ways_in(&trust, name);
        assert!(
            (irsa && annotated) || (pods && associated),
            "no way in: IRSA statement {irsa}, annotation {annotated}, Pod Identity statement {pods}, association {associated}\n{trust}"
        );
        let done = (irsa, pods, annotated, associated) == (want_irsa, want_pods, want_irsa, want_pods);
        done.then_some(()).ok_or_else(|| "switching".to_string())
    })
    .await
    .expect("switched");
    samples
}

#[tokio::test]
async fn pod_identity_associates_the_service_account_repairs_drift_and_switches_modes_without_a_gap()
 {
    let env = env(&pod_identity_provider()).await;
    let iam = env.iam();
    let name = "pods";
    env.apply(&binding(
        name,
        name,
        &format!("    mode: PodIdentity\n    managedPolicyArns: [{READ_ONLY}]\n"),
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, name, READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let role = role_name(name);
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    let aws = b.status.and_then(|s| s.aws).expect("status.aws");
    assert_eq!(aws.mode, Some(wib_api::binding::AwsMode::PodIdentity));
    assert_eq!(aws.oidc_provider_arn, None);

    // Exactly one association, wib's, for exactly this ServiceAccount.
    let found = associations_of(&env, name).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let association = &found[0];
    assert_eq!(association["roleArn"], role_arn.as_str());
    assert_eq!(association["clusterName"], wib_testenv::eks::CLUSTER);
    assert_eq!(association["tags"]["wib.dev_binding"], name);
    assert_eq!(association["tags"]["wib.dev_namespace"], NS);
    assert_eq!(
        aws.association_arn.as_deref(),
        association["associationArn"].as_str()
    );
    // The trust policy is the one Pod Identity statement; no IRSA anywhere.
    let state = role_state(&iam, &role).await.expect("role");
    assert_eq!(state.trust["Statement"].as_array().map(Vec::len), Some(1));
    assert_eq!(ways_in(&state.trust, name), (false, true));
    assert_eq!(state.attached, vec![READ_ONLY.to_string()]);
    let sa = env.service_accounts(NS).get(name).await.expect("SA");
    assert!(
        !sa.annotations().contains_key("eks.amazonaws.com/role-arn"),
        "{:?}",
        sa.annotations()
    );
    let oidc = iam
        .list_open_id_connect_providers()
        .send()
        .await
        .expect("OIDC providers");
    assert!(
        oidc.open_id_connect_provider_list().is_empty(),
        "Pod Identity needs no IAM OIDC provider"
    );

    // A pod of the ServiceAccount gets the role; a pod of another does not.
    let (ok, out) = pod_identity_exchange(&env, name).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("assumed-role/{role}/")), "{out}");
    let (ok, out) = pod_identity_exchange(&env, "someone-else").await;
    assert!(!ok, "another ServiceAccount got credentials: {out}");

    // Steady state: several resyncs, no write to IAM or EKS, and one EKS
    // read per resync (the recorded association, by ID; no listing).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = aws_writes(&env).await;
    let eks_reads = async |operation: &str| env.eks().call_count(operation).await.expect("calls");
    let (lists, describes) = (
        eks_reads("ListPodIdentityAssociations").await,
        eks_reads("DescribePodIdentityAssociation").await,
    );
    tokio::time::sleep(Duration::from_secs(4 * 2 + 1)).await;
    assert_eq!(aws_writes(&env).await, before, "writes in a steady state");
    assert_eq!(
        eks_reads("ListPodIdentityAssociations").await,
        lists,
        "a steady state lists associations"
    );
    assert!(
        eks_reads("DescribePodIdentityAssociation").await > describes,
        "no resync read the association"
    );

    // Drift: the association deleted and the trust statement replaced by
    // hand are both put back, and the pod gets in again.
    let id = association["associationId"]
        .as_str()
        .expect("id")
        .to_string();
    let deleted = reqwest::Client::new()
        .delete(format!(
            "{}/clusters/{}/pod-identity-associations/{id}",
            env.eks().url,
            wib_testenv::eks::CLUSTER
        ))
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    iam.update_assume_role_policy()
        .role_name(&role)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
                "Principal": {"Service": policy::PODS_PRINCIPAL}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("trust replaced");
    wait_for(
        "the association and the trust statement put back",
        async || {
            let found = associations_of(&env, name).await;
            let trust = role_state(&iam, &role).await?.trust;
            (found.len() == 1
                && found[0]["associationId"] != id.as_str()
                && ways_in(&trust, name) == (false, true))
                .then_some(())
        },
    )
    .await;
    let (ok, out) = pod_identity_exchange(&env, name).await;
    assert!(ok, "{out}");

    // To IRSA and back: at every sample one way in is complete.
    let samples = switch_mode_keeping_a_way_in(&env, &iam, name, "IRSA").await;
    assert!(samples > 0);
    let b = env
        .wait_condition(NS, name, READY, "True", "Provisioned")
        .await
        .expect("Ready in IRSA");
    let aws = b.status.and_then(|s| s.aws).expect("status.aws");
    assert_eq!(aws.mode, Some(wib_api::binding::AwsMode::Irsa));
    assert_eq!(aws.association_arn, None);
    let token = env
        .cp
        .service_account_token(NS, name, STS_AUDIENCE)
        .await
        .expect("token");
    let (ok, out) = pod_exchange(&env, &role_arn, &token);
    assert!(ok, "{out}");
    switch_mode_keeping_a_way_in(&env, &iam, name, "PodIdentity").await;
    let (ok, out) = pod_identity_exchange(&env, name).await;
    assert!(ok, "{out}");

    // Deletion leaves nothing: no association, no role.
    env.delete_binding(NS, name).await.expect("deleted");
    assert!(associations_of(&env, name).await.is_empty());
    assert!(role_state(&iam, &role).await.is_none(), "role left behind");
}

#[tokio::test]
async fn pod_identity_never_takes_someone_elses_association_nor_an_unlisted_target_role() {
    let env = env(&pod_identity_provider()).await;
    let iam = env.iam();
    let theirs = env
        .eks()
        .create_association_as(
            Some(&format!("arn:aws:iam::{ACCOUNT}:role/platform-admin")),
            wib_testenv::eks::CLUSTER,
            json!({"namespace": NS, "serviceAccount": "taken",
                "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/platform-made")}),
        )
        .await
        .expect("someone else's association");
    let eks_writes = env.eks().calls().await.expect("calls")["writes"].clone();
    env.moto().start_recording().await.expect("recording");

    env.apply(&binding("taken", "taken", "    mode: PodIdentity\n"))
        .await
        .expect("binding");
    let b = env
        .wait_condition(NS, "taken", READY, "False", "AssociationConflict")
        .await
        .expect("conflict");
    let message = wib_e2e::condition(&b, READY)
        .expect("Ready")
        .message
        .clone();
    let their_id = theirs["associationId"].as_str().expect("id");
    assert!(message.contains(their_id), "{message}");
    env.apply(&binding(
        "elsewhere",
        "elsewhere",
        &format!(
            "    mode: PodIdentity\n    targetRoleArn: arn:aws:iam::{OTHER_ACCOUNT}:role/admin\n"
        ),
    ))
    .await
    .expect("binding");
    let b = env
        .wait_condition(NS, "elsewhere", READY, "False", "RoleNotAllowed")
        .await
        .expect("refused");
    let message = wib_e2e::condition(&b, READY)
        .expect("Ready")
        .message
        .clone();
    assert!(message.contains("allowedTargetRoleArns"), "{message}");
    let recorded = env.moto().recorded_actions("iam").await.expect("recording");
    assert!(
        recorded.keys().all(|op| !wib_cloud::calls::is_write(op)),
        "IAM writes for refused bindings: {recorded:?}"
    );
    assert_eq!(
        env.eks().calls().await.expect("calls")["writes"],
        eks_writes,
        "EKS writes for refused bindings"
    );

    // A listed target role is passed on to EKS, through EKS throttling the
    // creation twice (429, Retry-After): one association all the same.
    env.eks()
        .throttle("CreatePodIdentityAssociation", 1, 2)
        .await
        .expect("throttling");
    let target = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/shared/reader");
    env.apply(&binding(
        "chained",
        "chained",
        &format!("    mode: PodIdentity\n    targetRoleArn: {target}\n"),
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "chained", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let found = associations_of(&env, "chained").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["targetRoleArn"], target.as_str());
    assert!(found[0]["externalId"].is_string());
    assert!(
        env.eks()
            .call_count("CreatePodIdentityAssociation")
            .await
            .expect("calls")
            >= 3,
        "the throttled creations were not retried"
    );

    // Deleting the refused binding leaves their association as it was.
    env.delete_binding(NS, "taken").await.expect("deleted");
    let left = associations_of(&env, "taken").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["associationId"], their_id);
    assert_eq!(left[0]["roleArn"], theirs["roleArn"]);
    assert!(role_state(&iam, &role_name("taken")).await.is_none());
}
