//! Observe: every read a reconcile needs, and nothing else. Providers and
//! sibling bindings come from the controller's caches; the namespace and the
//! ServiceAccount are read live so plan sees their current resourceVersion.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::Api;
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use crate::context::Context;
use crate::error::Error;

/// What a reconcile found.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub providers: Vec<Arc<ClusterIdentityProvider>>,
    pub namespace_labels: BTreeMap<String, String>,
    pub service_account: Option<ServiceAccount>,
    /// Other bindings in the namespace that name the same ServiceAccount.
    pub claimants: Vec<Arc<WorkloadIdentityBinding>>,
    /// Where wib itself runs (never admitted without a namespaceSelector).
    pub operator_namespace: String,
}

pub async fn observe(binding: &WorkloadIdentityBinding, ctx: &Context) -> Result<Observed, Error> {
    let namespace = binding
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let sa_name = binding.service_account_name();
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let namespace_labels = namespaces
        .get_opt(&namespace)
        .await?
        .map(|ns| ns.labels().clone())
        .unwrap_or_default();
    let service_accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let service_account = service_accounts.get_opt(&sa_name).await?;
    let claimants = ctx
        .bindings
        .state()
        .into_iter()
        .filter(|other| {
            other.namespace().as_deref() == Some(namespace.as_str())
                && other.uid() != binding.uid()
                && other.service_account_name() == sa_name
        })
        .collect();
    Ok(Observed {
        providers: ctx.providers.state(),
        namespace_labels,
        service_account,
        claimants,
        operator_namespace: ctx.settings.lease_namespace.clone(),
    })
}
