//! `make bench`: many bindings against the local control plane and the cloud
//! fakes. Reports time until all are Ready, cloud calls per binding, writes
//! in a steady state, and the operator's memory, as a Markdown table.
//!   wib-bench [bindings per cloud, default 30]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wib_api::conditions::READY;
use wib_e2e::{Env, provider_yaml};

const NS: &str = "bench";

fn binding(cloud: &str, i: usize) -> String {
    let spec = match cloud {
        "azure" => {
            "azure:\n    roleAssignments:\n      - role: Reader\n        scope: /subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps\n"
        }
        "aws" => "aws:\n    managedPolicyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n",
        _ => "gcp:\n    roles:\n      - role: roles/storage.objectViewer\n",
    };
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {cloud}-{i}\n  namespace: {NS}\nspec:\n  {spec}"
    )
}

/// wib's calls to one cloud so far, split into (reads, writes).
fn calls(metrics: &str, cloud: &str) -> (u64, u64) {
    wib_e2e::cloud_calls(metrics, cloud).into_iter().fold(
        (0, 0),
        |(reads, writes), (operation, n)| {
            if wib_cloud::calls::is_write(&operation) {
                (reads, writes + n)
            } else {
                (reads + n, writes)
            }
        },
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> Result<()> {
    let per_cloud: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("bindings per cloud")?
        .unwrap_or(30);
    // A resync every 20 s (production default: 600 s) keeps the steady
    // state's reads within the client-side rate limits while showing several
    // resyncs in the window.
    let resync = 20;
    let env = Env::start_with_resync(&resync.to_string()).await?;
    env.namespace(NS, &[]).await?;
    env.apply(&provider_yaml("default", true, None)).await?;
    let clouds = ["azure", "aws", "gcp"];
    let started = Instant::now();
    let manifests: Vec<String> = (0..per_cloud)
        .flat_map(|i| clouds.iter().map(move |c| binding(c, i)))
        .collect();
    env.apply(&manifests.join("---\n")).await?;
    let total = manifests.len();
    let deadline = Instant::now() + Duration::from_secs(900);
    let ready_after = loop {
        let list = env.bindings(NS).list(&Default::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|b| {
                wib_e2e::condition(b, READY).is_some_and(|c| {
                    c.status == "True" && c.observed_generation == b.metadata.generation
                })
            })
            .count();
        if ready == total {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {total} bindings Ready after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settled = env.metrics().await?;
    // A steady state: two resyncs of every binding.
    let window = Duration::from_secs(2 * resync);
    tokio::time::sleep(window).await;
    let steady = env.metrics().await?;
    let rss = env.operator().pid().and_then(rss_kib).unwrap_or_default();

    println!("| bindings | time to all Ready | operator RSS |");
    println!("|---|---|---|");
    println!(
        "| {total} ({per_cloud} per cloud) | {:.1} s | {} MiB |",
        ready_after.as_secs_f64(),
        rss / 1024
    );
    println!();
    println!(
        "| cloud | calls per binding to Ready (reads / writes) | writes in {} s of steady state | reads per binding per resync |",
        window.as_secs()
    );
    println!("|---|---|---|---|");
    for cloud in clouds {
        let (reads, writes) = calls(&settled, cloud);
        let (later_reads, later_writes) = calls(&steady, cloud);
        let resyncs = window.as_secs_f64() / resync as f64;
        println!(
            "| {cloud} | {:.1} / {:.1} | {} | {:.1} |",
            reads as f64 / per_cloud as f64,
            writes as f64 / per_cloud as f64,
            later_writes - writes,
            (later_reads - reads) as f64 / per_cloud as f64 / resyncs
        );
    }
    Ok(())
}
