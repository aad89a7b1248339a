//! AWS: an IAM role whose trust policy lets exactly the binding's
//! ServiceAccount in through the cluster's IAM OIDC provider, and the managed
//! and inline policies the binding lists. Every step reads first and writes
//! only what differs, so a steady state makes no IAM writes.

pub mod credentials;
pub mod iam;
pub mod inline_policy;
pub mod naming;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aws_smithy_http_client::tls;
use serde_json::Value;
use wib_api::Cloud;
use wib_api::binding::{AwsBinding, AwsStatus, RoleAssignmentStatus};
use wib_api::conditions::Reason;
use wib_api::provider::AwsProvider as AwsDefaults;

use crate::calls::Observer;
use crate::ownership::{self, Claim, Release};
use crate::{BoxFuture, CloudError, CloudProvider, Outcome, Request, guardrails};
use iam::{Iam, NewRole, Role};
use policy::Federation;

pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
pub const DEFAULT_MAX_SESSION_SECONDS: i32 = 3600;

/// The AWS provider as configured by the environment, through `aws-config`'s
/// default chain: credentials (web identity in a cluster, `AWS_*` variables
/// elsewhere), region (IAM is global; `us-east-1` when none is set) and
/// endpoints (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_IAM`). Extra CAs for a
/// private endpoint come from `WIB_CLOUD_CA_FILE`. `WIB_AWS_TRUST_POLICY_MAX_CHARS`
/// raises the trust-policy quota for accounts where AWS raised it.
pub async fn from_env(observer: Observer) -> Result<AwsProvider, CloudError> {
    // The region from the environment (EKS's webhook sets it), never probed
    // from EC2 metadata: IAM is global, and off AWS the probe only warns.
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "us-east-1".into());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client()?)
        .region(aws_config::Region::new(region))
        .load()
        .await;
    let mut iam = aws_sdk_iam::config::Builder::from(&config);
    // wib caches its session itself, so that IAM refusing it drops it.
    let stale = match config.credentials_provider() {
        Some(chain) => {
            let renewable = credentials::Renewable::new(chain);
            let stale = renewable.stale.clone();
            iam = iam
                .credentials_provider(renewable)
                .identity_cache(aws_sdk_iam::config::IdentityCache::no_cache());
            Some(stale)
        }
        None => None,
    };
    let iam = iam.build();
    let max = match std::env::var("WIB_AWS_TRUST_POLICY_MAX_CHARS") {
        Ok(raw) => raw.parse().map_err(|e| {
            CloudError::new(
                Reason::CloudNotConfigured,
                format!("WIB_AWS_TRUST_POLICY_MAX_CHARS={raw:?}: {e}"),
            )
        })?,
        Err(_) => policy::TRUST_POLICY_MAX_CHARS,
    };
    Ok(AwsProvider::new(
        Iam::new(aws_sdk_iam::Client::from_conf(iam), observer, stale),
        max,
    ))
}

/// rustls on ring (the crypto the rest of wib uses), system roots plus
/// `WIB_CLOUD_CA_FILE`.
pub fn http_client() -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, CloudError> {
    let mut trust = tls::TrustStore::default();
    if let Some(pem) = crate::http::extra_ca_pem()? {
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| CloudError::new(Reason::CloudNotConfigured, format!("TLS: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https())
}

pub struct AwsProvider {
    iam: Iam,
    trust_policy_max_chars: usize,
    /// Bindings sharing a role rewrite its one trust policy: wib does that
    /// read-modify-write one binding at a time per role.
    role_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The binding's role and federation, after defaults.
struct Target<'a> {
    spec: &'a AwsBinding,
    defaults: &'a AwsDefaults,
    role: String,
    path: String,
    max_session: i32,
    federation: Federation,
}

impl AwsProvider {
    pub fn new(iam: Iam, trust_policy_max_chars: usize) -> Self {
        Self {
            iam,
            trust_policy_max_chars,
            role_locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_for(&self, role: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.role_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(role.to_string()).or_default().clone()
    }

    fn target<'a>(request: &Request<'a>) -> Result<Target<'a>, CloudError> {
        let spec = request.binding.spec.aws.as_ref().ok_or_else(|| {
            CloudError::new(Reason::CloudNotConfigured, "the binding has no spec.aws")
        })?;
        let defaults = request.provider.spec.aws.as_ref().ok_or_else(|| {
            CloudError::new(Reason::CloudNotConfigured, "the provider has no spec.aws")
        })?;
        let cluster = &request.provider.spec.cluster_name;
        let binding = request.binding.metadata.name.clone().unwrap_or_default();
        let provider_arn = defaults
            .oidc_provider_arn
            .clone()
            .unwrap_or_else(|| naming::oidc_provider_arn(&defaults.account_id, request.issuer));
        Ok(Target {
            spec,
            defaults,
            role: spec
                .role_name
                .clone()
                .or_else(|| request.recorded_identity(|s| s.aws.as_ref()?.role_arn.as_deref()))
                .unwrap_or_else(|| naming::role_name(cluster, &request.namespace, &binding)),
            path: spec.path.clone().unwrap_or_else(|| "/".into()),
            max_session: spec
                .max_session_duration_seconds
                .unwrap_or(DEFAULT_MAX_SESSION_SECONDS),
            federation: Federation {
                issuer_key: naming::issuer_key_of_arn(&provider_arn)
                    .map(str::to_string)
                    .unwrap_or_else(|| naming::issuer_key(request.issuer)),
                provider_arn,
                subject: request.subject.clone(),
                audience: spec
                    .audience
                    .clone()
                    .unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
                sid: naming::statement_id(cluster, &request.namespace, &request.service_account),
            },
        })
    }

    /// Checks the spec against the provider's guardrails and IAM's hard
    /// rules, before any cloud call; returns the inline policy documents,
    /// parsed, in the spec's order. Managed policies are grants whose scope
    /// is their ARN: a provider without `allowedScopes` refuses them all
    /// (reported, not an error), one with a list admits ARNs under it.
    fn check_spec(request: &Request<'_>, spec: &AwsBinding) -> Result<Vec<Value>, CloudError> {
        let provider_name = request.provider.metadata.name.clone().unwrap_or_default();
        let allowed_roles = request.provider.spec.allowed_roles.as_deref();
        // Without allowedScopes the policies are refused as a whole (default
        // deny, reported by the reconcile): nothing to judge one by one.
        if let Some(scopes) = request.provider.spec.allowed_scopes.as_deref() {
            for arn in &spec.managed_policy_arns {
                if !guardrails::scope_allowed(arn, scopes) {
                    return Err(CloudError::new(
                        Reason::ScopeNotAllowed,
                        format!(
                            "policy {arn} is not under ClusterIdentityProvider {provider_name:?}'s allowedScopes (policy ARN prefixes); nothing was created"
                        ),
                    ));
                }
                let facts = guardrails::RoleFacts {
                    names: vec![arn.clone()],
                    ids: vec![arn.clone()],
                    denied: guardrails::aws_denial(arn),
                };
                guardrails::judge_role(&facts, allowed_roles).map_err(|why| {
                    CloudError::new(
                        Reason::PolicyNotAllowed,
                        format!(
                            "policy {arn} is not allowed by ClusterIdentityProvider {provider_name:?}: {why}; nothing was created"
                        ),
                    )
                })?;
            }
        }
        let aws = request.provider.spec.aws.as_ref();
        if let Some(audience) = spec.audience.as_deref()
            && audience != DEFAULT_AUDIENCE
            && !aws.is_some_and(|a| a.allowed_audiences.iter().any(|x| x == audience))
        {
            return Err(CloudError::new(
                Reason::AudienceNotAllowed,
                format!(
                    "audience {audience:?} is not {DEFAULT_AUDIENCE} nor in ClusterIdentityProvider {provider_name:?}'s aws.allowedAudiences (each one is a client ID of the cluster's shared IAM OIDC provider); nothing was created"
                ),
            ));
        }
        let unrestricted = aws.is_some_and(|a| {
            a.allow_unrestricted_inline_policies || a.permissions_boundary_arn.is_some()
        });
        let mut documents = Vec::with_capacity(spec.inline_policies.len());
        let mut inline_chars = 0;
        for inline in &spec.inline_policies {
            let invalid = |problem: String| {
                CloudError::new(
                    Reason::InvalidPolicyDocument,
                    format!(
                        "inline policy {:?} {problem}; nothing was created",
                        inline.name
                    ),
                )
            };
            let document = inline_policy::parse(&inline.document).map_err(invalid)?;
            if let Some(problem) = policy::document_problem(&document) {
                return Err(invalid(problem));
            }
            if !unrestricted && let Some(grant) = inline_policy::privileged_grant(&document) {
                return Err(CloudError::new(
                    Reason::PolicyNotAllowed,
                    format!(
                        "inline policy {:?}: {grant}; ClusterIdentityProvider {provider_name:?} allows such grants only with aws.permissionsBoundaryArn or aws.allowUnrestrictedInlinePolicies; nothing was created",
                        inline.name
                    ),
                ));
            }
            inline_chars += policy::size(&document);
            documents.push(document);
        }
        if inline_chars > policy::INLINE_POLICIES_MAX_CHARS {
            return Err(CloudError::new(
                Reason::QuotaExceeded,
                format!(
                    "the inline policies total {inline_chars} characters; IAM allows {} per role",
                    policy::INLINE_POLICIES_MAX_CHARS
                ),
            ));
        }
        Ok(documents)
    }

    /// The IAM OIDC provider the trust policy names: checked, or created
    /// when the provider asks for it (with the binding's audience). A client
    /// ID wib adds beyond STS's is tagged first, so [`Self::prune`] can
    /// remove exactly those once no binding uses them.
    async fn oidc_provider(
        &self,
        request: &Request<'_>,
        target: &Target<'_>,
        writes: &mut Vec<String>,
    ) -> Result<String, CloudError> {
        let arn = &target.federation.provider_arn;
        let audience = &target.federation.audience;
        let added_tag = || {
            (audience != DEFAULT_AUDIENCE)
                .then(|| (naming::added_client_id_tag(audience), audience.clone()))
        };
        match self.iam.get_oidc_provider(arn).await? {
            Some(found) => {
                if target.defaults.create_oidc_provider && !found.client_ids.contains(audience) {
                    writes.push(format!("added audience {audience} to {arn}"));
                    if let Some(tag) = added_tag() {
                        self.iam
                            .tag_oidc_provider(arn, &BTreeMap::from([tag]))
                            .await?;
                    }
                    self.iam.add_audience(arn, audience).await?;
                }
                Ok(arn.clone())
            }
            None if target.defaults.create_oidc_provider => {
                writes.push(format!("created IAM OIDC provider for {}", request.issuer));
                let mut tags = BTreeMap::from([(
                    ownership::TAG_CLUSTER.to_string(),
                    request.provider.spec.cluster_name.clone(),
                )]);
                tags.extend(added_tag());
                self.iam
                    .create_oidc_provider(request.issuer, audience, &tags)
                    .await
            }
            None => Err(CloudError::new(
                Reason::CloudNotConfigured,
                format!(
                    "IAM OIDC provider {arn} does not exist; create it for {} or set createOidcProvider: true on the ClusterIdentityProvider",
                    request.issuer
                ),
            )),
        }
    }

    /// Removes the client IDs wib added to the cluster's IAM OIDC provider
    /// (by its tags) that no binding uses any more: the provider allows 100,
    /// and a client ID nobody uses is one more audience tokens are accepted
    /// for. Client IDs wib did not add, and STS's, are never touched.
    async fn prune_client_ids(
        &self,
        provider: &wib_api::ClusterIdentityProvider,
        issuer: &str,
        in_use: &BTreeSet<String>,
    ) -> Result<Vec<String>, CloudError> {
        let Some(defaults) = provider
            .spec
            .aws
            .as_ref()
            .filter(|d| d.create_oidc_provider)
        else {
            return Ok(Vec::new());
        };
        let arn = defaults
            .oidc_provider_arn
            .clone()
            .unwrap_or_else(|| naming::oidc_provider_arn(&defaults.account_id, issuer));
        let Some(found) = self.iam.get_oidc_provider(&arn).await? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for (key, client_id) in found
            .tags
            .iter()
            .filter(|(k, _)| k.starts_with(naming::TAG_ADDED_CLIENT_ID))
        {
            if in_use.contains(client_id) {
                continue;
            }
            if found.client_ids.contains(client_id) {
                self.iam.remove_audience(&arn, client_id).await?;
                removed.push(format!("removed unused client ID {client_id} from {arn}"));
            }
            self.iam.untag_oidc_provider(&arn, key).await?;
        }
        Ok(removed)
    }

    /// Deletes the IAM OIDC providers wib created for this cluster (by its
    /// tag) for an issuer no provider of the cluster has any more: after an
    /// `issuer` change every trust statement is re-keyed to the new one, and
    /// the old provider would otherwise stay, trusting tokens of an issuer
    /// the cluster left. Providers wib did not create are never touched.
    async fn prune_retired_issuers(
        &self,
        provider: &wib_api::ClusterIdentityProvider,
        issuer: &str,
        issuers: &BTreeSet<String>,
    ) -> Result<Vec<String>, CloudError> {
        let Some(defaults) = provider
            .spec
            .aws
            .as_ref()
            .filter(|d| d.create_oidc_provider)
        else {
            return Ok(Vec::new());
        };
        let kept: BTreeSet<String> = issuers
            .iter()
            .map(String::as_str)
            .chain([issuer])
            .map(naming::issuer_key)
            .collect();
        let cluster = &provider.spec.cluster_name;
        let mut removed = Vec::new();
        for arn in self.iam.list_oidc_providers().await? {
            let in_account = arn.starts_with(&format!("arn:aws:iam::{}:", defaults.account_id));
            if !in_account || naming::issuer_key_of_arn(&arn).is_none_or(|k| kept.contains(k)) {
                continue;
            }
            let Some(found) = self.iam.get_oidc_provider(&arn).await? else {
                continue;
            };
            if found.tags.get(ownership::TAG_CLUSTER) == Some(cluster) {
                self.iam.delete_oidc_provider(&arn).await?;
                removed.push(format!(
                    "deleted {arn}, created by wib for an issuer cluster {cluster} no longer has"
                ));
            }
        }
        Ok(removed)
    }

    async fn reconcile_inner(&self, request: &Request<'_>) -> Result<Outcome, CloudError> {
        let target = Self::target(request)?;
        let spec = target.spec;
        let inline_documents = Self::check_spec(request, spec)?;
        let refused = guardrails::grants_refused(
            request.provider,
            spec.managed_policy_arns.first().map(String::as_str),
        );
        let cluster = &request.provider.spec.cluster_name;
        let uid = request.binding.metadata.uid.clone().unwrap_or_default();
        let binding_name = request.binding.metadata.name.clone().unwrap_or_default();
        let lock = self.lock_for(&target.role);
        let _serialized = lock.lock().await;

        // Observe and decide everything that can refuse before any write.
        // A protected ARN also protects the role name it ends in, so the name
        // alone decides, before the read.
        crate::protected::check(
            &[&target.role],
            request.provider,
            &format!("role {}", target.role),
        )?;
        let existing = self.iam.get_role(&target.role).await?;
        let what = format!("role {}", target.role);
        let claim = ownership::claim(
            existing.as_ref().map(|r| &r.tags),
            ownership::Asker::of(request),
            request.provider.spec.adoption,
            &what,
            (!spec.managed_policy_arns.is_empty() || !spec.inline_policies.is_empty())
                .then_some(("policies", Reason::PolicyNotAllowed)),
        )?;
        let current_trust = existing.as_ref().and_then(|r| r.trust.as_ref());
        if policy::sid_conflict(current_trust, &target.federation) {
            return Err(CloudError::new(
                Reason::FederationConflict,
                format!(
                    "the trust policy of {what} has a statement {} for another subject; wib does not overwrite it; nothing was changed",
                    target.federation.sid
                ),
            ));
        }
        let adopting = claim == Claim::Adopt;
        let manages_policies = claim != Claim::Shared;
        let adopted = adopting
            || existing.as_ref().is_some_and(|r| {
                r.tags.get(ownership::TAG_ADOPTED).map(String::as_str) == Some("true")
            });
        let trust = policy::with_statement(current_trust, &target.federation, adopted);
        let trust_chars = policy::size(&trust);
        if trust_chars > self.trust_policy_max_chars {
            return Err(CloudError::new(
                Reason::TrustPolicyTooLarge,
                format!(
                    "the trust policy of role {} would be {trust_chars} characters, over IAM's quota of {}; bind this ServiceAccount to another role",
                    target.role, self.trust_policy_max_chars
                ),
            ));
        }
        let attached = match &existing {
            Some(_) if manages_policies => self.iam.list_attached(&target.role).await?,
            _ => Vec::new(),
        };
        // Refused grants change nothing: the attachments wib made stay as
        // they are and none is added.
        let managed: Vec<String> = match &refused {
            Some(_) => {
                let marks = existing
                    .as_ref()
                    .and_then(|r| r.tags.get(naming::TAG_MANAGED_POLICIES));
                attached
                    .iter()
                    .filter(|a| naming::is_marked(marks, a))
                    .cloned()
                    .collect()
            }
            None => spec.managed_policy_arns.clone(),
        };
        for arn in managed.iter().filter(|arn| !attached.contains(arn)) {
            if !self.iam.policy_exists(arn).await? {
                return Err(CloudError::new(
                    Reason::RoleNotFound,
                    format!("managed policy {arn} does not exist; nothing was created"),
                ));
            }
        }
        let boundary = target.defaults.permissions_boundary_arn.as_deref();
        if let Some(b) = boundary
            && existing
                .as_ref()
                .is_none_or(|r| r.permissions_boundary.as_deref() != Some(b))
            && !self.iam.policy_exists(b).await?
        {
            return Err(CloudError::new(
                Reason::CloudNotConfigured,
                format!("the provider's permissionsBoundaryArn {b} does not exist"),
            ));
        }
        let mut writes = Vec::new();
        let oidc_provider_arn = self.oidc_provider(request, &target, &mut writes).await?;

        // Role: create, adopt, or put back what drifted.
        let mut tags = ownership::owner_tags(cluster, &request.namespace, &binding_name, &uid);
        let role = match existing {
            None => {
                tags.insert(
                    naming::TAG_MANAGED_POLICIES.into(),
                    naming::marks(managed.iter().map(String::as_str)),
                );
                tags.insert(
                    naming::TAG_INLINE_POLICIES.into(),
                    naming::marks(spec.inline_policies.iter().map(|p| p.name.as_str())),
                );
                writes.push(format!("created role {}", target.role));
                self.iam
                    .create_role(NewRole {
                        name: &target.role,
                        path: &target.path,
                        trust: &trust,
                        max_session_duration: target.max_session,
                        permissions_boundary: boundary,
                        description: &format!(
                            "Managed by wib for {}/{binding_name} in cluster {cluster}",
                            request.namespace
                        ),
                        tags: &tags,
                    })
                    .await?
            }
            Some(mut role) => {
                if adopting {
                    tags.insert(ownership::TAG_ADOPTED.into(), "true".into());
                    writes.push(format!("adopted role {}", target.role));
                    self.iam.tag_role(&target.role, &tags).await?;
                    role.tags.extend(tags);
                }
                if role.trust.as_ref().is_none_or(|t| !policy::same(t, &trust)) {
                    writes.push(format!("put the trust policy of role {}", target.role));
                    self.iam.update_trust(&target.role, &trust).await?;
                }
                if manages_policies && role.max_session_duration != Some(target.max_session) {
                    writes.push(format!("set max session duration of {}", target.role));
                    self.iam
                        .update_max_session(&target.role, target.max_session)
                        .await?;
                }
                if let Some(b) = boundary
                    && role.permissions_boundary.as_deref() != Some(b)
                {
                    writes.push(format!("set permissions boundary of {}", target.role));
                    self.iam.put_boundary(&target.role, b).await?;
                }
                role
            }
        };
        if manages_policies {
            self.reconcile_policies(
                &target,
                &role,
                (&managed, &attached),
                &inline_documents,
                &mut writes,
            )
            .await?;
        }

        let mut policies: Vec<String> = spec.managed_policy_arns.clone();
        policies.extend(spec.inline_policies.iter().map(|p| p.name.clone()));
        let mut statuses: Vec<RoleAssignmentStatus> = spec
            .managed_policy_arns
            .iter()
            .map(|arn| RoleAssignmentStatus {
                role: arn.clone(),
                scope: None,
                id: Some(arn.clone()),
                ready: refused.is_none(),
            })
            .collect();
        statuses.extend(spec.inline_policies.iter().map(|p| RoleAssignmentStatus {
            role: p.name.clone(),
            scope: Some("inline".into()),
            id: Some(format!("{}/{}", role.arn, p.name)),
            ready: true,
        }));
        Ok(Outcome {
            annotations: annotations(spec, &role.arn),
            labels: BTreeMap::new(),
            status: wib_api::WorkloadIdentityBindingStatus {
                identity: Some(role.arn.clone()),
                aws: Some(AwsStatus {
                    role_arn: Some(role.arn.clone()),
                    oidc_provider_arn: Some(oidc_provider_arn),
                    policies,
                }),
                role_assignments: statuses,
                ..Default::default()
            },
            writes,
            grants_refused: refused,
        })
    }

    /// Managed attachments and inline policies to exactly the spec: missing
    /// ones added, drifted ones put back, extras removed only when wib's tags
    /// say wib added them. The tags are written before an attachment and
    /// after a removal, so a crash in between never leaves an attachment wib
    /// would not recognise as its own.
    async fn reconcile_policies(
        &self,
        target: &Target<'_>,
        role: &Role,
        (managed, attached): (&[String], &[String]),
        inline_documents: &[Value],
        writes: &mut Vec<String>,
    ) -> Result<(), CloudError> {
        let spec = target.spec;
        let name = &target.role;
        let managed_tag = role.tags.get(naming::TAG_MANAGED_POLICIES);
        let inline_tag = role.tags.get(naming::TAG_INLINE_POLICIES);
        let wanted_managed = naming::marks(managed.iter().map(String::as_str));
        let wanted_inline = naming::marks(spec.inline_policies.iter().map(|p| p.name.as_str()));
        let inline_names = self.iam.list_inline(name).await?;
        let extra_managed: Vec<&String> = attached
            .iter()
            .filter(|a| !managed.contains(a) && naming::is_marked(managed_tag, a))
            .collect();
        let extra_inline: Vec<&String> = inline_names
            .iter()
            .filter(|n| {
                !spec.inline_policies.iter().any(|p| &p.name == *n)
                    && naming::is_marked(inline_tag, n)
            })
            .collect();
        let union = |tag: Option<&String>, wanted: &str| {
            let mut all: Vec<&str> = tag.map(|t| t.split(' ').collect()).unwrap_or_default();
            all.extend(wanted.split(' '));
            all.retain(|m| !m.is_empty());
            all.sort();
            all.dedup();
            all.join(" ")
        };
        let marks_before = BTreeMap::from([
            (
                naming::TAG_MANAGED_POLICIES.to_string(),
                union(managed_tag, &wanted_managed),
            ),
            (
                naming::TAG_INLINE_POLICIES.to_string(),
                union(inline_tag, &wanted_inline),
            ),
        ]);
        let current_marks = |key: &str| role.tags.get(key).cloned().unwrap_or_default();
        if marks_before.iter().any(|(k, v)| current_marks(k) != *v) {
            self.iam.tag_role(name, &marks_before).await?;
        }

        for arn in managed.iter().filter(|a| !attached.contains(a)) {
            writes.push(format!("attached {arn}"));
            self.iam.attach(name, arn).await?;
        }
        for (inline, document) in spec.inline_policies.iter().zip(inline_documents) {
            let current = if inline_names.contains(&inline.name) {
                self.iam.get_inline(name, &inline.name).await?
            } else {
                None
            };
            if current.is_none_or(|c| !policy::same(&c, document)) {
                writes.push(format!("put inline policy {}", inline.name));
                self.iam.put_inline(name, &inline.name, document).await?;
            }
        }
        for arn in &extra_managed {
            writes.push(format!("detached {arn}"));
            self.iam.detach(name, arn).await?;
        }
        for policy in &extra_inline {
            writes.push(format!("deleted inline policy {policy}"));
            self.iam.delete_inline(name, policy).await?;
        }
        let marks_after = BTreeMap::from([
            (naming::TAG_MANAGED_POLICIES.to_string(), wanted_managed),
            (naming::TAG_INLINE_POLICIES.to_string(), wanted_inline),
        ]);
        if marks_after != marks_before {
            self.iam.tag_role(name, &marks_after).await?;
        }
        Ok(())
    }

    async fn cleanup_inner(&self, request: &Request<'_>) -> Result<(), CloudError> {
        let target = Self::target(request)?;
        let lock = self.lock_for(&target.role);
        let _serialized = lock.lock().await;
        let Some(role) = self.iam.get_role(&target.role).await? else {
            return Ok(());
        };
        let release = ownership::release(
            &role.tags,
            ownership::Asker::of(request),
            request.admitted,
            request.binding.spec.deletion_policy,
        );
        if release == Release::Nothing {
            return Ok(());
        }
        let trust = role.trust.clone().unwrap_or(Value::Null);
        let adopted = role.tags.get(ownership::TAG_ADOPTED).map(String::as_str) == Some("true");
        let last_out = policy::other_statements(&trust, &target.federation, adopted) == 0;
        let deletes = matches!(release, Release::Maker | Release::Survivor) && last_out;
        if deletes && !adopted {
            // IAM deletes a role only once nothing is attached to it.
            for arn in self.iam.list_attached(&target.role).await? {
                self.iam.detach(&target.role, &arn).await?;
            }
            for name in self.iam.list_inline(&target.role).await? {
                self.iam.delete_inline(&target.role, &name).await?;
            }
            return self.iam.delete_role(&target.role).await;
        }
        let remaining = policy::without_statement(&trust, &target.federation);
        if !policy::same(&trust, &remaining) {
            self.iam.update_trust(&target.role, &remaining).await?;
        }
        // The maker's policies go with it: an adopted role's last one out
        // gives it back as wib found it, a maker leaving others behind takes
        // its grants and releases the role to the last one out.
        if deletes || release == Release::Maker {
            self.remove_wib_policies(&target.role, &role).await?;
        }
        if deletes {
            self.iam
                .untag_role(
                    &target.role,
                    &[
                        ownership::TAG_CLUSTER,
                        ownership::TAG_NAMESPACE,
                        ownership::TAG_BINDING,
                        ownership::TAG_UID,
                        ownership::TAG_ADOPTED,
                        ownership::TAG_RELEASED,
                        naming::TAG_MANAGED_POLICIES,
                        naming::TAG_INLINE_POLICIES,
                    ],
                )
                .await?;
        } else if release == Release::Maker {
            self.iam
                .tag_role(
                    &target.role,
                    &BTreeMap::from([(ownership::TAG_RELEASED.to_string(), "true".to_string())]),
                )
                .await?;
        }
        Ok(())
    }

    async fn revoke_inner(&self, request: &Request<'_>) -> Result<Vec<String>, CloudError> {
        let target = Self::target(request)?;
        let lock = self.lock_for(&target.role);
        let _serialized = lock.lock().await;
        let Some(role) = self.iam.get_role(&target.role).await? else {
            return Ok(Vec::new());
        };
        let trust = role.trust.clone().unwrap_or(Value::Null);
        let remaining = policy::without_statement(&trust, &target.federation);
        if policy::same(&trust, &remaining) {
            return Ok(Vec::new());
        }
        self.iam.update_trust(&target.role, &remaining).await?;
        Ok(vec![format!(
            "removed the trust statement of {} from role {}",
            request.subject, target.role
        )])
    }

    /// Detaches and deletes what wib's tags say it put on the role.
    async fn remove_wib_policies(&self, name: &str, role: &Role) -> Result<(), CloudError> {
        for arn in self.iam.list_attached(name).await? {
            if naming::is_marked(role.tags.get(naming::TAG_MANAGED_POLICIES), &arn) {
                self.iam.detach(name, &arn).await?;
            }
        }
        for policy in self.iam.list_inline(name).await? {
            if naming::is_marked(role.tags.get(naming::TAG_INLINE_POLICIES), &policy) {
                self.iam.delete_inline(name, &policy).await?;
            }
        }
        Ok(())
    }
}

/// The ServiceAccount annotations EKS's pod identity webhook reads.
fn annotations(spec: &AwsBinding, role_arn: &str) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(
        "eks.amazonaws.com/role-arn".to_string(),
        role_arn.to_string(),
    )]);
    if let Some(audience) = &spec.audience {
        annotations.insert("eks.amazonaws.com/audience".into(), audience.clone());
    }
    if let Some(seconds) = spec.token_expiration_seconds {
        annotations.insert(
            "eks.amazonaws.com/token-expiration".into(),
            seconds.to_string(),
        );
    }
    if let Some(regional) = spec.sts_regional_endpoints {
        annotations.insert(
            "eks.amazonaws.com/sts-regional-endpoints".into(),
            regional.to_string(),
        );
    }
    annotations
}

impl CloudProvider for AwsProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Aws
    }

    fn reconcile<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Outcome, CloudError>> {
        Box::pin(self.reconcile_inner(request))
    }

    fn cleanup<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(self.cleanup_inner(request))
    }

    fn revoke<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(self.revoke_inner(request))
    }

    fn check<'a>(
        &'a self,
        _provider: &'a wib_api::ClusterIdentityProvider,
    ) -> BoxFuture<'a, Result<(), CloudError>> {
        Box::pin(async move { self.iam.get_role(crate::CREDENTIALS_PROBE).await.map(drop) })
    }

    fn prune<'a>(
        &'a self,
        provider: &'a wib_api::ClusterIdentityProvider,
        issuer: &'a str,
        in_use: &'a crate::InUse,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(async move {
            let mut removed = self
                .prune_client_ids(provider, issuer, &in_use.audiences)
                .await?;
            removed.extend(
                self.prune_retired_issuers(provider, issuer, &in_use.issuers)
                    .await?,
            );
            Ok(removed)
        })
    }
}
