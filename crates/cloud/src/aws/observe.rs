//! Reads only: the role, the cluster's IAM OIDC provider, the role's
//! policies where they are the binding's to manage, and whether the
//! policies the plan would attach exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use wib_api::binding::AwsMode;

use std::future::Future;

use super::Clients;
use super::eks::Association;
use super::fleet::Recalled;
use super::iam::{Iam, OidcProvider, Role};
use super::target::{self, Target};
use crate::ownership::Claim;
use crate::steps::{Intent, Observe};
use crate::{CloudError, Request};

/// What IAM holds for one binding.
#[derive(Debug, Default)]
pub struct Observed {
    pub role: Option<Role>,
    /// The IAM OIDC provider the trust policy names; read for a reconcile
    /// whose role the binding may claim, `None` otherwise or when absent.
    pub oidc_provider: Option<OidcProvider>,
    /// Managed policies attached to the role, and its inline policies'
    /// names; read only where the plan may change them.
    pub attached: Vec<String>,
    pub inline_names: Vec<String>,
    /// The documents of the inline policies the spec lists, as the role
    /// holds them (absent: not there, or gone between list and read).
    pub inline_documents: BTreeMap<String, Value>,
    /// Policies the plan would newly name (managed policies to attach, the
    /// permissions boundary to set) that IAM says do not exist.
    pub missing_policies: BTreeSet<String>,
    /// IAM's trust-policy quota in this account, as configured: AWS raises
    /// it per account on request.
    pub trust_policy_max_chars: usize,
    /// The EKS pod identity association of the binding's ServiceAccount,
    /// whoever made it; read only while mode PodIdentity is or was the
    /// binding's (an IRSA binding makes no EKS call).
    pub association: Option<Association>,
    /// EKS has no cluster of the provider's name (associations were read).
    pub eks_cluster_missing: bool,
}

/// The reads observe makes: live from IAM, or recalled from the fleet
/// snapshot (see [`super::fleet`]). One list of reads for both, so a
/// recalled observation is what a live one would have read then.
pub trait Reads: Send + Sync {
    fn role(&self, name: &str) -> impl Future<Output = Result<Option<Role>, CloudError>> + Send;
    fn attached(&self, name: &str) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;
    fn inline_names(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;
    fn inline(
        &self,
        name: &str,
        policy: &str,
    ) -> impl Future<Output = Result<Option<Value>, CloudError>> + Send;
    fn oidc_provider(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<OidcProvider>, CloudError>> + Send;
    fn policy_exists(&self, arn: &str) -> impl Future<Output = Result<bool, CloudError>> + Send;
}

impl Reads for Iam {
    async fn role(&self, name: &str) -> Result<Option<Role>, CloudError> {
        self.get_role(name).await
    }

    async fn attached(&self, name: &str) -> Result<Vec<String>, CloudError> {
        self.list_attached(name).await
    }

    async fn inline_names(&self, name: &str) -> Result<Vec<String>, CloudError> {
        self.list_inline(name).await
    }

    async fn inline(&self, name: &str, policy: &str) -> Result<Option<Value>, CloudError> {
        self.get_inline(name, policy).await
    }

    async fn oidc_provider(&self, arn: &str) -> Result<Option<OidcProvider>, CloudError> {
        self.get_oidc_provider(arn).await
    }

    async fn policy_exists(&self, arn: &str) -> Result<bool, CloudError> {
        Iam::policy_exists(self, arn).await
    }
}

impl Observe<Clients> for Observed {
    async fn observe(
        clients: &Clients,
        request: &Request<'_>,
        intent: Intent,
    ) -> Result<Observed, CloudError> {
        let target = Target::of(request)?;
        gather(&clients.iam, clients, request, &target, intent, true).await
    }

    async fn recall(
        clients: &Clients,
        request: &Request<'_>,
    ) -> Result<Option<Observed>, CloudError> {
        let target = Target::of(request)?;
        let snapshot = clients.fleet.snapshot(&clients.iam).await?;
        // A role the snapshot does not hold is new, or was deleted: a
        // live pass will create it.
        let Some(detail) = snapshot.role(&target.role) else {
            return Ok(None);
        };
        let recalled = Recalled {
            detail: Some(detail),
            iam: &clients.iam,
            fleet: &clients.fleet,
        };
        // The association wib recorded is read by its ID: one read where a
        // live pass lists the ServiceAccount's first. Gone, re-pointed or
        // re-tagged, the plan would write, and a live pass decides.
        let recorded = target.steady_association_id();
        let mut observed = gather(
            &recalled,
            clients,
            request,
            &target,
            Intent::Reconcile,
            recorded.is_none(),
        )
        .await?;
        if let Some(id) = recorded {
            observed.association = clients.eks.describe(&target.eks_cluster, id).await?;
        }
        Ok(Some(observed))
    }
}

/// `list_associations`: read the ServiceAccount's association by listing
/// (a live pass), or leave it to the caller (a recall, which reads the
/// recorded one by ID).
async fn gather(
    reads: &impl Reads,
    clients: &Clients,
    request: &Request<'_>,
    target: &Target<'_>,
    intent: Intent,
    list_associations: bool,
) -> Result<Observed, CloudError> {
    let mut observed = Observed {
        role: reads.role(&target.role).await?,
        trust_policy_max_chars: clients.trust_policy_max_chars,
        ..Observed::default()
    };
    match intent {
        Intent::Revoke => {}
        Intent::Cleanup => {
            let touches = observed
                .role
                .as_ref()
                .is_some_and(|role| target::leaving(request, target, role).touches_policies());
            if touches {
                observed.attached = reads.attached(&target.role).await?;
                observed.inline_names = reads.inline_names(&target.role).await?;
            }
        }
        Intent::Reconcile => reconcile(reads, request, target, &mut observed).await?,
    }
    if list_associations && target.reads_associations() {
        let found = clients
            .eks
            .find(
                &target.eks_cluster,
                &request.namespace,
                &request.service_account,
            )
            .await?;
        observed.eks_cluster_missing = found.is_none();
        observed.association = found.flatten();
    }
    Ok(observed)
}

async fn reconcile(
    reads: &impl Reads,
    request: &Request<'_>,
    target: &Target<'_>,
    observed: &mut Observed,
) -> Result<(), CloudError> {
    // A role the binding may not claim is refused on its tags alone.
    let Ok(claim) = target::claim(request, target, observed.role.as_ref()) else {
        return Ok(());
    };
    if target.mode == AwsMode::Irsa {
        observed.oidc_provider = reads.oidc_provider(&target.federation.provider_arn).await?;
    }
    if observed.role.is_some() && claim != Claim::Shared {
        observed.attached = reads.attached(&target.role).await?;
        observed.inline_names = reads.inline_names(&target.role).await?;
        for inline in &target.spec.inline_policies {
            if observed.inline_names.contains(&inline.name)
                && let Some(document) = reads.inline(&target.role, &inline.name).await?
            {
                observed
                    .inline_documents
                    .insert(inline.name.clone(), document);
            }
        }
    }
    let role = observed.role.as_ref();
    let refused = target.grants_refused(request).is_some();
    let mut new = target.managed_policies(role, &observed.attached, refused);
    new.retain(|arn| !observed.attached.contains(arn));
    if let Some(boundary) = &target.defaults.permissions_boundary_arn
        && role.is_none_or(|r| r.permissions_boundary.as_ref() != Some(boundary))
    {
        new.push(boundary.clone());
    }
    for arn in new {
        if !reads.policy_exists(&arn).await? {
            observed.missing_policies.insert(arn);
        }
    }
    Ok(())
}
