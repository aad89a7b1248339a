//! Observe: every read a reconcile needs, and nothing else. Providers,
//! sibling bindings and namespace labels come from the controller's caches;
//! the ServiceAccount is read live so plan sees its current resourceVersion.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
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
    let namespace_labels = ctx.namespace_labels(&namespace);
    let service_accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let service_account = service_accounts.get_opt(&sa_name).await?;
    let claimants = ctx.claimants(binding);
    Ok(Observed {
        providers: ctx.providers.state(),
        namespace_labels,
        service_account,
        claimants,
        operator_namespace: ctx.settings.lease_namespace.clone(),
    })
}
