//! `make bench`: N bindings of one cloud against the local control plane and
//! that cloud's fake, measured the way a peer controller can be measured on
//! the same fake (see `wib_e2e::bench`). One run per cloud and size; each
//! starts a fresh control plane and fakes.
//!
//!   wib-bench [--clouds azure,aws,gcp] [--bindings 100,1000] [--resync 120]
//!             [--windows 3] [--quotas none|documented]
//!             [--calls-per-second N] [--markdown FILE [--section TITLE]]
//!
//! `--calls-per-second` sets the operator's `WIB_<CLOUD>_CALLS_PER_SECOND`
//! (its client-side rate for every class of call): with the fakes at zero
//! latency and no limits, what wib itself costs at a size whose documented
//! limits would make the run hours long.
//!
//! The AWS workload is the peer table's: one role per binding with a
//! web-identity trust policy and one attached customer-managed policy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use wib_api::conditions::READY;
use wib_e2e::bench::{self, HEADER, Row, Sample};
use wib_e2e::{Env, provider_yaml};

const NS: &str = "bench";

/// What the columns mean, under the table `--markdown` writes.
const LEGEND: &str = "
- *time to all Ready*: from the first `apply` until every binding reports `Ready=True` for its generation.
- *reads / writes per binding to Ready*: wib's cloud calls (its own metrics) over that time, divided by the bindings.
- *reads per binding per steady-state resync*: calls in the steady window divided by bindings and by resyncs in it; the fleet snapshot is read at most every half resync.
- *Kubernetes objects rewritten*: bindings and ServiceAccounts whose resourceVersion moved during the steady window.
- *fake limits*: `documented` when the Azure and GCP fakes enforced the clouds' documented rate limits; `none` at zero latency and no limit, where `wib at N/s` says wib's own client-side rate was set to N (`WIB_<CLOUD>_CALLS_PER_SECOND`) instead of its documented defaults.
- *429s*: throttling answers wib's metrics saw, and the ones the fake served (`n/a` for moto, which enforces no limit).
- *re-verify after restart*: from restarting the operator until it has reconciled every binding once, and the cloud reads that took per binding.
- *API-server requests*: the operator's requests by verb (the API server's audit log, by its user agent), per binding until all were Ready, and per binding per resync in the steady window.
- GCP grants each thousand bindings' role on a project of its own: GCP allows 1,500 principals in one allow policy (the fake enforces it), so 10,000 bindings cannot share one project's.
- AWS runs the peer table's workload (one role per binding, a web-identity trust policy, one customer-managed policy attached).
";
const POLICY: &str = "bench-policy";

struct Options {
    clouds: Vec<String>,
    sizes: Vec<usize>,
    resync: u64,
    windows: u32,
    quotas: String,
    calls_per_second: Option<u32>,
    markdown: Option<std::path::PathBuf>,
    /// The part of the `--markdown` file this invocation writes.
    section: String,
}

fn options() -> Result<Options> {
    let mut options = Options {
        clouds: vec!["azure".into(), "aws".into(), "gcp".into()],
        sizes: vec![100],
        resync: 120,
        windows: 3,
        quotas: "none".into(),
        calls_per_second: None,
        markdown: None,
        section: "wib-bench".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--clouds" => options.clouds = value.split(',').map(str::to_string).collect(),
            "--bindings" => {
                options.sizes = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--bindings")?
            }
            "--resync" => options.resync = value.parse().context("--resync")?,
            "--windows" => options.windows = value.parse().context("--windows")?,
            "--quotas" => options.quotas = value,
            "--calls-per-second" => {
                options.calls_per_second = Some(value.parse().context("--calls-per-second")?)
            }
            "--markdown" => options.markdown = Some(value.into()),
            "--section" => options.section = value,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(options)
}

/// GCP allows 1,500 principals in one allow policy: each thousand GCP
/// bindings are granted their role on a project of their own, as a
/// platform of that size must spread them.
const GCP_BINDINGS_PER_PROJECT: usize = 1000;

fn gcp_project(i: usize) -> String {
    match i / GCP_BINDINGS_PER_PROJECT {
        0 => wib_e2e::GCP_PROJECT.to_string(),
        k => format!("wib-bench-{k}"),
    }
}

/// The e2e provider, allowing grants on every project the GCP bindings of
/// a run of `n` use.
async fn provider(env: &Env, n: usize) -> Result<String> {
    let mut scopes = String::new();
    for k in 1..n.div_ceil(GCP_BINDINGS_PER_PROJECT) {
        let project = gcp_project(k * GCP_BINDINGS_PER_PROJECT);
        env.gcp().add_project(&project).await?;
        scopes.push_str(&format!("    - projects/{project}\n"));
    }
    let base = format!("    - projects/{}\n", wib_e2e::GCP_PROJECT);
    Ok(provider_yaml("default", true, None).replace(&base, &format!("{base}{scopes}")))
}

fn binding(cloud: &str, i: usize, policy_arn: &str) -> String {
    let spec = match cloud {
        "azure" => "azure:\n    roleAssignments:\n      - role: Reader\n        scope: /subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps\n".to_string(),
        "aws" => format!("aws:\n    managedPolicyArns: [{policy_arn}]\n"),
        _ => format!(
            "gcp:\n    roles:\n      - role: roles/storage.objectViewer\n        resource: projects/{}\n",
            gcp_project(i)
        ),
    };
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {cloud}-{i}\n  namespace: {NS}\nspec:\n  {spec}"
    )
}

/// The fake's own count of 429s, and asks it to enforce the documented
/// limits when `quotas` says so. moto enforces none.
async fn fake_admin(env: &Env, cloud: &str, quotas: &str) -> Result<Option<String>> {
    let url = match cloud {
        "azure" => env.azure().url.clone(),
        "gcp" => env.gcp().url.clone(),
        _ => return Ok(None),
    };
    if quotas == "documented" {
        reqwest::Client::new()
            .post(format!("{url}/admin/quotas/documented"))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(Some(url))
}

async fn fake_throttled(url: &Option<String>) -> Result<Option<u64>> {
    let Some(url) = url else { return Ok(None) };
    let calls: serde_json::Value = reqwest::get(format!("{url}/admin/calls"))
        .await?
        .json()
        .await?;
    Ok(calls["throttled"].as_u64())
}

async fn ready_count(env: &Env) -> Result<usize> {
    let list = env.bindings(NS).list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|b| {
            wib_e2e::condition(b, READY).is_some_and(|c| {
                c.status == "True" && c.observed_generation == b.metadata.generation
            })
        })
        .count())
}

/// Bindings and ServiceAccounts of the namespace, by kind/name.
async fn snapshot(env: &Env) -> Result<std::collections::BTreeMap<String, String>> {
    let bindings = env.bindings(NS).list(&ListParams::default()).await?;
    let accounts = Api::<ServiceAccount>::namespaced(env.admin.client.clone(), NS)
        .list(&ListParams::default())
        .await?;
    let names: Vec<(String, Option<String>)> = bindings
        .items
        .iter()
        .map(|b| (format!("wib/{}", b.name_any()), b.resource_version()))
        .chain(
            accounts
                .items
                .iter()
                .map(|s| (format!("sa/{}", s.name_any()), s.resource_version())),
        )
        .collect();
    Ok(bench::versions(
        names.iter().map(|(n, rv)| (n.as_str(), rv.as_deref())),
    ))
}

/// Listing thousands of bindings competes with the operator for the same
/// cores: once a second at most, and less often the more there are.
async fn pause(progress: String, n: usize) -> String {
    tokio::time::sleep(Duration::from_secs(1 + (n / 2000) as u64)).await;
    progress
}

fn reconciles(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("controller_runtime_reconcile_total{")
                && l.contains("controller=\"workloadidentitybinding\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn run(options: &Options, cloud: &str, n: usize) -> Result<Row> {
    let operator_env = options
        .calls_per_second
        .map(|rate| {
            let key = format!("WIB_{}_CALLS_PER_SECOND", cloud.to_ascii_uppercase());
            (key, rate.to_string())
        })
        .into_iter()
        .collect();
    let mut env = Env::start_for_benchmark(&options.resync.to_string(), operator_env).await?;
    let fake = fake_admin(&env, cloud, &options.quotas).await?;
    env.namespace(NS, &[]).await?;
    env.apply(&provider(&env, n).await?).await?;
    let policy_arn = match cloud {
        "aws" => env
            .iam()
            .create_policy()
            .policy_name(POLICY)
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#)
            .send()
            .await?
            .policy()
            .and_then(|p| p.arn())
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    let pid = env.operator().pid();
    let audit = env.audit_log();
    let audit_from = |from| audit.as_ref().map(|log| bench::requests_by_verb(log, from));
    let (_, audit_start) = audit_from(0).unwrap_or_default();
    // The operator serves metrics a moment after it starts (longer under a
    // profiler).
    let metrics = wib_e2e::poll_until(Duration::from_secs(120), "operator metrics", async || {
        env.metrics().await.map_err(|e| e.to_string())
    })
    .await?;
    let start = Sample::take(&metrics, cloud, pid);
    let started = Instant::now();
    let manifests: Vec<String> = (0..n).map(|i| binding(cloud, i, &policy_arn)).collect();
    env.apply(&manifests.join("---\n")).await?;
    let to_ready = wib_e2e::poll_until(
        Duration::from_secs(3600),
        "every binding Ready",
        async || match ready_count(&env).await {
            Ok(ready) if ready == n => Ok(started.elapsed()),
            Ok(ready) => Err(pause(format!("{ready} of {n} Ready"), n).await),
            Err(e) => Err(e.to_string()),
        },
    )
    .await?;
    let ready_sample = Sample::take(&env.metrics().await?, cloud, pid);
    let rss_at_ready_mib = pid.and_then(bench::rss_mib).unwrap_or_default();
    let api_to_ready = audit_from(audit_start);
    let before = snapshot(&env).await?;
    tokio::time::sleep(Duration::from_secs(options.resync) * options.windows).await;
    let steady_sample = Sample::take(&env.metrics().await?, cloud, pid);
    let rewritten = bench::changed(&before, &snapshot(&env).await?);
    let rss_steady_mib = pid.and_then(bench::rss_mib).unwrap_or_default();
    let fake_throttled = fake_throttled(&fake).await?;
    let api_steady = api_to_ready
        .as_ref()
        .and_then(|(_, ready_end)| audit_from(*ready_end));

    // A restart: every binding is verified again, from a cold cache.
    env.operator_mut().restart()?;
    let restarted = Instant::now();
    let reverify = wib_e2e::poll_until(
        Duration::from_secs(3600),
        "every binding reconciled after the restart",
        async || {
            let metrics = env.metrics().await.map_err(|e| e.to_string())?;
            match reconciles(&metrics) as usize {
                done if done >= n => Ok((restarted.elapsed(), metrics)),
                done => Err(pause(format!("{done} of {n} reconciled"), 0).await),
            }
        },
    )
    .await?;
    let reverify_reads = Sample::take(&reverify.1, cloud, None).reads;
    Ok(Row {
        cloud: cloud.into(),
        bindings: n,
        quotas: options.quotas.clone(),
        wib_rate: options.calls_per_second,
        to_ready,
        at_ready: ready_sample.since(&start),
        steady: steady_sample.since(&ready_sample),
        resync: Duration::from_secs(options.resync),
        windows: options.windows,
        rewritten,
        fake_throttled,
        rss_at_ready_mib,
        rss_steady_mib,
        reverify: Some(reverify.0),
        reverify_reads,
        api_to_ready: api_to_ready.map(|(verbs, _)| verbs),
        api_steady: api_steady.map(|(verbs, _)| verbs),
    })
}

/// This invocation's section of the report, as the rows so far say:
/// rewritten after each run, so a long benchmark interrupted keeps what it
/// measured; the file's other sections (other invocations) are kept.
fn write_markdown(path: &std::path::Path, options: &Options, rows: &[Row]) -> Result<()> {
    // Quoted where a shell would split it, so the line reruns as written.
    let command: Vec<String> = std::env::args()
        .skip(1)
        .map(|arg| match arg.contains([' ', '\'', '"']) {
            true => format!("'{}'", arg.replace('\'', r"'\''")),
            false => arg,
        })
        .collect();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut body = format!(
        "## {}\n\n`wib-bench {}` ({profile} build, run by `make bench`) on {}, {}; local control plane (kube-apiserver + etcd from the pinned Go modules), the Azure and GCP fakes, moto. Resync {} s, steady state measured over {} resyncs.\n\n{HEADER}\n",
        options.section,
        command.join(" "),
        bench::machine(),
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d"),
        options.resync,
        options.windows,
    );
    for row in rows {
        body.push_str(&row.markdown());
        body.push('\n');
    }
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let out = bench::merge_section(&existing, &options.section, &body, "# Benchmarks", LEGEND);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options()?;
    let mut rows = Vec::new();
    println!("{HEADER}");
    for &n in &options.sizes {
        for cloud in &options.clouds {
            let row = run(&options, cloud, n).await?;
            println!("{}", row.markdown());
            rows.push(row);
            if let Some(path) = &options.markdown {
                write_markdown(path, &options, &rows)?;
            }
        }
    }
    Ok(())
}
