//! Ownership tags: what wib writes on every cloud identity it creates (Azure
//! tags, AWS role tags, a GCP description marker) naming cluster, owner
//! namespace, creating binding and its uid, and how it judges an existing
//! identity by them. An identity belongs to the namespace of the binding
//! that made it: bindings of that namespace may share it, no other may
//! touch it, and only its maker deletes it.

use std::collections::{BTreeMap, BTreeSet};

use wib_api::conditions::Reason;

use crate::CloudError;

pub const TAG_CLUSTER: &str = "wib.dev_cluster";
pub const TAG_NAMESPACE: &str = "wib.dev_namespace";
pub const TAG_BINDING: &str = "wib.dev_binding";
pub const TAG_UID: &str = "wib.dev_uid";
/// Set when wib took over an identity it did not create; such an identity is
/// never deleted by wib.
pub const TAG_ADOPTED: &str = "wib.dev_adopted";
/// Set by an identity's owner, outside wib, to let bindings of one
/// namespace adopt it (with the provider's `adoption: AllowUntagged`): the
/// owner's consent, on the resource itself.
pub const TAG_ADOPT_INTO: &str = "wib.dev_adopt-into";
/// Set by the maker's deletion (`deletionPolicy: Delete`) while other
/// bindings of its namespace still used the identity: its grants are gone,
/// and the last of those bindings to leave deletes it.
pub const TAG_RELEASED: &str = "wib.dev_released";

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

/// The binding asking: which cluster, namespace and uid, and the uids of
/// the bindings in other namespaces that share their identities with it.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub granted_by: &'a BTreeSet<String>,
}

impl<'a> Asker<'a> {
    pub fn of(request: &'a crate::Request<'a>) -> Self {
        Self {
            cluster: &request.cluster,
            namespace: &request.namespace,
            uid: &request.uid,
            granted_by: &request.granted_by,
        }
    }
}

/// Who owns an existing identity, judged by its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Created (or adopted) for this very binding.
    ThisBinding,
    /// Created by another binding of this binding's namespace: shared (many
    /// ServiceAccounts, one identity).
    SameNamespace,
    /// Created by a binding in another namespace that shares it with this
    /// binding's namespace (its `spec.sharing`, the provider allowing it).
    Granted,
    /// Created by a binding in another namespace of this cluster.
    OtherNamespace,
    /// Owned by wib in another cluster.
    OtherCluster { cluster: String },
    /// No wib tags.
    Untagged,
}

pub fn ownership(tags: &BTreeMap<String, String>, asker: Asker<'_>) -> Ownership {
    let tag = |key: &str| tags.get(key).map(String::as_str);
    match tag(TAG_CLUSTER) {
        None => Ownership::Untagged,
        Some(c) if c != asker.cluster => Ownership::OtherCluster {
            cluster: c.to_string(),
        },
        Some(_) if tag(TAG_NAMESPACE) != Some(asker.namespace) => match tag(TAG_UID) {
            Some(maker) if asker.granted_by.contains(maker) => Ownership::Granted,
            _ => Ownership::OtherNamespace,
        },
        Some(_) if !asker.uid.is_empty() && tag(TAG_UID) == Some(asker.uid) => {
            Ownership::ThisBinding
        }
        Some(_) => Ownership::SameNamespace,
    }
}

/// Whether the identity's maker released it to the last binding using it.
pub fn released(tags: &BTreeMap<String, String>) -> bool {
    tags.get(TAG_RELEASED).map(String::as_str) == Some("true")
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
    /// Another binding of this namespace created it: add only this
    /// binding's federation; its grants are the maker's.
    Shared,
}

/// Judges an existing identity (`tags` is `None` when there is none) for a
/// binding; what wib may not touch is refused before anything is written,
/// with messages that name nothing of another namespace's. `what` names the
/// identity as the binding does (`role x`); `grants` are the grants the
/// binding lists, if any (their noun and the reason to refuse them), which
/// only the identity's maker may hold.
pub fn claim(
    tags: Option<&BTreeMap<String, String>>,
    asker: Asker<'_>,
    adoption: wib_api::AdoptionPolicy,
    what: &str,
    grants: Option<(&str, Reason)>,
) -> Result<Claim, CloudError> {
    let Some(tags) = tags else {
        return Ok(Claim::Create);
    };
    match ownership(tags, asker) {
        Ownership::ThisBinding => Ok(Claim::Own),
        Ownership::SameNamespace | Ownership::Granted => match grants {
            Some((noun, reason)) => Err(CloudError::new(
                reason,
                format!(
                    "{what} was made by another binding, which owns its {noun}; list them there, or leave this binding's empty to share the identity; nothing was changed"
                ),
            )),
            None => Ok(Claim::Shared),
        },
        Ownership::OtherNamespace => Err(CloudError::new(
            Reason::IdentityNotShared,
            format!(
                "{what} belongs to another namespace and is not shared with namespace {:?}; nothing was changed",
                asker.namespace
            ),
        )),
        Ownership::OtherCluster { cluster } => Err(CloudError::new(
            Reason::AdoptionNotAllowed,
            format!("{what} is managed by wib in cluster {cluster:?}; nothing was changed"),
        )),
        Ownership::Untagged
            if adoption == wib_api::AdoptionPolicy::AllowUntagged
                && tags.get(TAG_ADOPT_INTO).map(String::as_str) == Some(asker.namespace) =>
        {
            Ok(Claim::Adopt)
        }
        Ownership::Untagged if adoption == wib_api::AdoptionPolicy::AllowUntagged => {
            Err(CloudError::new(
                Reason::AdoptionNotAllowed,
                format!(
                    "{what} exists without wib's ownership tags and its owner has not opted in (tag {TAG_ADOPT_INTO}={:?} on it); nothing was changed",
                    asker.namespace
                ),
            ))
        }
        Ownership::Untagged => Err(CloudError::new(
            Reason::AdoptionNotAllowed,
            format!(
                "{what} exists without wib's ownership tags and the provider's adoption policy is Deny; nothing was changed"
            ),
        )),
    }
}

/// What deleting a binding may do to an identity, by its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Not this binding's, nor of its namespace (or never admitted): leave
    /// everything as it is.
    Nothing,
    /// Remove only this binding's federation entry.
    Federation,
    /// Remove this binding's federation; the identity and its grants go too
    /// when no other federation entry remains (`last_out`), else its grants
    /// go and the identity is marked released for the last one out.
    Maker,
    /// Remove this binding's federation, and the identity when it was
    /// released by its maker and no other federation entry remains (only
    /// under this binding's own `deletionPolicy: Delete`).
    Survivor,
}

/// Decides what a deleting binding may remove. `admitted`: whether the
/// binding passes its provider's admission now; one that does not may only
/// remove what carries its own uid.
pub fn release(
    tags: &BTreeMap<String, String>,
    asker: Asker<'_>,
    admitted: bool,
    deletion: wib_api::DeletionPolicy,
) -> Release {
    match ownership(tags, asker) {
        Ownership::ThisBinding if deletion == wib_api::DeletionPolicy::Delete => Release::Maker,
        Ownership::ThisBinding => Release::Federation,
        Ownership::SameNamespace | Ownership::Granted
            if admitted && released(tags) && deletion == wib_api::DeletionPolicy::Delete =>
        {
            Release::Survivor
        }
        Ownership::SameNamespace | Ownership::Granted if admitted => Release::Federation,
        _ => Release::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wib_api::{AdoptionPolicy, DeletionPolicy};

    static NOBODY: BTreeSet<String> = BTreeSet::new();

    fn asker<'a>(namespace: &'a str, uid: &'a str) -> Asker<'a> {
        Asker {
            cluster: "c1",
            namespace,
            uid,
            granted_by: &NOBODY,
        }
    }

    #[test]
    fn another_namespace_shares_only_by_its_makers_grant() {
        let tags = owner_tags("c1", "team-a", "b", "u1");
        let granted = BTreeSet::from(["u1".to_string()]);
        let other = BTreeSet::from(["u7".to_string()]);
        let with = |granted_by| Asker {
            granted_by,
            ..asker("team-b", "u2")
        };
        assert_eq!(ownership(&tags, with(&granted)), Ownership::Granted);
        assert_eq!(ownership(&tags, with(&other)), Ownership::OtherNamespace);
        assert_eq!(
            claim(Some(&tags), with(&granted), AdoptionPolicy::Deny, "x", None).ok(),
            Some(Claim::Shared)
        );
        assert_eq!(
            release(&tags, with(&granted), true, DeletionPolicy::Delete),
            Release::Federation
        );
    }

    #[test]
    fn ownership_follows_cluster_namespace_and_uid() {
        let tags = owner_tags("c1", "team-a", "b", "u1");
        assert_eq!(
            ownership(&tags, asker("team-a", "u1")),
            Ownership::ThisBinding
        );
        assert_eq!(
            ownership(&tags, asker("team-a", "u2")),
            Ownership::SameNamespace
        );
        assert_eq!(
            ownership(&tags, asker("evil", "u2")),
            Ownership::OtherNamespace
        );
        assert_eq!(
            ownership(&tags, asker("evil", "u1")),
            Ownership::OtherNamespace,
            "a uid from another namespace proves nothing"
        );
        let other = Asker {
            cluster: "c2",
            ..asker("team-a", "u1")
        };
        assert_eq!(
            ownership(&tags, other),
            Ownership::OtherCluster {
                cluster: "c1".into()
            }
        );
        assert_eq!(
            ownership(&BTreeMap::new(), asker("team-a", "u1")),
            Ownership::Untagged
        );
        assert_eq!(
            ownership(&tags, asker("team-a", "")),
            Ownership::SameNamespace,
            "an empty uid is nobody's"
        );
    }

    #[test]
    fn another_namespace_is_refused_without_naming_its_objects() {
        let tags = owner_tags("c1", "team-a", "secret-app", "u1");
        let error = claim(
            Some(&tags),
            asker("evil", "u9"),
            AdoptionPolicy::AllowUntagged,
            "identity x",
            None,
        )
        .expect_err("refused");
        assert_eq!(error.reason, Reason::IdentityNotShared);
        assert!(!error.message.contains("team-a"), "{}", error.message);
        assert!(!error.message.contains("secret-app"), "{}", error.message);
    }

    #[test]
    fn adoption_needs_the_owners_opt_in_for_this_namespace() {
        let allow = AdoptionPolicy::AllowUntagged;
        let plain = BTreeMap::from([("team".to_string(), "x".to_string())]);
        let for_us = BTreeMap::from([(TAG_ADOPT_INTO.to_string(), "team-a".to_string())]);
        let for_them = BTreeMap::from([(TAG_ADOPT_INTO.to_string(), "team-b".to_string())]);
        let me = asker("team-a", "u1");
        assert!(claim(Some(&plain), me, allow, "x", None).is_err());
        assert!(claim(Some(&for_them), me, allow, "x", None).is_err());
        assert_eq!(
            claim(Some(&for_us), me, allow, "x", None).ok(),
            Some(Claim::Adopt)
        );
        assert!(claim(Some(&for_us), me, AdoptionPolicy::Deny, "x", None).is_err());
    }

    #[test]
    fn only_the_maker_deletes_and_only_admitted_sharers_touch_federation() {
        let tags = owner_tags("c1", "team-a", "b", "u1");
        let mut released_tags = tags.clone();
        released_tags.insert(TAG_RELEASED.into(), "true".into());
        let delete = DeletionPolicy::Delete;
        let empty = BTreeMap::new();
        type Case<'a> = (
            &'a BTreeMap<String, String>,
            Asker<'a>,
            bool,
            DeletionPolicy,
            Release,
        );
        let cases: Vec<Case> = vec![
            (&tags, asker("team-a", "u1"), true, delete, Release::Maker),
            (&tags, asker("team-a", "u1"), false, delete, Release::Maker),
            (
                &tags,
                asker("team-a", "u1"),
                true,
                DeletionPolicy::Retain,
                Release::Federation,
            ),
            (
                &tags,
                asker("team-a", "u2"),
                true,
                delete,
                Release::Federation,
            ),
            (
                &tags,
                asker("team-a", "u2"),
                false,
                delete,
                Release::Nothing,
            ),
            (
                &released_tags,
                asker("team-a", "u2"),
                true,
                delete,
                Release::Survivor,
            ),
            (
                &released_tags,
                asker("team-a", "u2"),
                true,
                DeletionPolicy::Retain,
                Release::Federation,
            ),
            (&tags, asker("evil", "u1"), true, delete, Release::Nothing),
            (
                &empty,
                asker("team-a", "u1"),
                true,
                delete,
                Release::Nothing,
            ),
        ];
        for (tags, asker, admitted, policy, want) in cases {
            assert_eq!(
                release(tags, asker, admitted, policy),
                want,
                "{asker:?} {admitted}"
            );
        }
    }
}
