//! The operator's Prometheus endpoint after a run: controller-runtime's
//! reconcile metrics, wib's cloud call counters and latency, drift repairs
//! and bindings by Ready state, scraped as Prometheus would.

use wib_api::conditions::READY;
use wib_e2e::{Env, provider_yaml};

const NS: &str = "metered";

fn binding(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  aws:\n    managedPolicyArns: [{policy}]\n"
    )
}

/// The value of the sample whose name and labels start `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_endpoint_reports_reconciles_cloud_calls_drift_and_readiness() {
    let env = Env::start_aws().await.expect("env");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider_yaml("default", true, None))
        .await
        .expect("provider");
    env.apply(&binding("good", "arn:aws:iam::aws:policy/ReadOnlyAccess"))
        .await
        .expect("good");
    env.apply(&binding(
        "denied",
        "arn:aws:iam::aws:policy/AdministratorAccess",
    ))
    .await
    .expect("denied");
    env.wait_condition(NS, "good", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    env.wait_condition(NS, "denied", READY, "False", "PolicyNotAllowed")
        .await
        .expect("refused");
    // Drift, so the repair counter moves.
    env.iam()
        .detach_role_policy()
        .role_name(wib_cloud::aws::naming::role_name("e2e", NS, "good"))
        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
        .send()
        .await
        .expect("detach");
    let text = wib_e2e::poll_until(wib_e2e::WAIT, "a drift repair counted", async || {
        let text = env.metrics().await.map_err(|e| e.to_string())?;
        let repairs = sample(&text, r#"wib_drift_repairs_total{cloud="aws"}"#);
        if repairs.unwrap_or_default() >= 1.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
    .expect("drift repair");

    for (series, at_least) in [
        (
            r#"controller_runtime_reconcile_total{controller="workloadidentitybinding",result="success"}"#,
            2.0,
        ),
        (
            r#"controller_runtime_reconcile_total{controller="clusteridentityprovider",result="success"}"#,
            1.0,
        ),
        (
            r#"controller_runtime_reconcile_time_seconds_count{controller="workloadidentitybinding"}"#,
            2.0,
        ),
        (
            r#"wib_cloud_api_calls_total{cloud="aws",operation="CreateRole",result="success"}"#,
            1.0,
        ),
        (
            r#"wib_cloud_api_calls_total{cloud="aws",operation="AttachRolePolicy",result="success"}"#,
            2.0,
        ),
        (
            r#"wib_cloud_api_calls_total{cloud="aws",operation="GetRole",result="not_found"}"#,
            1.0,
        ),
        (
            r#"wib_cloud_api_call_duration_seconds_count{cloud="aws",operation="GetRole"}"#,
            2.0,
        ),
        (
            r#"wib_bindings{cloud="aws",ready="True",reason="Provisioned"}"#,
            1.0,
        ),
        (r#"wib_bindings{cloud="aws",ready="False",reason="#, 1.0),
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(value >= at_least, "{series} = {value}, want >= {at_least}");
    }
    // Declared even before the first error, so dashboards and alerts can rely on it.
    assert!(
        sample(
            &text,
            r#"controller_runtime_reconcile_errors_total{controller="workloadidentitybinding"}"#
        )
        .is_some(),
        "{text}"
    );
    // A refused binding made no IAM writes: one CreateRole in all.
    assert_eq!(
        sample(
            &text,
            r#"wib_cloud_api_calls_total{cloud="aws",operation="CreateRole",result="success"}"#
        ),
        Some(1.0)
    );
    // Every series the chart's alerts and dashboard query is one the
    // operator serves.
    for file in [
        "charts/wib/templates/prometheusrule.yaml",
        "charts/wib/dashboards/wib.json",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(file);
        let queries = std::fs::read_to_string(&path).expect("chart file");
        for name in metric_names(&queries) {
            assert!(
                text.lines().any(|l| l.starts_with(&name)),
                "{file} queries {name}, which /metrics does not serve:\n{text}"
            );
        }
    }
}

/// The metric names (wib's and controller-runtime's) a text queries.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("wib_") || word.starts_with("controller_runtime_"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn wibs_azure_call_counts_match_what_the_azure_fake_served() {
    let env = Env::start_azure().await.expect("env");
    env.namespace(NS, &[]).await.expect("namespace");
    env.apply(&provider_yaml("default", true, None))
        .await
        .expect("provider");
    env.apply(&format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: az\n  namespace: {NS}\nspec:\n  azure:\n    roleAssignments:\n      - role: Reader\n        scope: /subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps\n"
    ))
    .await
    .expect("binding");
    env.wait_condition(NS, "az", READY, "True", "Provisioned")
        .await
        .expect("Ready");
    env.delete_binding(NS, "az").await.expect("deleted");
    // Provider resyncs keep reading; compare when both sides are still.
    let counted = wib_e2e::poll_until(wib_e2e::WAIT, "wib's counts match the fake's", async || {
        let served = env.azure().calls().await.map_err(|e| e.to_string())?;
        // Token requests: the harness asks for tokens too (to arrange
        // tests), so only ARM's calls are compared.
        let mut counted =
            wib_e2e::cloud_calls(&env.metrics().await.map_err(|e| e.to_string())?, "azure");
        counted.remove("Token");
        let again = env.azure().calls().await.map_err(|e| e.to_string())?;
        let served_ops: std::collections::BTreeMap<String, u64> = served["operations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(op, _)| op.as_str() != "Token")
            .map(|(op, n)| (op.clone(), n.as_u64().unwrap_or_default()))
            .collect();
        match served == again && served_ops == counted {
            true => Ok(counted),
            false => Err(format!(
                "wib counted {counted:?}, the fake served {served_ops:?}"
            )),
        }
    })
    .await
    .expect("counts match");
    assert_eq!(
        counted.get("UserAssignedIdentities_CreateOrUpdate"),
        Some(&1),
        "{counted:?}"
    );
    assert_eq!(
        counted.get("RoleAssignments_Create"),
        Some(&1),
        "{counted:?}"
    );
}
