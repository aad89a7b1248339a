//! The ServiceAccount annotations a pod's injection is made of: from a
//! cache of the ServiceAccounts wib manages (metadata only, so a large
//! cluster costs little memory), and live from the API server on a miss,
//! so a ServiceAccount created a moment before its pod is not missed.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

#[derive(Clone)]
pub struct Accounts {
    client: Client,
    cache: Store<PartialObjectMeta<ServiceAccount>>,
}

impl Accounts {
    /// Starts the cache; it fills in the background.
    pub fn start(client: Client) -> Self {
        let (cache, writer) = reflector::store();
        let selector = format!(
            "{}={}",
            wib_api::keys::MANAGED_BY_LABEL,
            wib_api::keys::MANAGED_BY_VALUE
        );
        let events = watcher(
            Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        // Only the annotations are read: the rest of each ServiceAccount's
        // metadata would be kept for nothing, once per binding.
        .modify(|sa| {
            sa.metadata.managed_fields = None;
            sa.metadata.labels = None;
            sa.metadata.owner_references = None;
            sa.metadata.finalizers = None;
        })
        .reflect(writer)
        .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                if let Err(error) = event {
                    tracing::debug!(%error, "ServiceAccount cache watch");
                }
            }
        });
        Self { client, cache }
    }

    /// The annotations of `namespace/name`; `None` when it does not exist.
    pub async fn annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
        let key = ObjectRef::new(name).within(namespace);
        if let Some(cached) = self.cache.get(&key) {
            return Ok(Some(
                cached.metadata.annotations.clone().unwrap_or_default(),
            ));
        }
        let live = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .get_metadata_opt(name)
            .await?;
        Ok(live.map(|sa| sa.metadata.annotations.unwrap_or_default()))
    }
}
