//! Two replicas, one Lease: only the holder reconciles; when it is killed the
//! standby takes over once the lease expires and finishes pending work; a
//! graceful stop releases the lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use wib_api::conditions::SERVICE_ACCOUNT_READY;
use wib_e2e::{WAIT, provider_yaml};
use wib_testenv::gcp::GcpFake;
use wib_testenv::{ControlPlane, Operator, Options};

const LEASE_SECONDS: i64 = 4;

fn binding(name: &str) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  gcp: {{}}\n"
    )
}

fn replica(cp: &ControlPlane, gcp: &GcpFake, name: &str) -> Operator {
    let dir = cp.dir().join(name);
    let mut envs: Vec<(&str, &str)> = gcp
        .operator_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    envs.push(("POD_NAME", name));
    std::fs::create_dir_all(&dir).expect("log dir");
    Operator::start(
        cp.kubeconfig(),
        &dir,
        &[
            "--leader-elect",
            "--lease-namespace=wib-system",
            &format!("--lease-duration-seconds={LEASE_SECONDS}"),
            "--lease-renew-deadline-seconds=3",
            "--lease-retry-seconds=1",
            "--resync-seconds=2",
            "--metrics-addr=127.0.0.1:0",
        ],
        &envs,
    )
    .expect("replica starts")
}

fn reconciles(operator: &Operator, binding: &str) -> usize {
    operator
        .logs()
        .lines()
        .filter(|l| l.contains("reconciled") && l.contains(&format!("name={binding}")))
        .count()
}

async fn holder(leases: &Api<Lease>) -> Option<Lease> {
    leases.get_opt("wib-controller").await.expect("get lease")
}

async fn wait_holder(leases: &Api<Lease>, want: Option<&str>) -> Lease {
    let what = format!("the lease held by {want:?}");
    wib_e2e::poll_until(WAIT, &what, async || {
        let lease = holder(leases).await;
        let held_by = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref()?.holder_identity.clone());
        match lease {
            Some(lease) if held_by.as_deref() == want => Ok(lease),
            _ => Err(format!("held by {held_by:?}")),
        }
    })
    .await
    .expect("lease")
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over_when_it_dies() {
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    // The bindings are GCP's; both replicas reach the GCP fake.
    let gcp = GcpFake::start(&cp, wib_e2e::GCP_PROJECT)
        .await
        .expect("GCP fake");
    let env = wib_e2e::Admin::new(&cp).await.expect("admin");
    env.namespace("wib-system", &[]).await.expect("ns");
    env.namespace("apps", &[]).await.expect("ns");
    env.apply(&provider_yaml("default", true, None))
        .await
        .expect("provider");
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "wib-system");

    let mut a = replica(&cp, &gcp, "replica-a");
    wait_holder(&leases, Some("replica-a")).await;
    let b = replica(&cp, &gcp, "replica-b");
    tokio::time::sleep(Duration::from_secs(2)).await;

    env.apply(&binding("first")).await.expect("binding");
    env.wait_condition("apps", "first", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("reconciled");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        reconciles(&a, "first") >= 1,
        "the leader reconciles:\n{}",
        a.logs()
    );
    assert_eq!(
        reconciles(&b, "first"),
        0,
        "the standby does not:\n{}",
        b.logs()
    );

    // The leader dies without releasing; work queued meanwhile waits for the standby.
    let before = holder(&leases).await.expect("lease");
    a.kill();
    env.apply(&binding("second")).await.expect("binding");
    let after = wait_holder(&leases, Some("replica-b")).await;
    env.wait_condition("apps", "second", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("standby finished the work");
    // The status is visible before the reconcile's closing log line is
    // written: give the log a moment.
    wib_e2e::poll_until(
        Duration::from_secs(5),
        "the second replica reconciles",
        async || match reconciles(&b, "second") {
            0 => Err(b.logs()),
            _ => Ok(()),
        },
    )
    .await
    .expect("reconciled by the second replica");

    // Taken over within the lease duration (plus one retry), by the lease's own clock.
    let last_renewal = before
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.clone())
        .expect("renewTime")
        .0;
    let acquired = after
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.clone())
        .expect("acquireTime")
        .0;
    let gap = acquired.as_second() - last_renewal.as_second();
    assert!(
        gap <= LEASE_SECONDS + 2,
        "takeover {gap}s after the last renewal"
    );
    assert_eq!(
        after.spec.as_ref().and_then(|s| s.lease_transitions),
        Some(1)
    );

    // A graceful stop hands the lease back.
    let mut b = b;
    b.stop();
    wait_holder(&leases, None).await;
}
