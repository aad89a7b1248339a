//! The local control plane is real: real binaries, real TLS, an issuer anyone
//! can read, the controller manager's controllers, and nothing left behind.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use wib_api::WorkloadIdentityBinding;
use wib_testenv::{ControlPlane, Options, process};

#[tokio::test]
async fn control_plane_serves_an_anonymous_https_issuer_and_runs_the_controllers() {
    let started = Instant::now();
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane starts");
    eprintln!("control plane started in {:?}", started.elapsed());

    // kubectl and the API server report the pinned release, not v0.0.0-master.
    let out = cp
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .expect("kubectl runs");
    let version: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("kubectl version json");
    assert_eq!(
        version["serverVersion"]["gitVersion"], "v1.37.2",
        "{version}"
    );
    assert_eq!(
        version["clientVersion"]["gitVersion"], "v1.37.2",
        "{version}"
    );

    // A client with only the CA, no credentials, reads discovery and JWKS, as a cloud would.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cp.ca_pem().as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let discovery: serde_json::Value = anonymous
        .get(format!("{}/.well-known/openid-configuration", cp.issuer()))
        .send()
        .await
        .expect("discovery answers")
        .error_for_status()
        .expect("discovery is public")
        .json()
        .await
        .expect("discovery json");
    assert_eq!(discovery["issuer"], cp.issuer());
    assert!(cp.issuer().starts_with("https://127.0.0.1:"));
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    let jwks: serde_json::Value = anonymous
        .get(jwks_uri)
        .send()
        .await
        .expect("jwks answers")
        .error_for_status()
        .expect("jwks is public")
        .json()
        .await
        .expect("jwks json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");

    // Anonymous users get nothing else.
    let forbidden = anonymous
        .get(format!("{}/api/v1/namespaces", cp.server()))
        .send()
        .await
        .expect("answers");
    assert_eq!(forbidden.status(), reqwest::StatusCode::FORBIDDEN);

    let client = cp.client().await.expect("admin client");
    // CRDs are installed and served.
    let bindings: Api<WorkloadIdentityBinding> = Api::all(client.clone());
    assert!(
        bindings
            .list(&Default::default())
            .await
            .expect("list bindings")
            .items
            .is_empty()
    );

    // The serviceaccount controller fills a new namespace with `default`.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "probe"}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "probe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sas.get_opt("default").await.expect("get").is_none() {
        assert!(
            Instant::now() < deadline,
            "serviceaccount controller never created default"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn dropping_the_control_plane_stops_every_process_and_removes_its_directory_even_on_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = std::sync::mpsc::channel();
    // The panic unwinds through the control plane on this same, still living
    // thread, so only Drop can stop the processes (not the parent-death signal).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            let cp = ControlPlane::start(Options::default())
                .await
                .expect("control plane starts");
            tx.send((cp.pids(), cp.dir().to_path_buf())).expect("send");
            panic!("a failing test");
        })
    }));
    assert!(result.is_err(), "the test body panicked");
    drop(tx);
    let (pids, dir) = rx
        .recv()
        .expect("control plane started and reported its pids");
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    for pid in pids {
        assert!(!process::is_alive(pid), "process {pid} survived the panic");
    }
    assert!(!dir.exists(), "{} survived the panic", dir.display());
}
