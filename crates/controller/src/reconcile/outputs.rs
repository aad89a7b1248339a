//! `spec.outputs.configMap`: the identity's non-secret facts in a ConfigMap
//! of the binding's namespace, for workloads to read. wib writes only a
//! ConfigMap it made for this binding (its controller reference), applies
//! it server-side only when its data differs (no write in a steady state),
//! and deletes it with the binding (the binding's finalizer; its owner
//! reference lets the garbage collector finish what a crash left).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use wib_api::conditions::{self, Desired, OUTPUTS_READY, Reason};
use wib_api::{Cloud, WorkloadIdentityBinding, WorkloadIdentityBindingStatus};

use super::status::{CloudStep, Progress};
use crate::context::Context;
use crate::webhook::inject::{self, GCP_POOL_PROVIDER_ANNOTATION};

/// Field manager of the outputs ConfigMap.
const MANAGER: &str = "wib-outputs";

/// The facts a binding's outcome gives its workloads.
pub fn facts(
    cloud: Cloud,
    outcome: &wib_cloud::Outcome,
    endpoints: &inject::Endpoints,
) -> BTreeMap<String, String> {
    let status = &outcome.status;
    let mut data = BTreeMap::from([("cloud".to_string(), cloud.to_string())]);
    let mut put = |key: &str, value: Option<&String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            data.insert(key.to_string(), v.clone());
        }
    };
    put("identity", status.identity.as_ref());
    if let Some(azure) = &status.azure {
        put("clientId", azure.client_id.as_ref());
        put("tenantId", azure.tenant_id.as_ref());
        put("principalId", azure.principal_id.as_ref());
        put("resourceId", azure.resource_id.as_ref());
    }
    if let Some(aws) = &status.aws {
        put("roleArn", aws.role_arn.as_ref());
    }
    if let Some(gcp) = &status.gcp {
        put("email", gcp.email.as_ref());
        if gcp.email.is_none() {
            // Mode Direct: the principal the roles were granted to.
            put("member", gcp.member.as_ref());
        }
        if let Some(provider) = outcome.annotations.get(GCP_POOL_PROVIDER_ANNOTATION) {
            let email = gcp.email.as_deref();
            let configuration = inject::gcp_credential_configuration(provider, email, endpoints);
            data.insert(
                "credential-configuration.json".into(),
                configuration.to_string(),
            );
        }
    }
    data
}

/// The outputs step, after status is computed: writes the ConfigMap when
/// the cloud step told the identity anew, and reports `OutputsReady`.
pub async fn step(
    binding: &WorkloadIdentityBinding,
    progress: &Progress,
    status: &mut WorkloadIdentityBindingStatus,
    ctx: &Context,
) {
    let Some(name) = config_map_name(binding).map(str::to_string) else {
        return;
    };
    let previous = binding.status.as_ref();
    let Progress::Ran {
        cloud,
        cloud_step: CloudStep::Done(outcome),
        ..
    } = progress
    else {
        if let Some(c) = previous.and_then(|p| conditions::find(&p.conditions, OUTPUTS_READY)) {
            status.conditions.push(c.clone());
        }
        return;
    };
    let data = facts(*cloud, outcome, &ctx.settings.webhook.endpoints());
    let desired = match write(binding, &name, data, ctx).await {
        Ok(()) => Desired::new(
            OUTPUTS_READY,
            true,
            Reason::Applied,
            format!("ConfigMap {name:?} holds the identity's facts"),
        ),
        Err(Refused::Conflict) => Desired::new(
            OUTPUTS_READY,
            false,
            Reason::OutputConflict,
            format!(
                "ConfigMap {name:?} exists and was not made by this binding: wib writes only a ConfigMap it made; name another"
            ),
        ),
        Err(Refused::Api(error)) => Desired::new(
            OUTPUTS_READY,
            false,
            Reason::TransientError,
            format!("writing ConfigMap {name:?}: {error}"),
        ),
    };
    super::status::add_conditions(
        status,
        previous,
        &[desired],
        binding.metadata.generation,
        (ctx.clock)(),
    );
}

/// Deletion: the ConfigMap the binding's outputs name, if this binding
/// made it.
pub async fn remove(binding: &WorkloadIdentityBinding, ctx: &Context) -> Result<(), kube::Error> {
    let Some(name) = config_map_name(binding) else {
        return Ok(());
    };
    let api: Api<ConfigMap> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    let Some(live) = api.get_opt(name).await? else {
        return Ok(());
    };
    if made_by(&live, binding) {
        match api.delete(name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The ConfigMap `spec.outputs` names, if any.
fn config_map_name(binding: &WorkloadIdentityBinding) -> Option<&str> {
    binding.spec.outputs.as_ref()?.config_map.as_deref()
}

fn made_by(config_map: &ConfigMap, binding: &WorkloadIdentityBinding) -> bool {
    config_map
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == binding.metadata.uid.as_ref())
}

enum Refused {
    Conflict,
    Api(String),
}

async fn write(
    binding: &WorkloadIdentityBinding,
    name: &str,
    data: BTreeMap<String, String>,
    ctx: &Context,
) -> Result<(), Refused> {
    let namespace = binding.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = api
        .get_opt(name)
        .await
        .map_err(|e| Refused::Api(e.to_string()))?;
    if let Some(live) = &live {
        if !made_by(live, binding) {
            return Err(Refused::Conflict);
        }
        if live.data.as_ref() == Some(&data) {
            return Ok(());
        }
    }
    let owner = binding
        .controller_owner_ref(&())
        .ok_or_else(|| Refused::Api("the binding has no uid yet".into()))?;
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner],
            "labels": {wib_api::keys::MANAGED_BY_LABEL: wib_api::keys::MANAGED_BY_VALUE}},
        "data": data,
    });
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Refused::Api(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wib_api::binding::{AwsStatus, AzureStatus};

    fn endpoints() -> inject::Endpoints {
        inject::Endpoints {
            azure_authority_host: String::new(),
            aws_region: None,
            gcp_sts_url: "https://sts.googleapis.com/v1/token".into(),
            gcp_credentials_url: "https://iamcredentials.googleapis.com".into(),
        }
    }

    #[test]
    fn each_cloud_writes_its_own_facts_and_nothing_secret() {
        let mut outcome = wib_cloud::Outcome::default();
        outcome.status.identity = Some("cid".into());
        outcome.status.azure = Some(AzureStatus {
            client_id: Some("cid".into()),
            tenant_id: Some("tid".into()),
            principal_id: Some("pid".into()),
            ..Default::default()
        });
        let azure = facts(Cloud::Azure, &outcome, &endpoints());
        assert_eq!(azure["clientId"], "cid");
        assert_eq!(azure["tenantId"], "tid");
        assert_eq!(azure["principalId"], "pid");
        assert!(
            !azure.contains_key("resourceId"),
            "empty facts are left out"
        );

        let mut aws = wib_cloud::Outcome::default();
        aws.status.aws = Some(AwsStatus {
            role_arn: Some("arn:aws:iam::1:role/r".into()),
            ..Default::default()
        });
        assert_eq!(
            facts(Cloud::Aws, &aws, &endpoints())["roleArn"],
            "arn:aws:iam::1:role/r"
        );
    }

    #[test]
    fn gcp_direct_mode_writes_its_principal_and_a_configuration_without_impersonation() {
        let mut outcome = wib_cloud::Outcome::default();
        let member = "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/system:serviceaccount:ns:sa";
        outcome.status.gcp = Some(wib_api::binding::GcpStatus {
            email: None,
            member: Some(member.into()),
        });
        outcome.annotations.insert(
            GCP_POOL_PROVIDER_ANNOTATION.into(),
            "projects/1/locations/global/workloadIdentityPools/p/providers/x".into(),
        );
        let gcp = facts(Cloud::Gcp, &outcome, &endpoints());
        assert_eq!(gcp["member"], member);
        assert!(!gcp.contains_key("email"));
        let configuration: serde_json::Value =
            serde_json::from_str(&gcp["credential-configuration.json"]).expect("json");
        assert!(
            configuration
                .get("service_account_impersonation_url")
                .is_none(),
            "{configuration}"
        );
    }
}
