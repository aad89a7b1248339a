//! `kubectl wib migrate aad-pod-identity`: one WorkloadIdentityBinding per
//! (namespace, ServiceAccount) whose pods select a user-assigned identity
//! through AAD Pod Identity (`AzureIdentity` type 0, `AzureIdentityBinding`,
//! the pods' `aadpodidbinding` label). Each adopts the existing identity by
//! its resource ID and keeps its role assignments (wib never touches
//! assignments it did not make); the pod label each workload needs is
//! written as a patch to review. Nothing is applied and nothing of AAD Pod
//! Identity is deleted: the output is YAML to read, then apply. What cannot
//! be migrated is said, with why, in the output's header.

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum From {
    /// From AAD Pod Identity (`aadpodidentity.k8s.io/v1`).
    AadPodIdentity {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// The ClusterIdentityProvider the bindings name (default: the
        /// cluster's default provider).
        #[arg(long)]
        provider: Option<String>,
    },
}

/// One identity's migration: the bindings to write and the workloads whose
/// pods need the workload identity label.
#[derive(Default)]
struct Plan {
    bindings: BTreeMap<(String, String), Binding>,
    workloads: std::collections::BTreeSet<(String, String)>,
    refused: Vec<String>,
    tags: BTreeMap<String, String>,
}

struct Binding {
    identity: Identity,
    source: String,
}

#[derive(Clone)]
struct Identity {
    subscription: String,
    resource_group: String,
    name: String,
    resource_id: String,
    client_id: String,
}

pub async fn run(
    client: &kube::Client,
    namespace: &str,
    from: From,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let From::AadPodIdentity {
        all_namespaces,
        provider,
    } = from;
    let scope = (!all_namespaces).then_some(namespace);
    let identities = list(client, scope, "AzureIdentity", "azureidentities").await?;
    let bindings = list(
        client,
        scope,
        "AzureIdentityBinding",
        "azureidentitybindings",
    )
    .await?;
    let mut plan = Plan::default();
    for binding in &bindings {
        migrate_binding(client, binding, &identities, &mut plan).await?;
    }
    write(&plan, provider.as_deref(), out)?;
    Ok(plan.refused.is_empty())
}

async fn list(
    client: &kube::Client,
    namespace: Option<&str>,
    kind: &str,
    plural: &str,
) -> anyhow::Result<Vec<DynamicObject>> {
    let gvk = GroupVersionKind::gvk("aadpodidentity.k8s.io", "v1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        // AAD Pod Identity is not installed: nothing to migrate.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn field<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a Value> {
    let spec = object.data.get("spec")?;
    // AAD Pod Identity's own objects spell these in two cases over its versions.
    spec.get(key).or_else(|| {
        spec.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text(object: &DynamicObject, key: &str) -> String {
    field(object, key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn migrate_binding(
    client: &kube::Client,
    binding: &DynamicObject,
    identities: &[DynamicObject],
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let namespace = binding.namespace().unwrap_or_default();
    let source = format!("AzureIdentityBinding {namespace}/{}", binding.name_any());
    let identity_name = text(binding, "azureIdentity");
    let selector = text(binding, "selector");
    let Some(identity) = identities
        .iter()
        .find(|i| i.name_any() == identity_name && i.namespace().as_deref() == Some(&namespace))
    else {
        plan.refused.push(format!(
            "{source}: its AzureIdentity {identity_name:?} does not exist in {namespace}"
        ));
        return Ok(());
    };
    let kind = field(identity, "type")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(0);
    if kind != 0 {
        plan.refused.push(format!(
            "{source}: AzureIdentity {identity_name:?} is type {kind} (a service principal with a {}): workload identity federates a managed identity or an app registration; add a federated credential to that app registration yourself and drop its secret",
            if kind == 1 { "client secret" } else { "certificate" }
        ));
        return Ok(());
    }
    let Some(parsed) =
        parse_resource_id(&text(identity, "resourceID"), &text(identity, "clientID"))
    else {
        plan.refused.push(format!(
            "{source}: AzureIdentity {identity_name:?} has no user-assigned identity resource ID"
        ));
        return Ok(());
    };
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!("aadpodidbinding={selector}")))
        .await?
        .items;
    if pods.is_empty() {
        plan.refused.push(format!(
            "{source}: no pod carries aadpodidbinding={selector}; nothing uses it to migrate"
        ));
    }
    for pod in &pods {
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        if account == "default" {
            plan.refused.push(format!(
                "pod {namespace}/{} ({source}) runs as the namespace's default ServiceAccount: give its workload a ServiceAccount of its own first (federating `default` would give the identity to every pod of the namespace)",
                pod.name_any()
            ));
            continue;
        }
        let key = (namespace.clone(), account.clone());
        if let Some(existing) = plan.bindings.get(&key)
            && existing.identity.resource_id != parsed.resource_id
        {
            plan.refused.push(format!(
                "ServiceAccount {namespace}/{account}: its pods select two identities ({} and {}); one ServiceAccount has one identity per cloud",
                existing.identity.name, parsed.name
            ));
            continue;
        }
        plan.bindings.insert(
            key,
            Binding {
                identity: parsed.clone(),
                source: source.clone(),
            },
        );
        plan.tags
            .insert(parsed.resource_id.clone(), namespace.clone());
        let workload = owner(client, &namespace, pod)
            .await?
            .unwrap_or_else(|| format!("pod/{}", pod.name_any()));
        plan.workloads.insert((namespace.clone(), workload));
    }
    Ok(())
}

/// `/subscriptions/<s>/resourcegroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`
fn parse_resource_id(id: &str, client_id: &str) -> Option<Identity> {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [
            subs,
            subscription,
            rgs,
            group,
            providers,
            namespace,
            kind,
            name,
        ] if subs.eq_ignore_ascii_case("subscriptions")
            && rgs.eq_ignore_ascii_case("resourcegroups")
            && providers.eq_ignore_ascii_case("providers")
            && namespace.eq_ignore_ascii_case("Microsoft.ManagedIdentity")
            && kind.eq_ignore_ascii_case("userAssignedIdentities") =>
        {
            Some(Identity {
                subscription: subscription.to_string(),
                resource_group: group.to_string(),
                name: name.to_string(),
                resource_id: id.to_string(),
                client_id: client_id.to_string(),
            })
        }
        _ => None,
    }
}

/// `deployment/<name>`, `statefulset/<name>` or `daemonset/<name>` owning
/// the pod, if any.
async fn owner(
    client: &kube::Client,
    namespace: &str,
    pod: &Pod,
) -> anyhow::Result<Option<String>> {
    let Some(owner) = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
    else {
        return Ok(None);
    };
    Ok(match owner.kind.as_str() {
        "StatefulSet" | "DaemonSet" => {
            Some(format!("{}/{}", owner.kind.to_lowercase(), owner.name))
        }
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .get_opt(&owner.name)
            .await?
            .and_then(|rs| {
                rs.owner_references()
                    .iter()
                    .find(|o| o.kind == "Deployment")
                    .map(|d| format!("deployment/{}", d.name))
            }),
        _ => None,
    })
}

fn write(plan: &Plan, provider: Option<&str>, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "# Generated by `kubectl wib migrate aad-pod-identity`: review, then apply."
    )?;
    writeln!(
        out,
        "# Nothing of AAD Pod Identity is deleted; remove it once the pods use workload identity."
    )?;
    writeln!(out, "#")?;
    writeln!(
        out,
        "# Before applying, the platform team lets each namespace adopt its identity:"
    )?;
    writeln!(
        out,
        "#   the provider needs `adoption: AllowUntagged` and the identity's resource group in"
    )?;
    writeln!(
        out,
        "#   `allowedScopes`, and each identity the tag naming the namespace that may adopt it:"
    )?;
    for (id, namespace) in &plan.tags {
        writeln!(
            out,
            "#   az identity update --ids {id} --tags wib.dev_adopt-into={namespace}"
        )?;
    }
    writeln!(out, "#")?;
    writeln!(
        out,
        "# Then each workload's pods need the workload identity label (the webhook injects"
    )?;
    writeln!(
        out,
        "# the identity into new pods); keep aadpodidbinding until the move is done:"
    )?;
    for (namespace, workload) in &plan.workloads {
        match workload.strip_prefix("pod/") {
            Some(pod) => writeln!(
                out,
                "#   pod {namespace}/{pod} has no workload: recreate it with the label azure.workload.identity/use: \"true\""
            )?,
            None => writeln!(
                out,
                "#   kubectl patch {workload} -n {namespace} --type merge -p '{{\"spec\":{{\"template\":{{\"metadata\":{{\"labels\":{{\"azure.workload.identity/use\":\"true\"}}}}}}}}}}'"
            )?,
        }
    }
    if !plan.refused.is_empty() {
        writeln!(out, "#")?;
        writeln!(out, "# Not migrated:")?;
        for why in &plan.refused {
            writeln!(out, "#   - {why}")?;
        }
    }
    for ((namespace, account), binding) in &plan.bindings {
        let identity = &binding.identity;
        let provider_ref = provider
            .map(|p| format!("  providerRef: {p}\n"))
            .unwrap_or_default();
        write!(
            out,
            "---\n# From {} (client ID {}).\napiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {account}\n  namespace: {namespace}\n  annotations:\n    wib.dev/migrated-from: {}\nspec:\n{provider_ref}  serviceAccount:\n    name: {account}\n  # The identity predates wib: deleting this binding keeps it.\n  deletionPolicy: Retain\n  azure:\n    identityName: {}\n    resourceGroup: {}\n    subscriptionId: \"{}\"\n",
            binding.source,
            identity.client_id,
            serde_json::to_string(&binding.source)?,
            identity.name,
            identity.resource_group,
            identity.subscription,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_assigned_identitys_resource_id_is_read_whatever_its_case() {
        let id = parse_resource_id(
            "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/legacy",
            "cid",
        )
        .expect("parsed");
        assert_eq!(
            (
                id.subscription.as_str(),
                id.resource_group.as_str(),
                id.name.as_str()
            ),
            ("s1", "rg", "legacy")
        );
        assert!(
            parse_resource_id(
                "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Web/sites/x",
                ""
            )
            .is_none()
        );
    }
}
