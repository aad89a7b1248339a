//! The fleet snapshot: every role of the account, with its trust policy,
//! tags, boundary, attached and inline policies, read by two paginated list
//! calls (`GetAccountAuthorizationDetails` for roles, `ListRoles` for the
//! session length the first does not return) at most once per TTL. A
//! steady-state resync of a binding whose role it holds then costs no IAM
//! read. It only ever confirms a steady state: a plan made from it that
//! would write anything is thrown away and made again from live reads (see
//! [`crate::steps::Observe::recall`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::iam::{Iam, OidcProvider, Role, error};
use super::observe::Reads;
use super::policy;
use crate::CloudError;
use crate::recent::{Listings, Recent};

/// One role and its policies, as the snapshot read them, kept as compact
/// text: a parsed policy document is a tree of maps several times the size
/// of its JSON, and at 10,000 roles the trees were most of the operator's
/// memory. A recall parses the one role it needs (a few hundred bytes).
#[derive(Debug)]
pub struct RoleDetail {
    arn: Box<str>,
    /// The trust policy, URL-decoded, as compact JSON.
    trust: Option<Box<str>>,
    max_session_duration: Option<i32>,
    permissions_boundary: Option<Box<str>>,
    tags: Box<[(Box<str>, Box<str>)]>,
    attached: Box<[Box<str>]>,
    /// Inline policies by name, each as compact JSON.
    inline: Box<[(Box<str>, Box<str>)]>,
}

impl RoleDetail {
    pub fn role(&self) -> Role {
        Role {
            arn: self.arn.to_string(),
            trust: self.trust.as_deref().and_then(policy::parse),
            max_session_duration: self.max_session_duration,
            permissions_boundary: self.permissions_boundary.as_deref().map(str::to_string),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// `raw` (maybe URL-encoded, as IAM returns documents) as compact JSON.
fn compact(raw: &str) -> Option<Box<str>> {
    policy::parse(raw).map(|document| document.to_string().into_boxed_str())
}

/// Every role of the account, by name.
pub struct Snapshot(HashMap<String, Arc<RoleDetail>>);

impl Snapshot {
    pub fn role(&self, name: &str) -> Option<Arc<RoleDetail>> {
        self.0.get(name).cloned()
    }
}

/// The current snapshot, refreshed on demand once it is older than `ttl`,
/// and the cluster's IAM OIDC providers, read once per TTL too.
pub struct Fleet {
    /// One listing: the account's.
    roles: Listings<Snapshot>,
    oidc_providers: Recent<Option<OidcProvider>>,
}

impl Fleet {
    pub fn new(ttl: Duration) -> Self {
        Self {
            roles: Listings::new(ttl),
            oidc_providers: Recent::new(ttl),
        }
    }

    /// The OIDC provider every binding of the cluster names, as read less
    /// than a TTL ago.
    async fn oidc_provider(
        &self,
        iam: &Iam,
        arn: &str,
    ) -> Result<Option<OidcProvider>, CloudError> {
        self.oidc_providers
            .get_or_read(arn, iam.get_oidc_provider(arn))
            .await
    }

    /// The snapshot, read again when older than the TTL. One refresh at a
    /// time: callers meanwhile wait for it rather than read IAM themselves
    /// (after a restart, a thousand bindings are re-verified from one).
    pub async fn snapshot(&self, iam: &Iam) -> Result<Arc<Snapshot>, CloudError> {
        self.roles
            .get("account", async { Ok(Snapshot(read_roles(iam).await?)) })
            .await
    }
}

async fn read_roles(iam: &Iam) -> Result<HashMap<String, Arc<RoleDetail>>, CloudError> {
    let sessions = iam.max_session_durations().await?;
    let mut roles = HashMap::new();
    let mut marker = None;
    loop {
        let out = iam
            .authorization_details(marker.take())
            .await
            .map_err(|e| error("reading the account's roles", e))?;
        for detail in out.role_detail_list() {
            let Some(name) = detail.role_name() else {
                continue;
            };
            let detail = RoleDetail {
                arn: detail.arn().unwrap_or_default().into(),
                trust: detail.assume_role_policy_document().and_then(compact),
                max_session_duration: sessions.get(name).copied(),
                permissions_boundary: detail
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(Into::into),
                tags: detail
                    .tags()
                    .iter()
                    .map(|t| (t.key().into(), t.value().into()))
                    .collect(),
                attached: detail
                    .attached_managed_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(Into::into))
                    .collect(),
                inline: detail
                    .role_policy_list()
                    .iter()
                    .filter_map(|p| Some((p.policy_name()?.into(), compact(p.policy_document()?)?)))
                    .collect(),
            };
            roles.insert(name.to_string(), Arc::new(detail));
        }
        match out.marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_string()),
            _ => return Ok(roles),
        }
    }
}

/// Observe's reads answered from a snapshot entry and the fleet's OIDC
/// provider reads; a managed policy not attached yet is assumed to exist,
/// since attaching it is a write and the live pass checks it.
pub struct Recalled<'a> {
    pub detail: Option<Arc<RoleDetail>>,
    pub iam: &'a Iam,
    pub fleet: &'a Fleet,
}

impl Reads for Recalled<'_> {
    async fn role(&self, _name: &str) -> Result<Option<Role>, CloudError> {
        Ok(self.detail.as_ref().map(|d| d.role()))
    }

    async fn attached(&self, _name: &str) -> Result<Vec<String>, CloudError> {
        Ok(self
            .detail
            .as_ref()
            .map(|d| d.attached.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default())
    }

    async fn inline_names(&self, _name: &str) -> Result<Vec<String>, CloudError> {
        Ok(self
            .detail
            .as_ref()
            .map(|d| {
                let mut names: Vec<String> = d.inline.iter().map(|(n, _)| n.to_string()).collect();
                names.sort();
                names
            })
            .unwrap_or_default())
    }

    async fn inline(&self, _name: &str, policy: &str) -> Result<Option<Value>, CloudError> {
        Ok(self
            .detail
            .as_ref()
            .and_then(|d| d.inline.iter().find(|(name, _)| &**name == policy))
            .and_then(|(_, document)| policy::parse(document)))
    }

    async fn oidc_provider(&self, arn: &str) -> Result<Option<OidcProvider>, CloudError> {
        self.fleet.oidc_provider(self.iam, arn).await
    }

    async fn policy_exists(&self, _arn: &str) -> Result<bool, CloudError> {
        Ok(true)
    }
}
