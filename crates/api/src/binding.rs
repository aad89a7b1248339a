//! `WorkloadIdentityBinding`: "ServiceAccount X in this namespace may act as
//! cloud identity Z with roles R".

// kube's printcolumn(...) attributes repeat `type_ = "string"` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Cloud;

/// Binds a Kubernetes ServiceAccount to a cloud identity through workload
/// identity federation: wib creates the identity, federates it with this
/// cluster's OIDC issuer for exactly `system:serviceaccount:<namespace>:<name>`,
/// grants the requested roles, and annotates the ServiceAccount.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "wib.dev",
    version = "v1alpha1",
    kind = "WorkloadIdentityBinding",
    namespaced,
    shortname = "wib",
    category = "workloadidentity",
    status = "WorkloadIdentityBindingStatus",
    derive = "PartialEq",
    doc = "Binds a ServiceAccount to an Azure, AWS or GCP identity through workload identity federation.",
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
    printcolumn(name = "Cloud", type_ = "string", json_path = ".status.cloud"),
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".status.serviceAccount"
    ),
    printcolumn(name = "Identity", type_ = "string", json_path = ".status.identity"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#
    )
)]
#[x_kube(validation = (
    "[has(self.azure), has(self.aws), has(self.gcp)].filter(c, c).size() == 1",
    "exactly one of spec.azure, spec.aws or spec.gcp must be set"
))]
#[x_kube(validation = Rule::new(
    "has(self.azure) == has(oldSelf.azure) && has(self.aws) == has(oldSelf.aws) && has(self.gcp) == has(oldSelf.gcp)"
).message("the cloud of a binding cannot change: create a new binding for the other cloud"))]
#[x_kube(validation = Rule::new(
    "has(self.providerRef) == has(oldSelf.providerRef) && (!has(self.providerRef) || self.providerRef.name == oldSelf.providerRef.name)"
).message("spec.providerRef is immutable: moving a binding to another provider would orphan its cloud identity"))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityBindingSpec {
    /// The ClusterIdentityProvider that supplies cloud defaults, the OIDC issuer
    /// and guardrails. When omitted, the provider annotated
    /// `wib.dev/is-default-provider: "true"` is used. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,

    /// The ServiceAccount in this binding's namespace that may act as the identity.
    #[serde(default)]
    pub service_account: ServiceAccountSpec,

    /// What happens to the cloud identity when this binding is deleted.
    /// `Delete` removes what wib created (role assignments, federation,
    /// identity); `Retain` keeps the identity and its roles and removes only
    /// the federation, so no Kubernetes workload can use it any more.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// `OnIdentityChange`: when the identity the ServiceAccount points at
    /// changes (or first becomes Ready) while pods of it run without it,
    /// wib rolls the Deployments, StatefulSets and DaemonSets of those pods
    /// once (as `kubectl rollout restart` does). Needs the pod webhook and
    /// the chart's `restartWorkloads.enabled`. Default `Never`: such pods
    /// are only reported (status `podsNeedingRestart`, condition PodsReady).
    #[serde(default)]
    pub restart_workloads: RestartWorkloads,

    /// Where wib writes the identity's non-secret facts for workloads to
    /// read (client and tenant IDs, role ARN, email, GCP credential
    /// configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,

    /// Other namespaces whose bindings may federate to the identity this
    /// binding made (each adds only its own federation; grants stay this
    /// binding's). Honoured only when both namespaces' provider sets
    /// `allowCrossNamespaceSharing`. Removing a namespace revokes its
    /// bindings' federation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Sharing>,

    /// Bind to an Azure user-assigned managed identity. Exactly one of azure, aws, gcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureBinding>,

    /// Bind to an AWS IAM role. Exactly one of azure, aws, gcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsBinding>,

    /// Bind to a Google Cloud service account. Exactly one of azure, aws, gcp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpBinding>,
}

impl WorkloadIdentityBindingSpec {
    /// The cloud this binding targets; `None` only for objects that bypassed
    /// admission (the CEL rule demands exactly one block).
    pub fn cloud(&self) -> Option<Cloud> {
        match (&self.azure, &self.aws, &self.gcp) {
            (Some(_), None, None) => Some(Cloud::Azure),
            (None, Some(_), None) => Some(Cloud::Aws),
            (None, None, Some(_)) => Some(Cloud::Gcp),
            _ => None,
        }
    }

    /// Whether the binding names its identity explicitly (`identityName`,
    /// `roleName`, `accountId`) rather than taking wib's generated name:
    /// only such a binding can use another namespace's identity, so only it
    /// is reconciled again when a binding of another namespace changes what
    /// it shares.
    pub fn names_its_identity(&self) -> bool {
        self.azure
            .as_ref()
            .is_some_and(|a| a.identity_name.is_some())
            || self.aws.as_ref().is_some_and(|a| a.role_name.is_some())
            || self.gcp.as_ref().is_some_and(|g| g.account_id.is_some())
    }

    /// The token audience the binding asks for in place of its cloud's
    /// default, if any.
    pub fn custom_audience(&self) -> Option<&str> {
        self.aws.as_ref().and_then(|a| a.audience.as_deref())
    }
}

impl WorkloadIdentityBindingStatus {
    /// Takes the cloud-specific part of `other` (the identity, its per-cloud
    /// block, and where grants were made).
    pub fn set_cloud_status(&mut self, other: &WorkloadIdentityBindingStatus) {
        self.identity = other.identity.clone();
        self.azure = other.azure.clone();
        self.aws = other.aws.clone();
        self.gcp = other.gcp.clone();
        self.role_assignments = other.role_assignments.clone();
    }
}

impl WorkloadIdentityBinding {
    /// The ServiceAccount name: `spec.serviceAccount.name`, else the binding's name.
    pub fn service_account_name(&self) -> String {
        self.spec
            .service_account
            .name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

/// A reference to a ClusterIdentityProvider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProviderRef {
    /// Name of the ClusterIdentityProvider.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The Kubernetes ServiceAccount side of the binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)"
).message("spec.serviceAccount.name is immutable: the federated credential names exactly one ServiceAccount; create a new binding instead"))]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSpec {
    /// ServiceAccount name in the binding's namespace. Defaults to the
    /// binding's own name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = (
        "size(self) <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
        "serviceAccount.name must be a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253 characters"
    ))]
    #[schemars(length(max = 253))]
    pub name: Option<String>,

    /// Create the ServiceAccount when it does not exist (owned by this binding
    /// and deleted with it). `false`: only annotate and label an existing
    /// ServiceAccount, and remove exactly those fields on deletion.
    #[serde(default = "default_true")]
    pub create: bool,

    /// `automountServiceAccountToken` on a ServiceAccount wib creates. `false`
    /// by default (CIS 5.1.5/5.1.6): pods that need the token opt in. Not
    /// applied to ServiceAccounts wib does not create.
    #[serde(default)]
    pub automount_token: bool,
}

impl Default for ServiceAccountSpec {
    fn default() -> Self {
        Self {
            name: None,
            create: true,
            automount_token: false,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Who else may federate to a binding's identity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sharing {
    /// Namespaces, by exact name.
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// The identity's facts, written for workloads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    /// A ConfigMap in the binding's namespace that wib creates, owns
    /// (deleted with the binding) and keeps: `cloud`, `identity`, and per
    /// cloud `clientId`, `tenantId`, `principalId`, `resourceId` (Azure),
    /// `roleArn` (AWS), `email` and, outside GKE,
    /// `credential-configuration.json` (GCP). A ConfigMap of that name that
    /// wib did not make for this binding is never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = (
        "size(self) <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
        "outputs.configMap must be a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253 characters"
    ))]
    #[schemars(length(max = 253))]
    pub config_map: Option<String>,
}

/// Whether wib restarts workloads whose pods run without the current identity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RestartWorkloads {
    /// Report such pods; never restart anything.
    #[default]
    Never,
    /// Roll their workloads once per identity.
    OnIdentityChange,
}

/// What happens to the cloud identity when its binding is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove role assignments, federation and the identity wib created.
    #[default]
    Delete,
    /// Keep the identity and its roles; remove only the federation.
    Retain,
}

/// Azure: a user-assigned managed identity federated with this cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "has(self.identityName) == has(oldSelf.identityName) && (!has(self.identityName) || self.identityName == oldSelf.identityName)"
).message("spec.azure.identityName is immutable: renaming would orphan the existing identity"))]
#[x_kube(validation = Rule::new(
    "has(self.resourceGroup) == has(oldSelf.resourceGroup) && (!has(self.resourceGroup) || self.resourceGroup == oldSelf.resourceGroup)"
).message("spec.azure.resourceGroup is immutable: an identity cannot move between resource groups"))]
#[x_kube(validation = Rule::new(
    "has(self.subscriptionId) == has(oldSelf.subscriptionId) && (!has(self.subscriptionId) || self.subscriptionId == oldSelf.subscriptionId)"
).message("spec.azure.subscriptionId is immutable: an identity cannot move between subscriptions"))]
#[x_kube(validation = Rule::new(
    "has(self.location) == has(oldSelf.location) && (!has(self.location) || self.location == oldSelf.location)"
).message("spec.azure.location is immutable: an identity cannot move between regions"))]
#[serde(rename_all = "camelCase")]
pub struct AzureBinding {
    /// Name of the user-assigned managed identity. Default: derived from the
    /// provider's clusterName, the namespace and the binding name (stable,
    /// truncated with a hash to fit). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = (
        "self.matches('^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$')",
        "azure.identityName must be 3-128 characters of letters, digits, '-' and '_', starting with a letter or digit"
    ))]
    pub identity_name: Option<String>,

    /// Resource group of the identity. Default: the provider's. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 90))]
    #[x_kube(validation = (
        "self.matches('^[-\\\\w._()]{0,89}[-\\\\w_()]$')",
        "azure.resourceGroup must be 1-90 characters of letters, digits, '_', '-', '.', '(' and ')', not ending in '.'"
    ))]
    pub resource_group: Option<String>,

    /// Azure region of the identity, e.g. `westeurope`. Default: the provider's. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = (
        "self.matches('^[a-z0-9]+$')",
        "azure.location must be an Azure region name such as westeurope (lower-case letters and digits)"
    ))]
    pub location: Option<String>,

    /// Subscription of the identity. Default: the provider's. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = (
        "self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')",
        "azure.subscriptionId must be a GUID such as 00000000-0000-0000-0000-000000000000"
    ))]
    pub subscription_id: Option<String>,

    /// Azure RBAC role assignments for the identity. wib creates the missing
    /// ones, removes the ones it created that are no longer listed, and never
    /// touches assignments it did not create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub role_assignments: Vec<AzureRoleAssignment>,

    /// Key Vault access policies for the identity's principal, for vaults
    /// that authorize with access policies rather than Azure RBAC. wib
    /// keeps exactly these permissions in the principal's entry of each
    /// vault (never another entry), and removes the entry when the vault
    /// leaves this list or the binding is deleted. Each vault must lie in
    /// the provider's `allowedScopes`; `purge`, `keys/release` and
    /// `keys/import` also need the provider's
    /// `azure.allowedSensitiveKeyVaultPermissions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = (
        "self.all(p, self.filter(q, q.vault.lowerAscii() == p.vault.lowerAscii()).size() == 1)",
        "azure.keyVaultAccessPolicies must name each vault once: list all of a vault's permissions in one entry"
    ))]
    pub key_vault_access_policies: Vec<KeyVaultAccessPolicy>,

    /// Lifetime of the projected token the Azure workload identity webhook
    /// mounts (`azure.workload.identity/service-account-token-expiration`), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 86400))]
    pub token_expiration_seconds: Option<i32>,
}

/// One Azure role assignment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureRoleAssignment {
    /// Role name (`Key Vault Secrets User`), role definition GUID, or full
    /// role definition ID.
    #[schemars(length(min = 1, max = 512))]
    pub role: String,

    /// ARM scope: a subscription, resource group or resource ID, e.g.
    /// `/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>`,
    /// or a management group `/providers/Microsoft.Management/managementGroups/<id>`.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = (
        "self.matches('^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(/resourceGroups/[^/]+(/providers/[^/]+/[^/]+/[^/]+(/[^/]+/[^/]+)*)?)?$') || self.matches('^/providers/Microsoft.Management/managementGroups/[^/]+$')",
        "azure.roleAssignments[].scope must be an ARM ID: /subscriptions/<guid>[/resourceGroups/<rg>[/providers/<namespace>/<type>/<name>...]] or /providers/Microsoft.Management/managementGroups/<id>"
    ))]
    #[x_kube(validation = (
        "!self.matches('(^|/)[.]{1,2}(/|$)') && !self.contains('%') && !self.contains('\\\\')",
        "azure.roleAssignments[].scope must not contain '.' or '..' segments, percent-encoding or backslashes: write the plain ARM ID"
    ))]
    pub scope: String,
}

/// The permissions of one vault's access policy entry for the identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = (
    "self.secrets.size() + self.keys.size() + self.certificates.size() > 0",
    "azure.keyVaultAccessPolicies[] must grant at least one permission on secrets, keys or certificates"
))]
#[serde(rename_all = "camelCase")]
pub struct KeyVaultAccessPolicy {
    /// ARM ID of the vault:
    /// `/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>`.
    #[schemars(length(max = 256))]
    #[x_kube(validation = (
        "self.matches('^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/resourceGroups/[-\\\\w._()]{0,89}[-\\\\w_()]/providers/(?i:Microsoft[.]KeyVault/vaults)/[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$')",
        "azure.keyVaultAccessPolicies[].vault must be a vault's ARM ID: /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<3-24 letters, digits and '-'>"
    ))]
    pub vault: String,

    /// Secret permissions: get, list, set, delete, backup, restore, recover, purge.
    #[serde(default)]
    #[schemars(length(max = 8), inner(length(max = 16)))]
    #[x_kube(validation = (
        "self.all(p, p in ['get', 'list', 'set', 'delete', 'backup', 'restore', 'recover', 'purge'])",
        "azure.keyVaultAccessPolicies[].secrets may hold only get, list, set, delete, backup, restore, recover and purge"
    ))]
    pub secrets: Vec<String>,

    /// Key permissions: encrypt, decrypt, wrapKey, unwrapKey, sign, verify,
    /// get, list, create, update, import, delete, backup, restore, recover,
    /// purge, release, rotate, getrotationpolicy, setrotationpolicy.
    #[serde(default)]
    #[schemars(length(max = 20), inner(length(max = 24)))]
    #[x_kube(validation = (
        "self.all(p, p in ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey', 'sign', 'verify', 'get', 'list', 'create', 'update', 'import', 'delete', 'backup', 'restore', 'recover', 'purge', 'release', 'rotate', 'getrotationpolicy', 'setrotationpolicy'])",
        "azure.keyVaultAccessPolicies[].keys may hold only encrypt, decrypt, wrapKey, unwrapKey, sign, verify, get, list, create, update, import, delete, backup, restore, recover, purge, release, rotate, getrotationpolicy and setrotationpolicy"
    ))]
    pub keys: Vec<String>,

    /// Certificate permissions: get, list, delete, create, import, update,
    /// managecontacts, getissuers, listissuers, setissuers, deleteissuers,
    /// manageissuers, recover, purge, backup, restore.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 24)))]
    #[x_kube(validation = (
        "self.all(p, p in ['get', 'list', 'delete', 'create', 'import', 'update', 'managecontacts', 'getissuers', 'listissuers', 'setissuers', 'deleteissuers', 'manageissuers', 'recover', 'purge', 'backup', 'restore'])",
        "azure.keyVaultAccessPolicies[].certificates may hold only get, list, delete, create, import, update, managecontacts, getissuers, listissuers, setissuers, deleteissuers, manageissuers, recover, purge, backup and restore"
    ))]
    pub certificates: Vec<String>,
}

/// AWS: an IAM role that trusts this cluster's OIDC provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "has(self.roleName) == has(oldSelf.roleName) && (!has(self.roleName) || self.roleName == oldSelf.roleName)"
).message("spec.aws.roleName is immutable: renaming would orphan the existing role"))]
#[x_kube(validation = Rule::new(
    "has(self.path) == has(oldSelf.path) && (!has(self.path) || self.path == oldSelf.path)"
).message("spec.aws.path is immutable: IAM cannot move a role to another path"))]
#[x_kube(validation = (
    "!has(self.mode) || self.mode != 'PodIdentity' || (!has(self.audience) && !has(self.stsRegionalEndpoints) && !has(self.tokenExpirationSeconds))",
    "aws.audience, aws.stsRegionalEndpoints and aws.tokenExpirationSeconds set the IRSA token and annotations; mode PodIdentity uses neither"
))]
#[x_kube(validation = (
    "!has(self.targetRoleArn) || !has(self.mode) || self.mode == 'PodIdentity'",
    "aws.targetRoleArn is for mode PodIdentity (EKS assumes it from the association's role)"
))]
#[serde(rename_all = "camelCase")]
pub struct AwsBinding {
    /// IAM role name. Default: derived from the provider's clusterName, the
    /// namespace and the binding name (stable, truncated with a hash to fit 64). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = (
        "self.matches('^[\\\\w+=,.@-]{1,64}$')",
        "aws.roleName must be 1-64 characters of letters, digits and +=,.@_-"
    ))]
    pub role_name: Option<String>,

    /// IAM path of the role, `/` by default. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = (
        "self == '/' || self.matches('^/[\\\\x21-\\\\x7E]*/$')",
        "aws.path must start and end with '/' (for example /wib/)"
    ))]
    pub path: Option<String>,

    /// Maximum session duration of the role in seconds (IAM allows 3600-43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration_seconds: Option<i32>,

    /// ARNs of managed policies to attach, e.g.
    /// `arn:aws:iam::aws:policy/ReadOnlyAccess`. Reconciled to exactly this
    /// list; attachments wib did not make are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 2048)))]
    #[x_kube(validation = (
        "self.all(a, a.matches('^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\\\\x21-\\\\x7E]+$'))",
        "aws.managedPolicyArns entries must be IAM policy ARNs: arn:aws:iam::<account-id or aws>:policy/<path/name>"
    ))]
    pub managed_policy_arns: Vec<ManagedPolicyArn>,

    /// Inline policies embedded in the role, reconciled to exactly this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = (
        "self.all(p, self.exists_one(q, q.name == p.name))",
        "aws.inlinePolicies names must be unique"
    ))]
    pub inline_policies: Vec<InlinePolicy>,

    /// Audience of the projected token (`eks.amazonaws.com/audience`); the
    /// trust policy requires it. Default `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub audience: Option<String>,

    /// Use the regional STS endpoint (`eks.amazonaws.com/sts-regional-endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_regional_endpoints: Option<bool>,

    /// Lifetime of the projected token (`eks.amazonaws.com/token-expiration`), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 600, max = 86400))]
    pub token_expiration_seconds: Option<i32>,

    /// How pods get the role: `IRSA` (the ServiceAccount's `role-arn`
    /// annotation and a trust statement for the cluster's IAM OIDC
    /// provider) or `PodIdentity` (an EKS pod identity association and a
    /// trust statement for `pods.eks.amazonaws.com` scoped by the session
    /// tags of cluster, namespace and ServiceAccount). Default: the
    /// provider's `aws.mode`. A change keeps the old way working until the
    /// new one is in place and the ServiceAccount updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AwsMode>,

    /// Mode PodIdentity only: a role in another account that EKS assumes
    /// from this binding's role (role chaining); it must be in the
    /// provider's `aws.allowedTargetRoleArns`. Its trust policy, in the
    /// other account, is that account's to write: it must trust this
    /// binding's role with the association's `externalId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = (
        "self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\\\\x21-\\\\x7E]+$')",
        "aws.targetRoleArn must be an IAM role ARN: arn:aws:iam::<account-id>:role/<path/name>"
    ))]
    pub target_role_arn: Option<String>,
}

/// How an AWS binding gives its pods the role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AwsMode {
    /// IAM roles for service accounts: a web identity trust statement for
    /// the cluster's IAM OIDC provider, the role ARN annotated.
    #[default]
    #[serde(rename = "IRSA")]
    Irsa,
    /// EKS Pod Identity: an association, and a trust statement for the
    /// EKS pods service principal.
    PodIdentity,
}

/// An IAM managed policy ARN.
pub type ManagedPolicyArn = String;

/// An inline IAM policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlinePolicy {
    /// Policy name, 1-128 characters of letters, digits and +=,.@_-.
    #[schemars(length(max = 128))]
    #[x_kube(validation = (
        "self.matches('^[\\\\w+=,.@-]{1,128}$')",
        "aws.inlinePolicies[].name must be 1-128 characters of letters, digits and +=,.@_-"
    ))]
    pub name: String,

    /// The IAM policy document (`Version` and `Statement`) as JSON text,
    /// the way IAM itself takes it; at most 10240 characters, IAM's quota
    /// for all inline policies of a role. Text, not an object, so a document
    /// wib cannot decode is this binding's error (`InvalidPolicyDocument`)
    /// and never stops the operator from listing every other binding.
    #[schemars(length(min = 1, max = 10240))]
    pub document: String,
}

/// GCP: a Google service account that this cluster's ServiceAccount may
/// impersonate, or (`mode: Direct`) roles granted to the ServiceAccount's
/// own principal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "has(self.accountId) == has(oldSelf.accountId) && (!has(self.accountId) || self.accountId == oldSelf.accountId)"
).message("spec.gcp.accountId is immutable: renaming would orphan the existing service account"))]
#[x_kube(validation = Rule::new(
    "(has(self.mode) ? self.mode : 'ServiceAccount') == (has(oldSelf.mode) ? oldSelf.mode : 'ServiceAccount')"
).message("spec.gcp.mode is immutable: to switch, create a binding in the new mode for another ServiceAccount, move the workload, then delete this one"))]
#[x_kube(validation = (
    "!has(self.mode) || self.mode != 'Direct' || (!has(self.accountId) && !has(self.displayName))",
    "gcp.accountId and gcp.displayName name a Google service account, which mode Direct does not make"
))]
#[serde(rename_all = "camelCase")]
pub struct GcpBinding {
    /// Service account ID (the part before `@`), 6-30 characters. Default:
    /// derived from the provider's clusterName, the namespace and the binding
    /// name (stable, truncated with a hash to fit). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    #[x_kube(validation = (
        "self.matches('^[a-z]([-a-z0-9]{4,28}[a-z0-9])$')",
        "gcp.accountId must be 6-30 characters: lower-case letters, digits and '-', starting with a letter and not ending with '-'"
    ))]
    pub account_id: Option<String>,

    /// Display name of the service account. Default: names the binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub display_name: Option<String>,

    /// IAM roles to grant the service account (or, in mode Direct, the
    /// Kubernetes ServiceAccount's principal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub roles: Vec<GcpRoleBinding>,

    /// `ServiceAccount` (default): a Google service account the Kubernetes
    /// ServiceAccount impersonates. `Direct`: no Google service account; the
    /// roles go straight to the Kubernetes ServiceAccount's federated
    /// principal (`principal://iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<project>.svc.id.goog/subject/ns/<ns>/sa/<name>`
    /// on GKE, the pool's `.../subject/system:serviceaccount:<ns>:<name>`
    /// otherwise), so the provider needs `gcp.projectNumber`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<GcpMode>,
}

/// How a GCP binding gives its pods an identity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GcpMode {
    /// A Google service account, impersonated through
    /// `roles/iam.workloadIdentityUser`.
    #[default]
    ServiceAccount,
    /// Roles granted to the Kubernetes ServiceAccount's own principal.
    Direct,
}

/// One IAM role granted to the Google service account on a resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpRoleBinding {
    /// Role: `roles/<name>`, `projects/<p>/roles/<name>` or `organizations/<o>/roles/<name>`.
    #[schemars(length(max = 256))]
    #[x_kube(validation = (
        "self.matches('^(roles/[A-Za-z0-9_.]+|projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]+|organizations/[0-9]+/roles/[A-Za-z0-9_.]+)$')",
        "gcp.roles[].role must be roles/<name>, projects/<project>/roles/<name> or organizations/<id>/roles/<name>"
    ))]
    pub role: String,

    /// Resource the role is granted on, `projects/<project>`. Default: the provider's project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = (
        "self.matches('^projects/[a-z][-a-z0-9]{4,28}[a-z0-9]$')",
        "gcp.roles[].resource must be projects/<project-id>"
    ))]
    pub resource: Option<String>,
}

/// What wib observed and did, as standard conditions plus per-cloud details.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityBindingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling, Stalled (kstatus) and the per-step conditions
    /// IdentityReady, FederationReady, RoleAssignmentsReady, ServiceAccountReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The cloud this binding targets: Azure, AWS or GCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,

    /// A one-line summary of the cloud identity: Azure client ID, AWS role ARN or GCP email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,

    /// The ServiceAccount this binding manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,

    /// Azure details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStatus>,

    /// AWS details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsStatus>,

    /// GCP details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpStatus>,

    /// Each requested role assignment / policy / role binding and whether it is in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_assignments: Vec<RoleAssignmentStatus>,

    /// Pods of the ServiceAccount admitted by wib's webhook without the
    /// current identity (created before it was Ready, or before it
    /// changed): they need a restart to use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_needing_restart: Option<i32>,

    /// Up to five of those pods, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods_needing_restart_names: Vec<String>,

    /// The `wib.dev/reconcile-requested-at` value the last reconcile
    /// handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// The last restart wib made (`restartWorkloads: OnIdentityChange`):
    /// made once per identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads_restarted: Option<WorkloadsRestarted>,
}

/// Workloads wib restarted so their pods get the identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsRestarted {
    /// The identity they were restarted for.
    pub identity: String,
    /// When.
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// `Kind/name` of each workload restarted.
    #[serde(default)]
    pub workloads: Vec<String>,
}

/// The Azure identity wib manages for this binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureStatus {
    /// Application (client) ID of the managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Object (principal) ID of the managed identity's service principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Entra tenant of the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// ARM resource ID of the managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Name of the federated identity credential for this ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_credential: Option<String>,
    /// ARM IDs of the vaults whose access policies hold an entry wib keeps
    /// for the identity's principal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_vault_access_policies: Vec<String>,
}

/// The AWS role wib manages for this binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsStatus {
    /// ARN of the IAM role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// ARN of the IAM OIDC provider the trust policy names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// Managed policy ARNs and inline policy names in place on the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The mode the role was last made usable in. While it differs from the
    /// spec's, the old way is kept alongside the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AwsMode>,
    /// ARN of the EKS pod identity association wib made (mode PodIdentity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_arn: Option<String>,
}

impl AwsStatus {
    /// Whether EKS's agent, not a webhook, gives the pods their role: the
    /// mode last completed is PodIdentity.
    pub fn served_by_eks(&self) -> bool {
        self.mode == Some(AwsMode::PodIdentity)
    }
}

/// The Google service account wib manages for this binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpStatus {
    /// Email of the Google service account (none in mode Direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The IAM member granted `roles/iam.workloadIdentityUser` on it, or,
    /// in mode Direct, the roles themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// One requested role assignment and its state in the cloud.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentStatus {
    /// The role as requested.
    pub role: String,
    /// The scope or resource it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Cloud ID of the assignment (Azure role assignment ID, policy ARN, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether the assignment is in place.
    pub ready: bool,
}
