//! What a binding asks of AWS, worked out from the binding and its provider
//! alone (no client required): the role, its trust statement, the spec
//! judged against the guardrails and IAM's hard rules, whose the role is,
//! and what deleting the binding may remove from it.

use std::collections::BTreeMap;

use serde_json::Value;
use wib_api::Cloud;
use wib_api::binding::{AwsBinding, AwsMode};
use wib_api::conditions::Reason;
use wib_api::provider::AwsProvider as AwsDefaults;

use super::iam::Role;
use super::policy::{self, Federation, PodsTrust};
use super::{DEFAULT_AUDIENCE, DEFAULT_MAX_SESSION_SECONDS, inline_policy, naming};
use crate::ownership::{self, Claim, Release};
use crate::{CloudError, GrantsRefused, Request, guardrails};

/// The binding's role and federation, after defaults.
pub struct Target<'a> {
    pub spec: &'a AwsBinding,
    pub defaults: &'a AwsDefaults,
    pub role: String,
    pub path: String,
    pub max_session: i32,
    pub federation: Federation,
    /// How pods get the role now: the spec's mode, else the provider's.
    pub mode: AwsMode,
    /// The mode the binding last completed (its status): while it differs
    /// from `mode`, pods move from it, and its way in is kept.
    pub moving_from: Option<AwsMode>,
    /// The EKS cluster of pod identity associations.
    pub eks_cluster: String,
    /// The ARN of the pod identity association the status records.
    pub recorded_association: Option<&'a str>,
}

pub use crate::error::not_configured;

impl<'a> Target<'a> {
    pub fn of(request: &Request<'a>) -> Result<Self, CloudError> {
        let (spec, defaults) =
            request.blocks(Cloud::Aws, |s| s.aws.as_ref(), |p| p.aws.as_ref())?;
        let cluster = &request.cluster;
        let provider_arn = defaults
            .oidc_provider_arn
            .clone()
            .unwrap_or_else(|| naming::oidc_provider_arn(&defaults.account_id, request.issuer));
        let role = spec
            .role_name
            .clone()
            .or_else(|| request.recorded_identity(|s| s.aws.as_ref()?.role_arn.as_deref()))
            .unwrap_or_else(|| {
                naming::role_name(cluster, &request.namespace, &request.binding_name)
            });
        let mode = spec.mode.or(defaults.mode).unwrap_or_default();
        let recorded = request.binding.status.as_ref().and_then(|s| s.aws.as_ref());
        let recorded_mode = recorded
            .filter(|a| a.role_arn.is_some())
            .map(|a| a.mode.unwrap_or_default());
        let eks_cluster = defaults.eks_cluster(cluster).to_string();
        Ok(Target {
            mode,
            moving_from: recorded_mode.filter(|r| *r != mode),
            recorded_association: recorded.and_then(|a| a.association_arn.as_deref()),
            defaults,
            role,
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
                mode,
                pods: PodsTrust {
                    cluster: eks_cluster.clone(),
                    namespace: request.namespace.clone(),
                    service_account: request.service_account.clone(),
                    account_id: defaults.account_id.clone(),
                },
            },
            eks_cluster,
            spec,
        })
    }

    /// Whether the binding's pod identity association is at stake: its mode
    /// is or was PodIdentity, or its status records one.
    pub fn reads_associations(&self) -> bool {
        self.recorded_association.is_some()
            || self.mode == AwsMode::PodIdentity
            || self.moving_from == Some(AwsMode::PodIdentity)
    }

    /// The ID of the association the status records, when a steady state
    /// in mode PodIdentity can be confirmed by reading it alone (not while
    /// the mode changes, and only in the cluster the binding now names).
    pub fn steady_association_id(&self) -> Option<&'a str> {
        if self.mode != AwsMode::PodIdentity || self.moving_from.is_some() {
            return None;
        }
        let (cluster_and_id, id) = self.recorded_association?.rsplit_once('/')?;
        cluster_and_id
            .ends_with(&format!("/{}", self.eks_cluster))
            .then_some(id)
    }

    /// The role as messages name it.
    pub fn what(&self) -> String {
        format!("role {}", self.role)
    }

    /// The ARN IAM gives the role once created: its path and name in the
    /// provider's account (the account the roles live in), in the partition
    /// of the OIDC provider it trusts (which IAM keeps in the same account).
    /// Known before the role exists, so one round plans its creation and
    /// reports its ARN.
    pub fn role_arn(&self) -> String {
        let partition = self
            .federation
            .provider_arn
            .split(':')
            .nth(1)
            .filter(|p| !p.is_empty())
            .unwrap_or("aws");
        format!(
            "arn:{partition}:iam::{}:role{}{}",
            self.defaults.account_id, self.path, self.role
        )
    }

    /// Whether the spec lists any policy: only the role's maker may.
    pub fn lists_policies(&self) -> bool {
        !self.spec.managed_policy_arns.is_empty() || !self.spec.inline_policies.is_empty()
    }

    /// Default deny: every managed policy refused when the provider lists
    /// no `allowedScopes` (the role and its federation still go ahead).
    pub fn grants_refused(&self, request: &Request<'_>) -> Option<GrantsRefused> {
        guardrails::grants_refused(
            request.provider,
            self.spec.managed_policy_arns.first().map(String::as_str),
        )
    }

    /// The managed policies the role carries once reconciled: the spec's;
    /// when grants are refused, only those wib attached before (refused
    /// grants change nothing: none is added, none of wib's is removed).
    pub fn managed_policies(
        &self,
        role: Option<&Role>,
        attached: &[String],
        refused: bool,
    ) -> Vec<String> {
        if !refused {
            return self.spec.managed_policy_arns.clone();
        }
        let marks = role.and_then(|r| r.tags.get(naming::TAG_MANAGED_POLICIES));
        attached
            .iter()
            .filter(|a| naming::is_marked(marks, a))
            .cloned()
            .collect()
    }
}

/// Whether wib took `tags`' identity over rather than creating it.
pub fn is_adopted(tags: &BTreeMap<String, String>) -> bool {
    tags.get(ownership::TAG_ADOPTED).map(String::as_str) == Some("true")
}

/// What a reconcile may do with the role, judged by its tags (`None`: the
/// role does not exist).
pub fn claim(
    request: &Request<'_>,
    target: &Target<'_>,
    role: Option<&Role>,
) -> Result<Claim, CloudError> {
    ownership::claim(
        role.map(|r| &r.tags),
        ownership::Asker::of(request),
        request.provider.spec.adoption,
        &target.what(),
        target
            .lists_policies()
            .then_some(("policies", Reason::PolicyNotAllowed)),
    )
}

/// What deleting the binding may remove from its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    pub release: Release,
    pub adopted: bool,
    /// The role goes (or, adopted, is given back): no other statement lets
    /// anyone in, and this binding may remove it.
    pub deletes: bool,
}

impl Leaving {
    /// Whether the role's policies are at stake (those wib put there, or
    /// all of them before IAM deletes the role).
    pub fn touches_policies(&self) -> bool {
        self.deletes || self.release == Release::Maker
    }
}

pub fn leaving(request: &Request<'_>, target: &Target<'_>, role: &Role) -> Leaving {
    let release = ownership::release(
        &role.tags,
        ownership::Asker::of(request),
        request.admitted,
        request.binding.spec.deletion_policy,
    );
    let adopted = is_adopted(&role.tags);
    let trust = role.trust.clone().unwrap_or(Value::Null);
    let last_out = policy::other_statements(&trust, &target.federation, adopted) == 0;
    Leaving {
        deletes: matches!(release, Release::Maker | Release::Survivor) && last_out,
        release,
        adopted,
    }
}

/// Checks the spec against the provider's guardrails and IAM's hard rules;
/// returns the inline policy documents, parsed, in the spec's order.
pub fn check_spec(request: &Request<'_>, target: &Target<'_>) -> Result<Vec<Value>, CloudError> {
    let spec = target.spec;
    check_managed(request, spec)?;
    check_audience(request, spec)?;
    check_mode(request, target)?;
    inline_documents(request, spec)
}

fn provider_name(request: &Request<'_>) -> String {
    request.provider.metadata.name.clone().unwrap_or_default()
}

/// Managed policies are grants whose scope is their ARN: a provider with
/// `allowedScopes` admits ARNs under them. Without `allowedScopes` they are
/// refused as a whole (default deny, reported by the reconcile, not an
/// error): nothing to judge one by one.
fn check_managed(request: &Request<'_>, spec: &AwsBinding) -> Result<(), CloudError> {
    let Some(scopes) = request.provider.spec.allowed_scopes.as_deref() else {
        return Ok(());
    };
    let provider = provider_name(request);
    let allowed_roles = request.provider.spec.allowed_roles.as_deref();
    for arn in &spec.managed_policy_arns {
        if !guardrails::scope_allowed(arn, scopes) {
            return Err(CloudError::new(
                Reason::ScopeNotAllowed,
                format!(
                    "policy {arn} is not under ClusterIdentityProvider {provider:?}'s allowedScopes (policy ARN prefixes); nothing was created"
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
                    "policy {arn} is not allowed by ClusterIdentityProvider {provider:?}: {why}; nothing was created"
                ),
            )
        })?;
    }
    Ok(())
}

/// Each audience is a client ID of the cluster's shared IAM OIDC provider,
/// so only the platform team's list admits one besides STS's.
fn check_audience(request: &Request<'_>, spec: &AwsBinding) -> Result<(), CloudError> {
    let aws = request.provider.spec.aws.as_ref();
    if let Some(audience) = spec.audience.as_deref()
        && audience != DEFAULT_AUDIENCE
        && !aws.is_some_and(|a| a.allowed_audiences.iter().any(|x| x == audience))
    {
        return Err(CloudError::new(
            Reason::AudienceNotAllowed,
            format!(
                "audience {audience:?} is not {DEFAULT_AUDIENCE} nor in ClusterIdentityProvider {:?}'s aws.allowedAudiences (each one is a client ID of the cluster's shared IAM OIDC provider); nothing was created",
                provider_name(request)
            ),
        ));
    }
    Ok(())
}

/// Mode PodIdentity takes none of IRSA's token settings (CEL refuses them
/// when the binding names the mode; the provider's default mode is known
/// only here), and a target role in another account only from the
/// provider's list: it is a grant the platform team makes.
fn check_mode(request: &Request<'_>, target: &Target<'_>) -> Result<(), CloudError> {
    let (spec, mode) = (target.spec, target.mode);
    let irsa_only = [
        ("audience", spec.audience.is_some()),
        (
            "stsRegionalEndpoints",
            spec.sts_regional_endpoints.is_some(),
        ),
        (
            "tokenExpirationSeconds",
            spec.token_expiration_seconds.is_some(),
        ),
    ];
    if mode == AwsMode::PodIdentity
        && let Some((field, _)) = irsa_only.iter().find(|(_, set)| *set)
    {
        return Err(CloudError::new(
            Reason::InvalidSpec,
            format!(
                "aws.{field} sets IRSA's projected token, and this binding is in mode PodIdentity (ClusterIdentityProvider {:?}'s default); remove it or set aws.mode: IRSA; nothing was created",
                provider_name(request)
            ),
        ));
    }
    let Some(role) = spec.target_role_arn.as_deref() else {
        return Ok(());
    };
    if mode != AwsMode::PodIdentity {
        return Err(CloudError::new(
            Reason::InvalidSpec,
            "aws.targetRoleArn is for mode PodIdentity; nothing was created",
        ));
    }
    let allowed = target
        .defaults
        .allowed_target_role_arns
        .iter()
        .any(|pattern| target_allowed(pattern, role));
    if !allowed {
        return Err(CloudError::new(
            Reason::RoleNotAllowed,
            format!(
                "aws.targetRoleArn {role} is not in ClusterIdentityProvider {:?}'s aws.allowedTargetRoleArns; nothing was created",
                provider_name(request)
            ),
        ));
    }
    Ok(())
}

/// An exact ARN, or a prefix ending in `*`.
fn target_allowed(pattern: &str, arn: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => arn.starts_with(prefix),
        None => pattern == arn,
    }
}

/// The inline documents, each parsed and judged; a tenant may grant itself
/// administration only where the platform team capped or allowed it.
fn inline_documents(request: &Request<'_>, spec: &AwsBinding) -> Result<Vec<Value>, CloudError> {
    let provider = provider_name(request);
    let unrestricted = request.provider.spec.aws.as_ref().is_some_and(|a| {
        a.allow_unrestricted_inline_policies || a.permissions_boundary_arn.is_some()
    });
    let mut documents = Vec::with_capacity(spec.inline_policies.len());
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
                    "inline policy {:?}: {grant}; ClusterIdentityProvider {provider:?} allows such grants only with aws.permissionsBoundaryArn or aws.allowUnrestrictedInlinePolicies; nothing was created",
                    inline.name
                ),
            ));
        }
        documents.push(document);
    }
    let inline_chars: usize = documents.iter().map(policy::size).sum();
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
