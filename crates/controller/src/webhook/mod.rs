//! The pod side: a mutating admission webhook for pod CREATE that gives
//! pods opted in by label (`wib.dev/inject: "true"`, or
//! azure-workload-identity's `azure.workload.identity/use: "true"`) what
//! their ServiceAccount's cloud identities need, as each cloud's own
//! webhook would.
//!
//! - [`inject`]: what a ServiceAccount's annotations call for, laid onto a
//!   pod (pure).
//! - [`review`]: one admission review.
//! - [`stamp`]: what every admitted pod records for the controller.
//! - [`accounts`]: ServiceAccounts from a cache, live on a miss.
//! - [`certs`]: the self-managed serving certificate and `caBundle`.
//! - [`tls`]: serving with a certificate swapped in place.
//!
//! Every replica serves it, leader or not: admission must not wait for an
//! election.

pub mod accounts;
pub mod certs;
pub mod inject;
pub mod review;
pub mod stamp;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::post;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// The pod label that opts a pod in.
pub const INJECT_LABEL: &str = "wib.dev/inject";

/// How the webhook runs (flags and environment).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookSettings {
    /// Address the pod webhook serves HTTPS on; unset, no webhook runs.
    #[arg(long, env = "WIB_WEBHOOK_ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,

    /// Directory with `tls.crt` and `tls.key` (cert-manager's Secret,
    /// mounted), re-read when they change. Unset, wib makes and renews its
    /// own certificate in `--webhook-secret`.
    #[arg(long, env = "WIB_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,

    /// Secret in the operator's namespace holding the self-managed
    /// certificate.
    #[arg(long, env = "WIB_WEBHOOK_SECRET", default_value = "wib-webhook-tls")]
    pub webhook_secret: String,

    /// MutatingWebhookConfiguration whose `caBundle` wib keeps.
    #[arg(long, env = "WIB_WEBHOOK_CONFIGURATION", default_value = "wib")]
    pub webhook_configuration: String,

    /// Names (DNS or IP) the serving certificate answers for.
    #[arg(
        long,
        env = "WIB_WEBHOOK_NAMES",
        value_delimiter = ',',
        default_value = "wib-webhook.wib-system.svc"
    )]
    pub webhook_names: Vec<String>,

    /// How often the certificate is checked for renewal (self-managed) or
    /// re-read (cert-manager). A change to the webhook configuration (an
    /// upgrade resetting its `caBundle`) is answered at once.
    #[arg(long, env = "WIB_WEBHOOK_CERT_CHECK_SECONDS", default_value_t = 60)]
    pub webhook_cert_check_seconds: u64,

    /// `AZURE_AUTHORITY_HOST` given to pods.
    #[arg(
        long,
        env = "WIB_AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com/"
    )]
    pub azure_authority_host: String,

    /// `AWS_REGION` and `AWS_DEFAULT_REGION` given to pods, when set.
    #[arg(long, env = "WIB_AWS_REGION")]
    pub aws_region: Option<String>,

    /// Google STS token endpoint in pods' credential configurations.
    #[arg(
        long,
        env = "WIB_GCP_STS_URL",
        default_value = "https://sts.googleapis.com/v1/token"
    )]
    pub gcp_sts_url: String,

    /// IAM Credentials endpoint pods impersonate their account through.
    #[arg(
        long,
        env = "WIB_GCP_IAM_CREDENTIALS_URL",
        default_value = "https://iamcredentials.googleapis.com"
    )]
    pub gcp_iam_credentials_url: String,
}

impl WebhookSettings {
    /// Where pods exchange their tokens, for `verifyExchange` to do the same.
    pub fn exchange_endpoints(&self) -> wib_cloud::exchange::Endpoints {
        wib_cloud::exchange::Endpoints {
            azure_authority_host: self.azure_authority_host.clone(),
            gcp_sts_url: self.gcp_sts_url.clone(),
            gcp_credentials_url: self.gcp_iam_credentials_url.clone(),
        }
    }

    pub fn endpoints(&self) -> inject::Endpoints {
        inject::Endpoints {
            azure_authority_host: self.azure_authority_host.clone(),
            aws_region: self.aws_region.clone(),
            gcp_sts_url: self.gcp_sts_url.clone(),
            gcp_credentials_url: self.gcp_iam_credentials_url.clone(),
        }
    }
}

/// Serves the webhook until `shutdown`, once a certificate is in hand.
pub async fn serve(
    client: kube::Client,
    settings: WebhookSettings,
    namespace: String,
    metrics: crate::metrics::Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Some(addr) = settings.webhook_addr else {
        return Ok(());
    };
    let served = Arc::new(tls::Served::default());
    let keeper = keep_certificate(client.clone(), settings.clone(), namespace, served.clone());
    let keeper = tokio::spawn(keeper);
    while !served.is_set() {
        if keeper.is_finished() {
            return keeper.await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shared = review::Shared {
        accounts: accounts::Accounts::start(client),
        endpoints: Arc::new(settings.endpoints()),
        metrics,
    };
    let app = axum::Router::new()
        .route("/mutate-pods", post(review::mutate_pods))
        .with_state(shared);
    let listener = tls::Listener::bind(addr, served).await?;
    tracing::info!(%addr, "serving the pod webhook");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    keeper.abort();
    Ok(())
}

/// Keeps `served` current for as long as the webhook runs.
async fn keep_certificate(
    client: kube::Client,
    settings: WebhookSettings,
    namespace: String,
    served: Arc<tls::Served>,
) -> anyhow::Result<()> {
    let place = certs::Place {
        namespace,
        secret: settings.webhook_secret.clone(),
        configuration: settings.webhook_configuration.clone(),
        names: settings.webhook_names.clone(),
    };
    let mut changed = configuration_changes(&client, &settings);
    let mut current = None;
    loop {
        let round = match &settings.webhook_cert_dir {
            Some(dir) => read_dir(dir),
            None => self_managed(&client, &place).await,
        };
        match round {
            Ok(pair) if current.as_ref() != Some(&pair) => {
                served.set(&pair.0, &pair.1)?;
                tracing::info!("serving a new webhook certificate");
                current = Some(pair);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                serving = current.is_some(),
                "checking the webhook certificate"
            ),
        }
        let wait = match current {
            Some(_) => Duration::from_secs(settings.webhook_cert_check_seconds.max(1)),
            None => Duration::from_secs(2),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = changed.next() => {}
        }
    }
}

/// Wakes the keeper when the webhook configuration is installed or
/// changed, so its `caBundle` is written within a moment, not a period.
/// cert-manager's CA injector does that itself.
fn configuration_changes(
    client: &kube::Client,
    settings: &WebhookSettings,
) -> futures::stream::BoxStream<'static, ()> {
    if settings.webhook_cert_dir.is_some() {
        return futures::stream::pending().boxed();
    }
    let name = format!("metadata.name={}", settings.webhook_configuration);
    watcher(
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        watcher::Config::default().fields(&name),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|event| async move { event.ok().map(|_| ()) })
    .boxed()
}

fn read_dir(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))
    };
    Ok((read("tls.crt")?, read("tls.key")?))
}

async fn self_managed(
    client: &kube::Client,
    place: &certs::Place,
) -> anyhow::Result<(String, String)> {
    let bundle = certs::ensure(client, place).await?;
    // A configuration not installed yet (or its caBundle reset by an
    // upgrade) is found again at the next check.
    if let Err(error) = certs::publish_ca(client, &place.configuration, &bundle.ca_bundle()).await {
        tracing::warn!(%error, configuration = %place.configuration, "publishing the webhook's CA bundle");
    }
    Ok((bundle.cert, bundle.key))
}
