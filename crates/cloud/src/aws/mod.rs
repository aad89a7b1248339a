//! AWS: an IAM role whose trust policy lets exactly the binding's
//! ServiceAccount in through the cluster's IAM OIDC provider, and the managed
//! and inline policies the binding lists. Every step reads first and writes
//! only what differs, so a steady state makes no IAM writes.
//!
//! The steps, by file: [`target`] (what the binding asks, no client),
//! [`observe`] (reads), [`plan`] (every decision, pure), [`execute`]
//! (writes); [`prune`] tidies the cluster's shared IAM OIDC providers;
//! [`iam`] holds the calls, [`naming`], [`policy`] and [`inline_policy`]
//! the pure helpers. Mode PodIdentity adds an EKS pod identity
//! association: [`association`] decides, [`eks`] calls.

pub mod association;
pub mod credentials;
pub mod eks;
pub mod exchange;
pub mod execute;
pub mod fleet;
pub mod iam;
pub mod inline_policy;
pub mod naming;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod prune;
pub mod target;

use std::sync::Arc;

use aws_smithy_http_client::tls;
use wib_api::conditions::Reason;
use wib_api::{Cloud, ClusterIdentityProvider};

use crate::calls::Observer;
use crate::steps::{Intent, Locks, Steps};
use crate::{CloudError, InUse, Request};
use iam::Iam;
use target::Target;

pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
pub const DEFAULT_MAX_SESSION_SECONDS: i32 = 3600;

/// Where wib reaches AWS, and as whom.
#[derive(Clone, Debug)]
pub struct Settings {
    /// IAM is global, but requests are signed for a region.
    pub region: String,
    /// IAM's and STS's endpoint; `None` leaves it to aws-config (AWS's own,
    /// or `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_IAM`).
    pub endpoint: Option<String>,
    /// `None`: aws-config's default credentials chain (web identity in a
    /// cluster, `AWS_*` variables elsewhere).
    pub web_identity: Option<credentials::WebIdentity>,
    /// wib's pace, adaptive: IAM publishes no rate, so wib starts high
    /// (100 reads, 20 writes a second) and slows at the first throttling.
    pub limits: crate::limiter::Limits,
    /// The account's trust-policy quota (AWS raises it on request).
    pub trust_policy_max_chars: usize,
    /// How old the fleet snapshot may be before a steady-state check reads
    /// it again (the operator passes half its resync interval): drift made
    /// in IAM is seen within this plus one resync.
    pub fleet_snapshot_ttl: std::time::Duration,
}

impl Settings {
    /// From the environment: the region from `AWS_REGION` /
    /// `AWS_DEFAULT_REGION` (`us-east-1` when none is set), endpoints and
    /// credentials through `aws-config`'s default chain,
    /// `WIB_AWS_CALLS_PER_SECOND` and `WIB_AWS_TRUST_POLICY_MAX_CHARS`
    /// (for accounts where AWS raised the quota).
    pub fn from_env(fleet_snapshot_ttl: std::time::Duration) -> Result<Self, CloudError> {
        // The region from the environment (EKS's webhook sets it), never
        // probed from EC2 metadata: IAM is global, and off AWS the probe
        // only warns.
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "us-east-1".into());
        let trust_policy_max_chars = match std::env::var("WIB_AWS_TRUST_POLICY_MAX_CHARS") {
            Ok(raw) => raw.parse().map_err(|e| {
                CloudError::new(
                    Reason::CloudNotConfigured,
                    format!("WIB_AWS_TRUST_POLICY_MAX_CHARS={raw:?}: {e}"),
                )
            })?,
            Err(_) => policy::TRUST_POLICY_MAX_CHARS,
        };
        Ok(Self {
            region,
            endpoint: None,
            web_identity: None,
            limits: crate::limiter::Limits::reads_writes(100.0, 20.0).from_env("aws"),
            trust_policy_max_chars,
            fleet_snapshot_ttl,
        })
    }
}

/// The AWS provider as configured by the environment (see
/// [`Settings::from_env`]). Extra CAs for a private endpoint come from
/// `WIB_CLOUD_CA_FILE`.
pub async fn from_env(
    observer: Observer,
    fleet_snapshot_ttl: std::time::Duration,
) -> Result<AwsProvider, CloudError> {
    AwsProvider::new(observer, Settings::from_env(fleet_snapshot_ttl)?).await
}

/// The credentials provider explicit settings name: wib's web identity
/// through an STS client at the settings' endpoint.
fn web_identity(
    settings: &Settings,
    identity: &credentials::WebIdentity,
    http: &aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> credentials::WebIdentityProvider {
    let mut sts = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(settings.region.clone()))
        .http_client(http.clone());
    sts.set_endpoint_url(settings.endpoint.clone());
    credentials::WebIdentityProvider {
        identity: identity.clone(),
        sts: aws_sdk_sts::Client::from_conf(sts.build()),
    }
}

/// IAM's client as `settings` describe it, through `aws-config` (what the
/// settings leave unset, it resolves as usual).
async fn iam_client(
    settings: &Settings,
    observer: Observer,
) -> Result<(Iam, eks::Eks, aws_sdk_eksauth::Client, aws_sdk_sts::Client), CloudError> {
    let http = http_client()?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http.clone())
        .region(aws_config::Region::new(settings.region.clone()));
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(identity) = &settings.web_identity {
        loader = loader.credentials_provider(web_identity(settings, identity, &http));
    }
    let config = loader.load().await;
    let mut iam = aws_sdk_iam::config::Builder::from(&config);
    let mut eks = aws_sdk_eks::config::Builder::from(&config);
    let mut eks_auth = aws_sdk_eksauth::config::Builder::from(&config);
    // wib caches its session itself, so that IAM refusing it drops it; EKS
    // shares that one session.
    let stale = match config.credentials_provider() {
        Some(chain) => {
            let renewable = credentials::Renewable::new(chain);
            let stale = renewable.stale.clone();
            let shared = aws_credential_types::provider::SharedCredentialsProvider::new(renewable);
            iam = iam
                .credentials_provider(shared.clone())
                .identity_cache(aws_sdk_iam::config::IdentityCache::no_cache());
            eks = eks
                .credentials_provider(shared.clone())
                .identity_cache(aws_sdk_eks::config::IdentityCache::no_cache());
            eks_auth = eks_auth
                .credentials_provider(shared)
                .identity_cache(aws_sdk_eksauth::config::IdentityCache::no_cache());
            Some(stale)
        }
        None => None,
    };
    let client = aws_sdk_iam::Client::from_conf(iam.build());
    let eks = eks::Eks::new(
        aws_sdk_eks::Client::from_conf(eks.build()),
        observer.clone(),
        &settings.limits,
    );
    let sts = aws_sdk_sts::Client::new(&config);
    let eks_auth = aws_sdk_eksauth::Client::from_conf(eks_auth.build());
    Ok((
        Iam::new(client, observer, stale, &settings.limits),
        eks,
        eks_auth,
        sts,
    ))
}

/// rustls on ring (the crypto the rest of wib uses), system roots plus
/// `WIB_CLOUD_CA_FILE`.
pub fn http_client() -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, CloudError> {
    let mut trust = tls::TrustStore::default();
    if let Some(pem) = crate::http::extra_ca_pem()? {
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| CloudError::new(Reason::CloudNotConfigured, format!("TLS: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https())
}

/// What the steps need: IAM's calls, and the trust-policy quota of the
/// account (AWS raises it per account on request).
pub struct Clients {
    pub iam: Iam,
    /// Pod identity associations (mode PodIdentity only).
    pub eks: eks::Eks,
    /// STS as pods reach it, for `verifyExchange` (its call is unsigned).
    pub sts: aws_sdk_sts::Client,
    /// EKS Auth as the Pod Identity Agent reaches it, for `verifyExchange`.
    pub eks_auth: aws_sdk_eksauth::Client,
    pub trust_policy_max_chars: usize,
    /// Every role of the account, read at most once per TTL.
    pub fleet: fleet::Fleet,
}

pub struct AwsProvider {
    /// Built once, by [`AwsProvider::new`]: unlike GCP's, they need no rebuilding
    /// when AWS refuses wib's session, as the credentials drop a refused
    /// session themselves (see [`credentials`]).
    clients: Arc<Clients>,
    /// One request at a time per role (its one trust policy is shared by
    /// every binding that names it, and rewritten by read-modify-write).
    locks: Locks,
}

impl AwsProvider {
    /// The AWS cloud as `settings` describe it; fails only when the HTTP
    /// client cannot be built (an unreadable `WIB_CLOUD_CA_FILE`).
    pub async fn new(observer: Observer, settings: Settings) -> Result<Self, CloudError> {
        let (iam, eks, eks_auth, sts) = iam_client(&settings, observer).await?;
        Ok(Self {
            clients: Arc::new(Clients {
                iam,
                eks,
                eks_auth,
                sts,
                trust_policy_max_chars: settings.trust_policy_max_chars,
                fleet: fleet::Fleet::new(settings.fleet_snapshot_ttl),
            }),
            locks: Locks::default(),
        })
    }
}

impl Steps for AwsProvider {
    type Clients = Clients;
    type Observed = observe::Observed;
    type Action = plan::Action;

    const CLOUD: Cloud = Cloud::Aws;

    async fn clients(&self) -> Result<Arc<Clients>, CloudError> {
        Ok(self.clients.clone())
    }

    fn validate(request: &Request<'_>, intent: Intent) -> Result<String, CloudError> {
        let target = Target::of(request)?;
        if intent == Intent::Reconcile {
            target::check_spec(request, &target)?;
            // A protected ARN also protects the role name it ends in, so
            // the name alone decides, before any read.
            crate::protected::check(&[&target.role], request.provider, &target.what())?;
        }
        Ok(target.role)
    }

    async fn check(&self, provider: &ClusterIdentityProvider) -> Result<(), CloudError> {
        self.clients.iam.get_role(crate::CREDENTIALS_PROBE).await?;
        // A provider whose bindings default to Pod Identity needs its EKS
        // cluster: a wrong name shows here once, not on every binding.
        let Some(aws) = provider.spec.aws.as_ref() else {
            return Ok(());
        };
        if aws.mode != Some(wib_api::binding::AwsMode::PodIdentity) {
            return Ok(());
        }
        let cluster = aws.eks_cluster(&provider.spec.cluster_name);
        match self
            .clients
            .eks
            .find(cluster, "kube-system", crate::CREDENTIALS_PROBE)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(target::not_configured(format!(
                "EKS cluster {cluster} does not exist (aws.eksClusterName, default clusterName); bindings in mode PodIdentity cannot be associated"
            ))),
        }
    }

    async fn prune(
        &self,
        provider: &ClusterIdentityProvider,
        issuer: &str,
        in_use: &InUse,
    ) -> Result<Vec<String>, CloudError> {
        prune::prune(&self.clients.iam, provider, issuer, in_use).await
    }

    fn locks(&self) -> &Locks {
        &self.locks
    }

    fn exchange_audience(request: &Request<'_>, _outcome: &crate::Outcome) -> Option<String> {
        Some(exchange::audience(request))
    }

    async fn verify_exchange<'a>(
        &'a self,
        request: &'a Request<'a>,
        outcome: &'a crate::Outcome,
        token: &'a str,
        _endpoints: &'a crate::exchange::Endpoints,
    ) -> Result<(), CloudError> {
        exchange::verify_in_mode(&self.clients, request, outcome, token).await
    }
}
