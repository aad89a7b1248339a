//! Between scenarios on an attached cluster: what one scenario created must
//! not be seen by the next. Bindings go first, through the operator (their
//! finalizers clean the clouds), then providers, then test namespaces.

use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use wib_api::{ClusterIdentityProvider, WorkloadIdentityBinding};

use crate::{Admin, SYSTEM_NAMESPACES, tail};

const CLEANUP_WAIT: Duration = Duration::from_secs(120);

impl Admin {
    pub(crate) async fn remove_scenario_objects(&self) -> Result<()> {
        let bindings: Api<WorkloadIdentityBinding> = Api::all(self.client.clone());
        for b in bindings.list(&ListParams::default()).await?.items {
            let ns = b.namespace().unwrap_or_default();
            let api: Api<WorkloadIdentityBinding> = Api::namespaced(self.client.clone(), &ns);
            if b.meta().deletion_timestamp.is_none() {
                api.delete(&b.name_any(), &DeleteParams::default()).await?;
            }
        }
        self.wait_all_gone(&bindings, "bindings").await?;

        let providers: Api<ClusterIdentityProvider> = Api::all(self.client.clone());
        providers
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        self.wait_all_gone(&providers, "providers").await?;

        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let is_scenario = |ns: &Namespace| !SYSTEM_NAMESPACES.contains(&ns.name_any().as_str());
        for ns in namespaces.list(&ListParams::default()).await?.items {
            if is_scenario(&ns) && ns.meta().deletion_timestamp.is_none() {
                namespaces
                    .delete(&ns.name_any(), &DeleteParams::default())
                    .await?;
            }
        }
        let deadline = tokio::time::Instant::now() + CLEANUP_WAIT;
        loop {
            let left: Vec<String> = namespaces
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|ns| is_scenario(ns))
                .map(|ns| ns.name_any())
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("namespaces {left:?} were never deleted");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn wait_all_gone<K>(&self, api: &Api<K>, what: &str) -> Result<()>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + CLEANUP_WAIT;
        loop {
            let left = api.list(&ListParams::default()).await?.items;
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<String> = left.iter().map(|o| o.name_any()).collect();
                bail!(
                    "{what} {names:?} were never deleted\noperator log tail:\n{}",
                    tail(&self.operator_logs(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until the operator answers /readyz.
    pub(crate) async fn wait_ready(&self, metrics_url: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + CLEANUP_WAIT;
        loop {
            let ready = reqwest::get(format!("{metrics_url}/readyz"))
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the operator at {metrics_url} never became ready\n{}",
                    tail(&self.operator_logs(), 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
