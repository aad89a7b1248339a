//! Which ClusterIdentityProvider a binding uses, and whether it may: pure
//! functions over the providers wib has cached.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use wib_api::conditions::Reason;
use wib_api::keys::DEFAULT_PROVIDER_ANNOTATION;
use wib_api::{Cloud, ClusterIdentityProvider, WorkloadIdentityBinding};

/// Why a binding cannot use a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    fn new(reason: Reason, message: String) -> Self {
        Self { reason, message }
    }
}

/// Picks the provider a binding names, or the single default one.
pub fn select(
    binding: &WorkloadIdentityBinding,
    providers: &[Arc<ClusterIdentityProvider>],
) -> Result<Arc<ClusterIdentityProvider>, Refusal> {
    if let Some(reference) = &binding.spec.provider_ref {
        return providers
            .iter()
            .find(|p| p.name_any() == reference.name)
            .cloned()
            .ok_or_else(|| {
                Refusal::new(
                    Reason::ProviderNotFound,
                    format!(
                        "ClusterIdentityProvider {:?} does not exist",
                        reference.name
                    ),
                )
            });
    }
    let mut defaults: Vec<&Arc<ClusterIdentityProvider>> = providers
        .iter()
        .filter(|p| {
            p.annotations()
                .get(DEFAULT_PROVIDER_ANNOTATION)
                .map(String::as_str)
                == Some("true")
        })
        .collect();
    defaults.sort_by_key(|p| p.name_any());
    match defaults.as_slice() {
        [only] => Ok(Arc::clone(only)),
        [] => Err(Refusal::new(
            Reason::ProviderNotFound,
            format!(
                "spec.providerRef is not set and no ClusterIdentityProvider is annotated {DEFAULT_PROVIDER_ANNOTATION}=\"true\""
            ),
        )),
        several => Err(Refusal::new(
            Reason::ProviderAmbiguous,
            format!(
                "spec.providerRef is not set and {} ClusterIdentityProviders are annotated {DEFAULT_PROVIDER_ANNOTATION}=\"true\" ({}); set spec.providerRef",
                several.len(),
                several
                    .iter()
                    .map(|p| p.name_any())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Namespaces that a provider without `namespaceSelector` still does not
/// admit, with the operator's own: an identity bound there would serve the
/// cluster's own components (or wib itself). A selector that matches one
/// admits it: the platform team then said so.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Checks the provider's guardrails that do not need the cloud: the
/// namespace selector and whether it configures the binding's cloud.
/// `operator_namespace` is where wib itself runs.
pub fn provider_admits(
    provider: &ClusterIdentityProvider,
    cloud: Cloud,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    operator_namespace: &str,
) -> Result<(), Refusal> {
    match &provider.spec.namespace_selector {
        Some(selector) if !crate::selector::matches(selector, namespace_labels) => {
            return Err(Refusal::new(
                Reason::NamespaceNotAllowed,
                format!(
                    "namespace {namespace:?} does not match the namespaceSelector of ClusterIdentityProvider {:?}",
                    provider.name_any()
                ),
            ));
        }
        None if SYSTEM_NAMESPACES.contains(&namespace) || namespace == operator_namespace => {
            return Err(Refusal::new(
                Reason::NamespaceNotAllowed,
                format!(
                    "namespace {namespace:?} is a system namespace or wib's own; ClusterIdentityProvider {:?} has no namespaceSelector, and only a selector that matches it admits it",
                    provider.name_any()
                ),
            ));
        }
        _ => {}
    }
    if !provider.spec.configures(cloud) {
        return Err(Refusal::new(
            Reason::CloudNotConfigured,
            format!(
                "ClusterIdentityProvider {:?} has no {} configuration (spec.{})",
                provider.name_any(),
                cloud,
                cloud.as_str()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde_json::json;

    fn provider(name: &str, default: bool) -> Arc<ClusterIdentityProvider> {
        let annotations = if default {
            json!({DEFAULT_PROVIDER_ANNOTATION: "true"})
        } else {
            json!({})
        };
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "wib.dev/v1alpha1",
                "kind": "ClusterIdentityProvider",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"clusterName": "c1", "azure": {
                    "tenantId": "00000000-0000-0000-0000-000000000001",
                    "subscriptionId": "00000000-0000-0000-0000-000000000002",
                    "resourceGroup": "rg", "location": "westeurope"}},
            }))
            .expect("valid provider"),
        )
    }

    fn binding(provider_ref: Option<&str>) -> WorkloadIdentityBinding {
        let mut spec = json!({"azure": {}});
        if let Some(name) = provider_ref {
            spec["providerRef"] = json!({"name": name});
        }
        serde_json::from_value(json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": "b", "namespace": "ns"}, "spec": spec,
        }))
        .expect("valid binding")
    }

    #[test]
    fn select_cases() {
        let a = provider("a", false);
        let b = provider("b", true);
        let c = provider("c", true);
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<Arc<ClusterIdentityProvider>>,
            Result<&'a str, Reason>,
        );
        let cases: Vec<Case> = vec![
            ("named", Some("a"), vec![a.clone(), b.clone()], Ok("a")),
            (
                "named missing",
                Some("x"),
                vec![a.clone()],
                Err(Reason::ProviderNotFound),
            ),
            ("default", None, vec![a.clone(), b.clone()], Ok("b")),
            (
                "no default",
                None,
                vec![a.clone()],
                Err(Reason::ProviderNotFound),
            ),
            (
                "two defaults",
                None,
                vec![b, c],
                Err(Reason::ProviderAmbiguous),
            ),
        ];
        for (name, reference, providers, want) in cases {
            let got = select(&binding(reference), &providers)
                .map(|p| p.name_any())
                .map_err(|r| r.reason);
            assert_eq!(got, want.map(str::to_string), "{name}");
        }
    }

    #[test]
    fn provider_admits_enforces_namespace_selector_and_cloud() {
        let mut p = (*provider("p", true)).clone();
        p.spec.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("wib.dev/allowed".into(), "true".into())])),
            ..Default::default()
        });
        let allowed = BTreeMap::from([("wib.dev/allowed".to_string(), "true".to_string())]);
        assert_eq!(
            provider_admits(&p, Cloud::Azure, "ns", &allowed, "wib-system"),
            Ok(())
        );
        assert_eq!(
            provider_admits(&p, Cloud::Azure, "ns", &BTreeMap::new(), "wib-system")
                .map_err(|r| r.reason),
            Err(Reason::NamespaceNotAllowed)
        );
        assert_eq!(
            provider_admits(&p, Cloud::Aws, "ns", &allowed, "wib-system").map_err(|r| r.reason),
            Err(Reason::CloudNotConfigured)
        );
        // A selector that matches a system namespace admits it.
        assert_eq!(
            provider_admits(&p, Cloud::Azure, "kube-system", &allowed, "wib-system"),
            Ok(())
        );
    }

    #[test]
    fn without_a_selector_system_namespaces_and_wibs_own_are_not_admitted() {
        let p = provider("p", true);
        let none = BTreeMap::new();
        for ns in ["kube-system", "kube-public", "kube-node-lease", "wib-ops"] {
            assert_eq!(
                provider_admits(&p, Cloud::Azure, ns, &none, "wib-ops").map_err(|r| r.reason),
                Err(Reason::NamespaceNotAllowed),
                "{ns}"
            );
        }
        assert_eq!(
            provider_admits(&p, Cloud::Azure, "team-a", &none, "wib-ops"),
            Ok(())
        );
        assert_eq!(
            provider_admits(&p, Cloud::Azure, "wib-system", &none, "wib-ops"),
            Ok(())
        );
    }
}
