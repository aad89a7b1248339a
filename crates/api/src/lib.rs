//! The wib API: `WorkloadIdentityBinding` and `ClusterIdentityProvider`
//! (group `wib.dev`, version `v1alpha1`), the condition vocabulary they report,
//! and the well-known label and annotation keys.

pub mod binding;
pub mod conditions;
pub mod crd;
pub mod keys;
pub mod naming;
pub mod provider;

pub use binding::{
    AwsBinding, AzureBinding, DeletionPolicy, GcpBinding, WorkloadIdentityBinding,
    WorkloadIdentityBindingSpec, WorkloadIdentityBindingStatus,
};
pub use provider::{
    AdoptionPolicy, ClusterIdentityProvider, ClusterIdentityProviderSpec,
    ClusterIdentityProviderStatus,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The clouds wib binds to.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum Cloud {
    Azure,
    #[serde(rename = "AWS")]
    Aws,
    #[serde(rename = "GCP")]
    Gcp,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [Cloud::Azure, Cloud::Aws, Cloud::Gcp];

    /// Lower-case name used in label keys, metrics and field managers.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Azure => "azure",
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
        }
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cloud::Azure => "Azure",
            Cloud::Aws => "AWS",
            Cloud::Gcp => "GCP",
        })
    }
}
