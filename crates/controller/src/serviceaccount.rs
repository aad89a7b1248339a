//! The ServiceAccount side of a binding, as pure functions: what wib applies
//! (server-side apply, one field manager per binding so several bindings'
//! annotations coexist), whether the live object already carries it, and what
//! cleanup means for it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use serde_json::{Value, json};
use wib_api::WorkloadIdentityBinding;

/// Field managers are limited to 128 characters.
const MAX_FIELD_MANAGER: usize = 128;

/// The server-side-apply field manager of one binding. One per binding (not
/// one for wib) so that an Azure and an AWS binding of the same
/// ServiceAccount each own, and on deletion release, only their own fields.
pub fn field_manager(binding_name: &str) -> String {
    wib_api::naming::fit(&format!("wib/{binding_name}"), MAX_FIELD_MANAGER)
}

/// What one binding wants on its ServiceAccount.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredServiceAccount {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Set when the binding created (or co-owns as creator) the ServiceAccount.
    pub owner: Option<OwnerReference>,
    /// Set only on ServiceAccounts wib creates.
    pub automount_token: Option<bool>,
}

impl DesiredServiceAccount {
    /// The server-side apply body. With `resource_version` the apply becomes
    /// conditional: it fails instead of creating the object if it vanished,
    /// or of overwriting a concurrent change.
    pub fn apply_body(&self, resource_version: Option<&str>) -> Value {
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "labels": self.labels,
            "annotations": self.annotations,
        });
        if let Some(owner) = &self.owner {
            metadata["ownerReferences"] = json!([owner]);
        }
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = json!(rv);
        }
        let mut body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata});
        if let Some(automount) = self.automount_token {
            body["automountServiceAccountToken"] = json!(automount);
        }
        body
    }
}

/// The apply body that releases every field `manager` owns.
pub fn release_body(name: &str, namespace: &str, resource_version: Option<&str>) -> Value {
    let mut metadata = json!({"name": name, "namespace": namespace});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata})
}

/// An owner reference to the binding: not a controller reference, because
/// bindings for several clouds may share (and co-create) one ServiceAccount.
pub fn owner_reference(binding: &WorkloadIdentityBinding) -> Option<OwnerReference> {
    let mut owner = binding.controller_owner_ref(&())?;
    owner.controller = Some(false);
    owner.block_owner_deletion = Some(false);
    Some(owner)
}

/// Whether a `create: true` binding should own the ServiceAccount: when it
/// does not exist yet (wib creates it), or when wib created it (another
/// binding owns it). A ServiceAccount someone else created is only annotated,
/// so deleting the binding never deletes it.
pub fn should_own(existing: Option<&ServiceAccount>) -> bool {
    match existing {
        None => true,
        Some(sa) => sa
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(is_binding_owner),
    }
}

fn is_binding_owner(owner: &OwnerReference) -> bool {
    owner.kind == "WorkloadIdentityBinding" && owner.api_version.starts_with("wib.dev/")
}

/// The fields of a ServiceAccount one field manager owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub labels: BTreeSet<String>,
    pub annotations: BTreeSet<String>,
    pub owner_uids: BTreeSet<String>,
    pub automount_token: bool,
}

impl Owned {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.annotations.is_empty()
            && self.owner_uids.is_empty()
            && !self.automount_token
    }
}

/// Reads `managedFields` for what `manager` applied.
pub fn owned_by(sa: &ServiceAccount, manager: &str) -> Owned {
    let mut owned = Owned::default();
    for entry in sa.metadata.managed_fields.iter().flatten() {
        if entry.manager.as_deref() != Some(manager) || entry.operation.as_deref() != Some("Apply")
        {
            continue;
        }
        let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
            continue;
        };
        let keys = |path: &[&str], prefix: &str| -> BTreeSet<String> {
            let mut node = fields;
            for step in path {
                match node.get(*step) {
                    Some(next) => node = next,
                    None => return BTreeSet::new(),
                }
            }
            node.as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix(prefix).map(str::to_string))
                .collect()
        };
        owned.labels.extend(keys(&["f:metadata", "f:labels"], "f:"));
        owned
            .annotations
            .extend(keys(&["f:metadata", "f:annotations"], "f:"));
        owned.owner_uids.extend(
            keys(&["f:metadata", "f:ownerReferences"], "k:")
                .into_iter()
                .filter_map(|k| serde_json::from_str::<Value>(&k).ok())
                .filter_map(|k| k.get("uid").and_then(Value::as_str).map(str::to_string)),
        );
        owned.automount_token |= fields.get("f:automountServiceAccountToken").is_some();
    }
    owned
}

/// Whether the live ServiceAccount already carries exactly what `desired`
/// asks of `manager`: every value in place and nothing stale still owned.
/// When it does, wib makes no write at all.
pub fn in_sync(sa: &ServiceAccount, desired: &DesiredServiceAccount, manager: &str) -> bool {
    let owned = owned_by(sa, manager);
    let meta = &sa.metadata;
    let has_all = |want: &BTreeMap<String, String>, live: &Option<BTreeMap<String, String>>| {
        want.iter()
            .all(|(k, v)| live.as_ref().and_then(|l| l.get(k)) == Some(v))
    };
    let want_keys = |want: &BTreeMap<String, String>| want.keys().cloned().collect::<BTreeSet<_>>();
    let owner_ok = match &desired.owner {
        Some(owner) => {
            owned.owner_uids == BTreeSet::from([owner.uid.clone()])
                && meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == owner.uid)
        }
        None => owned.owner_uids.is_empty(),
    };
    let automount_ok = match desired.automount_token {
        Some(v) => owned.automount_token && sa.automount_service_account_token == Some(v),
        None => !owned.automount_token,
    };
    has_all(&desired.labels, &meta.labels)
        && has_all(&desired.annotations, &meta.annotations)
        && owned.labels == want_keys(&desired.labels)
        && owned.annotations == want_keys(&desired.annotations)
        && owner_ok
        && automount_ok
}

/// What deleting a binding does to its ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Nothing of the binding's is on it (or it is gone).
    Nothing,
    /// The binding created it and is its only owner: delete it.
    Delete,
    /// Remove exactly the binding's fields; everything else stays.
    Release,
}

pub fn cleanup(sa: Option<&ServiceAccount>, binding_uid: &str, manager: &str) -> Cleanup {
    let Some(sa) = sa else {
        return Cleanup::Nothing;
    };
    let owners: Vec<&OwnerReference> = sa.metadata.owner_references.iter().flatten().collect();
    if !owners.is_empty() && owners.iter().all(|o| o.uid == binding_uid) {
        return Cleanup::Delete;
    }
    if owned_by(sa, manager).is_empty() {
        Cleanup::Nothing
    } else {
        Cleanup::Release
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, ObjectMeta,
    };

    const MANAGER: &str = "wib/app1";

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "wib.dev/v1alpha1".into(),
            kind: "WorkloadIdentityBinding".into(),
            name: "app1".into(),
            uid: uid.into(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        }
    }

    fn desired() -> DesiredServiceAccount {
        DesiredServiceAccount {
            name: "app1".into(),
            namespace: "ns".into(),
            labels: BTreeMap::from([("app.kubernetes.io/managed-by".into(), "wib".into())]),
            annotations: BTreeMap::from([("wib.dev/azure-binding".into(), "app1".into())]),
            owner: Some(owner("u1")),
            automount_token: Some(false),
        }
    }

    /// A live ServiceAccount as the API server returns it after applying `body` as `manager`.
    fn applied(body: &Value, manager: &str, extra_owner: Option<OwnerReference>) -> ServiceAccount {
        let meta = &body["metadata"];
        let mut fields = json!({"f:metadata": {}});
        for (key, field) in [("labels", "f:labels"), ("annotations", "f:annotations")] {
            if let Some(map) = meta[key].as_object() {
                fields["f:metadata"][field] =
                    map.keys().map(|k| (format!("f:{k}"), json!({}))).collect();
            }
        }
        let mut owners: Vec<OwnerReference> =
            serde_json::from_value(meta["ownerReferences"].clone()).unwrap_or_default();
        if !owners.is_empty() {
            fields["f:metadata"]["f:ownerReferences"] = owners
                .iter()
                .map(|o| (format!("k:{{\"uid\":\"{}\"}}", o.uid), json!({})))
                .collect();
        }
        if body.get("automountServiceAccountToken").is_some() {
            fields["f:automountServiceAccountToken"] = json!({});
        }
        owners.extend(extra_owner);
        ServiceAccount {
            metadata: ObjectMeta {
                name: meta["name"].as_str().map(str::to_string),
                labels: serde_json::from_value(meta["labels"].clone()).ok(),
                annotations: serde_json::from_value(meta["annotations"].clone()).ok(),
                owner_references: (!owners.is_empty()).then_some(owners),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some(manager.into()),
                    operation: Some("Apply".into()),
                    fields_v1: Some(FieldsV1(fields)),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            automount_service_account_token: body["automountServiceAccountToken"].as_bool(),
            ..Default::default()
        }
    }

    #[test]
    fn field_manager_fits_the_api_limit() {
        assert_eq!(field_manager("app1"), "wib/app1");
        assert_eq!(field_manager(&"x".repeat(253)).len(), 128);
    }

    #[test]
    fn applied_state_is_in_sync_and_drift_is_not() {
        let want = desired();
        let live = applied(&want.apply_body(None), MANAGER, None);
        assert!(in_sync(&live, &want, MANAGER));

        let mut changed_value = live.clone();
        changed_value
            .metadata
            .annotations
            .as_mut()
            .expect("annotations")
            .insert("wib.dev/azure-binding".into(), "other".into());
        let mut stale = desired();
        stale
            .annotations
            .insert("azure.workload.identity/client-id".into(), "x".into());
        let stale_live = applied(&stale.apply_body(None), MANAGER, None);
        let mut automount_flipped = live.clone();
        automount_flipped.automount_service_account_token = Some(true);

        let cases = [
            ("value changed by someone else", changed_value, &want, false),
            ("annotation wib no longer wants", stale_live, &want, false),
            ("automount flipped", automount_flipped, &want, false),
            (
                "other manager's fields",
                applied(&want.apply_body(None), "kubectl", None),
                &want,
                false,
            ),
        ];
        for (name, live, want, expect) in cases {
            assert_eq!(in_sync(&live, want, MANAGER), expect, "{name}");
        }
    }

    #[test]
    fn should_own_only_what_wib_creates() {
        let foreign = ServiceAccount::default();
        let wib_made = applied(&desired().apply_body(None), "wib/other", None);
        assert!(should_own(None));
        assert!(!should_own(Some(&foreign)));
        assert!(should_own(Some(&wib_made)));
    }

    #[test]
    fn cleanup_cases() {
        let sole_owner = applied(&desired().apply_body(None), MANAGER, None);
        let shared = applied(&desired().apply_body(None), MANAGER, Some(owner("u2")));
        let mut annotated_only = desired();
        annotated_only.owner = None;
        annotated_only.automount_token = None;
        let annotated = applied(&annotated_only.apply_body(None), MANAGER, None);
        let foreign = applied(&annotated_only.apply_body(None), "kubectl", None);
        let cases = [
            ("gone", None, Cleanup::Nothing),
            (
                "created by this binding alone",
                Some(&sole_owner),
                Cleanup::Delete,
            ),
            (
                "co-owned with another binding",
                Some(&shared),
                Cleanup::Release,
            ),
            (
                "existing ServiceAccount annotated",
                Some(&annotated),
                Cleanup::Release,
            ),
            ("nothing of ours", Some(&foreign), Cleanup::Nothing),
        ];
        for (name, sa, want) in cases {
            assert_eq!(cleanup(sa, "u1", MANAGER), want, "{name}");
        }
    }

    #[test]
    fn conditional_apply_carries_the_resource_version() {
        let body = desired().apply_body(Some("42"));
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(body["automountServiceAccountToken"], false);
        assert_eq!(
            release_body("a", "b", None)["metadata"]
                .as_object()
                .map(|m| m.len()),
            Some(2)
        );
    }
}
