//! A restart under load changes nothing: the operator comes back to 50
//! Ready bindings, waits for its caches, and neither flips a condition nor
//! writes to the cloud.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher;
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::READY;
use wib_e2e::{Env, condition, provider_yaml};

const NS: &str = "many";
const BINDINGS: usize = 50;

fn binding(i: usize) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: app-{i}\n  namespace: {NS}\nspec:\n  gcp: {{}}\n"
    )
}

/// Each binding's name and when its Ready condition last changed.
async fn ready_since(env: &Env) -> Vec<(Option<String>, Option<Time>)> {
    env.bindings(NS)
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|b| {
            (
                b.metadata.name.clone(),
                condition(&b, READY).map(|c| c.last_transition_time.clone()),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_restart_under_fifty_ready_bindings_flips_no_condition_and_writes_nothing() {
    let mut env = Env::start_gcp().await.expect("env");
    // Provisioning 50 accounts at the default 8 calls/s would only slow the
    // test; the restart is what is measured.
    env.operator_mut()
        .restart_with_env("WIB_GCP_CALLS_PER_SECOND", "200")
        .expect("restart");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider_yaml("default", true, None))
        .await
        .expect("provider");
    for i in 0..BINDINGS {
        env.apply(&binding(i)).await.expect("binding");
    }
    for i in 0..BINDINGS {
        env.wait_condition(NS, &format!("app-{i}"), READY, "True", "Provisioned")
            .await
            .expect("Ready");
    }

    // Everything the API server says about the bindings from now on.
    let flips = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = flips.clone();
    let api = env.bindings(NS);
    let watch = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            let objects: Vec<WorkloadIdentityBinding> = match event {
                watcher::Event::Apply(b) | watcher::Event::InitApply(b) => vec![b],
                _ => Vec::new(),
            };
            for b in objects {
                if let Some(ready) = condition(&b, READY)
                    && ready.status != "True"
                {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                        "{}: {} {}",
                        b.metadata.name.clone().unwrap_or_default(),
                        ready.reason,
                        ready.message
                    ));
                }
            }
        }
    });
    let before = ready_since(&env).await;
    let writes_before = env.gcp().calls().await.expect("calls")["writes"].clone();

    env.operator_mut().kill();
    env.operator_mut().restart().expect("restart");
    // Until the new process has reconciled every binding (its metrics start
    // at zero), at least twice over with the suite's 2 s resync.
    wib_e2e::poll_until(
        wib_e2e::WAIT,
        "every binding reconciled twice",
        async || {
            let done = env
                .metric_sum(
                    "controller_runtime_reconcile_total",
                    &[
                        r#"controller="workloadidentitybinding""#,
                        r#"result="success""#,
                    ],
                )
                .await
                .unwrap_or_default();
            match done >= (2 * BINDINGS) as f64 {
                true => Ok(()),
                false => Err(format!("reconciled {done}")),
            }
        },
    )
    .await
    .expect("reconciled");
    watch.abort();

    let flips = flips.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(flips.is_empty(), "Ready left True: {flips:#?}");
    let calls = env.gcp().calls().await.expect("calls");
    assert_eq!(
        calls["writes"], writes_before,
        "cloud writes after the restart: {calls}"
    );
    let after = ready_since(&env).await;
    assert_eq!(before, after, "no condition moved");
}
