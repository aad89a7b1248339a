//! Plan: pure decisions from what observe found — may the binding proceed,
//! and what must its ServiceAccount carry.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use wib_api::conditions::Reason;
use wib_api::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, binding_annotation};
use wib_api::{Cloud, ClusterIdentityProvider, WorkloadIdentityBinding};

use super::observe::Observed;
use crate::provider::resolve::{self, Refusal};
use crate::serviceaccount::{self, DesiredServiceAccount};

/// The binding may proceed through this provider for this cloud.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub cloud: Cloud,
    pub provider: Arc<ClusterIdentityProvider>,
}

/// Checks everything that needs no cloud call: the cloud block, the
/// provider and its guardrails, and ServiceAccount ownership by another binding.
pub fn admit(binding: &WorkloadIdentityBinding, observed: &Observed) -> Result<Admitted, Refusal> {
    let cloud = binding.spec.cloud().ok_or_else(|| Refusal {
        reason: Reason::CloudNotConfigured,
        message: "exactly one of spec.azure, spec.aws or spec.gcp must be set".into(),
    })?;
    let provider = resolve::select(binding, &observed.providers)?;
    resolve::provider_admits(
        &provider,
        cloud,
        &binding.namespace().unwrap_or_default(),
        &observed.namespace_labels,
        &observed.operator_namespace,
    )?;
    if let Some(holder) = claimant(
        binding,
        cloud,
        &observed.claimants,
        observed.service_account.as_ref(),
    ) {
        return Err(Refusal {
            reason: Reason::ServiceAccountConflict,
            message: format!(
                "WorkloadIdentityBinding {holder:?} already binds ServiceAccount {:?} to {cloud}; one ServiceAccount has one identity per cloud",
                binding.service_account_name()
            ),
        });
    }
    Ok(Admitted { cloud, provider })
}

/// The binding that holds the ServiceAccount for this cloud, if it is not
/// `binding`. The incumbent named in the ServiceAccount's annotation keeps
/// it; otherwise the oldest claimant (then the first by name) does.
/// `claimants` are the other bindings in the namespace naming the same
/// ServiceAccount.
pub fn claimant(
    binding: &WorkloadIdentityBinding,
    cloud: Cloud,
    claimants: &[Arc<WorkloadIdentityBinding>],
    service_account: Option<&ServiceAccount>,
) -> Option<String> {
    let rivals: Vec<&Arc<WorkloadIdentityBinding>> = claimants
        .iter()
        .filter(|other| other.spec.cloud() == Some(cloud) && other.uid() != binding.uid())
        .collect();
    if rivals.is_empty() {
        return None;
    }
    let incumbent =
        service_account.and_then(|sa| sa.annotations().get(&binding_annotation(cloud)).cloned());
    if let Some(incumbent) = incumbent {
        if incumbent == binding.name_any() {
            return None;
        }
        if rivals.iter().any(|r| r.name_any() == incumbent) {
            return Some(incumbent);
        }
    }
    let key = |b: &WorkloadIdentityBinding| {
        (
            b.metadata.creation_timestamp.clone().map(|t| t.0),
            b.name_any(),
        )
    };
    let mine = key(binding);
    rivals
        .iter()
        .filter(|r| key(r) < mine)
        .min_by_key(|r| key(r))
        .map(|r| r.name_any())
}

/// What to do with the ServiceAccount.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceAccountPlan {
    /// It already carries exactly the binding's fields: no write.
    InSync(DesiredServiceAccount),
    /// Server-side apply these fields (conditionally on `resource_version`
    /// when the ServiceAccount must already exist).
    Apply {
        desired: DesiredServiceAccount,
        resource_version: Option<String>,
    },
    /// `create: false` and it does not exist.
    Missing { name: String },
}

/// Plans the ServiceAccount from the binding and the cloud's annotations and labels.
pub fn service_account(
    binding: &WorkloadIdentityBinding,
    cloud: Cloud,
    existing: Option<&ServiceAccount>,
    cloud_annotations: &BTreeMap<String, String>,
    cloud_labels: &BTreeMap<String, String>,
) -> ServiceAccountPlan {
    let name = binding.service_account_name();
    let spec = &binding.spec.service_account;
    if !spec.create && existing.is_none() {
        return ServiceAccountPlan::Missing { name };
    }
    let owns = spec.create && serviceaccount::should_own(existing);
    let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())]);
    labels.extend(cloud_labels.clone());
    let mut annotations = BTreeMap::from([(binding_annotation(cloud), binding.name_any())]);
    annotations.extend(cloud_annotations.clone());
    let desired = DesiredServiceAccount {
        name,
        namespace: binding.namespace().unwrap_or_default(),
        labels,
        annotations,
        owner: if owns {
            serviceaccount::owner_reference(binding)
        } else {
            None
        },
        automount_token: owns.then_some(spec.automount_token),
    };
    match existing {
        Some(sa)
            if serviceaccount::in_sync(
                sa,
                &desired,
                &serviceaccount::field_manager(&binding.name_any()),
            ) =>
        {
            ServiceAccountPlan::InSync(desired)
        }
        Some(sa) => ServiceAccountPlan::Apply {
            desired,
            resource_version: sa.resource_version(),
        },
        None => ServiceAccountPlan::Apply {
            desired,
            resource_version: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn binding(name: &str, created: i64, cloud: &str, create: bool) -> WorkloadIdentityBinding {
        let mut b: WorkloadIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {cloud: {}, "serviceAccount": {"name": "app", "create": create}},
        }))
        .expect("valid binding");
        b.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).expect("time")));
        b
    }

    fn sa_annotated(holder: &str) -> ServiceAccount {
        serde_json::from_value(
            json!({"metadata": {"name": "app", "annotations": {"wib.dev/azure-binding": holder}}}),
        )
        .expect("valid sa")
    }

    #[test]
    fn claimant_cases() {
        let old = Arc::new(binding("old", 1, "azure", true));
        let new = binding("new", 2, "azure", true);
        let same_second = Arc::new(binding("a-first", 2, "azure", true));
        let aws = Arc::new(binding("aws", 1, "aws", true));
        let incumbent = sa_annotated("new");
        type Case<'a> = (
            &'a str,
            Vec<Arc<WorkloadIdentityBinding>>,
            Option<&'a ServiceAccount>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("alone", vec![], None, None),
            (
                "older binding holds it",
                vec![old.clone()],
                None,
                Some("old"),
            ),
            (
                "same second: first by name",
                vec![same_second],
                None,
                Some("a-first"),
            ),
            ("other cloud does not conflict", vec![aws], None, None),
            (
                "incumbent keeps it",
                vec![old.clone()],
                Some(&incumbent),
                None,
            ),
        ];
        for (name, rivals, sa, want) in cases {
            assert_eq!(
                claimant(&new, Cloud::Azure, &rivals, sa).as_deref(),
                want,
                "{name}"
            );
        }
        // The older one never yields to the newer one.
        assert_eq!(claimant(&old, Cloud::Azure, &[Arc::new(new)], None), None);
    }

    #[test]
    fn service_account_plan_cases() {
        let creating = binding("b", 1, "azure", true);
        let annotating = binding("b", 1, "azure", false);
        let none = BTreeMap::new();
        let foreign: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "app", "resourceVersion": "7"}}))
                .expect("sa");

        match service_account(&creating, Cloud::Azure, None, &none, &none) {
            ServiceAccountPlan::Apply {
                desired,
                resource_version,
            } => {
                assert!(desired.owner.is_some(), "creates and owns");
                assert_eq!(desired.automount_token, Some(false));
                assert_eq!(resource_version, None);
                assert_eq!(
                    desired
                        .annotations
                        .get("wib.dev/azure-binding")
                        .map(String::as_str),
                    Some("b")
                );
            }
            other => panic!("{other:?}"),
        }
        match service_account(&creating, Cloud::Azure, Some(&foreign), &none, &none) {
            ServiceAccountPlan::Apply {
                desired,
                resource_version,
            } => {
                assert!(
                    desired.owner.is_none(),
                    "never owns a ServiceAccount someone else made"
                );
                assert_eq!(desired.automount_token, None);
                assert_eq!(resource_version.as_deref(), Some("7"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            service_account(&annotating, Cloud::Azure, None, &none, &none),
            ServiceAccountPlan::Missing { name: "app".into() }
        );
    }
}
