//! Every CEL and schema rule, against the real API server: the bad object is
//! rejected at admission with a message a user understands.

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};
use wib_testenv::{ControlPlane, Options};

const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";

fn binding(spec: Value) -> Value {
    json!({"apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
           "metadata": {"name": "b", "namespace": "default"}, "spec": spec})
}

fn provider(spec: Value) -> Value {
    json!({"apiVersion": "wib.dev/v1alpha1", "kind": "ClusterIdentityProvider",
           "metadata": {"name": "p"}, "spec": spec})
}

async fn create_error(api: &Api<kube::api::DynamicObject>, body: &Value) -> Option<String> {
    let obj: kube::api::DynamicObject = serde_json::from_value(body.clone()).expect("object");
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => None,
        Err(kube::Error::Api(e)) => Some(e.message),
        Err(e) => Some(e.to_string()),
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
    let bindings: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ar_b);
    let providers: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar_p);

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
            "token expiration too short",
            json!({"azure": {"tokenExpirationSeconds": 60}}),
            "should be greater than or equal to 3600",
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
        let message = create_error(&bindings, &binding(spec))
            .await
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(message.contains(want), "{name}: {message}");
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
            "bad adoption",
            json!({"clusterName": "c", "azure": azure, "adoption": "Always"}),
            "Unsupported value: \"Always\"",
        ),
    ];
    for (name, spec, want) in provider_cases {
        let message = create_error(&providers, &provider(spec))
            .await
            .unwrap_or_else(|| panic!("provider {name}: accepted"));
        assert!(message.contains(want), "provider {name}: {message}");
    }

    // Valid objects are accepted, and defaults are filled in by the schema.
    let created = bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding(json!({"azure": {"identityName": "id-1"}})))
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
    providers
        .create(
            &PostParams::default(),
            &serde_json::from_value(provider(json!({"clusterName": "c", "azure": azure})))
                .expect("obj"),
        )
        .await
        .expect("valid provider accepted");

    // Fields whose change would orphan a cloud identity are immutable.
    let update = |spec: Value| {
        let bindings = bindings.clone();
        async move {
            let patch = json!({"spec": spec});
            match bindings
                .patch("b", &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => None,
                Err(kube::Error::Api(e)) => Some(e.message),
                Err(e) => Some(e.to_string()),
            }
        }
    };
    let immutable = [
        (
            "rename identity",
            json!({"azure": {"identityName": "id-2"}}),
            "spec.azure.identityName is immutable",
        ),
        (
            "drop identity name",
            json!({"azure": {"identityName": null}}),
            "spec.azure.identityName is immutable",
        ),
        (
            "switch cloud",
            json!({"azure": null, "aws": {}}),
            "the cloud of a binding cannot change",
        ),
        (
            "set provider",
            json!({"providerRef": {"name": "other"}}),
            "spec.providerRef is immutable",
        ),
        (
            "change ServiceAccount",
            json!({"serviceAccount": {"name": "other"}}),
            "spec.serviceAccount.name is immutable",
        ),
        (
            "move resource group",
            json!({"azure": {"resourceGroup": "other"}}),
            "spec.azure.resourceGroup is immutable",
        ),
    ];
    for (name, spec, want) in immutable {
        let message = update(spec)
            .await
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(message.contains(want), "{name}: {message}");
    }
    // Mutable fields change freely.
    assert_eq!(
        update(json!({"deletionPolicy": "Retain", "azure": {"tokenExpirationSeconds": 7200}}))
            .await,
        None
    );

    let provider_update = providers
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"clusterName": "d"}})),
        )
        .await
        .expect_err("clusterName is immutable");
    assert!(
        provider_update
            .to_string()
            .contains("clusterName is immutable"),
        "{provider_update}"
    );
}
