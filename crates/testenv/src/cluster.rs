//! What the cloud fakes need of a cluster to give its operator a workload
//! identity: the ServiceAccount issuer, a directory for token files, and an
//! admin client to mint ServiceAccount tokens. The harness's own control
//! plane provides it, and so does an existing cluster (kind, `make run`)
//! that the e2e suite attaches to.

use std::path::PathBuf;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

pub struct ClusterRef {
    pub issuer: String,
    pub dir: PathBuf,
    pub client: Client,
}

impl ClusterRef {
    /// A projected ServiceAccount token (TokenRequest API), as the kubelet
    /// mounts into a pod: creates the namespace and ServiceAccount first if
    /// needed.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> Result<String> {
        self.service_account_token_lasting(namespace, name, audience, 3600)
            .await
    }

    /// Like [`ClusterRef::service_account_token`], valid for `seconds`.
    pub async fn service_account_token_lasting(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
        seconds: u64,
    ) -> Result<String> {
        self.ensure_namespace(namespace).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        if sas.get_opt(name).await?.is_none() {
            let sa: ServiceAccount =
                serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
            sas.create(&Default::default(), &sa).await?;
        }
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": seconds},
        });
        let response: serde_json::Value = sas
            .create_subresource("token", name, &Default::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for {namespace}/{name}"))?;
        response["status"]["token"]
            .as_str()
            .map(str::to_string)
            .context("TokenRequest returned no token")
    }

    pub async fn ensure_namespace(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(name).await?.is_some() {
            return Ok(());
        }
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        api.patch(
            name,
            &PatchParams::apply("wib-testenv").force(),
            &Patch::Apply(&ns),
        )
        .await?;
        Ok(())
    }
}

/// The issuer the API server puts in ServiceAccount tokens, from its
/// discovery document.
pub async fn discover_issuer(client: &Client) -> Result<String> {
    let request = http::Request::get("/.well-known/openid-configuration").body(Vec::new())?;
    let discovery: serde_json::Value = client
        .request(request)
        .await
        .context("reading the API server's OIDC discovery document")?;
    discovery["issuer"]
        .as_str()
        .map(str::to_string)
        .context("the discovery document names no issuer")
}
