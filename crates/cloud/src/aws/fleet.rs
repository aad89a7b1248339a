//! The fleet snapshot: every role of the account, with its trust policy,
//! tags, boundary, attached and inline policies, read by two paginated list
//! calls (`GetAccountAuthorizationDetails` for roles, `ListRoles` for the
//! session length the first does not return) at most once per TTL. A
//! steady-state resync of a binding whose role it holds then costs no IAM
//! read. It only ever confirms a steady state: a plan made from it that
//! would write anything is thrown away and made again from live reads (see
//! [`crate::steps::Observe::recall`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::iam::{Iam, OidcProvider, Role, error};
use super::observe::Reads;
use super::policy;
use crate::CloudError;
use crate::recent::{Listings, Recent};

/// One role and its policies, as the snapshot read them.
#[derive(Clone, Debug)]
pub struct RoleDetail {
    pub role: Role,
    pub attached: Vec<String>,
    pub inline: BTreeMap<String, Value>,
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
            let role = Role {
                arn: detail.arn().unwrap_or_default().to_string(),
                trust: detail.assume_role_policy_document().and_then(policy::parse),
                max_session_duration: sessions.get(name).copied(),
                permissions_boundary: detail
                    .permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .map(str::to_string),
                tags: detail
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            };
            let attached = detail
                .attached_managed_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect();
            let inline = detail
                .role_policy_list()
                .iter()
                .filter_map(|p| {
                    let document = p.policy_document().and_then(policy::parse)?;
                    Some((p.policy_name()?.to_string(), document))
                })
                .collect();
            roles.insert(
                name.to_string(),
                Arc::new(RoleDetail {
                    role,
                    attached,
                    inline,
                }),
            );
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
        Ok(self.detail.as_ref().map(|d| d.role.clone()))
    }

    async fn attached(&self, _name: &str) -> Result<Vec<String>, CloudError> {
        Ok(self
            .detail
            .as_ref()
            .map(|d| d.attached.clone())
            .unwrap_or_default())
    }

    async fn inline_names(&self, _name: &str) -> Result<Vec<String>, CloudError> {
        Ok(self
            .detail
            .as_ref()
            .map(|d| d.inline.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn inline(&self, _name: &str, policy: &str) -> Result<Option<Value>, CloudError> {
        Ok(self
            .detail
            .as_ref()
            .and_then(|d| d.inline.get(policy).cloned()))
    }

    async fn oidc_provider(&self, arn: &str) -> Result<Option<OidcProvider>, CloudError> {
        self.fleet.oidc_provider(self.iam, arn).await
    }

    async fn policy_exists(&self, _arn: &str) -> Result<bool, CloudError> {
        Ok(true)
    }
}
