//! `kubectl wib status`: one line per binding.

use std::io::Write;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use wib_api::WorkloadIdentityBinding;
use wib_api::conditions::{self, READY};

pub async fn run(
    client: &kube::Client,
    namespace: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let api: Api<WorkloadIdentityBinding> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut bindings = api.list(&ListParams::default()).await?.items;
    bindings.sort_by_key(|b| (b.namespace(), b.name_any()));
    let rows: Vec<[String; 8]> = bindings.iter().map(row).collect();
    let header = [
        "NAMESPACE",
        "NAME",
        "SERVICEACCOUNT",
        "CLOUD",
        "IDENTITY",
        "READY",
        "REASON",
        "PODS-TO-RESTART",
    ]
    .map(str::to_string);
    table(out, &header, &rows)?;
    if bindings.is_empty() {
        writeln!(out, "no WorkloadIdentityBindings")?;
    }
    Ok(())
}

fn row(binding: &WorkloadIdentityBinding) -> [String; 8] {
    let status = binding.status.clone().unwrap_or_default();
    let ready = conditions::find(&status.conditions, READY);
    [
        binding.namespace().unwrap_or_default(),
        binding.name_any(),
        binding.service_account_name(),
        binding
            .spec
            .cloud()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        status.identity.clone().unwrap_or_else(|| "-".into()),
        ready.map_or("Unknown".into(), |c| c.status.clone()),
        ready.map_or("-".into(), |c| c.reason.clone()),
        status
            .pods_needing_restart
            .map_or("-".into(), |n| n.to_string()),
    ]
}

/// Columns padded to their widest cell, as kubectl prints.
pub fn table<const N: usize>(
    out: &mut impl Write,
    header: &[String; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.each_ref().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}
