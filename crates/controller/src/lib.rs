//! The wib operator.
//!
//! - [`reconcile`]: the WorkloadIdentityBinding controller, one module per
//!   step (observe, plan, execute, status).
//! - [`provider`]: the ClusterIdentityProvider controller and provider resolution.
//! - [`serviceaccount`]: what a binding applies to its ServiceAccount.
//! - [`webhook`]: the pod side, injecting what pods need to use them.

pub mod context;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod provider;
pub mod publish;
pub mod reconcile;
pub mod selector;
pub mod server;
pub mod serviceaccount;
pub mod settings;
pub mod telemetry;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::FutureExt;
use kube::{Client, Config};

pub use settings::Settings;

/// What the operator calls itself to the API server.
pub const USER_AGENT: &str = concat!("wib-controller/", env!("CARGO_PKG_VERSION"));

/// Runs both controllers and the metrics/probe server until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut config = Config::infer()
        .await
        .context("loading Kubernetes client configuration")?;
    let mut extra_roots = Vec::new();
    for der in config.root_cert.iter().flatten() {
        extra_roots.push(reqwest::Certificate::from_der(der)?);
    }
    if let Some(path) = &settings.issuer_ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        extra_roots.extend(reqwest::Certificate::from_pem_bundle(&pem)?);
    }
    let issuer_http = provider::issuer::anonymous_client(extra_roots)?;
    // The API server's audit log, its metrics and priority-and-fairness
    // name the client by its user agent, which kube sets none of.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    let client = Client::try_from(config)?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);

    let controllers = reconcile::triggers::controllers(client.clone(), settings.tracks_pods());
    registry.register_collector(Box::new(metrics::BindingsByReady(
        controllers.binding_store.clone(),
    )));
    let ctx = context::Context::new(
        client,
        settings.clone(),
        wib_cloud::Registry::with_defaults(
            std::sync::Arc::new(metrics.clone()),
            settings.resync() / 2,
        )
        .await,
        issuer_http,
        &controllers,
        metrics,
    );
    let reconcile::triggers::Controllers {
        bindings,
        providers,
        ..
    } = controllers;

    // One stop signal for everything: SIGTERM/Ctrl-C, or lost leadership.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
        .shared()
    };
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
    }
    let ready = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn(server::serve(
        settings.metrics_addr,
        registry,
        ready.clone(),
        shutdown.clone(),
    ));

    // Every replica admits pods, leader or standby.
    let webhook = {
        let serving = webhook::serve(
            ctx.client.clone(),
            settings.webhook.clone(),
            settings.lease_namespace.clone(),
            ctx.metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            // Said at once, not at shutdown: pods that opted in are refused
            // while no replica serves.
            let served = serving.await;
            if let Err(error) = &served {
                tracing::error!(error = format!("{error:#}"), "the pod webhook stopped");
            }
            served
        })
    };

    let election = settings.leader_elect.then(|| {
        leader::LeaderElection::new(
            ctx.client.clone(),
            &settings.lease_namespace,
            &settings.lease_name,
            &Settings::identity(),
            settings.lease_timing(),
        )
    });
    let lost = Arc::new(AtomicBool::new(false));
    if let Some(election) = &election {
        // A standby replica is healthy and ready to take over.
        ready.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = election.acquire() => {}
            _ = shutdown.clone() => {
                tracing::info!("stopped before becoming leader");
                return Ok(());
            }
        }
    }
    let holding = election.map(|election| {
        let (stop, lost) = (stop.clone(), lost.clone());
        let election = Arc::new(election);
        let holder = election.clone();
        let task = tokio::spawn(async move {
            holder.hold().await;
            lost.store(true, Ordering::Relaxed);
            let _ = stop.send(true);
        });
        (election, task)
    });

    let readiness = {
        let (providers, bindings) = (ctx.providers.clone(), ctx.bindings.clone());
        let namespaces = ctx.namespaces.clone();
        let (ready, ctx) = (ready.clone(), ctx.clone());
        async move {
            if providers.wait_until_ready().await.is_ok()
                && bindings.wait_until_ready().await.is_ok()
                && namespaces.wait_until_ready().await.is_ok()
            {
                ctx.mark_caches_synced();
                ready.store(true, Ordering::Relaxed);
                tracing::info!("caches synced; ready");
            }
        }
    };
    tracing::info!(resync = ?settings.resync(), "starting wib-controller");
    tokio::join!(
        provider::run(providers, ctx.clone(), shutdown.clone()),
        reconcile::run(bindings, ctx.clone(), shutdown.clone()),
        readiness,
    );
    if let Some((election, task)) = holding {
        task.abort();
        if lost.load(Ordering::Relaxed) {
            anyhow::bail!("lost leadership; exiting so a fresh replica can stand for election");
        }
        election.release().await;
    }
    let _ = stop.send(true);
    server.await??;
    webhook.await??;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
