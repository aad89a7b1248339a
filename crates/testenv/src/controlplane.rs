//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and
//! kube-controller-manager built from the pinned Go modules in
//! `e2e/controlplane`, with an https ServiceAccount issuer whose discovery
//! document and JWKS anyone may read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt};

use crate::pki::{ClientCert, Pki};
use crate::process::Process;

const FIELD_MANAGER: &str = "wib-testenv";
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// Install wib's CRDs and wait until they are established.
    pub install_crds: bool,
    /// Start kube-controller-manager (namespace, garbage-collector,
    /// serviceaccount, serviceaccount-token, deployment and replicaset
    /// controllers: pods are created, never scheduled).
    pub controller_manager: bool,
    /// Write an audit log (every request, its verb and user agent, when
    /// received) at [`ControlPlane::audit_log`]: how the benchmark counts
    /// the operator's API-server requests by verb.
    pub audit: bool,
}

const AUDIT_LOG: &str = "audit.log";

/// One event per request, as it is received: the verb is known by then, and
/// a watch counts once however long it stays open.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
  - level: Metadata
";

impl Default for Options {
    fn default() -> Self {
        Self {
            install_crds: true,
            controller_manager: true,
            audit: false,
        }
    }
}

/// A running control plane. Dropping it stops every process and removes its
/// directory, also when a test panics.
pub struct ControlPlane {
    // Field order is drop order: processes stop before the directory goes.
    processes: Vec<Process>,
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    server: String,
    ca_pem: String,
    ca_cert: PathBuf,
    kubeconfig: PathBuf,
    admin: ClientCert,
    /// Boxed: the issuer is large and the control plane is moved around.
    ca: Box<rcgen::Issuer<'static, rcgen::KeyPair>>,
}

impl ControlPlane {
    /// Builds the binaries if needed and starts the control plane.
    ///
    /// Call it from the thread that will drop it: the children are tied to
    /// that thread's life (PR_SET_PDEATHSIG) so nothing leaks when a test
    /// binary is killed.
    pub async fn start(options: Options) -> Result<Self> {
        let bin_dir = crate::binaries::ensure()?;
        let dir = tempfile::Builder::new().prefix("wib-testenv-").tempdir()?;
        let root = dir.path().to_path_buf();
        let pki = Pki::generate(&root)?;
        let etcd_port = crate::ports::free()?;
        let etcd_peer_port = crate::ports::free()?;
        let api_port = crate::ports::free()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");

        let mut this = Self {
            processes: Vec::new(),
            bin_dir: bin_dir.clone(),
            server: server.clone(),
            ca_pem: pki.ca_pem.clone(),
            ca_cert: pki.ca_cert.clone(),
            kubeconfig: root.join("kubeconfig"),
            admin: pki.admin.clone(),
            ca: Box::new(pki.issuer),
            dir,
        };
        this.write_kubeconfig("kubeconfig", "wib-testenv-admin", &pki.admin)?;
        let kcm_kubeconfig = this.write_kubeconfig(
            "kube-controller-manager.kubeconfig",
            "kube-controller-manager",
            &pki.controller_manager,
        )?;

        let mut etcd = Command::new(bin_dir.join("etcd"));
        etcd.args([
            "--name=testenv",
            &format!("--data-dir={}", root.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=testenv={peer_url}"),
            // A throw-away store: durability buys nothing and fsync costs seconds.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        this.spawn("etcd", etcd)?;
        this.wait_for("etcd", || async {
            let body = reqwest::get(format!("{etcd_url}/health"))
                .await?
                .text()
                .await?;
            Ok(body.contains("\"health\":\"true\""))
        })
        .await?;

        let mut apiserver = Command::new(bin_dir.join("kube-apiserver"));
        apiserver.args([
            &format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            &format!("--secure-port={api_port}"),
            &format!("--cert-dir={}", root.join("apiserver-certs").display()),
            &format!("--tls-cert-file={}", pki.serving_cert.display()),
            &format!("--tls-private-key-file={}", pki.serving_key.display()),
            &format!("--client-ca-file={}", pki.ca_cert.display()),
            // The issuer is the API server itself over https, as on AKS/EKS
            // clusters whose issuer is public; clouds fetch discovery and JWKS.
            &format!("--service-account-issuer={server}"),
            &format!("--service-account-jwks-uri={server}/openid/v1/jwks"),
            &format!("--service-account-key-file={}", pki.sa_public_key.display()),
            &format!(
                "--service-account-signing-key-file={}",
                pki.sa_signing_key.display()
            ),
            "--authorization-mode=RBAC",
            "--anonymous-auth=true",
            "--service-cluster-ip-range=10.96.0.0/24",
            // No nodes and no network: the kubernetes Service endpoints would
            // only be rejected for a loopback address.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]);
        if options.audit {
            let policy = root.join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY)?;
            apiserver.args([
                &format!("--audit-policy-file={}", policy.display()),
                &format!("--audit-log-path={}", root.join(AUDIT_LOG).display()),
                "--audit-log-format=json",
                "--audit-log-maxsize=0",
            ]);
        }
        this.spawn("kube-apiserver", apiserver)?;
        let probe = this.http_client()?;
        this.wait_for("kube-apiserver", || {
            let probe = probe.clone();
            let url = format!("{server}/readyz");
            async move { Ok(probe.get(url).send().await?.status().is_success()) }
        })
        .await?;

        let client = this.client().await?;
        allow_anonymous_issuer_discovery(&client).await?;

        if options.controller_manager {
            let mut kcm = Command::new(bin_dir.join("kube-controller-manager"));
            kcm.args([
                &format!("--kubeconfig={}", kcm_kubeconfig.display()),
                "--controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller",
                &format!("--service-account-private-key-file={}", pki.sa_signing_key.display()),
                &format!("--root-ca-file={}", pki.ca_cert.display()),
                // Each controller with its own ServiceAccount and RBAC role,
                // as kubeadm runs them: the controller manager's own user may
                // not, e.g., empty a namespace being deleted.
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ]);
            this.spawn("kube-controller-manager", kcm)?;
            // The serviceaccount controller creating `default` proves the
            // controller manager is up and talking to the API server.
            let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            this.wait_for("kube-controller-manager", || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.is_some()) }
            })
            .await?;
        }

        if options.install_crds {
            install_crds(&client).await?;
        }
        Ok(this)
    }

    /// The API server's audit log (JSON lines), when started with
    /// [`Options::audit`].
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join(AUDIT_LOG)
    }

    /// The API server URL, e.g. `https://127.0.0.1:41234`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The ServiceAccount token issuer (the API server over https).
    pub fn issuer(&self) -> &str {
        &self.server
    }

    /// PEM of the CA that signed the API server's (and the issuer's) certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert
    }

    /// An admin kubeconfig for the control plane.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding certificates, data and logs; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Pids of every process the control plane started.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Process::pid).collect()
    }

    /// An admin client.
    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `kubectl` of the same Kubernetes version, pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// A projected ServiceAccount token (TokenRequest API), as the kubelet
    /// mounts into a pod: creates the ServiceAccount first if needed.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        audience: &str,
    ) -> Result<String> {
        self.cluster_ref()
            .await?
            .service_account_token(namespace, name, audience)
            .await
    }

    /// What the cloud fakes need of this control plane.
    pub async fn cluster_ref(&self) -> Result<crate::ClusterRef> {
        Ok(crate::ClusterRef {
            issuer: self.issuer().to_string(),
            dir: self.dir().to_path_buf(),
            client: self.client().await?,
        })
    }

    /// A kubeconfig for user `name` authenticating with a client
    /// certificate from this control plane's CA, as a team's member would:
    /// no group, so only what RBAC binds to the user applies.
    pub fn user_kubeconfig(&self, name: &str) -> Result<PathBuf> {
        let cert = crate::pki::client_cert(&self.ca, name, None)?;
        self.write_kubeconfig(&format!("user-{name}.kubeconfig"), name, &cert)
    }

    /// Writes a kubeconfig for a client certificate and returns its path.
    pub fn write_kubeconfig(&self, file: &str, user: &str, cert: &ClientCert) -> Result<PathBuf> {
        let root = self.dir.path();
        let cert_path = root.join(format!("{file}.crt"));
        let key_path = root.join(format!("{file}.key"));
        std::fs::write(&cert_path, &cert.cert_pem)?;
        std::fs::write(&key_path, &cert.key_pem)?;
        self.write_kubeconfig_with_user(
            file,
            user,
            serde_json::json!({
                "client-certificate": cert_path,
                "client-key": key_path,
            }),
        )
    }

    /// Writes a kubeconfig whose user entry is `user_entry` (a token, a
    /// client certificate, ...) and returns its path.
    pub fn write_kubeconfig_with_user(
        &self,
        file: &str,
        user: &str,
        user_entry: serde_json::Value,
    ) -> Result<PathBuf> {
        let path = self.dir.path().join(file);
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": {
                "server": self.server,
                "certificate-authority": self.ca_cert,
            }}],
            "users": [{"name": user, "user": user_entry}],
            "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": user}}],
            "current-context": "testenv",
        });
        std::fs::write(&path, serde_yaml::to_string(&kubeconfig)?)?;
        Ok(path)
    }

    fn spawn(&mut self, name: &str, command: Command) -> Result<()> {
        let process = Process::spawn(name, command, self.dir.path())?;
        self.processes.push(process);
        Ok(())
    }

    fn http_client(&self) -> Result<reqwest::Client> {
        let identity = format!("{}{}", self.admin.cert_pem, self.admin.key_pem);
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?)
            .identity(reqwest::Identity::from_pem(identity.as_bytes())?)
            .timeout(Duration::from_secs(5))
            .build()?)
    }

    /// Polls `ready` until it answers true; fails early with the log tail
    /// when the named process exits.
    async fn wait_for<F, Fut>(&mut self, name: &str, ready: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let started = Instant::now();
        loop {
            if let Ok(true) = ready().await {
                tracing::debug!(name, elapsed = ?started.elapsed(), "ready");
                return Ok(());
            }
            if let Some(process) = self.processes.iter_mut().find(|p| p.name() == name)
                && let Some(status) = process.exited()
            {
                bail!("{name} exited with {status}:\n{}", process.log_tail(30));
            }
            if started.elapsed() > START_TIMEOUT {
                let tail = self
                    .processes
                    .iter()
                    .find(|p| p.name() == name)
                    .map(|p| p.log_tail(30))
                    .unwrap_or_default();
                bail!("{name} not ready after {START_TIMEOUT:?}:\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse start order: the controller manager and API server go before etcd.
        while let Some(mut process) = self.processes.pop() {
            process.stop(Duration::from_secs(5));
        }
    }
}

/// Clouds read the issuer's discovery document and JWKS without credentials,
/// as they would a public AKS/EKS issuer.
async fn allow_anonymous_issuer_discovery(client: &Client) -> Result<()> {
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crb: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "wib-testenv:anonymous-issuer-discovery"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:service-account-issuer-discovery",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}],
    }))?;
    crbs.patch(
        "wib-testenv:anonymous-issuer-discovery",
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crb),
    )
    .await
    .context("granting anonymous issuer discovery")?;
    Ok(())
}

/// Applies wib's CRDs (from the Rust types) and waits until they are established.
pub async fn install_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        wib_api::WorkloadIdentityBinding::crd(),
        wib_api::ClusterIdentityProvider::crd(),
    ] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not established"))??;
    }
    Ok(())
}
