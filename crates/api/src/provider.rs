//! `ClusterIdentityProvider`: the platform team's side of wib — the cluster's
//! OIDC issuer, per-cloud defaults and the guardrails every binding is held to.

// kube's printcolumn(...) attributes repeat `type_ = "string"` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Cloud defaults and guardrails for the WorkloadIdentityBindings of one cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "wib.dev",
    version = "v1alpha1",
    kind = "ClusterIdentityProvider",
    shortname = "cip",
    category = "workloadidentity",
    status = "ClusterIdentityProviderStatus",
    derive = "PartialEq",
    doc = "Cloud defaults, the cluster's OIDC issuer and guardrails for WorkloadIdentityBindings.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterName"),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".status.issuer"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = (
    "has(self.azure) || has(self.aws) || has(self.gcp)",
    "at least one of spec.azure, spec.aws or spec.gcp must be set"
))]
#[x_kube(validation = Rule::new(
    "!has(self.aws) || !has(oldSelf.aws) || (!has(self.aws.eksClusterName) && !has(oldSelf.aws.eksClusterName)) || (has(self.aws.eksClusterName) ? self.aws.eksClusterName : self.clusterName) == (has(oldSelf.aws.eksClusterName) ? oldSelf.aws.eksClusterName : oldSelf.clusterName)"
).message("the EKS cluster of pod identity associations (aws.eksClusterName, default clusterName) is immutable: associations made in the old cluster would be left behind"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentityProviderSpec {
    /// The cluster's OIDC issuer URL (https). Default: discovered from the API
    /// server's `/.well-known/openid-configuration`. Clouds must be able to
    /// read its discovery document and JWKS anonymously. A change re-keys
    /// every binding's federation to the new issuer in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = (
        "isURL(self) && url(self).getScheme() == 'https' && url(self).getQuery().size() == 0",
        "issuer must be an https URL without a query (the iss claim of the cluster's ServiceAccount tokens)"
    ))]
    pub issuer: Option<String>,

    /// Short cluster name used in generated cloud identity names and ownership
    /// tags, e.g. `prod-weu-1`. Immutable.
    #[schemars(length(max = 40))]
    #[x_kube(validation = (
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        "clusterName must be 1-40 lower-case letters, digits and '-', starting and ending with a letter or digit"
    ))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "clusterName is immutable: it is part of every cloud identity name and ownership tag"
    ))]
    pub cluster_name: String,

    /// Azure defaults for bindings through this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureProvider>,

    /// AWS defaults for bindings through this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,

    /// GCP defaults for bindings through this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpProvider>,

    /// Namespaces whose bindings may use this provider. Default: all namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Roles bindings may be granted (Azure role names, GUIDs or definition
    /// IDs, AWS policy ARNs, GCP roles); an entry ending in `*` matches by
    /// prefix. When omitted, every role the built-in deny list does not name
    /// is allowed. The deny list (Owner, User Access Administrator, Role
    /// Based Access Control Administrator, Managed Identity Contributor and
    /// Operator, Contributor on a subscription or management group, custom
    /// roles reaching Microsoft.Authorization or federated credentials;
    /// AdministratorAccess, IAMFullAccess, PowerUserAccess and other
    /// administrator policies in every partition; GCP basic roles, IAM and
    /// service-account administration or impersonation roles,
    /// roles/resourcemanager.*, custom roles) holds whatever this list says,
    /// except for an entry naming a role by its exact ID (Azure GUID or
    /// definition ID, AWS ARN, GCP role name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub allowed_roles: Option<Vec<String>>,

    /// Where grants may land: Azure scope prefixes, AWS managed-policy ARN
    /// prefixes, GCP resource prefixes (`projects/p`), matched segment by
    /// segment. When omitted, no grant is allowed (default deny): bindings
    /// get their identity and federation and report `ScopeNotAllowed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub allowed_scopes: Option<Vec<String>>,

    /// Whether a binding may take over an existing cloud identity that wib did
    /// not create. `Deny` (default) reports `AdoptionNotAllowed`.
    #[serde(default)]
    pub adoption: AdoptionPolicy,

    /// Whether a binding may share its identity with bindings of other
    /// namespaces it lists in `spec.sharing` (default: no; each namespace's
    /// identities stay its own).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cross_namespace_sharing: bool,

    /// Identities no binding may create over, adopt, share or federate
    /// (`IdentityProtected`): Azure identity names, resource IDs or client
    /// IDs, AWS role names or ARNs, GCP account IDs or emails;
    /// case-insensitive. wib's own identities are always protected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 512)))]
    pub protected_identities: Vec<String>,

    /// Ready means the exchange works: once the cloud side is written, wib
    /// asks the API server for a short-lived token of the bound
    /// ServiceAccount (its cloud's audience, 10 minutes) and exchanges it
    /// itself, as a pod would (Entra ID, STS, GCP STS and impersonation),
    /// until the cloud accepts it; meanwhile the binding is `Ready=False`
    /// `WaitingForPropagation` with the time waited. The token is never
    /// logged or stored. Needs the chart's `verifyExchange.enabled`, which
    /// lets wib create ServiceAccount tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_exchange: bool,
}

impl ClusterIdentityProviderSpec {
    /// Whether the provider has a configuration block for `cloud`.
    pub fn configures(&self, cloud: crate::Cloud) -> bool {
        match cloud {
            crate::Cloud::Azure => self.azure.is_some(),
            crate::Cloud::Aws => self.aws.is_some(),
            crate::Cloud::Gcp => self.gcp.is_some(),
        }
    }
}

/// May a binding take over an existing cloud identity?
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AdoptionPolicy {
    /// Never: an identity of the same name that wib does not own is an error.
    #[default]
    Deny,
    /// Adopt an identity that carries no wib ownership tags and whose owner
    /// tagged it `wib.dev_adopt-into=<the binding's namespace>`; never one
    /// owned by another binding.
    AllowUntagged,
}

/// Azure defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.tenantId == oldSelf.tenantId")
    .message("azure.tenantId is immutable: existing identities live in the old tenant"))]
#[x_kube(validation = Rule::new("self.subscriptionId == oldSelf.subscriptionId")
    .message("azure.subscriptionId is immutable: existing identities live in the old subscription"))]
#[x_kube(validation = Rule::new("self.resourceGroup == oldSelf.resourceGroup")
    .message("azure.resourceGroup is immutable: existing identities live in the old resource group"))]
#[x_kube(validation = Rule::new("self.location == oldSelf.location")
    .message("azure.location is immutable: an identity cannot change region, and a new default would make wib try to move every existing one"))]
#[serde(rename_all = "camelCase")]
pub struct AzureProvider {
    /// Entra tenant ID (GUID).
    #[schemars(length(max = 36))]
    #[x_kube(validation = (
        "self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')",
        "azure.tenantId must be a GUID"
    ))]
    pub tenant_id: String,

    /// Default subscription for identities (GUID).
    #[schemars(length(max = 36))]
    #[x_kube(validation = (
        "self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')",
        "azure.subscriptionId must be a GUID"
    ))]
    pub subscription_id: String,

    /// Default resource group for identities.
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,

    /// Default region for identities, e.g. `westeurope`.
    #[schemars(length(min = 1, max = 64))]
    pub location: String,

    /// Other resource groups (`/subscriptions/<id>/resourceGroups/<name>`)
    /// a binding may put its identity in with `azure.subscriptionId` /
    /// `azure.resourceGroup`. Empty: only the default above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    #[x_kube(validation = (
        "self.all(g, g.matches('^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/resourceGroups/[^/]+$'))",
        "azure.allowedResourceGroups entries must be /subscriptions/<guid>/resourceGroups/<name>"
    ))]
    pub allowed_resource_groups: Vec<String>,

    /// Other regions a binding may create its identity in with
    /// `azure.location`. Empty: only the default above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub allowed_locations: Vec<String>,

    /// Key Vault permissions a binding's `azure.keyVaultAccessPolicies` may
    /// grant besides the everyday ones: `secrets/purge`, `keys/purge`,
    /// `certificates/purge` (irreversible deletion), `keys/release`
    /// (exporting a key out of its HSM boundary) and `keys/import`.
    /// Empty (default): none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5), inner(length(max = 24)))]
    #[x_kube(validation = (
        "self.all(p, p in ['secrets/purge', 'keys/purge', 'certificates/purge', 'keys/release', 'keys/import'])",
        "azure.allowedSensitiveKeyVaultPermissions may hold only secrets/purge, keys/purge, certificates/purge, keys/release and keys/import"
    ))]
    pub allowed_sensitive_key_vault_permissions: Vec<String>,
}

/// AWS defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.accountId == oldSelf.accountId")
    .message("aws.accountId is immutable: existing roles live in the old account"))]
#[x_kube(validation = (
    "!(has(self.oidcProviderArn) && self.createOidcProvider)",
    "set either aws.oidcProviderArn or aws.createOidcProvider, not both"
))]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    /// 12-digit AWS account ID the roles live in.
    #[schemars(length(max = 12))]
    #[x_kube(validation = ("self.matches('^[0-9]{12}$')", "aws.accountId must be 12 digits"))]
    pub account_id: String,

    /// ARN of the IAM OIDC provider for the cluster's issuer. Default: derived
    /// from the account and the issuer's host and path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = (
        "self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/[\\\\x21-\\\\x7E]+$')",
        "aws.oidcProviderArn must look like arn:aws:iam::<account-id>:oidc-provider/<issuer host and path>"
    ))]
    pub oidc_provider_arn: Option<String>,

    /// Create the IAM OIDC provider for the issuer when it does not exist.
    #[serde(default)]
    pub create_oidc_provider: bool,

    /// Permissions boundary applied to every role wib creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = (
        "self.matches('^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\\\\x21-\\\\x7E]+$')",
        "aws.permissionsBoundaryArn must be an IAM policy ARN"
    ))]
    pub permissions_boundary_arn: Option<String>,

    /// Audiences a binding may ask for with `aws.audience`, besides
    /// `sts.amazonaws.com`. Each becomes a client ID of the cluster's IAM OIDC
    /// provider, which every binding shares (IAM allows 100), so the platform
    /// team lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 256)))]
    pub allowed_audiences: Vec<String>,

    /// Let bindings' inline policies grant what a tenant otherwise may not:
    /// `*`, wildcards over IAM, STS or Organizations, `iam:PassRole`, IAM
    /// writes, `NotAction`/`NotResource` with `Allow`. Off by default; not
    /// needed when `permissionsBoundaryArn` caps every role wib manages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unrestricted_inline_policies: bool,

    /// Region for STS calls and regional endpoints, e.g. `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub region: Option<String>,

    /// How bindings that do not say give pods their role: `IRSA` (default)
    /// or `PodIdentity` (EKS pod identity associations; the cluster needs
    /// the EKS Pod Identity Agent add-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::binding::AwsMode>,

    /// The EKS cluster pod identity associations are made in. Default: the
    /// provider's `clusterName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = (
        "self.matches('^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$')",
        "aws.eksClusterName must be an EKS cluster name: 1-100 letters, digits, _ and -, starting with a letter or digit"
    ))]
    pub eks_cluster_name: Option<String>,

    /// Roles in other accounts a PodIdentity binding may name as its
    /// `targetRoleArn`: exact role ARNs, or a prefix ending in `*`
    /// (`arn:aws:iam::222222222222:role/team-a/*`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 2048)))]
    #[x_kube(validation = (
        "self.all(a, a.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\\\\x21-\\\\x7E]*$'))",
        "aws.allowedTargetRoleArns entries must be IAM role ARNs (or prefixes of them ending in *)"
    ))]
    pub allowed_target_role_arns: Vec<String>,
}

impl AwsProvider {
    /// The EKS cluster of pod identity associations: `eksClusterName`, or
    /// the provider's `clusterName`.
    pub fn eks_cluster<'a>(&'a self, cluster_name: &'a str) -> &'a str {
        self.eks_cluster_name.as_deref().unwrap_or(cluster_name)
    }
}

/// GCP defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.projectId == oldSelf.projectId")
    .message("gcp.projectId is immutable: existing service accounts live in the old project"))]
#[x_kube(validation = Rule::new(
    "has(self.projectNumber) == has(oldSelf.projectNumber) && (!has(self.projectNumber) || self.projectNumber == oldSelf.projectNumber)"
).message("gcp.projectNumber is immutable: existing federation members name it"))]
#[x_kube(validation = Rule::new(
    "has(self.workloadIdentityPool) == has(oldSelf.workloadIdentityPool) && (!has(self.workloadIdentityPool) || self.workloadIdentityPool == oldSelf.workloadIdentityPool)"
).message("gcp.workloadIdentityPool is immutable: existing federation members name the pool (or GKE's), and a change would leave them behind"))]
#[x_kube(validation = (
    "!has(self.workloadIdentityPool) || has(self.projectNumber)",
    "gcp.projectNumber is required with gcp.workloadIdentityPool (principal:// members name the project number)"
))]
#[serde(rename_all = "camelCase")]
pub struct GcpProvider {
    /// Project the service accounts live in.
    #[schemars(length(max = 30))]
    #[x_kube(validation = (
        "self.matches('^[a-z][-a-z0-9]{4,28}[a-z0-9]$')",
        "gcp.projectId must be 6-30 lower-case letters, digits and '-', starting with a letter"
    ))]
    pub project_id: String,

    /// Project number (digits), needed for workload identity pool members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = ("self.matches('^[0-9]+$')", "gcp.projectNumber must be digits"))]
    pub project_number: Option<String>,

    /// Workload identity pool ID for clusters outside GKE. When omitted, the
    /// GKE member `serviceAccount:<project>.svc.id.goog[<ns>/<ksa>]` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = (
        "self.matches('^[a-z0-9-]{4,32}$')",
        "gcp.workloadIdentityPool must be 4-32 lower-case letters, digits and '-'"
    ))]
    pub workload_identity_pool: Option<String>,

    /// Provider ID within the pool that trusts this cluster's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = (
        "self.matches('^[a-z0-9-]{4,32}$')",
        "gcp.workloadIdentityProvider must be 4-32 lower-case letters, digits and '-'"
    ))]
    pub workload_identity_provider: Option<String>,
}

/// What wib found out about the issuer and its cloud credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentityProviderStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, IssuerReady (discovery document and JWKS readable anonymously).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The issuer in effect: `spec.issuer` or the one discovered from the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// The JWKS URI the issuer's discovery document names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,

    /// How many signing keys the JWKS served when last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_keys: Option<i32>,
}
