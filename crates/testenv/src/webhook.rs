//! The operator's pod webhook as the harness runs it: out of cluster, so
//! registered with the API server by URL, the certificate naming the
//! loopback address, and pods told the local fakes' endpoints.

use serde_json::{Value, json};

/// The webhook configuration's name (as the chart's).
pub const CONFIGURATION: &str = "wib";

/// The operator's environment for the webhook: its certificate's name, a
/// quick re-check, and the endpoints pods are given.
pub fn operator_env(azure_url: Option<&str>, gcp_url: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("WIB_WEBHOOK_NAMES".to_string(), "127.0.0.1".to_string()),
        ("WIB_WEBHOOK_CERT_CHECK_SECONDS".into(), "3".into()),
        ("WIB_AWS_REGION".into(), crate::moto::REGION.into()),
    ];
    if let Some(azure) = azure_url {
        env.push(("WIB_AZURE_AUTHORITY_HOST".into(), azure.to_string()));
    }
    if let Some(gcp) = gcp_url {
        env.push(("WIB_GCP_STS_URL".into(), format!("{gcp}/v1/token")));
        env.push(("WIB_GCP_IAM_CREDENTIALS_URL".into(), gcp.to_string()));
    }
    env
}

/// The chart's two webhooks, by URL: pods labelled `wib.dev/inject` or
/// azure-workload-identity's `azure.workload.identity/use`, outside
/// `kube-system` and wib's namespace, failing closed.
pub fn configuration(url: &str) -> Value {
    let webhook = |name: &str, label: &str| {
        json!({
            "name": name,
            "clientConfig": {"url": url},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "objectSelector": {"matchLabels": {label: "true"}},
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                "operator": "NotIn", "values": ["kube-system", crate::fakes::OPERATOR_NAMESPACE]}]},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "reinvocationPolicy": "IfNeeded",
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [
            webhook("pods.wib.dev", "wib.dev/inject"),
            webhook("azure-pods.wib.dev", "azure.workload.identity/use"),
        ],
    })
}
