//! The pod side in e2e: the operator's webhook registered with the API
//! server (by URL: the operator runs out of cluster), and a kubelet
//! stand-in that runs a pod stand-in binary with exactly what admission
//! gave the pod: its container's env, and its projected volumes written
//! from a TokenRequest and the downward API under a directory of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use wib_testenv::azure::AzureFake;
use wib_testenv::gcp::GcpFake;

use crate::{Env, poll_until};

pub use wib_testenv::webhook::CONFIGURATION;

/// What the operator's webhook needs to tell pods about the fakes.
pub(crate) fn webhook_env(
    azure: Option<&AzureFake>,
    gcp: Option<&GcpFake>,
) -> Vec<(String, String)> {
    wib_testenv::webhook::operator_env(azure.map(|a| a.url.as_str()), gcp.map(|g| g.url.as_str()))
}

impl Env {
    /// Registers the operator's webhook and waits until the operator has
    /// written its CA into it (the API server then trusts it).
    pub async fn install_pod_webhook(&self) -> Result<()> {
        let Some(url) = &self.webhook_url else {
            bail!("an attached cluster's webhook is the chart's");
        };
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        api.patch(
            CONFIGURATION,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(wib_testenv::webhook::configuration(url)),
        )
        .await?;
        self.webhook_trusted(None).await.map(|_| ())
    }

    /// Waits until every webhook of the configuration carries one CA
    /// bundle, other than `not`; returns it.
    pub async fn webhook_trusted(&self, not: Option<&[u8]>) -> Result<Vec<u8>> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        poll_until(
            Duration::from_secs(30),
            "the webhook's CA bundle published",
            async || {
                let config = api.get(CONFIGURATION).await.map_err(|e| e.to_string())?;
                let bundles: Vec<_> = config
                    .webhooks
                    .iter()
                    .flatten()
                    .map(|w| w.client_config.ca_bundle.clone().map(|b| b.0))
                    .collect();
                match bundles.first() {
                    Some(Some(first))
                        if bundles.iter().all(|b| b.as_ref() == Some(first))
                            && Some(first.as_slice()) != not =>
                    {
                        Ok(first.clone())
                    }
                    _ => Err(format!(
                        "{} webhooks, bundles not yet all new",
                        bundles.len()
                    )),
                }
            },
        )
        .await
        .with_context(|| self.operator_logs())
    }

    /// A tenant's user who, besides the tenant role, may run pods and
    /// Deployments and make ServiceAccounts in `namespace`, as a team's
    /// developers usually may (a Role of its own: the built-in `edit` is
    /// aggregated by a controller the local control plane does not run).
    pub async fn tenant_who_runs_pods(&self, user: &str, namespace: &str) -> Result<crate::Admin> {
        let tenant = self.tenant(user, namespace).await?;
        self.apply(&format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: developer
  namespace: {namespace}
rules:
  - apiGroups: [""]
    resources: [pods, serviceaccounts]
    verbs: [get, list, watch, create, update, patch, delete]
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: developer-{user}
  namespace: {namespace}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: developer
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {user}
"#
        ))
        .await?;
        poll_until(
            Duration::from_secs(20),
            "the tenant may create pods",
            async || crate::may(&tenant.client, namespace, "", "pods", "create").await,
        )
        .await?;
        Ok(tenant)
    }

    /// Runs `binary` as container `container` of the admitted `pod` would
    /// run: with the container's env (plus `extra`, what the environment
    /// outside the pod adds, such as the fakes' endpoints) and its mounted
    /// projected volumes, written under a directory of the pod's own
    /// (paths in env values and projected files are moved there with them).
    pub async fn run_admitted_pod(
        &self,
        pod: &Pod,
        container: &str,
        binary: &str,
        extra: &[(&str, &str)],
    ) -> (bool, String) {
        let root = self.cp.dir().join(format!(
            "pod-{}",
            pod.metadata.name.as_deref().unwrap_or("unnamed")
        ));
        let files = self
            .materialize(pod, container, &root)
            .await
            .expect("the pod's volumes");
        let spec = pod.spec.as_ref().expect("spec");
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == container)
            .expect("container");
        let mut env: Vec<(String, String)> = c
            .env
            .iter()
            .flatten()
            .map(|e| {
                (
                    e.name.clone(),
                    relocate(&files, e.value.as_deref().unwrap_or("")),
                )
            })
            .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &std::ffi::OsStr)> = env
            .iter()
            .map(|(k, v)| (k.as_str(), std::ffi::OsStr::new(v.as_str())))
            .collect();
        crate::run_pod(binary, &env)
    }

    /// Writes the container's projected volumes under `root`; returns
    /// (mount path in the pod, where it now is).
    async fn materialize(
        &self,
        pod: &Pod,
        container: &str,
        root: &Path,
    ) -> Result<BTreeMap<String, PathBuf>> {
        let spec = pod.spec.as_ref().context("spec")?;
        let namespace = pod.metadata.namespace.as_deref().context("namespace")?;
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == container)
            .context("container")?;
        let mut mounted = BTreeMap::new();
        let mut pending = Vec::new();
        for mount in c.volume_mounts.iter().flatten() {
            let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
                continue;
            };
            let Some(projected) = &volume.projected else {
                continue;
            };
            let dir = root.join(mount.mount_path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir)?;
            mounted.insert(mount.mount_path.clone(), dir.clone());
            for source in projected.sources.iter().flatten() {
                if let Some(token) = &source.service_account_token {
                    let audience = token.audience.as_deref().unwrap_or_default();
                    let jwt = self
                        .cp
                        .service_account_token(namespace, account, audience)
                        .await?;
                    std::fs::write(dir.join(&token.path), jwt)?;
                }
                for item in source
                    .downward_api
                    .iter()
                    .flat_map(|d| d.items.iter().flatten())
                {
                    let path = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                    let key = path
                        .and_then(|p| p.strip_prefix("metadata.annotations['"))
                        .and_then(|p| p.strip_suffix("']"))
                        .context("only annotations are projected")?;
                    let value = annotations.get(key).cloned().unwrap_or_default();
                    pending.push((dir.join(&item.path), value));
                }
            }
        }
        for (file, value) in pending {
            std::fs::write(file, relocate(&mounted, &value))?;
        }
        Ok(mounted)
    }
}

/// `value` with every pod mount path in it replaced by where the stand-in
/// wrote that mount.
fn relocate(mounted: &BTreeMap<String, PathBuf>, value: &str) -> String {
    mounted
        .iter()
        .fold(value.to_string(), |v, (pod_path, dir)| {
            v.replace(pod_path.as_str(), &dir.display().to_string())
        })
}
