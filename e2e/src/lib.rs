//! Helpers for the e2e scenarios: a control plane with the operator binary
//! running against it, and waits on what users see (conditions, objects).

pub mod bench;
mod cleanup;
pub mod pods;
pub mod scenarios;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;
use wib_api::WorkloadIdentityBinding;
use wib_testenv::azure::AzureFake;
use wib_testenv::eks::EksFake;
use wib_testenv::gcp::GcpFake;
use wib_testenv::moto::Moto;
use wib_testenv::{Attached, ClusterRef, ControlPlane, Operator, Options};

/// The GCP project of `provider_yaml` and the GCP fake in e2e.
pub const GCP_PROJECT: &str = "wib-e2e";
pub const WAIT: Duration = Duration::from_secs(60);
/// Resync used in e2e so drift checks and steady-state checks are quick.
pub const RESYNC_SECONDS: &str = "2";

/// A control plane with wib-controller running against it: the harness's
/// own, or an existing cluster named by `WIB_E2E_CLUSTER` (see
/// [`wib_testenv::Attached`]) where the operator and fakes already run.
pub struct Env {
    // Field order is drop order: the operator stops first, the control plane last.
    operator: Option<Operator>,
    /// The operator's /metrics, /healthz and /readyz.
    pub metrics_url: String,
    /// Where the operator serves the pod webhook (local only).
    pub webhook_url: Option<String>,
    pub azure: Option<AzureFake>,
    pub moto: Option<Moto>,
    pub gcp: Option<GcpFake>,
    /// EKS (pod identity associations, EKS Auth, the node agent), on moto's
    /// IAM and STS; local only.
    pub eks: Option<EksFake>,
    pub admin: Admin,
    pub cp: Cluster,
    /// Held while attached: tests share one cluster, one operator and one
    /// set of fakes, so they take turns.
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl std::ops::Deref for Env {
    type Target = Admin;
    fn deref(&self) -> &Admin {
        &self.admin
    }
}

/// Kubernetes-side helpers: apply manifests and wait for what users see.
pub struct Admin {
    pub client: Client,
    /// Where the operator logs, quoted in failure messages.
    logs: Logs,
}

enum Logs {
    None,
    /// The harness's log directory (`wib-controller-<n>.log`).
    Dir(std::path::PathBuf),
    Attached(Box<Attached>),
}

static ATTACHED_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The chart's tenant ClusterRole as `make generate` renders it (its
/// comment-only header document is skipped by `apply`).
const TENANT_ROLE: &str = include_str!("../../config/rbac/tenant-role.yaml");

/// Namespaces an attached cluster keeps between tests.
const SYSTEM_NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
    wib_testenv::fakes::OPERATOR_NAMESPACE,
    "wib-fakes",
];

/// Where the scenario runs.
pub enum Cluster {
    /// The harness's own control plane, operator and fakes.
    Local(ControlPlane),
    /// A cluster someone else runs (kind, `make run`); `cluster.dir` is
    /// `_dir`, removed on drop.
    Attached {
        cluster: ClusterRef,
        _dir: tempfile::TempDir,
    },
}

impl Cluster {
    /// The ServiceAccount token issuer.
    pub fn issuer(&self) -> &str {
        match self {
            Self::Local(cp) => cp.issuer(),
            Self::Attached { cluster, .. } => &cluster.issuer,
        }
    }

    /// A directory for the test's files (tokens, credential configs).
    pub fn dir(&self) -> &std::path::Path {
        match self {
            Self::Local(cp) => cp.dir(),
            Self::Attached { cluster, .. } => &cluster.dir,
        }
    }

    /// A projected ServiceAccount token, as the kubelet mounts into a pod.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> Result<String> {
        match self {
            Self::Local(cp) => cp.service_account_token(namespace, name, audience).await,
            Self::Attached { cluster, .. } => {
                cluster
                    .service_account_token(namespace, name, audience)
                    .await
            }
        }
    }
}

/// What only the benchmark asks of an environment.
#[derive(Default)]
struct Benchmark {
    /// The API server's audit log.
    audit: bool,
    operator_env: Vec<(String, String)>,
}

const ATTACHED_VAR: &str = wib_testenv::attached::ENV_VAR;

fn not_attachable() -> ! {
    panic!(
        "this scenario controls the operator process itself, which an attached cluster ({ATTACHED_VAR}) runs"
    )
}

impl Env {
    /// The control plane, every cloud fake (Azure, moto, GCP) and the
    /// operator, authenticating to each with its own workload identity.
    pub async fn start() -> Result<Self> {
        Self::start_with(true, true).await
    }

    /// The same: a test that is about Azure says so.
    pub async fn start_azure() -> Result<Self> {
        Self::start().await
    }

    /// The same: a test that is about AWS says so.
    pub async fn start_aws() -> Result<Self> {
        Self::start().await
    }

    /// The same: a test that is about GCP says so.
    pub async fn start_gcp() -> Result<Self> {
        Self::start().await
    }

    /// Without any cloud fake: the operator's clouds fail as they would
    /// with no credentials.
    pub async fn start_without_clouds() -> Result<Self> {
        Self::start_with(false, false).await
    }

    async fn start_with(azure: bool, aws: bool) -> Result<Self> {
        Self::start_tuned(azure, aws, RESYNC_SECONDS, "5", Benchmark::default()).await
    }

    /// Every cloud fake and the operator resyncing every `resync_seconds`
    /// (the benchmark's setting; tests use 2 s).
    pub async fn start_with_resync(resync_seconds: &str) -> Result<Self> {
        Self::start_tuned(true, true, resync_seconds, "5", Benchmark::default()).await
    }

    /// Every cloud fake and the operator at its production pace but for
    /// the bindings' resync: providers re-checked every 300 s, so their
    /// cloud reads do not count against the bindings' (the benchmark). The
    /// API server keeps an audit log ([`Env::audit_log`]); `operator_env`
    /// is added to the operator's environment.
    pub async fn start_for_benchmark(
        resync_seconds: &str,
        operator_env: Vec<(String, String)>,
    ) -> Result<Self> {
        let benchmark = Benchmark {
            audit: true,
            operator_env,
        };
        Self::start_tuned(true, true, resync_seconds, "300", benchmark).await
    }

    /// The API server's audit log, when the environment keeps one.
    pub fn audit_log(&self) -> Option<std::path::PathBuf> {
        match &self.cp {
            Cluster::Local(cp) => Some(cp.audit_log()),
            Cluster::Attached { .. } => None,
        }
    }

    async fn start_tuned(
        azure: bool,
        aws: bool,
        resync_seconds: &str,
        provider_resync_seconds: &str,
        benchmark: Benchmark,
    ) -> Result<Self> {
        if let Some(description) = Attached::from_env()? {
            if !(azure && aws) {
                bail!("{ATTACHED_VAR}: an attached cluster always has its cloud fakes");
            }
            return Self::attach(description).await;
        }
        let cp = ControlPlane::start(Options {
            audit: benchmark.audit,
            ..Options::default()
        })
        .await?;
        let client = cp.client().await?;
        let azure = match azure {
            true => Some(AzureFake::start(&cp).await?),
            false => None,
        };
        let moto = match aws {
            true => Some(Moto::start(&cp).await?),
            false => None,
        };
        let gcp = match azure.is_some() && aws {
            true => Some(GcpFake::start(&cp, GCP_PROJECT).await?),
            false => None,
        };
        let eks = match &moto {
            Some(moto) => Some(EksFake::start(&cp, &moto.url).await?),
            None => None,
        };
        let envs: Vec<(String, String)> = azure
            .iter()
            .flat_map(|a| a.operator_env.clone())
            .chain(moto.iter().flat_map(|m| m.operator_env.clone()))
            .chain(gcp.iter().flat_map(|g| g.operator_env.clone()))
            .chain(eks.iter().flat_map(|e| e.operator_env.clone()))
            .collect();
        let mut envs = envs;
        envs.extend(pods::webhook_env(azure.as_ref(), gcp.as_ref()));
        envs.extend(benchmark.operator_env);
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let port = wib_testenv::ports::free()?;
        let metrics_url = format!("http://127.0.0.1:{port}");
        let webhook_port = wib_testenv::ports::free()?;
        // Where the webhook's certificate is kept, as the chart's namespace.
        Admin {
            client: client.clone(),
            logs: Logs::Dir(cp.dir().to_path_buf()),
        }
        .namespace(wib_testenv::fakes::OPERATOR_NAMESPACE, &[])
        .await?;
        let operator = Operator::start(
            cp.kubeconfig(),
            cp.dir(),
            &[
                &format!("--metrics-addr=127.0.0.1:{port}"),
                &format!("--resync-seconds={resync_seconds}"),
                &format!("--provider-resync-seconds={provider_resync_seconds}"),
                &format!("--webhook-addr=127.0.0.1:{webhook_port}"),
                "--allow-workload-restarts",
            ],
            &envs,
        )?;
        let admin = Admin {
            client,
            logs: Logs::Dir(cp.dir().to_path_buf()),
        };
        Ok(Self {
            operator: Some(operator),
            metrics_url,
            webhook_url: Some(format!("https://127.0.0.1:{webhook_port}/mutate-pods")),
            azure,
            moto,
            gcp,
            eks,
            admin,
            cp: Cluster::Local(cp),
            _turn: None,
        })
    }

    /// Takes a turn on an existing cluster: empties the fakes, removes every
    /// binding, provider and test namespace the previous scenario left, and
    /// waits for the operator to be ready.
    async fn attach(description: Attached) -> Result<Self> {
        let turn = ATTACHED_TURN.lock().await;
        let client = description.client().await?;
        let dir = tempfile::Builder::new().prefix("wib-e2e-").tempdir()?;
        let cluster = ClusterRef {
            issuer: wib_testenv::cluster::discover_issuer(&client).await?,
            dir: dir.path().to_path_buf(),
            client: client.clone(),
        };
        let admin = Admin {
            client,
            logs: Logs::Attached(Box::new(description.clone())),
        };
        // Emptied first, so no fault the last scenario injected blocks the
        // deletions, and again after them, for what they retained.
        attach_fakes(&description, &cluster).await?;
        admin.remove_scenario_objects().await?;
        let (azure, moto, gcp) = attach_fakes(&description, &cluster).await?;
        gcp.add_project(GCP_PROJECT).await?;
        let eks = match &description.eks_url {
            Some(url) => Some(EksFake::attach(url, &cluster).await?),
            None => None,
        };
        let metrics_url = description.metrics_url.trim_end_matches('/').to_string();
        admin.wait_ready(&metrics_url).await?;
        Ok(Self {
            operator: None,
            metrics_url,
            webhook_url: None,
            azure: Some(azure),
            moto: Some(moto),
            gcp: Some(gcp),
            eks,
            admin,
            cp: Cluster::Attached { cluster, _dir: dir },
            _turn: Some(turn),
        })
    }

    /// A tenant's user: the chart's tenant ClusterRole (config/rbac, as
    /// `make generate` renders it) bound in `namespace` and nothing else,
    /// acting through the real API server with a client certificate from
    /// the control plane's CA (no groups), so authentication, RBAC and
    /// admission judge every request as the tenant's own.
    pub async fn tenant(&self, user: &str, namespace: &str) -> Result<Admin> {
        let Cluster::Local(cp) = &self.cp else {
            not_attachable()
        };
        self.apply(TENANT_ROLE).await?;
        self.apply(&format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: wib-tenant-{user}
  namespace: {namespace}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: wib-tenant
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {user}
"#
        ))
        .await?;
        let kubeconfig = kube::config::Kubeconfig::read_from(cp.user_kubeconfig(user)?)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        let client = Client::try_from(config)?;
        // The authorizer learns of a new RoleBinding from its own watch: a
        // request in the same instant can still be refused.
        poll_until(
            Duration::from_secs(20),
            "the tenant's RoleBinding in force",
            async || may_apply_bindings(&client, namespace).await,
        )
        .await?;
        Ok(Admin {
            client,
            logs: Logs::Dir(cp.dir().to_path_buf()),
        })
    }

    /// The operator process the harness runs; panics when attached (the
    /// cluster runs the operator).
    pub fn operator(&self) -> &Operator {
        self.operator.as_ref().unwrap_or_else(|| not_attachable())
    }

    pub fn operator_mut(&mut self) -> &mut Operator {
        self.operator.as_mut().unwrap_or_else(|| not_attachable())
    }

    /// The operator's Prometheus metrics, as text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.metrics_url))
            .await?
            .text()
            .await?)
    }

    /// The Azure fake; panics when the env was started without it.
    pub fn azure(&self) -> &AzureFake {
        self.azure.as_ref().expect("started with start_azure()")
    }

    /// The GCP fake; panics when the env was started without it.
    pub fn gcp(&self) -> &GcpFake {
        self.gcp.as_ref().expect("started with the cloud fakes")
    }

    /// moto; panics when the env was started without it.
    pub fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("started with start_aws()")
    }

    /// The EKS fake; panics when the env has none (an attached description
    /// without `eksUrl`).
    pub fn eks(&self) -> &EksFake {
        self.eks
            .as_ref()
            .expect("an EKS fake (start_aws(), or eksUrl attached)")
    }

    /// An IAM client on moto, for arranging and checking a test (moto
    /// accepts any access key; the operator itself uses web identity).
    pub fn iam(&self) -> aws_sdk_iam::Client {
        let credentials =
            aws_credential_types::Credentials::new("testing", "testing", None, None, "wib-e2e");
        let config = aws_sdk_iam::config::Builder::new()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new(wib_testenv::moto::REGION))
            .endpoint_url(&self.moto().url)
            .credentials_provider(credentials)
            .http_client(wib_cloud::aws::http_client().expect("an HTTP client for moto"))
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// Sums a counter's samples whose labels include every `label="value"` given.
    pub async fn metric_sum(&self, name: &str, labels: &[&str]) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

impl Admin {
    /// For a control plane the test runs its operators on itself.
    pub async fn new(cp: &ControlPlane) -> Result<Self> {
        Ok(Self {
            client: cp.client().await?,
            logs: Logs::None,
        })
    }

    /// The newest operator log, if known.
    pub fn operator_logs(&self) -> String {
        let dir = match &self.logs {
            Logs::None => return String::new(),
            Logs::Attached(description) => return description.operator_log(),
            Logs::Dir(dir) => dir,
        };
        let mut logs: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("wib-controller-")
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        logs.sort();
        logs.last()
            .and_then(|(_, p)| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Applies YAML/JSON manifests (one or more documents) server-side as `manager`.
    pub async fn apply_as(&self, manager: &str, yaml: &str) -> Result<()> {
        for doc in yaml.split("\n---") {
            if doc.trim().is_empty() {
                continue;
            }
            let value: Value = serde_yaml::from_str(doc)?;
            if value.is_null() {
                // Only comments (a generated file's header).
                continue;
            }
            let obj: kube::api::DynamicObject = serde_json::from_value(value.clone())?;
            let gvk = kube::api::GroupVersionKind::try_from(
                obj.types.as_ref().context("apiVersion/kind")?,
            )?;
            let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
            let api: Api<kube::api::DynamicObject> = match (caps.scope, obj.namespace()) {
                (kube::discovery::Scope::Namespaced, Some(ns)) => {
                    Api::namespaced_with(self.client.clone(), &ns, &resource)
                }
                _ => Api::all_with(self.client.clone(), &resource),
            };
            api.patch(
                &obj.name_any(),
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&value),
            )
            .await
            .with_context(|| format!("applying {} {}", gvk.kind, obj.name_any()))?;
        }
        Ok(())
    }

    /// Applies manifests as a user would with `kubectl apply --server-side`.
    pub async fn apply(&self, yaml: &str) -> Result<()> {
        self.apply_as("e2e-user", yaml).await
    }

    pub async fn namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<()> {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.patch(
            name,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&ns),
        )
        .await?;
        Ok(())
    }

    pub fn bindings(&self, ns: &str) -> Api<WorkloadIdentityBinding> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn service_accounts(&self, ns: &str) -> Api<ServiceAccount> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until the binding's condition has this status and reason for its current generation.
    pub async fn wait_condition(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<WorkloadIdentityBinding> {
        let api = self.bindings(ns);
        let what = format!("{ns}/{name}: {type_} {status}/{reason}");
        let found = poll_until(WAIT, &what, async || {
            let b = api.get_opt(name).await.map_err(|e| e.to_string())?;
            let current = b.as_ref().and_then(|b| condition(b, type_));
            match (&b, current) {
                (Some(b), Some(c))
                    if c.status == status
                        && c.reason == reason
                        && c.observed_generation == b.metadata.generation =>
                {
                    Ok(b.clone())
                }
                _ => Err(format!("{current:?}")),
            }
        })
        .await;
        self.with_log_tail(found)
    }

    /// `result`, its error followed by the operator's last log lines.
    fn with_log_tail<T>(&self, result: Result<T>) -> Result<T> {
        result.with_context(|| format!("operator log tail:\n{}", tail(&self.operator_logs(), 40)))
    }

    /// Waits until `check` holds for the ServiceAccount (None = absent).
    pub async fn wait_service_account(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        check: impl Fn(Option<&ServiceAccount>) -> bool,
    ) -> Result<Option<ServiceAccount>> {
        let api = self.service_accounts(ns);
        let what = format!("ServiceAccount {ns}/{name} {what}");
        let found = poll_until(WAIT, &what, async || {
            let sa = api.get_opt(name).await.map_err(|e| e.to_string())?;
            match check(sa.as_ref()) {
                true => Ok(sa),
                false => Err(format!("{sa:?}")),
            }
        })
        .await;
        self.with_log_tail(found)
    }

    /// Deletes a binding and waits until it is gone (its finalizer ran).
    pub async fn delete_binding(&self, ns: &str, name: &str) -> Result<()> {
        let api = self.bindings(ns);
        api.delete(name, &DeleteParams::default()).await?;
        let what = format!("binding {ns}/{name} deleted");
        let gone = poll_until(WAIT, &what, async || {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                Some(b) => Err(format!("{:?}", b.status)),
                None => Ok(()),
            }
        })
        .await;
        self.with_log_tail(gone)
    }

    /// Waits until Events with every one of `reasons` have been recorded
    /// for the object (Events are published after the status they report);
    /// returns every reason seen.
    pub async fn wait_events(&self, ns: &str, name: &str, reasons: &[&str]) -> Result<Vec<String>> {
        let what = format!("{ns}/{name}: an Event for each of {reasons:?}");
        poll_until(WAIT, &what, async || {
            let seen: Vec<String> = self
                .events_for(ns, name)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|e| e.reason)
                .collect();
            match reasons.iter().all(|r| seen.iter().any(|s| s == r)) {
                true => Ok(seen),
                false => Err(format!("seen {seen:?}")),
            }
        })
        .await
    }

    /// How many Events the object has once they stop arriving (none new
    /// for a second): the Events of a reconcile are published after the
    /// status that a wait sees.
    pub async fn settled_event_count(&self, ns: &str, name: &str) -> Result<usize> {
        let mut last = self.events_for(ns, name).await?.len();
        poll_until(WAIT, &format!("{ns}/{name}: Events settled"), async || {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self
                .events_for(ns, name)
                .await
                .map_err(|e| e.to_string())?
                .len();
            let settled = now == last;
            last = now;
            if settled {
                Ok(now)
            } else {
                Err(format!("{now} Events, still arriving"))
            }
        })
        .await
    }

    /// Events recorded for an object in a namespace.
    pub async fn events_for(&self, ns: &str, name: &str) -> Result<Vec<Event>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect())
    }
}

/// The attached environment's fakes, each emptied and holding the
/// operator's own identity again.
async fn attach_fakes(
    description: &Attached,
    cluster: &ClusterRef,
) -> Result<(AzureFake, Moto, GcpFake)> {
    Ok((
        AzureFake::attach(&description.azure_url, cluster).await?,
        Moto::attach(&description.aws_url, cluster).await?,
        GcpFake::attach(&description.gcp_url, cluster, &description.gcp_project).await?,
    ))
}

impl Env {
    /// A pod of `namespace`/`service_account` exchanging a fresh projected
    /// token for an Entra token as `client_id`: (succeeded, output).
    pub async fn azure_pod_exchange(
        &self,
        namespace: &str,
        service_account: &str,
        client_id: &str,
    ) -> (bool, String) {
        let token = self
            .cp
            .service_account_token(
                namespace,
                service_account,
                wib_testenv::azure::AZURE_AUDIENCE,
            )
            .await
            .expect("TokenRequest");
        self.azure_exchange(client_id, &token)
    }

    /// A pod holding `token` exchanging it for an Entra token as
    /// `client_id` with the Azure SDK, set up as the workload identity
    /// webhook would: (succeeded, output).
    pub fn azure_exchange(&self, client_id: &str, token: &str) -> (bool, String) {
        self.azure_pod(client_id, token, &[])
    }

    /// The Azure pod stand-in with the environment the webhook injects,
    /// and `extra`.
    fn azure_pod(
        &self,
        client_id: &str,
        token: &str,
        extra: &[(&str, &std::ffi::OsStr)],
    ) -> (bool, String) {
        let token_file = self.cp.dir().join(format!("pod-token-{}", short_id(token)));
        std::fs::write(&token_file, token).expect("token file");
        let mut envs = vec![
            ("AZURE_CLIENT_ID", client_id.as_ref()),
            ("AZURE_TENANT_ID", wib_testenv::azure::AZURE_TENANT.as_ref()),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_os_str()),
            ("AZURE_AUTHORITY_HOST", self.azure().url.as_ref()),
        ];
        envs.extend_from_slice(extra);
        run_pod("wib-e2e-pod-azure", &envs)
    }

    /// Makes vault `id` (an ARM ID) in the Azure fake, authorizing with
    /// access policies (`entries`) or, when `rbac`, Azure RBAC, and holding
    /// secret `db-password`, as a platform team's vault would.
    pub async fn seed_vault(&self, id: &str, rbac: bool, entries: Value) {
        let vault = serde_json::json!({"location": "westeurope", "properties": {
            "tenantId": wib_testenv::azure::AZURE_TENANT,
            "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": rbac, "accessPolicies": entries}});
        let secret = serde_json::json!({"properties": {"value": "s3cret"}});
        for (path, body) in [
            (id.to_string(), vault),
            (format!("{id}/secrets/db-password"), secret),
        ] {
            let (status, body) = self
                .azure()
                .arm(
                    reqwest::Method::PUT,
                    &format!("{path}?api-version=2019-09-01"),
                    Some(body),
                )
                .await
                .expect("arrange the vault");
            assert!(status < 300, "{path}: {body}");
        }
    }

    /// The access policy entries of vault `id` in the Azure fake: their
    /// permissions by object ID.
    pub async fn vault_entries(&self, id: &str) -> std::collections::BTreeMap<String, Value> {
        let state = self.azure().state().await.expect("Azure fake state");
        let vault = state["vaults"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["id"].as_str().is_some_and(|v| v.eq_ignore_ascii_case(id)))
            .cloned()
            .unwrap_or_else(|| panic!("vault {id}: {state}"));
        vault["properties"]["accessPolicies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let object = e["objectId"].as_str().unwrap_or_default().to_string();
                (object, e["permissions"].clone())
            })
            .collect()
    }

    /// The pod stand-in reading `secret` from the fake's vault `vault` with
    /// an Entra token for Key Vault, exchanged from `token` as
    /// `client_id`: (read, output).
    pub fn azure_read_secret(
        &self,
        client_id: &str,
        token: &str,
        vault: &str,
        secret: &str,
    ) -> (bool, String) {
        let url = format!(
            "{}/keyvault/{vault}/secrets/{secret}?api-version=7.4",
            self.azure().url
        );
        self.azure_pod(
            client_id,
            token,
            &[("WIB_POD_KEYVAULT_SECRET_URL", url.as_ref())],
        )
    }

    /// A pod of `namespace`/`service_account` exchanging a fresh projected
    /// token through the GCP fake's STS and impersonating `email`, with the
    /// Google auth library, as a workload identity pool setup would:
    /// (succeeded, output). Needs a provider with a workload identity pool.
    pub async fn gcp_pod_exchange(
        &self,
        namespace: &str,
        service_account: &str,
        email: &str,
    ) -> (bool, String) {
        let token = self
            .cp
            .service_account_token(
                namespace,
                service_account,
                &wib_testenv::gcp::token_audience(),
            )
            .await
            .expect("TokenRequest");
        self.gcp_exchange(&token, email)
    }

    /// A pod holding `token` exchanging it through the GCP fake's STS and
    /// using the federated token itself (mode Direct: no impersonation) to
    /// ask `project` which permissions it holds: (holds some, output).
    pub fn gcp_direct_access(&self, token: &str, project: &str) -> (bool, String) {
        let token_file = self
            .cp
            .dir()
            .join(format!("pod-gcp-token-{}", short_id(token)));
        std::fs::write(&token_file, token).expect("token file");
        let mut config = self.gcp().credential_config(&token_file, "unused");
        if let Some(fields) = config.as_object_mut() {
            fields.remove("service_account_impersonation_url");
        }
        let config_file = self
            .cp
            .dir()
            .join(format!("pod-gcp-direct-{}.json", short_id(token)));
        std::fs::write(&config_file, config.to_string()).expect("config");
        let url = format!(
            "{}/v3/projects/{project}:testIamPermissions",
            self.gcp().url
        );
        let (ok, out) = run_pod(
            "wib-e2e-pod-gcp",
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", config_file.as_os_str()),
                ("WIB_POD_GCP_TEST_PERMISSIONS_URL", url.as_ref()),
            ],
        );
        (ok && out.contains("permissions held"), out)
    }

    /// A pod holding `token` exchanging it through the GCP fake's STS and
    /// impersonating `email`: (succeeded, output).
    pub fn gcp_exchange(&self, token: &str, email: &str) -> (bool, String) {
        let token_file = self
            .cp
            .dir()
            .join(format!("pod-gcp-token-{}", short_id(token)));
        std::fs::write(&token_file, token).expect("token file");
        let config = self.gcp().credential_config(&token_file, email);
        let config_file = self
            .cp
            .dir()
            .join(format!("pod-gcp-credentials-{}.json", short_id(token)));
        std::fs::write(&config_file, config.to_string()).expect("config");
        let (ok, out) = run_pod(
            "wib-e2e-pod-gcp",
            &[("GOOGLE_APPLICATION_CREDENTIALS", config_file.as_os_str())],
        );
        (ok && out.contains("token acquired"), out)
    }
}

/// What a deployment does over weeks, in seconds: the cloud's clock moves
/// two hours on (wib's access token or session, and the assertion in its
/// token file, expire), a new binding made by `apply(name)` is refused as
/// `CloudAuthenticationFailed` and retried (not stalled), the kubelet
/// rotates the token file, and the binding turns Ready. Asserts from the
/// fake that both an expired token and the old assertion were refused.
pub async fn survives_expiry_and_rotation(
    env: &Env,
    fake: &impl wib_testenv::expiry::Expiring,
    namespace: &str,
    binding: impl Fn(&str) -> String,
) {
    let Cluster::Local(cp) = &env.cp else {
        panic!("this scenario rotates the operator's token file itself");
    };
    env.apply(&binding("before")).await.expect("binding");
    env.wait_condition(
        namespace,
        "before",
        wib_api::conditions::READY,
        "True",
        "Provisioned",
    )
    .await
    .expect("Ready");
    fake.advance_clock(2 * 3600).await.expect("clock");
    env.apply(&binding("after")).await.expect("binding");
    let refused = env
        .wait_condition(
            namespace,
            "after",
            wib_api::conditions::READY,
            "False",
            "CloudAuthenticationFailed",
        )
        .await
        .expect("the refusal is reported, and retried");
    assert_eq!(
        condition(&refused, wib_api::conditions::STALLED).map(|c| c.status.as_str()),
        Some("False"),
        "an expired token heals: not stalled"
    );
    let cluster = cp.cluster_ref().await.expect("cluster");
    fake.rotate_operator_token(&cluster, 6 * 3600)
        .await
        .expect("rotation");
    env.wait_condition(
        namespace,
        "after",
        wib_api::conditions::READY,
        "True",
        "Provisioned",
    )
    .await
    .expect("Ready with a token from the rotated file");
    let (tokens, assertions) = fake.expiry_refusals().await.expect("counts");
    assert!(
        tokens >= 1,
        "the cloud refused the expired token or session"
    );
    assert!(
        assertions >= 1,
        "the token endpoint refused the old assertion"
    );
}

/// A file-name-safe digest of a token.
fn short_id(token: &str) -> String {
    wib_api::naming::name_hash(token)
}

/// Polls `probe` every 200 ms until it answers `Ok`, for at most `within`;
/// then fails with `what` and the probe's last answer ("not yet, because").
/// Every e2e wait on a cloud or a cluster is this one loop.
pub async fn poll_until<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(found) => return Ok(found),
            Err(last) if tokio::time::Instant::now() > deadline => {
                bail!("never {what} within {within:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs a pod stand-in binary (`wib-e2e-pod-<cloud>`) with only `envs`, as
/// a webhook-injected pod would see them: (exit success, stdout + stderr).
pub fn run_pod(binary: &str, envs: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    let path = wib_testenv::operator::workspace_binary(binary).expect("pod binary built");
    let out = std::process::Command::new(path)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("pod runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// wib's `wib_cloud_api_calls_total` for one cloud, summed per operation
/// over results.
pub fn cloud_calls(metrics: &str, cloud: &str) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in metrics.lines().filter(|l| {
        l.starts_with("wib_cloud_api_calls_total{") && l.contains(&format!("cloud=\"{cloud}\""))
    }) {
        let operation = line
            .split("operation=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string();
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default() as u64;
        *counts.entry(operation).or_default() += value;
    }
    counts
}

pub fn condition<'a>(binding: &'a WorkloadIdentityBinding, type_: &str) -> Option<&'a Condition> {
    binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The sample provider, with an optional namespace selector.
pub fn provider_yaml(name: &str, default: bool, selector: Option<&str>) -> String {
    let annotations = if default {
        "\n  annotations:\n    wib.dev/is-default-provider: \"true\""
    } else {
        ""
    };
    let selector = selector
        .map(|s| format!("\n  namespaceSelector:\n    matchLabels:\n      {s}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: wib.dev/v1alpha1
kind: ClusterIdentityProvider
metadata:
  name: {name}{annotations}
spec:
  clusterName: e2e{selector}
  allowedScopes:
    - /subscriptions/00000000-0000-0000-0000-00000000aaaa
    - arn:aws:iam::aws:policy
    - arn:aws:iam::123456789012:policy
    - projects/wib-e2e
  azure:
    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
    subscriptionId: 00000000-0000-0000-0000-00000000aaaa
    resourceGroup: wib-e2e
    location: westeurope
  aws:
    accountId: "123456789012"
    createOidcProvider: true
    eksClusterName: wib-local
  gcp:
    projectId: wib-e2e
"#
    )
}

/// Whether `client`'s user may patch bindings in `namespace` yet (a
/// SelfSubjectAccessReview, the authorizer's own answer).
async fn may_apply_bindings(client: &Client, namespace: &str) -> std::result::Result<(), String> {
    may(
        client,
        namespace,
        "wib.dev",
        "workloadidentitybindings",
        "patch",
    )
    .await
}

/// Whether `client`'s user may `verb` `resource` in `namespace` yet.
pub(crate) async fn may(
    client: &Client,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> std::result::Result<(), String> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                verb: Some(verb.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&Default::default(), &review)
        .await
        .map_err(|e| e.to_string())?;
    match answer.status.is_some_and(|s| s.allowed) {
        true => Ok(()),
        false => Err("not yet allowed".into()),
    }
}
