//! Every CEL and schema rule, against the real API server: the bad object is
//! rejected at admission with a message a user understands.
//!
//! Coverage is checked, not promised: every `x-kubernetes-validations` message
//! of the generated CRDs in `config/crd/` must be the reason some case below is
//! rejected, and the only reason, so a new CEL rule without a case here fails
//! this suite.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};
use wib_testenv::{ControlPlane, Options};

const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";
const OTHER_SUB: &str = "00000000-0000-0000-0000-00000000bbbb";
const KV: &str = "/subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps/providers/Microsoft.KeyVault/vaults/Apps-KV";

fn binding(spec: Value) -> Value {
    binding_named("b", spec)
}

fn binding_named(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn provider(spec: Value) -> Value {
    json!({"apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
           "metadata": {"name": "p"}, "spec": spec})
}

/// Why the API server refused a write: its message and each cause
/// (`field: message`).
#[derive(Debug)]
struct Rejection {
    message: String,
    causes: Vec<String>,
}

fn rejection(result: Result<DynamicObject, kube::Error>, what: &str) -> Option<Rejection> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(Rejection {
            causes: status
                .details
                .map(|d| {
                    d.causes
                        .into_iter()
                        .map(|c| format!("{}: {}", c.field, c.message))
                        .collect()
                })
                .unwrap_or_default(),
            message: status.message,
        }),
        Err(e) => panic!("{what}: not an answer from the API server: {e}"),
    }
}

async fn create_error(api: &Api<DynamicObject>, body: &Value) -> Option<Rejection> {
    let obj: DynamicObject = serde_json::from_value(body.clone()).expect("object");
    rejection(api.create(&PostParams::default(), &obj).await, "create")
}

async fn update_error(api: &Api<DynamicObject>, name: &str, spec: Value) -> Option<Rejection> {
    let patch = json!({"spec": spec});
    rejection(
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
        "update",
    )
}

/// The CEL rules of one generated CRD, and which of them a case has triggered.
struct Rules {
    crd: &'static str,
    messages: BTreeSet<String>,
    tested: BTreeSet<String>,
}

impl Rules {
    /// Every `x-kubernetes-validations[].message` of `config/crd/<file>`.
    fn of(file: &'static str) -> Self {
        let path = format!("{}/../config/crd/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let crd: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut messages = BTreeSet::new();
        collect_rule_messages(&crd, &mut messages);
        assert!(!messages.is_empty(), "{path}: no x-kubernetes-validations");
        Self {
            crd: file,
            messages,
            tested: BTreeSet::new(),
        }
    }

    /// `case` must be rejected with a message containing `want`. When `want`
    /// is (part of) one CEL rule's message, that rule must be the one and
    /// only cause: the case breaks exactly the rule it is named for. Other
    /// wants are schema rules (type, length, range, enum).
    fn check(&mut self, case: &str, want: &str, rejection: Option<Rejection>) {
        let rejection = rejection.unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(
            rejection.message.contains(want),
            "{case}: {}",
            rejection.message
        );
        let named: Vec<&String> = self.messages.iter().filter(|m| m.contains(want)).collect();
        match named.as_slice() {
            [] => {}
            [rule] => {
                assert!(
                    matches!(rejection.causes.as_slice(), [cause] if cause.contains(rule.as_str())),
                    "{case}: must break only the rule {rule:?}, broke {:#?}",
                    rejection.causes
                );
                self.tested.insert((*rule).clone());
            }
            _ => panic!(
                "{case}: {want:?} is part of several rules of {}: {named:#?}",
                self.crd
            ),
        }
    }

    /// Every CEL rule of the CRD has had a case.
    fn assert_all_tested(&self) {
        let untested: Vec<&String> = self.messages.difference(&self.tested).collect();
        assert!(
            untested.is_empty(),
            "{}: CEL rules no admission case triggers: {untested:#?}",
            self.crd
        );
    }
}

fn collect_rule_messages(node: &Value, out: &mut BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "x-kubernetes-validations" {
                    for rule in value.as_array().into_iter().flatten() {
                        let message = rule["message"]
                            .as_str()
                            .unwrap_or_else(|| panic!("CEL rule without a message: {rule}"));
                        out.insert(message.to_string());
                    }
                } else {
                    collect_rule_messages(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rule_messages(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn each_admission_rule_rejects_its_bad_object_with_a_clear_message() {
    let cp = ControlPlane::start(Options {
        controller_manager: false,
        ..Options::default()
    })
    .await
    .expect("control plane");
    let client = cp.client().await.expect("client");
    let ar_b = kube::api::ApiResource::erase::<WorkloadIdentityBinding>(&());
    let ar_p = kube::api::ApiResource::erase::<ClusterIdentityProvider>(&());
    let bindings: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar_b);
    let providers: Api<DynamicObject> = Api::all_with(client.clone(), &ar_p);
    let mut binding_rules = Rules::of("wib.dev_workloadidentitybindings.yaml");
    let mut provider_rules = Rules::of("wib.dev_clusteridentityproviders.yaml");

    let binding_cases = [
        (
            "no cloud",
            json!({}),
            "exactly one of spec.azure, spec.aws or spec.gcp must be set",
        ),
        (
            "two clouds",
            json!({"azure": {}, "aws": {}}),
            "exactly one of spec.azure, spec.aws or spec.gcp must be set",
        ),
        (
            "bad ServiceAccount name",
            json!({"azure": {}, "serviceAccount": {"name": "Not_Valid"}}),
            "serviceAccount.name must be a DNS subdomain",
        ),
        (
            "bad outputs ConfigMap name",
            json!({"azure": {}, "outputs": {"configMap": "../other"}}),
            "outputs.configMap must be a DNS subdomain",
        ),
        (
            "bad identity name",
            json!({"azure": {"identityName": "a b"}}),
            "azure.identityName must be 3-128 characters",
        ),
        (
            "bad subscription",
            json!({"azure": {"subscriptionId": "nope"}}),
            "azure.subscriptionId must be a GUID",
        ),
        (
            "bad resource group",
            json!({"azure": {"resourceGroup": "rg."}}),
            "azure.resourceGroup must be 1-90 characters",
        ),
        (
            "bad location",
            json!({"azure": {"location": "West Europe"}}),
            "azure.location must be an Azure region name",
        ),
        (
            "bad scope",
            json!({"azure": {"roleAssignments": [{"role": "Reader", "scope": "/subscriptions/x"}]}}),
            "scope must be an ARM ID",
        ),
        (
            "scope climbing out of its resource group",
            json!({"azure": {"roleAssignments": [{"role": "Reader", "scope": "/subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps/providers/x/../../../.."}]}}),
            "must not contain '.' or '..' segments",
        ),
        (
            "scope with percent-encoded dots",
            json!({"azure": {"roleAssignments": [{"role": "Reader", "scope": "/subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps/providers/x/%2e%2e/%2e%2e"}]}}),
            "must not contain '.' or '..' segments",
        ),
        (
            "vault given twice",
            json!({"azure": {"keyVaultAccessPolicies": [
                {"vault": KV, "secrets": ["get"]},
                {"vault": KV.replace("Apps-KV", "apps-kv"), "secrets": ["list"]}]}}),
            "azure.keyVaultAccessPolicies must name each vault once",
        ),
        (
            "vault access policy granting nothing",
            json!({"azure": {"keyVaultAccessPolicies": [{"vault": KV}]}}),
            "must grant at least one permission",
        ),
        (
            "vault that is not a vault",
            json!({"azure": {"keyVaultAccessPolicies": [{"vault": "/subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps", "secrets": ["get"]}]}}),
            "keyVaultAccessPolicies[].vault must be a vault's ARM ID",
        ),
        (
            "unknown secret permission",
            json!({"azure": {"keyVaultAccessPolicies": [{"vault": KV, "secrets": ["read"]}]}}),
            "keyVaultAccessPolicies[].secrets may hold only",
        ),
        (
            "unknown key permission",
            json!({"azure": {"keyVaultAccessPolicies": [{"vault": KV, "keys": ["export"]}]}}),
            "keyVaultAccessPolicies[].keys may hold only",
        ),
        (
            "unknown certificate permission",
            json!({"azure": {"keyVaultAccessPolicies": [{"vault": KV, "certificates": ["all"]}]}}),
            "keyVaultAccessPolicies[].certificates may hold only",
        ),
        (
            "service account named in mode Direct",
            json!({"gcp": {"mode": "Direct", "accountId": "my-account"}}),
            "gcp.accountId and gcp.displayName name a Google service account",
        ),
        (
            "token expiration too short",
            json!({"azure": {"tokenExpirationSeconds": 60}}),
            "should be greater than or equal to 3600",
        ),
        (
            "IRSA token settings in mode PodIdentity",
            json!({"aws": {"mode": "PodIdentity", "audience": "sts.amazonaws.com"}}),
            "mode PodIdentity uses neither",
        ),
        (
            "target role in mode IRSA",
            json!({"aws": {"mode": "IRSA", "targetRoleArn": "arn:aws:iam::222222222222:role/r"}}),
            "aws.targetRoleArn is for mode PodIdentity",
        ),
        (
            "target role that is not a role ARN",
            json!({"aws": {"mode": "PodIdentity", "targetRoleArn": "arn:aws:iam::222222222222:user/u"}}),
            "aws.targetRoleArn must be an IAM role ARN",
        ),
        (
            "unknown AWS mode",
            json!({"aws": {"mode": "Irsa"}}),
            "Unsupported value",
        ),
        (
            "bad role name",
            json!({"aws": {"roleName": "has space"}}),
            "aws.roleName must be 1-64 characters",
        ),
        (
            "role name too long",
            json!({"aws": {"roleName": "r".repeat(65)}}),
            "Too long",
        ),
        (
            "bad path",
            json!({"aws": {"path": "no-slashes"}}),
            "aws.path must start and end with '/'",
        ),
        (
            "bad policy ARN",
            json!({"aws": {"managedPolicyArns": ["arn:aws:s3:::bucket"]}}),
            "aws.managedPolicyArns entries must be IAM policy ARNs",
        ),
        (
            "duplicate inline policy",
            json!({"aws": {"inlinePolicies": [{"name": "p", "document": "{\"Statement\": []}"}, {"name": "p", "document": "{\"Statement\": []}"}]}}),
            "aws.inlinePolicies names must be unique",
        ),
        (
            "bad inline policy name",
            json!({"aws": {"inlinePolicies": [{"name": "has space", "document": "{\"Statement\": []}"}]}}),
            "aws.inlinePolicies[].name must be 1-128 characters",
        ),
        (
            "inline policy document as an object",
            json!({"aws": {"inlinePolicies": [{"name": "p", "document": {"Statement": []}}]}}),
            "must be of type string",
        ),
        (
            "inline policy document past IAM's size",
            json!({"aws": {"inlinePolicies": [{"name": "p", "document": "x".repeat(10241)}]}}),
            "document: Too long",
        ),
        (
            "session too long",
            json!({"aws": {"maxSessionDurationSeconds": 50000}}),
            "should be less than or equal to 43200",
        ),
        (
            "bad GCP account id",
            json!({"gcp": {"accountId": "UPPER"}}),
            "gcp.accountId must be 6-30 characters",
        ),
        (
            "GCP account id too short",
            json!({"gcp": {"accountId": "abc"}}),
            "gcp.accountId must be 6-30 characters",
        ),
        (
            "bad GCP role",
            json!({"gcp": {"roles": [{"role": "owner"}]}}),
            "gcp.roles[].role must be roles/<name>",
        ),
        (
            "bad GCP resource",
            json!({"gcp": {"roles": [{"role": "roles/viewer", "resource": "buckets/x"}]}}),
            "gcp.roles[].resource must be projects/<project-id>",
        ),
        (
            "bad deletion policy",
            json!({"azure": {}, "deletionPolicy": "Orphan"}),
            "Unsupported value: \"Orphan\"",
        ),
    ];
    for (name, spec, want) in binding_cases {
        let rejection = create_error(&bindings, &binding(spec)).await;
        binding_rules.check(name, want, rejection);
    }

    let azure = json!({"tenantId": SUB, "subscriptionId": SUB, "resourceGroup": "rg", "location": "westeurope"});
    let provider_cases = [
        (
            "no cloud",
            json!({"clusterName": "c"}),
            "at least one of spec.azure, spec.aws or spec.gcp must be set",
        ),
        (
            "http issuer",
            json!({"clusterName": "c", "azure": azure, "issuer": "http://example.com"}),
            "issuer must be an https URL",
        ),
        (
            "bad cluster name",
            json!({"clusterName": "Prod_1", "azure": azure}),
            "clusterName must be 1-40 lower-case",
        ),
        (
            "bad tenant",
            json!({"clusterName": "c", "azure": {"tenantId": "x", "subscriptionId": SUB, "resourceGroup": "rg", "location": "l"}}),
            "azure.tenantId must be a GUID",
        ),
        (
            "bad subscription",
            json!({"clusterName": "c", "azure": {"tenantId": SUB, "subscriptionId": "x", "resourceGroup": "rg", "location": "l"}}),
            "azure.subscriptionId must be a GUID",
        ),
        (
            "bad allowed resource group",
            json!({"clusterName": "c", "azure": {"tenantId": SUB, "subscriptionId": SUB, "resourceGroup": "rg", "location": "l", "allowedResourceGroups": ["/subscriptions/00000000-0000-0000-0000-00000000aaaa/rg"]}}),
            "azure.allowedResourceGroups entries must be",
        ),
        (
            "unknown sensitive vault permission",
            json!({"clusterName": "c", "azure": {"tenantId": SUB, "subscriptionId": SUB, "resourceGroup": "rg", "location": "l", "allowedSensitiveKeyVaultPermissions": ["secrets/delete"]}}),
            "azure.allowedSensitiveKeyVaultPermissions may hold only",
        ),
        (
            "bad account",
            json!({"clusterName": "c", "aws": {"accountId": "12"}}),
            "aws.accountId must be 12 digits",
        ),
        (
            "both OIDC options",
            json!({"clusterName": "c", "aws": {"accountId": "123456789012", "createOidcProvider": true, "oidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/x"}}),
            "set either aws.oidcProviderArn or aws.createOidcProvider",
        ),
        (
            "bad OIDC ARN",
            json!({"clusterName": "c", "aws": {"accountId": "123456789012", "oidcProviderArn": "arn:aws:iam::1:role/x"}}),
            "aws.oidcProviderArn must look like",
        ),
        (
            "bad EKS cluster name",
            json!({"clusterName": "c", "aws": {"accountId": "123456789012", "eksClusterName": "-prod"}}),
            "aws.eksClusterName must be an EKS cluster name",
        ),
        (
            "allowed target that is not a role",
            json!({"clusterName": "c", "aws": {"accountId": "123456789012", "allowedTargetRoleArns": ["arn:aws:iam::222222222222:policy/p"]}}),
            "aws.allowedTargetRoleArns entries must be IAM role ARNs",
        ),
        (
            "bad permissions boundary",
            json!({"clusterName": "c", "aws": {"accountId": "123456789012", "permissionsBoundaryArn": "arn:aws:iam::123456789012:role/boundary"}}),
            "aws.permissionsBoundaryArn must be an IAM policy ARN",
        ),
        (
            "bad project",
            json!({"clusterName": "c", "gcp": {"projectId": "P"}}),
            "gcp.projectId must be 6-30",
        ),
        (
            "pool without number",
            json!({"clusterName": "c", "gcp": {"projectId": "my-project", "workloadIdentityPool": "pool1"}}),
            "gcp.projectNumber is required",
        ),
        (
            "bad project number",
            json!({"clusterName": "c", "gcp": {"projectId": "my-project", "projectNumber": "12a"}}),
            "gcp.projectNumber must be digits",
        ),
        (
            "bad workload identity pool",
            json!({"clusterName": "c", "gcp": {"projectId": "my-project", "projectNumber": "123456", "workloadIdentityPool": "Pool_1"}}),
            "gcp.workloadIdentityPool must be 4-32",
        ),
        (
            "bad workload identity provider",
            json!({"clusterName": "c", "gcp": {"projectId": "my-project", "workloadIdentityProvider": "p"}}),
            "gcp.workloadIdentityProvider must be 4-32",
        ),
        (
            "bad adoption",
            json!({"clusterName": "c", "azure": azure, "adoption": "Always"}),
            "Unsupported value: \"Always\"",
        ),
    ];
    for (name, spec, want) in provider_cases {
        let rejection = create_error(&providers, &provider(spec)).await;
        provider_rules.check(&format!("provider {name}"), want, rejection);
    }

    // Valid objects are accepted, and defaults are filled in by the schema.
    let created = bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding(json!({"azure": {
                "identityName": "id-1", "subscriptionId": SUB, "location": "westeurope"
            }})))
            .expect("obj"),
        )
        .await
        .expect("valid binding accepted");
    assert_eq!(created.data["spec"]["serviceAccount"]["create"], true);
    assert_eq!(
        created.data["spec"]["serviceAccount"]["automountToken"],
        false
    );
    assert_eq!(created.data["spec"]["deletionPolicy"], "Delete");
    for (name, spec) in [
        (
            "b-aws",
            json!({"aws": {"roleName": "role-1", "path": "/wib/"}}),
        ),
        ("b-gcp", json!({"gcp": {"accountId": "account-1"}})),
        ("b-gcp-direct", json!({"gcp": {"mode": "Direct"}})),
    ] {
        bindings
            .create(
                &PostParams::default(),
                &serde_json::from_value(binding_named(name, spec)).expect("obj"),
            )
            .await
            .unwrap_or_else(|e| panic!("valid binding {name} accepted: {e}"));
    }
    providers
        .create(
            &PostParams::default(),
            &serde_json::from_value(provider(json!({
                "clusterName": "c",
                "azure": azure,
                "aws": {"accountId": "123456789012"},
                "gcp": {"projectId": "my-project", "projectNumber": "123456"},
            })))
            .expect("obj"),
        )
        .await
        .expect("valid provider accepted");

    // Fields whose change would orphan a cloud identity are immutable
    // (transition rules: the object exists, the update is refused).
    let immutable = [
        (
            "rename identity",
            "b",
            json!({"azure": {"identityName": "id-2"}}),
            "spec.azure.identityName is immutable",
        ),
        (
            "drop identity name",
            "b",
            json!({"azure": {"identityName": null}}),
            "spec.azure.identityName is immutable",
        ),
        (
            "switch cloud",
            "b",
            json!({"azure": null, "aws": {}}),
            "the cloud of a binding cannot change",
        ),
        (
            "set provider",
            "b",
            json!({"providerRef": {"name": "other"}}),
            "spec.providerRef is immutable",
        ),
        (
            "change ServiceAccount",
            "b",
            json!({"serviceAccount": {"name": "other"}}),
            "spec.serviceAccount.name is immutable",
        ),
        (
            "move resource group",
            "b",
            json!({"azure": {"resourceGroup": "other"}}),
            "spec.azure.resourceGroup is immutable",
        ),
        (
            "move subscription",
            "b",
            json!({"azure": {"subscriptionId": OTHER_SUB}}),
            "spec.azure.subscriptionId is immutable",
        ),
        (
            "move region",
            "b",
            json!({"azure": {"location": "northeurope"}}),
            "spec.azure.location is immutable",
        ),
        (
            "rename role",
            "b-aws",
            json!({"aws": {"roleName": "role-2"}}),
            "spec.aws.roleName is immutable",
        ),
        (
            "move role path",
            "b-aws",
            json!({"aws": {"path": "/other/"}}),
            "spec.aws.path is immutable",
        ),
        (
            "rename service account",
            "b-gcp",
            json!({"gcp": {"accountId": "account-2"}}),
            "spec.gcp.accountId is immutable",
        ),
        (
            "switch GCP mode",
            "b-gcp-direct",
            json!({"gcp": {"mode": "ServiceAccount"}}),
            "spec.gcp.mode is immutable",
        ),
    ];
    for (name, object, spec, want) in immutable {
        let rejection = update_error(&bindings, object, spec).await;
        binding_rules.check(name, want, rejection);
    }
    // Mutable fields change freely.
    let mutable = update_error(
        &bindings,
        "b",
        json!({"deletionPolicy": "Retain", "azure": {"tokenExpirationSeconds": 7200}}),
    )
    .await;
    assert!(mutable.is_none(), "mutable fields refused: {mutable:?}");

    let provider_immutable = [
        (
            "rename cluster",
            json!({"clusterName": "d"}),
            "clusterName is immutable",
        ),
        (
            "move tenant",
            json!({"azure": {"tenantId": OTHER_SUB}}),
            "azure.tenantId is immutable",
        ),
        (
            "move subscription",
            json!({"azure": {"subscriptionId": OTHER_SUB}}),
            "azure.subscriptionId is immutable",
        ),
        (
            "move account",
            json!({"aws": {"accountId": "210987654321"}}),
            "aws.accountId is immutable",
        ),
        (
            "move the EKS cluster",
            json!({"aws": {"eksClusterName": "other-cluster"}}),
            "the EKS cluster of pod identity associations",
        ),
        (
            "move project",
            json!({"gcp": {"projectId": "other-project"}}),
            "gcp.projectId is immutable",
        ),
        (
            "move resource group",
            json!({"azure": {"resourceGroup": "other-rg"}}),
            "azure.resourceGroup is immutable",
        ),
        (
            "move region",
            json!({"azure": {"location": "northeurope"}}),
            "azure.location is immutable",
        ),
        (
            "change the project number",
            json!({"gcp": {"projectNumber": "654321"}}),
            "gcp.projectNumber is immutable",
        ),
        (
            "switch from GKE to a pool",
            json!({"gcp": {"workloadIdentityPool": "pool-1"}}),
            "gcp.workloadIdentityPool is immutable",
        ),
    ];
    for (name, spec, want) in provider_immutable {
        let rejection = update_error(&providers, "p", spec).await;
        provider_rules.check(&format!("provider {name}"), want, rejection);
    }

    // Every CEL rule of both CRDs was the one reason some case above was
    // refused: a rule added without a case here fails the suite.
    binding_rules.assert_all_tested();
    provider_rules.assert_all_tested();
}
