//! Ownership tags: what wib writes on every cloud identity it creates (Azure
//! tags, AWS role tags) naming cluster, namespace, binding and uid, and how it
//! judges an existing identity by them. wib changes or deletes only what
//! these tags say it owns.

use std::collections::BTreeMap;

pub const TAG_CLUSTER: &str = "wib.dev_cluster";
pub const TAG_NAMESPACE: &str = "wib.dev_namespace";
pub const TAG_BINDING: &str = "wib.dev_binding";
pub const TAG_UID: &str = "wib.dev_uid";
/// Set when wib took over an identity it did not create; such an identity is
/// never deleted by wib.
pub const TAG_ADOPTED: &str = "wib.dev_adopted";

/// Ownership tags naming cluster, namespace, binding and uid.
pub fn owner_tags(
    cluster: &str,
    namespace: &str,
    binding: &str,
    uid: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_CLUSTER.to_string(), cluster.to_string()),
        (TAG_NAMESPACE.to_string(), namespace.to_string()),
        (TAG_BINDING.to_string(), binding.to_string()),
        (TAG_UID.to_string(), uid.to_string()),
    ])
}

/// Who owns an existing identity, judged by its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Created (or adopted) for this very binding.
    ThisBinding,
    /// Created by another binding of this cluster: shared (many
    /// ServiceAccounts, one identity).
    ThisCluster { binding: String },
    /// Owned by wib in another cluster.
    OtherCluster { cluster: String },
    /// No wib tags.
    Untagged,
}

pub fn ownership(tags: &BTreeMap<String, String>, cluster: &str, uid: &str) -> Ownership {
    match tags.get(TAG_CLUSTER) {
        None => Ownership::Untagged,
        Some(c) if c != cluster => Ownership::OtherCluster { cluster: c.clone() },
        Some(_) if tags.get(TAG_UID).map(String::as_str) == Some(uid) => Ownership::ThisBinding,
        Some(_) => Ownership::ThisCluster {
            binding: format!(
                "{}/{}",
                tags.get(TAG_NAMESPACE).cloned().unwrap_or_default(),
                tags.get(TAG_BINDING).cloned().unwrap_or_default()
            ),
        },
    }
}

/// What a reconcile may do with the identity of the wanted name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing of that name exists: create it.
    Create,
    /// Created or adopted for this binding: manage all of it.
    Own,
    /// Untagged, and the provider allows adoption: tag it and manage it.
    Adopt,
    /// Another binding of this cluster created it: add only this
    /// binding's federation.
    Shared { binding: String },
}

/// Judges an existing identity (`tags` is `None` when there is none) for a
/// binding; what wib may not touch is refused with `AdoptionNotAllowed`
/// before anything is written. `what` names it in messages (`role x`).
pub fn claim(
    tags: Option<&BTreeMap<String, String>>,
    cluster: &str,
    uid: &str,
    adoption: wib_api::AdoptionPolicy,
    what: &str,
) -> Result<Claim, crate::CloudError> {
    let refuse = |message: String| {
        crate::CloudError::new(wib_api::conditions::Reason::AdoptionNotAllowed, message)
    };
    let Some(tags) = tags else {
        return Ok(Claim::Create);
    };
    match ownership(tags, cluster, uid) {
        Ownership::ThisBinding => Ok(Claim::Own),
        Ownership::ThisCluster { binding } => Ok(Claim::Shared { binding }),
        Ownership::OtherCluster { cluster } => Err(refuse(format!(
            "{what} is managed by wib in cluster {cluster:?}"
        ))),
        Ownership::Untagged if adoption == wib_api::AdoptionPolicy::AllowUntagged => {
            Ok(Claim::Adopt)
        }
        Ownership::Untagged => Err(refuse(format!(
            "{what} exists without wib's ownership tags and the provider's adoption policy is Deny; nothing was changed"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_cases() {
        let tags = owner_tags("c1", "ns", "b", "u1");
        assert_eq!(ownership(&tags, "c1", "u1"), Ownership::ThisBinding);
        assert_eq!(
            ownership(&tags, "c1", "u2"),
            Ownership::ThisCluster {
                binding: "ns/b".into()
            }
        );
        assert_eq!(
            ownership(&tags, "c2", "u1"),
            Ownership::OtherCluster {
                cluster: "c1".into()
            }
        );
        assert_eq!(ownership(&BTreeMap::new(), "c1", "u1"), Ownership::Untagged);
    }
}
