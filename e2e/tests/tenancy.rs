//! Red team: what a tenant can and cannot reach through wib, tried as a
//! tenant — a user with only the chart's tenant ClusterRole in its own
//! namespace, creating objects through the real API server. A refused
//! attempt costs the cloud nothing: no write reaches it.

use std::collections::BTreeMap;

use aws_sdk_iam::Client as Iam;
use serde_json::{Value, json};
use wib_api::conditions::{FEDERATION_READY, IDENTITY_READY, READY, ROLE_ASSIGNMENTS_READY};
use wib_e2e::{Admin, Env};
use wib_testenv::moto::ACCOUNT;

const CLUSTER: &str = "eks-tenants";
const NS: &str = "team-a";
const TENANT: &str = "alice";

fn provider(extra: Value) -> Value {
    let mut aws = json!({"accountId": ACCOUNT, "createOidcProvider": true});
    if let (Some(aws), Value::Object(extra)) = (aws.as_object_mut(), extra) {
        aws.extend(extra);
    }
    json!({
        "apiVersion": "wib.dev/v1alpha1",
        "kind": "ClusterIdentityProvider",
        "metadata": {"name": "aws", "annotations": {"wib.dev/is-default-provider": "true"}},
        "spec": {"clusterName": CLUSTER, "aws": aws},
    })
}

/// A binding in `namespace` with its own ServiceAccount and `spec.<cloud>`
/// = `cloud_spec`, to edit further.
fn binding_in(namespace: &str, name: &str, cloud: &str, cloud_spec: Value) -> Value {
    json!({
        "apiVersion": "wib.dev/v1alpha1",
        "kind": "WorkloadIdentityBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"serviceAccount": {"name": name}, cloud: cloud_spec},
    })
}

/// The same in the tenant's namespace, as a manifest.
fn binding(name: &str, cloud: &str, cloud_spec: Value) -> String {
    binding_in(NS, name, cloud, cloud_spec).to_string()
}

/// `binding` with `spec.<field>` = `value`, as a manifest.
fn with_spec(mut binding: Value, field: &str, value: Value) -> String {
    binding["spec"][field] = value;
    binding.to_string()
}

fn binding_with_inline(name: &str, document: &str) -> String {
    binding(
        name,
        "aws",
        json!({"inlinePolicies": [{"name": "grant", "document": document}]}),
    )
}

fn allow(action: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
        .to_string()
}

fn role_name(binding: &str) -> String {
    wib_cloud::aws::naming::role_name(CLUSTER, NS, binding)
}

async fn role_exists(iam: &Iam, name: &str) -> bool {
    iam.get_role().role_name(name).send().await.is_ok()
}

fn writes(recorded: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    recorded
        .iter()
        .filter(|(op, _)| wib_cloud::calls::is_write(op))
        .map(|(op, n)| (op.clone(), *n))
        .collect()
}

fn forbidden(what: &str, result: anyhow::Result<()>) {
    let error = result.expect_err(what);
    let text = format!("{error:#}");
    assert!(text.contains("forbidden"), "{what}: {text}");
}

async fn refused(env: &Env, name: &str, reason: &str) -> String {
    let b = env
        .wait_condition(NS, name, READY, "False", reason)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    wib_e2e::condition(&b, READY)
        .expect("Ready")
        .message
        .clone()
}

/// Counts cloud writes on all three clouds from the moment it is made.
struct CloudWrites {
    gcp_before: Value,
}

impl CloudWrites {
    async fn from_now(env: &Env) -> Self {
        env.azure().reset_calls().await.expect("reset Azure calls");
        env.moto().start_recording().await.expect("recording");
        let gcp_before = env.gcp().calls().await.expect("calls")["writes"].clone();
        Self { gcp_before }
    }

    async fn assert_none(&self, env: &Env) {
        let azure = env.azure().calls().await.expect("calls");
        assert_eq!(azure["writes"], 0, "Azure writes: {azure}");
        let recorded = env.moto().recorded_actions("iam").await.expect("recording");
        assert!(writes(&recorded).is_empty(), "IAM writes: {recorded:?}");
        let gcp = env.gcp().calls().await.expect("calls");
        assert_eq!(gcp["writes"], self.gcp_before, "GCP writes: {gcp}");
    }
}

const SUBSCRIPTION: &str = "/subscriptions/00000000-0000-0000-0000-00000000aaaa";

/// An IAM role made outside wib, trusting the account's root, tagged with
/// `tags`; its ARN.
async fn role_made_outside_wib(env: &Env, name: &str, tags: &[(&str, &str)]) -> String {
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "sts:AssumeRole"}]});
    let tags = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .expect("tag")
        })
        .collect();
    env.iam()
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .set_tags(Some(tags))
        .send()
        .await
        .expect("arrange an AWS role")
        .role
        .map(|r| r.arn)
        .expect("arn")
}

/// The ARM path of an Azure identity in the suite's resource group.
fn azure_identity_path(name: &str) -> String {
    format!(
        "{SUBSCRIPTION}/resourceGroups/wib-e2e/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}?api-version=2023-01-31"
    )
}

/// An Azure identity made outside wib, without tags; its ARM body.
async fn identity_made_outside_wib(env: &Env, name: &str) -> Value {
    let (status, body) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &azure_identity_path(name),
            Some(json!({"location": "westeurope"})),
        )
        .await
        .expect("arrange an Azure identity");
    assert_eq!(status, 201, "{body}");
    body
}

/// An ordinary grant on `cloud`, inside the suite's provider's scopes.
fn ordinary_grant(cloud: &str) -> Value {
    match cloud {
        "azure" => json!({"roleAssignments": [{"role": "Reader",
            "scope": format!("{SUBSCRIPTION}/resourceGroups/apps")}]}),
        "aws" => json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
        _ => json!({"roles": [{"role": "roles/storage.objectViewer"}]}),
    }
}

/// The e2e suite's default provider for all three clouds, to edit; GCP
/// federates through the fake's workload identity pool, so pods can
/// exchange their tokens.
fn all_clouds_provider() -> Value {
    let mut provider: Value = serde_yaml::from_str(&wib_e2e::provider_yaml("default", true, None))
        .expect("provider YAML");
    let gcp = &mut provider["spec"]["gcp"];
    gcp["projectNumber"] = json!(wib_testenv::gcp::PROJECT_NUMBER);
    gcp["workloadIdentityPool"] = json!(wib_testenv::gcp::POOL);
    gcp["workloadIdentityProvider"] = json!(wib_testenv::gcp::POOL_PROVIDER);
    provider
}

async fn env() -> (Env, Admin) {
    let env = Env::start_aws()
        .await
        .expect("control plane, moto and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider(json!({})).to_string())
        .await
        .expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    (env, tenant)
}

#[tokio::test]
async fn a_tenant_cannot_grant_itself_administrator_through_an_inline_policy() {
    let (mut env, tenant) = env().await;
    let iam = env.iam();
    env.moto().start_recording().await.expect("recording");

    // Whatever the spelling, a privileged inline grant is refused before
    // any IAM call, and says why.
    let attempts = [
        ("star", allow(json!("*"))),
        ("iam-any-case", allow(json!(["s3:GetObject", "IAM:*"]))),
        ("pass-role", allow(json!("iam:PassRole"))),
        ("iam-write", allow(json!("iam:AttachRolePolicy"))),
        ("sts-star", allow(json!("sts:*"))),
        ("wild-service", allow(json!("i*:CreateUser"))),
        (
            "not-action",
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]})
                .to_string(),
        ),
    ];
    for (name, document) in &attempts {
        tenant
            .apply(&binding_with_inline(name, document))
            .await
            .unwrap_or_else(|e| panic!("{name}: the tenant may create bindings: {e:#}"));
    }
    for (name, _) in &attempts {
        let message = refused(&env, name, "PolicyNotAllowed").await;
        assert!(message.contains("inline policy \"grant\""), "{message}");
        assert!(message.contains("permissionsBoundaryArn"), "{message}");
        assert!(!role_exists(&iam, &role_name(name)).await, "{name}");
    }
    env.wait_events(NS, "star", &["PolicyNotAllowed"])
        .await
        .expect("an Event says so too");

    // A document wib cannot decode (nested past any policy's depth) is that
    // binding's error alone...
    let deep = format!("{}{}", "[".repeat(140), "]".repeat(140));
    tenant
        .apply(&binding_with_inline("deep", &deep))
        .await
        .expect("a string the API server accepts");
    let message = refused(&env, "deep", "InvalidPolicyDocument").await;
    assert!(message.contains("not a JSON policy document"), "{message}");

    // ...so a tenant cannot stall the operator: started again while every
    // hostile binding exists, it lists them all and still serves the rest.
    env.operator_mut().kill();
    env.operator_mut().restart().expect("restart");
    tenant
        .apply(&binding_with_inline(
            "ordinary",
            &allow(json!("s3:GetObject")),
        ))
        .await
        .expect("binding");
    env.wait_condition(NS, "ordinary", READY, "True", "Provisioned")
        .await
        .expect("an ordinary inline policy works, after a restart");

    // The tenant's RBAC does not reach the provider (where the opt-outs
    // live) nor another namespace.
    forbidden(
        "a tenant may not change the provider",
        tenant
            .apply(&provider(json!({"allowUnrestrictedInlinePolicies": true})).to_string())
            .await,
    );
    env.namespace("team-b", &[]).await.expect("namespace");
    forbidden(
        "a tenant may not create bindings in another namespace",
        tenant
            .apply(
                &binding_with_inline("star", &allow(json!("s3:GetObject"))).replace(NS, "team-b"),
            )
            .await,
    );

    // IAM saw no write for any refused attempt: the only role created and
    // its one inline policy are the ordinary binding's.
    let recorded = env.moto().recorded_actions("iam").await.expect("recording");
    let roles_created = recorded.get("CreateRole").copied().unwrap_or(0);
    let inline_puts = recorded.get("PutRolePolicy").copied().unwrap_or(0);
    assert_eq!(
        (roles_created, inline_puts),
        (1, 1),
        "{:?}",
        writes(&recorded)
    );
    for (name, _) in &attempts {
        assert!(!role_exists(&iam, &role_name(name)).await, "{name}");
    }
}

#[tokio::test]
async fn a_permissions_boundary_on_the_provider_lets_broad_inline_policies_through_capped() {
    let (env, tenant) = env().await;
    let iam = env.iam();
    let boundary = iam
        .create_policy()
        .policy_name("tenant-boundary")
        .policy_document(allow(json!(["s3:*", "logs:*"])))
        .send()
        .await
        .expect("boundary policy")
        .policy
        .and_then(|p| p.arn)
        .expect("arn");

    tenant
        .apply(&binding_with_inline("broad", &allow(json!("*"))))
        .await
        .expect("binding");
    refused(&env, "broad", "PolicyNotAllowed").await;

    // The platform team caps every role instead: the same binding is now
    // allowed, and its role carries the boundary.
    env.apply(&provider(json!({"permissionsBoundaryArn": boundary})).to_string())
        .await
        .expect("provider with a boundary");
    env.wait_condition(NS, "broad", READY, "True", "Provisioned")
        .await
        .expect("Ready under the boundary");
    let role = iam
        .get_role()
        .role_name(role_name("broad"))
        .send()
        .await
        .expect("role")
        .role
        .expect("role");
    assert_eq!(
        role.permissions_boundary
            .and_then(|b| b.permissions_boundary_arn),
        Some(boundary)
    );
}

#[tokio::test]
async fn a_tenant_cannot_add_an_audience_to_the_clusters_shared_oidc_provider() {
    let (env, tenant) = env().await;
    let iam = env.iam();
    // The platform team made the cluster's IAM OIDC provider with a client
    // ID of its own.
    let issuer = env.cp.issuer().to_string();
    let oidc_arn = iam
        .create_open_id_connect_provider()
        .url(&issuer)
        .client_id_list("sts.amazonaws.com")
        .client_id_list("platform-client")
        .send()
        .await
        .expect("arrange the OIDC provider")
        .open_id_connect_provider_arn
        .expect("arn");
    let client_ids = || async {
        iam.get_open_id_connect_provider()
            .open_id_connect_provider_arn(&oidc_arn)
            .send()
            .await
            .expect("OIDC provider")
            .client_id_list
            .unwrap_or_default()
    };

    env.moto().start_recording().await.expect("recording");
    tenant
        .apply(&binding(
            "aud",
            "aws",
            json!({"audience": "attacker-client"}),
        ))
        .await
        .expect("binding");
    let message = refused(&env, "aud", "AudienceNotAllowed").await;
    assert!(message.contains("allowedAudiences"), "{message}");
    let recorded = env.moto().recorded_actions("iam").await.expect("recording");
    assert!(writes(&recorded).is_empty(), "{recorded:?}");
    assert!(!role_exists(&iam, &role_name("aud")).await);

    // Listed by the platform team, the same audience works, for as many
    // bindings as ask for it.
    env.apply(&provider(json!({"allowedAudiences": ["attacker-client"]})).to_string())
        .await
        .expect("provider");
    env.wait_condition(NS, "aud", READY, "True", "Provisioned")
        .await
        .expect("Ready once allowed");
    tenant
        .apply(&binding(
            "aud-too",
            "aws",
            json!({"audience": "attacker-client"}),
        ))
        .await
        .expect("binding");
    env.wait_condition(NS, "aud-too", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    assert!(client_ids().await.contains(&"attacker-client".to_string()));

    // The client ID wib added goes with the last binding that uses it; the
    // platform's and STS's stay.
    tenant.delete_binding(NS, "aud").await.expect("deleted");
    assert!(
        client_ids().await.contains(&"attacker-client".to_string()),
        "still used by aud-too"
    );
    tenant.delete_binding(NS, "aud-too").await.expect("deleted");
    let now = wib_e2e::poll_until(wib_e2e::WAIT, "the unused client ID removed", async || {
        let now = client_ids().await;
        match now.contains(&"attacker-client".to_string()) {
            true => Err(format!("{now:?}")),
            false => Ok(now),
        }
    })
    .await
    .expect("removed");
    assert_eq!(now, ["sts.amazonaws.com", "platform-client"]);
}

#[tokio::test]
async fn a_tenant_cannot_choose_where_its_azure_identity_is_created() {
    let env = Env::start_azure()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&all_clouds_provider().to_string())
        .await
        .expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    env.azure().reset_calls().await.expect("reset");
    let other_subscription = "00000000-0000-0000-0000-00000000bbbb";
    for (name, placement, quoted) in [
        (
            "other-sub",
            json!({"subscriptionId": other_subscription}),
            other_subscription,
        ),
        (
            "other-rg",
            json!({"resourceGroup": "platform-core"}),
            "platform-core",
        ),
        ("other-region", json!({"location": "eastus"}), "eastus"),
    ] {
        tenant
            .apply(&binding(name, "azure", placement))
            .await
            .expect("binding");
        let message = refused(&env, name, "ScopeNotAllowed").await;
        assert!(message.contains(quoted), "{message}");
    }
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(calls["writes"], 0, "refused placements wrote: {calls}");

    // What the provider lists, a binding may choose.
    let mut provider = all_clouds_provider();
    provider["spec"]["azure"]["allowedResourceGroups"] =
        json!(["/subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/platform-core"]);
    env.apply(&provider.to_string()).await.expect("provider");
    env.wait_condition(NS, "other-rg", READY, "True", "Provisioned")
        .await
        .expect("Ready in a listed resource group");
}

#[tokio::test]
async fn a_tenant_cannot_take_wibs_own_identity_or_a_protected_one_even_where_adoption_is_allowed()
{
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let iam = env.iam();

    // Break-glass identities the platform team keeps, untagged, on each cloud.
    let azure_break_glass = identity_made_outside_wib(&env, "break-glass").await;
    let azure_client_id = azure_break_glass["properties"]["clientId"]
        .as_str()
        .expect("clientId")
        .to_string();
    let aws_break_glass = role_made_outside_wib(&env, "break-glass", &[]).await;

    // The most permissive provider there is for adoption; the protected
    // identities are named the way each cloud reports them, not as bindings
    // name them (client ID, ARN), so no spelling walks around the list.
    let mut provider = all_clouds_provider();
    provider["spec"]["adoption"] = json!("AllowUntagged");
    provider["spec"]["protectedIdentities"] = json!([azure_client_id, aws_break_glass]);
    env.apply(&provider.to_string()).await.expect("provider");

    let cloud_writes = CloudWrites::from_now(&env).await;
    let attempts = [
        (
            "azure-break-glass",
            "azure",
            json!({"identityName": "break-glass"}),
        ),
        ("aws-break-glass", "aws", json!({"roleName": "BREAK-GLASS"})),
        // wib's own identities, as its environment names them.
        (
            "aws-wib",
            "aws",
            json!({"roleName": wib_testenv::moto::OPERATOR_ROLE}),
        ),
        (
            "gcp-wib",
            "gcp",
            json!({"accountId": wib_testenv::gcp::OPERATOR_ACCOUNT}),
        ),
    ];
    for (name, cloud, spec) in &attempts {
        tenant
            .apply(&binding(name, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    for (name, _, _) in &attempts {
        let message = refused(&env, name, "IdentityProtected").await;
        assert!(message.contains("protected"), "{message}");
    }

    // Not one write on any cloud, and the break-glass identities are as
    // they were (no wib tags, no federation).
    cloud_writes.assert_none(&env).await;
    let role = iam
        .get_role()
        .role_name("break-glass")
        .send()
        .await
        .expect("role")
        .role
        .expect("role");
    assert!(role.tags.unwrap_or_default().is_empty());
    let (_, identity) = env
        .azure()
        .arm(
            reqwest::Method::GET,
            &azure_identity_path("break-glass"),
            None,
        )
        .await
        .expect("identity");
    assert!(
        identity["tags"].as_object().is_none_or(|t| t.is_empty()),
        "{identity}"
    );
}

#[tokio::test]
async fn grants_are_denied_by_default_and_administrator_roles_stay_denied_whatever_the_spelling() {
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");

    // A provider that has not said where grants may land allows none: the
    // bindings get their identity and federation, and say how to widen it.
    let mut provider = all_clouds_provider();
    if let Some(spec) = provider["spec"].as_object_mut() {
        spec.remove("allowedScopes");
    }
    env.apply(&provider.to_string()).await.expect("provider");
    let apps = format!("{SUBSCRIPTION}/resourceGroups/apps");
    let asks = [
        ("az-reader", "azure", ordinary_grant("azure")),
        ("aws-readonly", "aws", ordinary_grant("aws")),
        ("gcp-viewer", "gcp", ordinary_grant("gcp")),
    ];
    for (name, cloud, spec) in &asks {
        tenant
            .apply(&binding(name, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    for (name, _, _) in &asks {
        let message = refused(&env, name, "ScopeNotAllowed").await;
        assert!(message.contains("lists no allowedScopes"), "{message}");
        let b = env.bindings(NS).get(name).await.expect("binding");
        for step in [IDENTITY_READY, FEDERATION_READY] {
            assert_eq!(
                wib_e2e::condition(&b, step).map(|c| c.status.as_str()),
                Some("True"),
                "{name}: {step}"
            );
        }
        let step = wib_e2e::condition(&b, ROLE_ASSIGNMENTS_READY).expect("role step");
        assert_eq!(
            (step.status.as_str(), step.reason.as_str()),
            ("False", "ScopeNotAllowed")
        );
    }
    let azure = env.azure().state().await.expect("state");
    assert_eq!(azure["roleAssignments"], json!([]), "{azure}");
    let aws_role = role_of(&env, "aws-readonly").await;
    let attached = env
        .iam()
        .list_attached_role_policies()
        .role_name(&aws_role)
        .send()
        .await
        .expect("attached");
    assert!(attached.attached_policies().is_empty(), "{attached:?}");
    let gcp = env.gcp().state().await.expect("state");
    assert!(
        !gcp["policies"]["projects/wib-e2e"]
            .to_string()
            .contains("storage.objectViewer"),
        "{gcp}"
    );

    // The platform team lists the scopes: the same bindings turn Ready.
    provider["spec"]["allowedScopes"] = json!([
        SUBSCRIPTION,
        "/providers/Microsoft.Management/managementGroups/tenant-root",
        "arn:aws:iam::aws:policy",
        "arn:aws-us-gov:iam::aws:policy",
        "projects/wib-e2e"
    ]);
    env.apply(&provider.to_string()).await.expect("provider");
    for (name, _, _) in &asks {
        env.wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }

    // Custom roles the tenant admin made, harmless by name.
    let custom_role = |guid: &str, name: &str, actions: Value| {
        let path = format!(
            "{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}?api-version=2022-04-01"
        );
        let body = json!({"properties": {"roleName": name, "type": "CustomRole",
            "permissions": [{"actions": actions}], "assignableScopes": [SUBSCRIPTION]}});
        (path, body)
    };
    for (guid, name, actions) in [
        (
            "11111111-1111-4111-8111-111111111111",
            "Vault Helper",
            json!([
                "Microsoft.KeyVault/vaults/read",
                "Microsoft.Authorization/*"
            ]),
        ),
        (
            "22222222-2222-4222-8222-222222222222",
            "Identity Reader",
            json!([
                "Microsoft.ManagedIdentity/userAssignedIdentities/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/write"
            ]),
        ),
    ] {
        let (path, body) = custom_role(guid, name, actions);
        let (status, created) = env
            .azure()
            .arm(reqwest::Method::PUT, &path, Some(body))
            .await
            .expect("custom role");
        assert_eq!(status, 201, "{created}");
    }

    // Administrator roles by every spelling, judged by what the cloud says
    // they are: refused before any write, whatever the allow-list allows.
    let cloud_writes = CloudWrites::from_now(&env).await;
    let owner = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    let gcp_role = |role: &str| json!({"roles": [{"role": role}]});
    let aws_policy = |arn: &str| json!({"managedPolicyArns": [arn]});
    let azure_role =
        |role: &str, scope: &str| json!({"roleAssignments": [{"role": role, "scope": scope}]});
    let attempts = [
        ("owner-name", "azure", azure_role("Owner", &apps)),
        (
            "owner-guid",
            "azure",
            azure_role(&owner.to_uppercase(), &apps),
        ),
        (
            "owner-id",
            "azure",
            azure_role(
                &format!(
                    "{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{owner}"
                )
                .to_uppercase(),
                &apps,
            ),
        ),
        (
            "uaa",
            "azure",
            azure_role("User Access Administrator", &apps),
        ),
        (
            "mi-operator",
            "azure",
            azure_role("f1a07417-d97a-45cb-824c-7a7467783830", &apps),
        ),
        (
            "contrib-sub",
            "azure",
            azure_role("Contributor", SUBSCRIPTION),
        ),
        (
            "contrib-mg",
            "azure",
            azure_role(
                "Contributor",
                "/providers/Microsoft.Management/managementGroups/tenant-root",
            ),
        ),
        ("custom-name", "azure", azure_role("Vault Helper", &apps)),
        (
            "custom-guid",
            "azure",
            azure_role("22222222-2222-4222-8222-222222222222", &apps),
        ),
        (
            "aws-admin",
            "aws",
            aws_policy("arn:aws:iam::aws:policy/AdministratorAccess"),
        ),
        (
            "aws-admin-case",
            "aws",
            aws_policy("arn:aws:iam::aws:policy/administratorAccess"),
        ),
        (
            "aws-gov",
            "aws",
            aws_policy("arn:aws-us-gov:iam::aws:policy/AdministratorAccess"),
        ),
        (
            "aws-iam",
            "aws",
            aws_policy("arn:aws:iam::aws:policy/IAMFullAccess"),
        ),
        ("gcp-owner", "gcp", gcp_role("roles/OWNER")),
        ("gcp-editor", "gcp", gcp_role("roles/editor")),
        (
            "gcp-token",
            "gcp",
            gcp_role("roles/iam.serviceAccountTokenCreator"),
        ),
        (
            "gcp-wi-user",
            "gcp",
            gcp_role("roles/iam.workloadIdentityUser"),
        ),
        (
            "gcp-key-admin",
            "gcp",
            gcp_role("roles/iam.serviceAccountKeyAdmin"),
        ),
        (
            "gcp-rm",
            "gcp",
            gcp_role("roles/resourcemanager.projectIamAdmin"),
        ),
        (
            "gcp-custom",
            "gcp",
            gcp_role("projects/wib-e2e/roles/anything"),
        ),
    ];
    for (name, cloud, spec) in &attempts {
        tenant
            .apply(&binding(name, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    for (name, cloud, _) in &attempts {
        let reason = if *cloud == "aws" {
            "PolicyNotAllowed"
        } else {
            "RoleNotAllowed"
        };
        let message = refused(&env, name, reason).await;
        assert!(
            message.contains("denies it by default"),
            "{name}: {message}"
        );
    }
    cloud_writes.assert_none(&env).await;
}

/// The IAM role a binding's status names.
async fn role_of(env: &Env, binding: &str) -> String {
    let b = env.bindings(NS).get(binding).await.expect("binding");
    let arn = b
        .status
        .and_then(|s| s.aws)
        .and_then(|a| a.role_arn)
        .expect("role ARN in status");
    arn.rsplit('/').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn spellings_siblings_other_providers_shared_and_foreign_identities_stay_out_of_reach() {
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let apps = format!("{SUBSCRIPTION}/resourceGroups/apps");
    let mut provider = all_clouds_provider();
    provider["spec"]["allowedScopes"] = json!([
        apps,
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "projects/wib-e2e"
    ]);
    env.apply(&provider.to_string()).await.expect("provider");
    // A provider for the platform's own namespaces, which team-a is not.
    let mut platform: Value = serde_yaml::from_str(&wib_e2e::provider_yaml(
        "platform",
        false,
        Some("tier: platform"),
    ))
    .expect("provider YAML");
    platform["spec"]["allowedScopes"] = json!([SUBSCRIPTION]);
    env.apply(&platform.to_string()).await.expect("provider");

    // Scopes the schema refuses outright: traversal, encoding, a trailing
    // slash, another shape altogether.
    for (name, scope) in [
        ("dots", format!("{apps}/providers/x/../../../..")),
        ("encoded", format!("{apps}/providers/x/%2e%2e/%2E%2E")),
        ("slash", format!("{apps}/")),
        (
            "bare",
            "subscriptions/00000000-0000-0000-0000-00000000aaaa".into(),
        ),
    ] {
        let attempt = binding(
            name,
            "azure",
            json!({"roleAssignments": [{"role": "Reader", "scope": scope}]}),
        );
        let error = tenant.apply(&attempt).await.expect_err(name);
        assert!(
            format!("{error:#}").contains("azure.roleAssignments[].scope"),
            "{name}: {error:#}"
        );
    }

    // Untagged identities of the names the tenant will ask for.
    identity_made_outside_wib(&env, "foreign").await;
    role_made_outside_wib(&env, "foreign", &[]).await;

    // Identities the tenant's own bindings made, for the sharing attempts.
    for (name, cloud) in [("owner-aws", "aws"), ("owner-gcp", "gcp")] {
        tenant
            .apply(&binding(name, cloud, json!({})))
            .await
            .expect("binding");
        env.wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let shared_role = role_of(&env, "owner-aws").await;
    let b = env.bindings(NS).get("owner-gcp").await.expect("binding");
    let shared_account = b
        .status
        .and_then(|s| s.gcp)
        .and_then(|g| g.email)
        .expect("email");
    let shared_account_id = shared_account.split('@').next().unwrap_or_default();

    let cloud_writes = CloudWrites::from_now(&env).await;
    let attempts = [
        (
            "sibling",
            "azure",
            json!({"roleAssignments": [{"role": "Reader", "scope": format!("{SUBSCRIPTION}/resourceGroups/apps-prod")}]}),
            "ScopeNotAllowed",
        ),
        (
            "parent",
            "azure",
            json!({"roleAssignments": [{"role": "Reader", "scope": SUBSCRIPTION}]}),
            "ScopeNotAllowed",
        ),
        (
            "policy-path",
            "aws",
            json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess/../AdministratorAccess"]}),
            "ScopeNotAllowed",
        ),
        (
            "other-project",
            "gcp",
            json!({"roles": [{"role": "roles/storage.objectViewer", "resource": "projects/wib-e2e-prod"}]}),
            "ScopeNotAllowed",
        ),
        (
            "adopt-azure",
            "azure",
            json!({"identityName": "foreign"}),
            "AdoptionNotAllowed",
        ),
        (
            "adopt-aws",
            "aws",
            json!({"roleName": "foreign"}),
            "AdoptionNotAllowed",
        ),
        (
            "share-aws",
            "aws",
            json!({"roleName": shared_role, "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
            "PolicyNotAllowed",
        ),
        (
            "share-gcp",
            "gcp",
            json!({"accountId": shared_account_id, "roles": [{"role": "roles/storage.objectViewer"}]}),
            "RoleNotAllowed",
        ),
    ];
    for (name, cloud, spec, _) in &attempts {
        tenant
            .apply(&binding(name, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    tenant
        .apply(&with_spec(
            binding_in(NS, "via-platform", "azure", json!({})),
            "providerRef",
            json!({"name": "platform"}),
        ))
        .await
        .expect("binding");
    for (name, _, _, reason) in &attempts {
        refused(&env, name, reason).await;
    }
    refused(&env, "via-platform", "NamespaceNotAllowed").await;
    cloud_writes.assert_none(&env).await;

    // No credential in anything wib writes or logs: JWTs start with `eyJ`.
    let mut written = env.operator_logs();
    for b in env
        .bindings(NS)
        .list(&Default::default())
        .await
        .expect("list")
    {
        written.push_str(&serde_json::to_string(&b.status).unwrap_or_default());
        let name = b.metadata.name.clone().unwrap_or_default();
        for event in env.events_for(NS, &name).await.expect("events") {
            written.push_str(&event.message.unwrap_or_default());
        }
    }
    assert!(!written.is_empty());
    for secret in ["eyJ", "Bearer ", "client_secret", "SecretAccessKey"] {
        assert!(!written.contains(secret), "{secret} in wib's output");
    }
}

/// What a victim's cloud identities look like, to compare before and after
/// an attack: Azure identities with their credentials and assignments, the
/// IAM role's trust policy, tags and attachments, the GCP account and the
/// policies that name it.
async fn victim_state(env: &Env, role: &str, email: &str) -> Value {
    let azure = env.azure().state().await.expect("state");
    let iam = env.iam();
    let got = iam
        .get_role()
        .role_name(role)
        .send()
        .await
        .expect("victim role")
        .role
        .expect("role");
    let attached = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .expect("attached");
    let gcp = env.gcp().state().await.expect("state");
    let gcp_mentions: Vec<String> = gcp
        .to_string()
        .match_indices(email)
        .map(|(at, _)| at.to_string())
        .collect();
    json!({
        "azure": azure,
        "aws": {
            "trust": got.assume_role_policy_document,
            "tags": format!("{:?}", got.tags),
            "attached": format!("{:?}", attached.attached_policies()),
        },
        "gcp": {"account": gcp["serviceAccounts"].to_string().contains(email), "policies": gcp["policies"], "mentions": gcp_mentions.len()},
    })
}

#[tokio::test]
async fn a_tenant_cannot_reach_another_namespaces_identities_by_name_spelling_or_deletion() {
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    let victim_ns = "team-a";
    let attacker_ns = "team";
    env.namespace(victim_ns, &[]).await.expect("namespace");
    env.namespace(attacker_ns, &[]).await.expect("namespace");
    env.apply(&all_clouds_provider().to_string())
        .await
        .expect("provider");
    let mallory = env.tenant("mallory", attacker_ns).await.expect("tenant");

    // team-a's bindings, one per cloud, with grants.
    let victim =
        |name: &str, cloud: &str, spec: Value| binding_in(victim_ns, name, cloud, spec).to_string();
    for manifest in [
        victim("app1", "azure", ordinary_grant("azure")),
        victim("app1-aws", "aws", ordinary_grant("aws")),
        victim("app1-gcp", "gcp", ordinary_grant("gcp")),
    ] {
        env.apply(&manifest).await.expect("victim binding");
    }
    let mut ready = Vec::new();
    for name in ["app1", "app1-aws", "app1-gcp"] {
        ready.push(
            env.wait_condition(victim_ns, name, READY, "True", "Provisioned")
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:#}")),
        );
    }
    let status = |i: usize| ready[i].status.clone().expect("status");
    let azure_name = status(0)
        .azure
        .and_then(|a| a.resource_id)
        .and_then(|id| id.rsplit('/').next().map(str::to_string))
        .expect("identity");
    let aws_role = status(1)
        .aws
        .and_then(|a| a.role_arn)
        .and_then(|arn| arn.rsplit('/').next().map(str::to_string))
        .expect("role");
    let gcp_email = status(2).gcp.and_then(|g| g.email).expect("email");
    let gcp_account = gcp_email.split('@').next().unwrap_or_default().to_string();
    let before = victim_state(&env, &aws_role, &gcp_email).await;
    let versions: Vec<Option<String>> = ready
        .iter()
        .map(|b| b.metadata.resource_version.clone())
        .collect();

    // Naming team-a's identities from namespace `team`: refused before any
    // write, the message naming nothing of team-a's.
    let cloud_writes = CloudWrites::from_now(&env).await;
    let attacker = |name: &str, cloud: &str, spec: Value| {
        with_spec(
            binding_in(attacker_ns, name, cloud, spec),
            "serviceAccount",
            json!({"name": "thief"}),
        )
    };
    let attempts = [
        ("steal-az", "azure", json!({"identityName": azure_name})),
        ("steal-aws", "aws", json!({"roleName": aws_role})),
        ("steal-gcp", "gcp", json!({"accountId": gcp_account})),
    ];
    for (name, cloud, spec) in &attempts {
        mallory
            .apply(&attacker(name, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    for (name, _, spec) in &attempts {
        let b = env
            .wait_condition(attacker_ns, name, READY, "False", "IdentityNotShared")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        // Beyond the name the attacker typed, nothing of team-a's.
        let typed = spec
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message = wib_e2e::condition(&b, READY)
            .expect("Ready")
            .message
            .replace(typed, "<typed>");
        for secret in ["team-a", "app1"] {
            assert!(
                !message.contains(secret),
                "{name} names {secret}: {message}"
            );
        }
    }
    // Deleting them afterwards removes nothing of team-a's either.
    for (name, _, _) in &attempts {
        mallory
            .delete_binding(attacker_ns, name)
            .await
            .expect("deleted");
    }
    cloud_writes.assert_none(&env).await;
    assert_eq!(victim_state(&env, &aws_role, &gcp_email).await, before);

    // Names spelled to meet team-a's by joining parts (`team` + `a-app1`
    // versus `team-a` + `app1`) get identities of their own, on every cloud.
    let lookalikes = [
        ("a-app1", "azure", azure_name.clone()),
        ("a-app1-aws", "aws", aws_role.clone()),
        ("a-app1-gcp", "gcp", gcp_email.clone()),
    ];
    for (name, cloud, _) in &lookalikes {
        mallory
            .apply(&attacker(name, cloud, json!({})))
            .await
            .expect("binding");
    }
    for (name, _, victims) in &lookalikes {
        let own = env
            .wait_condition(attacker_ns, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let identity = own.status.and_then(|s| s.identity).expect("identity");
        assert!(!identity.contains(victims.as_str()), "{name}: {identity}");
        mallory
            .delete_binding(attacker_ns, name)
            .await
            .expect("deleted");
    }

    // team-a's pod still exchanges its token for its identity; the
    // attacker's ServiceAccount cannot.
    let victim_client = status(0)
        .azure
        .and_then(|a| a.client_id)
        .expect("client ID");
    let (ok, output) = env
        .azure_pod_exchange(victim_ns, "app1", &victim_client)
        .await;
    assert!(ok, "the victim's exchange: {output}");
    env.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: thief\n  namespace: {attacker_ns}\n"
    ))
    .await
    .expect("the attacker's ServiceAccount");
    let (ok, output) = env
        .azure_pod_exchange(attacker_ns, "thief", &victim_client)
        .await;
    assert!(!ok, "the attacker's exchange: {output}");
    let (ok, output) = env
        .gcp_pod_exchange(victim_ns, "app1-gcp", &gcp_email)
        .await;
    assert!(ok, "the victim's GCP exchange: {output}");
    let (ok, output) = env.gcp_pod_exchange(attacker_ns, "thief", &gcp_email).await;
    assert!(!ok, "the attacker's GCP exchange: {output}");

    // team-a is as it was: bindings untouched, cloud state unchanged.
    for (b, version) in ready.iter().zip(&versions) {
        let now = env
            .bindings(victim_ns)
            .get(&b.metadata.name.clone().unwrap_or_default())
            .await
            .expect("victim binding");
        assert_eq!(&now.metadata.resource_version, version);
    }
    assert_eq!(victim_state(&env, &aws_role, &gcp_email).await, before);
}

#[tokio::test]
async fn deleting_a_refused_binding_removes_nothing_and_retain_outlives_later_sharers() {
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&all_clouds_provider().to_string())
        .await
        .expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let with_sa = |name: &str, sa: &str, cloud: &str, spec: Value| {
        with_spec(
            binding_in(NS, name, cloud, spec),
            "serviceAccount",
            json!({"name": sa}),
        )
    };

    // Rivals for ServiceAccounts other bindings hold, naming the holders'
    // identities, are refused; deleting them takes neither the holders'
    // federation (same subject) nor their identities, on any cloud.
    let holders = [
        ("holder-az", "azure"),
        ("holder-aws", "aws"),
        ("holder-gcp", "gcp"),
    ];
    for (name, cloud) in holders {
        tenant
            .apply(&with_sa(name, name, cloud, json!({})))
            .await
            .expect("binding");
    }
    let mut rivals = Vec::new();
    let (mut role, mut email) = (String::new(), String::new());
    for (name, cloud) in holders {
        let b = env
            .wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let identity = b.status.and_then(|s| s.identity).expect("identity");
        let last = identity.rsplit('/').next().unwrap_or_default().to_string();
        let spec = match cloud {
            "azure" => {
                let id = env
                    .bindings(NS)
                    .get(name)
                    .await
                    .expect("binding")
                    .status
                    .and_then(|s| s.azure)
                    .and_then(|a| a.resource_id)
                    .expect("resource ID");
                json!({"identityName": id.rsplit('/').next().unwrap_or_default()})
            }
            "aws" => {
                role = last.clone();
                json!({"roleName": last})
            }
            _ => {
                email = identity.clone();
                json!({"accountId": identity.split('@').next().unwrap_or_default()})
            }
        };
        rivals.push((format!("rival-{cloud}"), name, cloud, spec));
    }
    let before = victim_state(&env, &role, &email).await;
    let cloud_writes = CloudWrites::from_now(&env).await;
    for (rival, sa, cloud, spec) in &rivals {
        tenant
            .apply(&with_sa(rival, sa, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    for (rival, _, _, _) in &rivals {
        refused(&env, rival, "ServiceAccountConflict").await;
        tenant.delete_binding(NS, rival).await.expect("deleted");
    }
    cloud_writes.assert_none(&env).await;
    assert_eq!(victim_state(&env, &role, &email).await, before);
    for (name, _) in holders {
        env.wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name} is still Ready: {e:#}"));
    }

    // A role kept with Retain stays when a later binding of the namespace
    // shares it and is deleted.
    let kept = with_spec(
        binding_in(NS, "kept", "aws", json!({})),
        "deletionPolicy",
        json!("Retain"),
    );
    tenant.apply(&kept).await.expect("binding");
    env.wait_condition(NS, "kept", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let role = role_of(&env, "kept").await;
    tenant.delete_binding(NS, "kept").await.expect("deleted");
    assert!(role_exists(&env.iam(), &role).await, "retained");
    tenant
        .apply(&binding("later", "aws", json!({"roleName": role})))
        .await
        .expect("binding");
    env.wait_condition(NS, "later", READY, "True", "Provisioned")
        .await
        .expect("a binding of the namespace may use the retained role");
    tenant.delete_binding(NS, "later").await.expect("deleted");
    assert!(
        role_exists(&env.iam(), &role).await,
        "Retain outlives a later sharer"
    );
}

#[tokio::test]
async fn a_namespace_relabelled_out_of_its_provider_loses_federation_at_once_and_gets_it_back() {
    // Resyncs are rare here: only the namespace watch can be quick.
    let env = Env::start_with_resync("300")
        .await
        .expect("control plane, fakes and operator");
    let label = ("wib.dev/workload-identity", "enabled");
    env.namespace(NS, &[label]).await.expect("namespace");
    let mut provider = all_clouds_provider();
    provider["spec"]["namespaceSelector"] = json!({"matchLabels": {label.0: label.1}});
    env.apply(&provider.to_string()).await.expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let bindings = [
        (
            "rev-az",
            "azure",
            ordinary_grant("azure"),
            "azure.workload.identity/client-id",
        ),
        (
            "rev-aws",
            "aws",
            ordinary_grant("aws"),
            "eks.amazonaws.com/role-arn",
        ),
        (
            "rev-gcp",
            "gcp",
            ordinary_grant("gcp"),
            "iam.gke.io/gcp-service-account",
        ),
    ];
    for (name, cloud, spec, _) in &bindings {
        tenant
            .apply(&binding(name, cloud, spec.clone()))
            .await
            .expect("binding");
    }
    for (name, _, _, _) in &bindings {
        env.wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let role = role_of(&env, "rev-aws").await;
    assert_eq!(federation(&env, &role).await, (1, true, true));

    // The platform team takes the namespace out of the provider.
    env.namespace(NS, &[]).await.expect("relabel");
    for (name, _, _, _) in &bindings {
        refused(&env, name, "NamespaceNotAllowed").await;
    }
    assert_eq!(
        federation(&env, &role).await,
        (0, false, false),
        "federation revoked"
    );
    for (name, _, _, annotation) in &bindings {
        let sa = env
            .wait_service_account(NS, name, "cloud annotation removed", |sa| {
                sa.is_some_and(|sa| {
                    !sa.metadata
                        .annotations
                        .clone()
                        .unwrap_or_default()
                        .contains_key(*annotation)
                })
            })
            .await
            .expect("ServiceAccount");
        assert!(sa.is_some(), "{name}: the ServiceAccount stays");
    }
    // Identities and grants stay: a mistaken relabel loses nothing.
    let azure = env.azure().state().await.expect("state");
    assert_eq!(azure["roleAssignments"].as_array().map(Vec::len), Some(1));
    let attached = env
        .iam()
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .expect("attached");
    assert_eq!(attached.attached_policies().len(), 1);
    assert!(
        env.gcp()
            .state()
            .await
            .expect("state")
            .to_string()
            .contains("storage.objectViewer")
    );

    // Labelled again, the bindings are restored.
    env.namespace(NS, &[label]).await.expect("relabel");
    for (name, _, _, _) in &bindings {
        env.wait_condition(NS, name, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    assert_eq!(
        federation(&env, &role).await,
        (1, true, true),
        "federation restored"
    );
}

/// The relabel test's federation on each cloud: Azure credentials, whether
/// the IAM trust policy admits `rev-aws`, whether a GCP policy names `rev-gcp`.
async fn federation(env: &Env, role: &str) -> (usize, bool, bool) {
    let azure = env.azure().state().await.expect("state");
    let credentials: usize = azure["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            i["federatedIdentityCredentials"]
                .as_array()
                .map(Vec::len)
                .unwrap_or_default()
        })
        .sum();
    let trust = env
        .iam()
        .get_role()
        .role_name(role)
        .send()
        .await
        .expect("role")
        .role
        .and_then(|r| r.assume_role_policy_document)
        .unwrap_or_default();
    let gcp = env.gcp().state().await.expect("state").to_string();
    (
        credentials,
        wib_cloud::aws::policy::parse(&trust).is_some_and(|t| {
            t.to_string()
                .contains(&format!("system:serviceaccount:{NS}:rev-aws"))
        }),
        gcp.contains(&format!("[{NS}/rev-gcp]"))
            || gcp.contains(&format!("serviceaccount:{NS}:rev-gcp")),
    )
}

#[tokio::test]
async fn adoption_needs_the_owners_opt_in_for_this_namespace_and_keeps_what_the_owner_had() {
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let mut provider = all_clouds_provider();
    provider["spec"]["adoption"] = json!("AllowUntagged");
    env.apply(&provider.to_string()).await.expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let iam = env.iam();
    // An untagged admin role, and one its owner opened to another namespace.
    role_made_outside_wib(&env, "ops-admin", &[]).await;
    iam.attach_role_policy()
        .role_name("ops-admin")
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .expect("attach");
    role_made_outside_wib(&env, "team-b-role", &[("wib.dev_adopt-into", "team-b")]).await;
    // A GCP account its owner opened to this namespace, with a project role.
    env.gcp()
        .post(
            "/v1/projects/wib-e2e/serviceAccounts",
            json!({"accountId": "team-a-batch", "serviceAccount": {"description": "batch jobs [wib wib.dev_adopt-into=team-a]"}}),
        )
        .await
        .expect("account");
    let batch = "serviceAccount:team-a-batch@wib-e2e.iam.gserviceaccount.com";
    let mut policy = env
        .gcp()
        .post("/v3/projects/wib-e2e:getIamPolicy", json!({}))
        .await
        .expect("policy");
    let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    bindings.push(json!({"role": "roles/pubsub.subscriber", "members": [batch]}));
    policy["bindings"] = json!(bindings);
    env.gcp()
        .post(
            "/v3/projects/wib-e2e:setIamPolicy",
            json!({"policy": policy}),
        )
        .await
        .expect("set policy");

    // An Azure identity without the opt-in.
    identity_made_outside_wib(&env, "ops-identity").await;

    let cloud_writes = CloudWrites::from_now(&env).await;
    let attempts = [
        ("take-admin", "aws", json!({"roleName": "ops-admin"})),
        ("take-b", "aws", json!({"roleName": "team-b-role"})),
        ("take-az", "azure", json!({"identityName": "ops-identity"})),
    ];
    for (name, cloud, spec) in &attempts {
        tenant
            .apply(&binding(name, cloud, spec.clone()))
            .await
            .expect("binding");
        let message = refused(&env, name, "AdoptionNotAllowed").await;
        assert!(message.contains("opted in"), "{message}");
    }
    cloud_writes.assert_none(&env).await;

    // The Azure identity's owner opts in for this namespace: adopted.
    let (status, body) = env
        .azure()
        .arm(
            reqwest::Method::PUT,
            &azure_identity_path("ops-identity"),
            Some(json!({"location": "westeurope", "tags": {"wib.dev_adopt-into": NS}})),
        )
        .await
        .expect("opt in");
    assert_eq!(status, 200, "{body}");
    let adopted = env
        .wait_condition(NS, "take-az", READY, "True", "Provisioned")
        .await
        .expect("adopted once its owner opted in");
    let client_id = adopted
        .status
        .and_then(|s| s.azure)
        .and_then(|a| a.client_id)
        .expect("client ID");
    let (ok, output) = env.azure_pod_exchange(NS, "take-az", &client_id).await;
    assert!(ok, "the adopter's pod exchanges its token: {output}");

    // Opted in for this namespace: adopted, changing nothing the spec does
    // not list, and given back as it was on deletion.
    tenant
        .apply(&binding(
            "batch",
            "gcp",
            json!({"accountId": "team-a-batch", "roles": [{"role": "roles/storage.objectViewer"}]}),
        ))
        .await
        .expect("binding");
    env.wait_condition(NS, "batch", READY, "True", "Provisioned")
        .await
        .expect("adopted");
    let (ok, output) = env
        .gcp_pod_exchange(NS, "batch", "team-a-batch@wib-e2e.iam.gserviceaccount.com")
        .await;
    assert!(
        ok,
        "the adopter's pod acts as the adopted account: {output}"
    );
    let roles_of_batch = |state: &Value| -> Vec<String> {
        state["policies"]["projects/wib-e2e"]["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| {
                b["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == batch))
            })
            .filter_map(|b| b["role"].as_str().map(str::to_string))
            .collect()
    };
    let mut held = roles_of_batch(&env.gcp().state().await.expect("state"));
    held.sort();
    assert_eq!(
        held,
        ["roles/pubsub.subscriber", "roles/storage.objectViewer"],
        "the owner's role stays beside the spec's"
    );
    tenant.delete_binding(NS, "batch").await.expect("deleted");
    let state = env.gcp().state().await.expect("state");
    assert_eq!(roles_of_batch(&state), ["roles/pubsub.subscriber"]);
    assert!(
        state.to_string().contains("team-a-batch@"),
        "an adopted account is given back, never deleted"
    );
}

#[tokio::test]
async fn another_namespace_shares_an_identity_only_by_its_makers_consent_and_the_providers_leave() {
    let env = Env::start_with_resync("300")
        .await
        .expect("control plane, fakes and operator");
    let (owner_ns, guest_ns) = ("team-a", "team-b");
    env.namespace(owner_ns, &[]).await.expect("namespace");
    env.namespace(guest_ns, &[]).await.expect("namespace");
    let mut provider = all_clouds_provider();
    env.apply(&provider.to_string()).await.expect("provider");
    let owner = env.tenant("alice", owner_ns).await.expect("tenant");
    let guest = env.tenant("bob", guest_ns).await.expect("tenant");
    let maker = |sharing: Value| {
        with_spec(
            binding_in(owner_ns, "maker", "aws", ordinary_grant("aws")),
            "sharing",
            sharing,
        )
    };
    owner
        .apply(&maker(json!({"namespaces": [guest_ns]})))
        .await
        .expect("binding");
    env.wait_condition(owner_ns, "maker", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let b = env.bindings(owner_ns).get("maker").await.expect("binding");
    let role = b
        .status
        .and_then(|s| s.aws)
        .and_then(|a| a.role_arn)
        .and_then(|arn| arn.rsplit('/').next().map(str::to_string))
        .expect("role");
    let guest_binding =
        |name: &str, spec: Value| binding_in(guest_ns, name, "aws", spec).to_string();

    // The maker consents, but the provider keeps namespaces apart: refused,
    // nothing written.
    let cloud_writes = CloudWrites::from_now(&env).await;
    guest
        .apply(&guest_binding("guest", json!({"roleName": role})))
        .await
        .expect("binding");
    env.wait_condition(guest_ns, "guest", READY, "False", "IdentityNotShared")
        .await
        .expect("refused while the provider forbids sharing");
    cloud_writes.assert_none(&env).await;

    // The platform allows it: the guest federates, and only federates.
    provider["spec"]["allowCrossNamespaceSharing"] = json!(true);
    env.apply(&provider.to_string()).await.expect("provider");
    env.wait_condition(guest_ns, "guest", READY, "True", "Provisioned")
        .await
        .expect("shared by consent");
    assert!(trust_admits(&env, &role, guest_ns, "guest").await);

    // On Azure, a guest's pod really exchanges its token for the maker's
    // identity.
    let azure_maker = |sharing: Value| {
        with_spec(
            binding_in(owner_ns, "maker-az", "azure", json!({})),
            "sharing",
            sharing,
        )
    };
    owner
        .apply(&azure_maker(json!({"namespaces": [guest_ns]})))
        .await
        .expect("binding");
    let made = env
        .wait_condition(owner_ns, "maker-az", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let azure = made.status.and_then(|s| s.azure).expect("azure status");
    let (client_id, identity) = (
        azure.client_id.expect("client ID"),
        azure
            .resource_id
            .and_then(|id| id.rsplit('/').next().map(str::to_string))
            .expect("identity"),
    );
    guest
        .apply(
            &binding_in(
                guest_ns,
                "guest-az",
                "azure",
                json!({"identityName": identity}),
            )
            .to_string(),
        )
        .await
        .expect("binding");
    env.wait_condition(guest_ns, "guest-az", READY, "True", "Provisioned")
        .await
        .expect("shared by consent");
    let (ok, output) = env
        .azure_pod_exchange(guest_ns, "guest-az", &client_id)
        .await;
    assert!(ok, "the guest's exchange: {output}");

    // On GCP too.
    let gcp_maker = |sharing: Value| {
        with_spec(
            binding_in(owner_ns, "maker-gcp", "gcp", json!({})),
            "sharing",
            sharing,
        )
    };
    owner
        .apply(&gcp_maker(json!({"namespaces": [guest_ns]})))
        .await
        .expect("binding");
    let email = env
        .wait_condition(owner_ns, "maker-gcp", READY, "True", "Provisioned")
        .await
        .expect("Ready")
        .status
        .and_then(|s| s.gcp)
        .and_then(|g| g.email)
        .expect("email");
    guest
        .apply(
            &binding_in(
                guest_ns,
                "guest-gcp",
                "gcp",
                json!({"accountId": email.split('@').next().unwrap_or_default()}),
            )
            .to_string(),
        )
        .await
        .expect("binding");
    env.wait_condition(guest_ns, "guest-gcp", READY, "True", "Provisioned")
        .await
        .expect("shared by consent");
    let (ok, output) = env.gcp_pod_exchange(guest_ns, "guest-gcp", &email).await;
    assert!(ok, "the guest's GCP exchange: {output}");
    guest
        .apply(&guest_binding(
            "greedy",
            json!({"roleName": role, "managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
        ))
        .await
        .expect("binding");
    env.wait_condition(guest_ns, "greedy", READY, "False", "PolicyNotAllowed")
        .await
        .expect("a guest lists no grants");

    // Withdrawn consent revokes the guest's federation at once (resyncs are
    // five minutes apart here); the maker's role and grants stay as they are.
    owner
        .apply(&maker(json!({"namespaces": []})))
        .await
        .expect("consent withdrawn");
    owner
        .apply(&azure_maker(json!({"namespaces": []})))
        .await
        .expect("consent withdrawn");
    owner
        .apply(&gcp_maker(json!({"namespaces": []})))
        .await
        .expect("consent withdrawn");
    for name in ["guest", "guest-az", "guest-gcp"] {
        env.wait_condition(guest_ns, name, READY, "False", "IdentityNotShared")
            .await
            .unwrap_or_else(|e| panic!("{name} refused once consent is withdrawn: {e:#}"));
    }
    let (ok, output) = env
        .azure_pod_exchange(guest_ns, "guest-az", &client_id)
        .await;
    assert!(!ok, "the guest's exchange after withdrawal: {output}");
    let (ok, output) = env
        .azure_pod_exchange(owner_ns, "maker-az", &client_id)
        .await;
    assert!(ok, "the maker's own exchange: {output}");
    let (ok, output) = env.gcp_pod_exchange(guest_ns, "guest-gcp", &email).await;
    assert!(!ok, "the guest's GCP exchange after withdrawal: {output}");
    let (ok, output) = env.gcp_pod_exchange(owner_ns, "maker-gcp", &email).await;
    assert!(ok, "the maker's own GCP exchange: {output}");
    assert!(!trust_admits(&env, &role, guest_ns, "guest").await);
    assert!(trust_admits(&env, &role, owner_ns, "maker").await);
    let attached = env
        .iam()
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .expect("attached");
    assert_eq!(attached.attached_policies().len(), 1);
}

/// Whether the IAM role's trust policy admits `namespace`'s ServiceAccount `sa`.
async fn trust_admits(env: &Env, role: &str, namespace: &str, sa: &str) -> bool {
    let trust = env
        .iam()
        .get_role()
        .role_name(role)
        .send()
        .await
        .expect("role")
        .role
        .and_then(|r| r.assume_role_policy_document)
        .unwrap_or_default();
    wib_cloud::aws::policy::parse(&trust).is_some_and(|t| {
        t.to_string()
            .contains(&format!("system:serviceaccount:{namespace}:{sa}"))
    })
}

#[tokio::test]
async fn the_makers_deletion_takes_its_grants_and_the_last_sharer_takes_the_identity() {
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&all_clouds_provider().to_string())
        .await
        .expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    tenant
        .apply(&binding("maker", "aws", ordinary_grant("aws")))
        .await
        .expect("binding");
    env.wait_condition(NS, "maker", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let role = role_of(&env, "maker").await;
    tenant
        .apply(&binding("sharer", "aws", json!({"roleName": role})))
        .await
        .expect("binding");
    env.wait_condition(NS, "sharer", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let attached = |env: &Env| {
        let role = role.clone();
        let iam = env.iam();
        async move {
            iam.list_attached_role_policies()
                .role_name(&role)
                .send()
                .await
                .map(|out| out.attached_policies().len())
                .ok()
        }
    };
    assert_eq!(attached(&env).await, Some(1));

    // The maker goes: its grants go with it, the sharer keeps only its
    // federation (it declared nothing more).
    tenant.delete_binding(NS, "maker").await.expect("deleted");
    assert_eq!(
        attached(&env).await,
        Some(0),
        "the maker's policy left with it"
    );
    assert!(trust_admits(&env, &role, NS, "sharer").await);
    assert!(!trust_admits(&env, &role, NS, "maker").await);

    // The last one out deletes the released role.
    tenant.delete_binding(NS, "sharer").await.expect("deleted");
    assert!(
        !role_exists(&env.iam(), &role).await,
        "released and left empty"
    );
}

/// Key Vault access policies as a tenant: a vault outside the provider's
/// scopes (plainly, or behind a name that merely starts like an allowed
/// resource group), a vault that ignores access policies or does not
/// exist, a permission the platform did not allow, and a grant through an
/// identity another binding made are all refused before anything is
/// written; what is allowed writes only the identity's own entry.
#[tokio::test]
async fn a_tenant_reaches_only_allowed_vaults_and_only_its_own_access_policy_entry() {
    let env = Env::start_azure()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let mut provider = all_clouds_provider();
    let team_rg = format!("{SUBSCRIPTION}/resourceGroups/team-a-rg");
    provider["spec"]["allowedScopes"] = json!([team_rg]);
    env.apply(&provider.to_string()).await.expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let vault = |rg: &str, name: &str| {
        format!("{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}")
    };
    let platform_entry = json!([{"tenantId": wib_testenv::azure::AZURE_TENANT,
        "objectId": "11111111-2222-4333-8444-555555555555", "permissions": {"secrets": ["get", "set"]}}]);
    let (team_kv, platform_kv) = (
        vault("team-a-rg", "team-a-kv"),
        vault("platform-core", "platform-kv"),
    );
    env.seed_vault(&team_kv, false, json!([])).await;
    env.seed_vault(&platform_kv, false, platform_entry.clone())
        .await;
    env.seed_vault(&vault("team-a-rg", "team-a-rbac"), true, json!([]))
        .await;
    env.seed_vault(&vault("team-a-rg-evil", "evil-kv"), false, json!([]))
        .await;
    let policy = |vault: &str, secrets: Value| json!({"keyVaultAccessPolicies": [{"vault": vault, "secrets": secrets}]});

    // The API server refuses what is not a vault's plain ARM ID.
    let dotted =
        format!("{SUBSCRIPTION}/resourceGroups/../providers/Microsoft.KeyVault/vaults/platform-kv");
    let error = tenant
        .apply(&binding("dotted", "azure", policy(&dotted, json!(["get"]))))
        .await
        .expect_err("a dotted vault ID");
    assert!(
        format!("{error:#}").contains("keyVaultAccessPolicies[].vault must be a vault's ARM ID"),
        "{error:#}"
    );

    env.azure().reset_calls().await.expect("reset");
    let attempts = [
        (
            "outside",
            policy(&platform_kv, json!(["get"])),
            "ScopeNotAllowed",
            "platform-kv",
        ),
        (
            "lookalike",
            policy(&vault("team-a-rg-evil", "evil-kv"), json!(["get"])),
            "ScopeNotAllowed",
            "team-a-rg-evil",
        ),
        (
            "rbac",
            policy(&vault("team-a-rg", "team-a-rbac"), json!(["get"])),
            "KeyVaultNotUsable",
            "Azure RBAC",
        ),
        (
            "missing",
            policy(&vault("team-a-rg", "team-a-gone"), json!(["get"])),
            "KeyVaultNotUsable",
            "does not exist",
        ),
        (
            "purger",
            policy(&team_kv, json!(["get", "purge"])),
            "RoleNotAllowed",
            "allowedSensitiveKeyVaultPermissions",
        ),
    ];
    for (name, spec, _, _) in &attempts {
        tenant
            .apply(&binding(name, "azure", spec.clone()))
            .await
            .expect("binding");
    }
    for (name, _, reason, quoted) in &attempts {
        let message = refused(&env, name, reason).await;
        assert!(message.contains(quoted), "{name}: {message}");
    }
    let calls = env.azure().calls().await.expect("calls");
    assert_eq!(calls["writes"], 0, "refused access policies wrote: {calls}");

    // Another binding's identity cannot carry this binding's grants.
    tenant
        .apply(&binding(
            "owner",
            "azure",
            json!({"identityName": "team-a-shared"}),
        ))
        .await
        .expect("owner");
    env.wait_condition(NS, "owner", READY, "True", "Provisioned")
        .await
        .expect("owner Ready");
    let mut sharer = policy(&team_kv, json!(["get"]));
    sharer["identityName"] = json!("team-a-shared");
    tenant
        .apply(&binding("sharer", "azure", sharer))
        .await
        .expect("sharer");
    let message = refused(&env, "sharer", "RoleNotAllowed").await;
    assert!(
        message.contains("owns its role assignments or access policies"),
        "{message}"
    );
    assert!(env.vault_entries(&team_kv).await.is_empty());

    // What the provider allows lands in the identity's own entry only.
    tenant
        .apply(&binding(
            "reader",
            "azure",
            policy(&team_kv, json!(["get"])),
        ))
        .await
        .expect("reader");
    let b = env
        .wait_condition(NS, "reader", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let principal = b
        .status
        .and_then(|s| s.azure)
        .and_then(|a| a.principal_id)
        .expect("principal");
    let entries = env.vault_entries(&team_kv).await;
    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        vec![&principal],
        "{entries:?}"
    );
    let platform = env.vault_entries(&platform_kv).await;
    assert_eq!(
        platform["11111111-2222-4333-8444-555555555555"], platform_entry[0]["permissions"],
        "the platform's vault is untouched"
    );
    assert_eq!(platform.len(), 1, "{platform:?}");
}

/// GCP mode Direct as a tenant: the principal a grant goes to is always its
/// own namespace's ServiceAccount (nothing in the spec can name another);
/// denied roles and resources outside the provider's scopes are refused
/// before any write; and a second binding of the same ServiceAccount,
/// refused as a conflict, takes nothing back when it is deleted.
#[tokio::test]
async fn a_tenants_direct_grants_go_only_to_its_own_principal_and_a_rival_cannot_strip_them() {
    let env = Env::start_gcp()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&all_clouds_provider().to_string())
        .await
        .expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let direct = |roles: Value| json!({"mode": "Direct", "roles": roles});
    let before = env.gcp().calls().await.expect("calls")["writes"].clone();
    for (name, roles, reason) in [
        ("owner", json!([{"role": "roles/owner"}]), "RoleNotAllowed"),
        (
            "impersonator",
            json!([{"role": "roles/iam.serviceAccountTokenCreator"}]),
            "RoleNotAllowed",
        ),
        (
            "elsewhere",
            json!([{"role": "roles/storage.objectViewer", "resource": "projects/platform-prod"}]),
            "ScopeNotAllowed",
        ),
    ] {
        tenant
            .apply(&binding(name, "gcp", direct(roles)))
            .await
            .expect("binding");
        refused(&env, name, reason).await;
    }
    assert_eq!(
        env.gcp().calls().await.expect("calls")["writes"],
        before,
        "refused Direct grants wrote"
    );

    let viewer = json!([{"role": "roles/storage.objectViewer"}]);
    tenant
        .apply(&binding("reader", "gcp", direct(viewer.clone())))
        .await
        .expect("binding");
    let b = env
        .wait_condition(NS, "reader", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let principal = format!(
        "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/subject/system:serviceaccount:{NS}:reader",
        wib_testenv::gcp::PROJECT_NUMBER,
        wib_testenv::gcp::POOL
    );
    assert_eq!(
        b.status.and_then(|s| s.gcp).and_then(|g| g.member),
        Some(principal.clone())
    );
    let holders = |state: &Value| -> Vec<String> {
        state["policies"][format!("projects/{}", wib_e2e::GCP_PROJECT)]["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["role"] == "roles/storage.objectViewer")
            .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        holders(&env.gcp().state().await.expect("state")),
        vec![principal.clone()]
    );

    // A rival binding of the same ServiceAccount is refused, and deleting it
    // leaves the first one's grant in place.
    let rival = with_spec(
        binding_in(NS, "rival", "gcp", direct(viewer)),
        "serviceAccount",
        json!({"name": "reader"}),
    );
    tenant.apply(&rival).await.expect("rival");
    refused(&env, "rival", "ServiceAccountConflict").await;
    env.delete_binding(NS, "rival")
        .await
        .expect("rival deleted");
    env.wait_condition(NS, "reader", READY, "True", "Provisioned")
        .await
        .expect("still Ready");
    assert_eq!(
        holders(&env.gcp().state().await.expect("state")),
        vec![principal]
    );
}

/// Mode PodIdentity as a tenant: the association is of the tenant's own
/// ServiceAccount only; a target role in another account only from the
/// provider's list; someone else's association, another namespace's role
/// and the binding's status stay out of reach. Nothing refused is written.
#[tokio::test]
async fn a_tenants_pod_identity_reaches_only_its_own_service_account_and_listed_target_roles() {
    let env = Env::start_aws()
        .await
        .expect("control plane, moto, EKS and operator");
    let victim_ns = "team-b";
    env.namespace(NS, &[]).await.expect("namespace");
    env.namespace(victim_ns, &[]).await.expect("namespace");
    env.apply(
        &provider(json!({
            "mode": "PodIdentity",
            "eksClusterName": wib_testenv::eks::CLUSTER,
            "allowedTargetRoleArns": ["arn:aws:iam::222222222222:role/shared/*"],
        }))
        .to_string(),
    )
    .await
    .expect("provider");
    let tenant = env.tenant(TENANT, NS).await.expect("tenant user");
    let eks = env.eks();
    let associations = async |ns: &str, sa: &str| -> Vec<Value> {
        eks.associations()
            .await
            .expect("associations")
            .into_iter()
            .filter(|a| a["namespace"] == ns && a["serviceAccount"] == sa)
            .collect()
    };

    // team-b's binding, in the provider's default mode PodIdentity.
    env.apply(&binding_in(victim_ns, "app", "aws", json!({})).to_string())
        .await
        .expect("victim binding");
    let victim = env
        .wait_condition(victim_ns, "app", READY, "True", "Provisioned")
        .await
        .expect("victim Ready");
    let victim_role = victim
        .status
        .and_then(|s| s.aws)
        .and_then(|a| a.role_arn)
        .and_then(|arn| arn.rsplit('/').next().map(str::to_string))
        .expect("role");
    let victim_before = associations(victim_ns, "app").await;
    assert_eq!(victim_before.len(), 1);
    let iam = env.iam();
    let trust_before = iam
        .get_role()
        .role_name(&victim_role)
        .send()
        .await
        .expect("victim role")
        .role
        .and_then(|r| r.assume_role_policy_document)
        .expect("trust");
    let platforms = eks
        .create_association_as(
            Some(&format!("arn:aws:iam::{ACCOUNT}:role/platform-admin")),
            wib_testenv::eks::CLUSTER,
            json!({"namespace": NS, "serviceAccount": "platform-managed",
                "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/platform-made")}),
        )
        .await
        .expect("the platform's association");

    let eks_writes = eks.calls().await.expect("calls")["writes"].clone();
    let cloud_writes = CloudWrites::from_now(&env).await;
    for (name, spec, reason) in [
        (
            "unlisted-target",
            json!({"targetRoleArn": "arn:aws:iam::222222222222:role/admin"}),
            "RoleNotAllowed",
        ),
        (
            "other-account-spelled-like-listed",
            json!({"targetRoleArn": "arn:aws:iam::333333333333:role/shared/reader"}),
            "RoleNotAllowed",
        ),
        (
            "irsa-audience",
            json!({"audience": "sts.amazonaws.com"}),
            "InvalidSpec",
        ),
        (
            "steal-role",
            json!({"roleName": victim_role}),
            "IdentityNotShared",
        ),
    ] {
        tenant
            .apply(&binding(name, "aws", spec))
            .await
            .expect("binding");
        refused(&env, name, reason).await;
    }
    let take = with_spec(
        binding_in(NS, "take", "aws", json!({})),
        "serviceAccount",
        json!({"name": "platform-managed"}),
    );
    tenant.apply(&take).await.expect("binding");
    refused(&env, "take", "AssociationConflict").await;
    cloud_writes.assert_none(&env).await;
    assert_eq!(
        eks.calls().await.expect("calls")["writes"],
        eks_writes,
        "EKS writes for refused bindings"
    );

    // The binding's status is the operator's: a tenant cannot point wib at
    // another association through it.
    let bindings: kube::Api<wib_api::WorkloadIdentityBinding> =
        kube::Api::namespaced(tenant.client.clone(), NS);
    forbidden(
        "a tenant writes a binding's status",
        bindings
            .patch_status(
                "take",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"status": {"aws": {
                    "associationArn": victim_before[0]["associationArn"]}}})),
            )
            .await
            .map(drop)
            .map_err(anyhow::Error::from),
    );

    // Deleting the refused bindings removes nothing of anyone else's.
    for name in ["take", "steal-role", "unlisted-target"] {
        env.delete_binding(NS, name).await.expect("deleted");
    }
    let platform_after = associations(NS, "platform-managed").await;
    assert_eq!(platform_after.len(), 1);
    assert_eq!(
        platform_after[0]["associationId"],
        platforms["associationId"]
    );
    assert_eq!(platform_after[0]["roleArn"], platforms["roleArn"]);
    assert_eq!(associations(victim_ns, "app").await, victim_before);
    let trust_after = iam
        .get_role()
        .role_name(&victim_role)
        .send()
        .await
        .expect("victim role")
        .role
        .and_then(|r| r.assume_role_policy_document)
        .expect("trust");
    assert_eq!(
        trust_after, trust_before,
        "the victim's trust policy changed"
    );

    // The tenant's own binding: its own ServiceAccount's association only.
    tenant
        .apply(&binding("own", "aws", json!({})))
        .await
        .expect("binding");
    env.wait_condition(NS, "own", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    let own = associations(NS, "own").await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["tags"]["wib.dev_namespace"], NS);
}
