//! Installing wib: the Helm chart lints and renders, `config/` (kustomize) is
//! the chart's install, both apply cleanly (server-side dry run) to a real API
//! server, and the operator works with exactly the chart's RBAC and nothing
//! more — proved by running it through the Azure happy path as the chart's
//! ServiceAccount and by `kubectl auth can-i`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::Duration;

use kube::Api;
use serde_json::{Value, json};
use wib_api::conditions::READY;
use wib_testenv::azure::{AZURE_TENANT, AzureFake};
use wib_testenv::{ControlPlane, Operator, Options};

const NS: &str = "wib-system";
const SA: &str = "wib-controller";

fn root() -> PathBuf {
    wib_testenv::binaries::repo_root()
}

fn helm() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("e2e/helm/build.sh"))
        .output()
        .expect("e2e/helm/build.sh runs");
    assert!(
        out.status.success(),
        "building helm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_template(extra: &[&str]) -> Command {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "wib"])
        .arg(root().join("charts/wib"))
        .args(["--namespace", NS])
        .args(extra);
    cmd
}

/// Every object of a multi-document YAML stream, as JSON.
fn objects(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// The documents of a rendered chart whose object is of one of `kinds`.
fn documents_of_kinds(rendered: &str, kinds: &[&str]) -> Vec<String> {
    rendered
        .split("\n---")
        .filter(|doc| {
            objects(doc)
                .first()
                .is_some_and(|o| kinds.contains(&o["kind"].as_str().unwrap_or_default()))
        })
        .map(str::to_string)
        .collect()
}

fn key(o: &Value) -> (String, String) {
    (
        o["kind"].as_str().unwrap_or_default().to_string(),
        o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| key(o) == (kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

#[test]
fn chart_lints_renders_secure_defaults_and_config_is_the_same_install() {
    run(
        {
            let mut c = Command::new(helm());
            c.args(["lint", "--strict"]).arg(root().join("charts/wib"));
            c
        },
        "helm lint",
    );
    let rendered = objects(&run(helm_template(&["--include-crds"]), "helm template"));

    // CRDs are the generated ones, byte for byte in charts/wib/crds.
    let crds: Vec<_> = rendered
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 2);

    // Hardened pod: non-root, read-only root, RuntimeDefault seccomp, no
    // capabilities, resources, probes on /healthz and /readyz.
    let deployment = find(&rendered, "Deployment", "wib-controller");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        container["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--leader-elect"))
    );
    assert_eq!(pod["serviceAccountName"], SA);
    find(&rendered, "PodDisruptionBudget", "wib-controller");

    // Least privilege in the ClusterRole: no Secrets, no token minting, no wildcards.
    let rules = find(&rendered, "ClusterRole", "wib-controller")["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for rule in &rules {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(!resources.contains(&"secrets"), "{rule}");
        assert!(!resources.contains(&"serviceaccounts/token"), "{rule}");
        assert!(!resources.contains(&"*"), "{rule}");
        assert!(
            !rule["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "*")),
            "{rule}"
        );
    }
    // Leases only in its own namespace.
    assert_eq!(
        find(&rendered, "Role", "wib-leader-election")["metadata"]["namespace"],
        NS
    );

    // The pod webhook: pods only, on create, opted in by label, never in
    // kube-system or wib's namespace; fail closed for those pods only; the
    // certificate Secret readable and renewable by its name alone.
    let webhooks = find(&rendered, "MutatingWebhookConfiguration", "wib")["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let labels: Vec<&Value> = webhooks
        .iter()
        .map(|w| &w["objectSelector"]["matchLabels"])
        .collect();
    assert_eq!(
        labels,
        [
            &json!({"wib.dev/inject": "true"}),
            &json!({"azure.workload.identity/use": "true"})
        ]
    );
    for webhook in &webhooks {
        assert_eq!(webhook["failurePolicy"], "Fail");
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(
            webhook["rules"],
            json!([{"operations": ["CREATE"], "apiGroups": [""],
            "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}])
        );
        assert_eq!(
            webhook["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["kube-system", NS])
        );
        assert_eq!(webhook["clientConfig"]["service"]["name"], "wib-webhook");
    }
    find(&rendered, "Service", "wib-webhook");
    assert!(container["args"].as_array().is_some_and(|a| {
        a.iter()
            .any(|x| x == "--webhook-names=wib-webhook.wib-system.svc")
    }));
    let certificate_role = find(&rendered, "Role", "wib-webhook-certificate");
    assert_eq!(certificate_role["metadata"]["namespace"], NS);
    assert_eq!(
        certificate_role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
               {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["wib-webhook-tls"],
                "verbs": ["get", "update"]}])
    );
    // With cert-manager: its Certificate and CA injection, and no Secret or
    // webhook configuration access for wib.
    let cert_manager = objects(&run(
        helm_template(&["--set", "webhook.certManager.enabled=true"]),
        "helm template with cert-manager",
    ));
    find(&cert_manager, "Certificate", "wib-webhook");
    assert_eq!(
        find(&cert_manager, "MutatingWebhookConfiguration", "wib")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NS}/wib-webhook")
    );
    assert!(
        !cert_manager
            .iter()
            .any(|o| key(o) == ("Role".into(), "wib-webhook-certificate".into()))
    );
    let cert_manager_rules =
        find(&cert_manager, "ClusterRole", "wib-controller")["rules"].to_string();
    assert!(!cert_manager_rules.contains("mutatingwebhookconfigurations"));
    let mounted = &find(&cert_manager, "Deployment", "wib-controller")["spec"]["template"]["spec"];
    assert_eq!(
        mounted["volumes"][0]["secret"]["secretName"],
        "wib-webhook-tls"
    );
    assert_eq!(
        mounted["containers"][0]["volumeMounts"][0]["mountPath"],
        "/etc/wib/webhook-tls"
    );

    // Restarting workloads: three kinds patched, ReplicaSets read, only
    // when the chart says so.
    let restarting = objects(&run(
        helm_template(&["--set", "restartWorkloads.enabled=true"]),
        "helm template with restarts",
    ));
    let restart_rules = find(&restarting, "ClusterRole", "wib-controller")["rules"].clone();
    assert!(
        restart_rules
            .as_array()
            .is_some_and(|rules| rules.contains(&json!({
            "apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
            "verbs": ["patch"]}))),
        "{restart_rules}"
    );
    assert!(
        !find(&rendered, "ClusterRole", "wib-controller")["rules"]
            .to_string()
            .contains("deployments")
    );

    // The cloud identity values become the ServiceAccount's annotations.
    let with_identity = objects(&run(
        helm_template(&[
            "--set",
            "cloudIdentity.azure.clientId=0b5e4f3a-7d1c-4c2e-9f6a-1a2b3c4d5e6f",
            "--set",
            "cloudIdentity.aws.roleArn=arn:aws:iam::123456789012:role/wib",
            "--set",
            "cloudIdentity.gcp.serviceAccount=wib@p.iam.gserviceaccount.com",
        ]),
        "helm template with a cloud identity",
    ));
    let sa = find(&with_identity, "ServiceAccount", SA);
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "0b5e4f3a-7d1c-4c2e-9f6a-1a2b3c4d5e6f"
    );
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/wib"
    );
    assert_eq!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "wib@p.iam.gserviceaccount.com"
    );
    assert_eq!(
        sa["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );

    // values.schema.json refuses a bad value with a message.
    let bad = helm_template(&["--set", "logFormat=xml"])
        .output()
        .expect("helm");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("logFormat"));

    // config/ is the chart rendered by `make generate`: no drift.
    let fresh = tempdir("wib-config");
    run(
        {
            let mut c = Command::new("bash");
            c.arg(root().join("e2e/helm/render-config.sh")).arg(&fresh);
            c
        },
        "render-config.sh",
    );
    for file in [
        "rbac/serviceaccount.yaml",
        "rbac/clusterrole.yaml",
        "rbac/leader-election-role.yaml",
        "rbac/tenant-role.yaml",
        "rbac/webhook-role.yaml",
        "manager/deployment.yaml",
        "manager/service.yaml",
        "manager/pdb.yaml",
        "manager/webhook.yaml",
    ] {
        let want = std::fs::read_to_string(fresh.join(file)).expect("rendered");
        let have = std::fs::read_to_string(root().join("config").join(file)).unwrap_or_default();
        assert_eq!(
            have, want,
            "config/{file} differs from the chart: run `make generate`"
        );
    }
    let _ = std::fs::remove_dir_all(&fresh);
}

fn tempdir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn kubectl_stdin(cp: &ControlPlane, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn helm_and_kustomize_installs_apply_to_the_api_server_and_hold_the_same_objects() {
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    let chart = run(helm_template(&["--include-crds"]), "helm template");
    let kustomized = run(
        {
            let mut c = cp.kubectl();
            c.arg("kustomize").arg(root().join("config/default"));
            c
        },
        "kubectl kustomize config/default",
    );
    let mut chart_keys: Vec<_> = objects(&chart).iter().map(key).collect();
    let mut kustomize_keys: Vec<_> = objects(&kustomized)
        .iter()
        .filter(|o| o["kind"] != "Namespace")
        .map(key)
        .collect();
    chart_keys.sort();
    kustomize_keys.sort();
    assert_eq!(chart_keys, kustomize_keys);

    // Server-side dry runs: every object is valid for this API server.
    run(
        {
            let mut c = cp.kubectl();
            c.args(["create", "namespace", NS]);
            c
        },
        "namespace",
    );
    kubectl_stdin(&cp, &["apply", "--dry-run=server", "-f", "-"], &chart);
    kubectl_stdin(&cp, &["apply", "--dry-run=server", "-f", "-"], &kustomized);

    // Artifact Hub's CRD examples are valid bindings and providers for
    // this API server (schema and CEL).
    let examples = chart_annotation("artifacthub.io/crdsExamples");
    let examples: Vec<String> = examples
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| serde_yaml::to_string(e).expect("yaml"))
        .collect();
    kubectl_stdin(&cp, &["create", "namespace", "team-a"], "");
    kubectl_stdin(
        &cp,
        &["apply", "--dry-run=server", "-f", "-"],
        &examples.join("\n---\n"),
    );
}

/// One of Chart.yaml's annotations, itself YAML (Artifact Hub's format).
fn chart_annotation(name: &str) -> Value {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("charts/wib/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    let text = chart["annotations"][name]
        .as_str()
        .unwrap_or_else(|| panic!("Chart.yaml has no annotation {name}"));
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

/// What Artifact Hub and chart-testing read from the chart, and each
/// optional piece rendered: NetworkPolicy, PrometheusRule, dashboard.
#[test]
fn chart_meets_artifact_hub_and_chart_testing_conventions_and_its_options_render() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("charts/wib/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml");
    for field in [
        "apiVersion",
        "name",
        "version",
        "appVersion",
        "description",
        "home",
        "kubeVersion",
    ] {
        assert!(chart[field].is_string(), "Chart.yaml {field}");
    }
    assert!(
        chart["maintainers"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(chart["sources"].as_array().is_some_and(|m| !m.is_empty()));
    let annotations = &chart["annotations"];
    assert_eq!(annotations["artifacthub.io/operator"], "true");
    assert_eq!(annotations["artifacthub.io/license"], "Apache-2.0");
    // The CRDs it lists are the ones in crds/.
    let mut listed: Vec<String> = chart_annotation("artifacthub.io/crds")
        .as_array()
        .expect("crds")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    listed.sort();
    let mut shipped: Vec<String> = std::fs::read_dir(root().join("charts/wib/crds"))
        .expect("crds/")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: Value = serde_yaml::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
            v["metadata"]["name"].as_str().map(str::to_string)
        })
        .collect();
    shipped.sort();
    assert_eq!(listed, shipped);
    // The image it names is the chart's default.
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("charts/wib/values.yaml")).expect("values"),
    )
    .expect("values");
    assert_eq!(
        chart_annotation("artifacthub.io/images")[0]["image"],
        format!(
            "{}:{}",
            values["image"]["repository"].as_str().expect("repository"),
            chart["appVersion"].as_str().expect("appVersion")
        )
    );
    for kind in ["links", "changes"] {
        assert!(
            chart_annotation(&format!("artifacthub.io/{kind}"))
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{kind}"
        );
    }
    let ct: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("ct.yaml")).expect("ct.yaml"))
            .expect("ct.yaml");
    assert_eq!(ct["chart-dirs"], json!(["charts"]));

    // Off by default; each renders when asked.
    let plain = objects(&run(helm_template(&[]), "helm template"));
    for kind in ["NetworkPolicy", "PrometheusRule"] {
        assert!(!plain.iter().any(|o| o["kind"] == kind), "{kind} is opt-in");
    }
    let all = objects(&run(
        helm_template(&[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "grafanaDashboard.enabled=true",
        ]),
        "helm template with every option",
    ));
    let policy = &find(&all, "NetworkPolicy", "wib-controller")["spec"];
    let ingress_ports: Vec<&Value> = policy["ingress"]
        .as_array()
        .expect("ingress")
        .iter()
        .map(|r| &r["ports"][0]["port"])
        .collect();
    assert_eq!(
        ingress_ports,
        [&json!(8080), &json!(9443)],
        "metrics and the webhook only"
    );
    let egress = policy["egress"].to_string();
    for wanted in ["53", "6443", "443", "0.0.0.0/0"] {
        assert!(egress.contains(wanted), "egress {wanted}: {egress}");
    }
    let alerts: Vec<&str> = find(&all, "PrometheusRule", "wib")["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "WibBindingsNotReady",
        "WibCloudAPIErrors",
        "WibDriftRepaired",
        "WibDeletionBlocked",
    ] {
        assert!(alerts.contains(&alert), "{alert} in {alerts:?}");
    }
    let dashboard = find(&all, "ConfigMap", "wib-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["wib.json"].as_str().expect("json"))
        .expect("the dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 8));
}

/// A kubeconfig that authenticates as `namespace/name` with a bound token.
async fn kubeconfig_for(cp: &ControlPlane, namespace: &str, name: &str, path: &Path) {
    let token = cp
        .service_account_token(namespace, name, cp.issuer())
        .await
        .expect("token for the chart's ServiceAccount");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: wib\n  context:\n    cluster: local\n    user: wib\n    namespace: {namespace}\ncurrent-context: wib\nusers:\n- name: wib\n  user:\n    token: {token}\n",
        cp.server(),
        cp.ca_cert_path().display()
    );
    std::fs::write(path, config).expect("kubeconfig");
}

fn can_i(cp: &ControlPlane, args: &str) -> bool {
    can_i_as(cp, &format!("system:serviceaccount:{NS}:{SA}"), args)
}

/// `kubectl auth can-i` as `user`. Allowed is exit status 0 with "yes"; denied
/// is exit status 1 with "no" (kubectl's answer for a denial). Anything else —
/// a kubectl or API error, a bad flag, a signal — fails the test with
/// kubectl's stderr instead of passing as a denial.
fn can_i_as(cp: &ControlPlane, user: &str, args: &str) -> bool {
    let mut cmd = cp.kubectl();
    cmd.args(["auth", "can-i"])
        .args(args.split_whitespace())
        .arg(format!("--as={user}"));
    let out = cmd.output().expect("kubectl auth can-i runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (out.status.code(), stdout.trim()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        (code, answer) => panic!(
            "kubectl auth can-i {args} --as={user}: exit status {code:?}, stdout {answer:?}, stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test]
async fn the_operator_works_with_the_charts_rbac_and_nothing_more() {
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    // The Azure fake creates wib-system and trusts wib-system/wib-controller.
    let azure = AzureFake::start(&cp).await.expect("Azure fake");
    let rendered = run(helm_template(&[]), "helm template");
    let rbac = documents_of_kinds(
        &rendered,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ],
    );
    assert_eq!(rbac.len(), 8, "{rendered}");
    kubectl_stdin(&cp, &["apply", "-f", "-"], &rbac.join("\n---\n"));

    // What the chart's ServiceAccount can and cannot do.
    for allowed in [
        "watch workloadidentitybindings.wib.dev -A",
        "patch workloadidentitybindings.wib.dev --subresource=status -n team",
        "patch workloadidentitybindings.wib.dev -n team",
        "create serviceaccounts -n team",
        "patch serviceaccounts -n team",
        // The provider's in-use finalizer.
        "patch clusteridentityproviders.wib.dev",
        "update leases -n wib-system",
        // The pod webhook's certificate and configuration, by name.
        "get secrets/wib-webhook-tls -n wib-system",
        "update secrets/wib-webhook-tls -n wib-system",
        "update mutatingwebhookconfigurations/wib",
        // Pods the webhook admitted, by metadata, to report restarts.
        "watch pods -A",
        // spec.outputs.configMap.
        "patch configmaps -n team",
    ] {
        assert!(can_i(&cp, allowed), "should be allowed: {allowed}");
    }
    for denied in [
        "get secrets -A",
        "list secrets -n wib-system",
        "get secrets/other -n wib-system",
        "create secrets -n team",
        "update mutatingwebhookconfigurations/other",
        "get pods -n team",
        // Restarting workloads is the chart's opt-in.
        "patch deployments -n team",
        "get replicasets -n team",
        "create mutatingwebhookconfigurations",
        "create serviceaccounts --subresource=token -n team",
        "create pods -n team",
        "create deployments -n team",
        "update leases -n kube-system",
        "delete namespaces",
        "create clusterrolebindings",
        // Patch suffices everywhere but the Lease (optimistic renewals).
        "update workloadidentitybindings.wib.dev -n team",
        "update workloadidentitybindings.wib.dev --subresource=status -n team",
        "update clusteridentityproviders.wib.dev --subresource=status",
        "update serviceaccounts -n team",
    ] {
        assert!(!can_i(&cp, denied), "must be denied: {denied}");
    }

    // The tenant role, bound in one namespace: bindings there, nothing else.
    kubectl_stdin(
        &cp,
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: tenant\n  namespace: team\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: wib-tenant\nsubjects:\n  - apiGroup: rbac.authorization.k8s.io\n    kind: User\n    name: tenant-user\n",
    );
    for allowed in [
        "create workloadidentitybindings.wib.dev -n team",
        "delete workloadidentitybindings.wib.dev -n team",
        "get workloadidentitybindings.wib.dev --subresource=status -n team",
    ] {
        assert!(
            can_i_as(&cp, "tenant-user", allowed),
            "tenant should: {allowed}"
        );
    }
    for denied in [
        "create workloadidentitybindings.wib.dev -n other",
        "patch workloadidentitybindings.wib.dev --subresource=status -n team",
        "create clusteridentityproviders.wib.dev",
        "patch clusteridentityproviders.wib.dev",
        "get secrets -n team",
        "create serviceaccounts --subresource=token -n team",
    ] {
        assert!(
            !can_i_as(&cp, "tenant-user", denied),
            "tenant must not: {denied}"
        );
    }

    // The operator as that ServiceAccount, with leader election, through the
    // Azure happy path.
    let kubeconfig = cp.dir().join("wib-controller.kubeconfig");
    kubeconfig_for(&cp, NS, SA, &kubeconfig).await;
    let envs: Vec<(&str, &str)> = azure
        .operator_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut operator = Operator::start(
        &kubeconfig,
        cp.dir(),
        &[
            "--metrics-addr=127.0.0.1:0",
            "--resync-seconds=2",
            "--leader-elect",
            "--lease-namespace=wib-system",
            "--webhook-addr=127.0.0.1:0",
            "--webhook-names=127.0.0.1",
        ],
        &envs,
    )
    .expect("operator");
    let admin = wib_e2e::Admin::new(&cp).await.expect("admin");
    admin.namespace("team", &[]).await.expect("namespace");
    admin
        .apply(&format!(
            "apiVersion: wib.dev/v1alpha1\nkind: ClusterIdentityProvider\nmetadata:\n  name: aks\n  annotations:\n    wib.dev/is-default-provider: \"true\"\nspec:\n  clusterName: rbac\n  allowedScopes: [/subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps]\n  azure:\n    tenantId: {AZURE_TENANT}\n    subscriptionId: 00000000-0000-0000-0000-00000000aaaa\n    resourceGroup: ids\n    location: westeurope\n"
        ))
        .await
        .expect("provider");
    admin
        .apply("apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: app\n  namespace: team\nspec:\n  azure:\n    roleAssignments:\n      - role: Reader\n        scope: /subscriptions/00000000-0000-0000-0000-00000000aaaa/resourceGroups/apps\n")
        .await
        .expect("binding");
    let ready = admin
        .wait_condition("team", "app", READY, "True", "Provisioned")
        .await;
    let logs = operator.logs();
    ready.unwrap_or_else(|e| panic!("{e}\noperator:\n{logs}"));
    admin
        .wait_service_account("team", "app", "annotated", |sa| {
            sa.is_some_and(|sa| {
                sa.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("azure.workload.identity/client-id"))
            })
        })
        .await
        .expect("ServiceAccount");
    admin.delete_binding("team", "app").await.expect("deleted");
    // The webhook's certificate, made with the Role's rights alone.
    wib_e2e::poll_until(
        Duration::from_secs(30),
        "the webhook's Secret made",
        async || {
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
                admin.client.clone(),
                "wib-system",
            )
            .get_opt("wib-webhook-tls")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator:\n{}", operator.logs()));
    assert!(
        !operator.logs().contains("is forbidden"),
        "the operator hit RBAC denials:\n{}",
        operator.logs()
    );
    operator.stop();
}

/// Every document of a YAML file in the repository, as JSON.
fn file_objects(relative: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    objects(&text)
}

fn port_of(url: &str) -> u64 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// `make e2e-kind` cannot run here (no Docker); everything it hands the
/// cluster is checked instead: the ports the suite attaches through are the
/// ones kind publishes and the Services use, the operator gets every setting
/// the local harness gives it (same audiences, client IDs, role, project),
/// and the fakes, the extras and the chart with the kind values apply to a
/// real API server.
#[tokio::test]
async fn the_kind_path_wires_the_operator_and_fakes_the_way_the_local_harness_does() {
    use wib_testenv::azure::{AZURE_AUDIENCE, OPERATOR_CLIENT_ID};
    use wib_testenv::moto::{ACCOUNT, OPERATOR_ROLE, STS_AUDIENCE};

    let attached = wib_testenv::Attached::read(&root().join("e2e/kind/attached.json"))
        .expect("e2e/kind/attached.json");
    let eks_url = attached.eks_url.clone().expect("eksUrl in attached.json");
    let mut attach_ports: Vec<u64> = [
        &attached.azure_url,
        &attached.gcp_url,
        &attached.aws_url,
        &eks_url,
        &attached.metrics_url,
    ]
    .iter()
    .map(|u| port_of(u))
    .collect();
    attach_ports.sort();
    let cluster = file_objects("e2e/kind/cluster.yaml");
    let mut published: Vec<u64> = cluster[0]["nodes"][0]["extraPortMappings"]
        .as_array()
        .expect("extraPortMappings")
        .iter()
        .map(|m| {
            assert_eq!(m["containerPort"], m["hostPort"], "{m}");
            m["hostPort"].as_u64().expect("hostPort")
        })
        .collect();
    published.sort();
    let fakes = file_objects("e2e/kind/fakes.yaml");
    let extras = file_objects("e2e/kind/operator.yaml");
    let mut node_ports: Vec<u64> = fakes
        .iter()
        .chain(&extras)
        .filter(|o| o["kind"] == "Service")
        .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    node_ports.sort();
    // Service links would hand moto MOTO_PORT=tcp://<ip>:5000, which it
    // parses as its port before reading its flags.
    for deployment in fakes.iter().filter(|o| o["kind"] == "Deployment") {
        assert_eq!(
            deployment["spec"]["template"]["spec"]["enableServiceLinks"], false,
            "{}",
            deployment["metadata"]["name"]
        );
    }
    assert_eq!(attach_ports, published, "attached.json vs cluster.yaml");
    assert_eq!(node_ports, published, "Services vs cluster.yaml");

    // The operator's identity settings: what the local harness passes, the
    // chart with e2e/kind/values.yaml passes too, with files where mounted.
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    let azure = AzureFake::start(&cp).await.expect("Azure fake");
    let moto = wib_testenv::moto::Moto::start(&cp).await.expect("moto");
    let gcp = wib_testenv::gcp::GcpFake::start(&cp, &attached.gcp_project)
        .await
        .expect("GCP fake");
    let eks = wib_testenv::eks::EksFake::start(&cp, &moto.url)
        .await
        .expect("EKS fake");
    let values = root().join("e2e/kind/values.yaml");
    let values = values.to_str().expect("utf-8 path");
    let rendered = run(
        helm_template(&["--include-crds", "--values", values]),
        "helm template with the kind values",
    );
    let chart = objects(&rendered);
    let pod = &find(&chart, "Deployment", "wib-controller")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env: std::collections::BTreeMap<String, String> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect();
    let mounts: Vec<String> = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str().map(str::to_string))
        .collect();
    let local = azure
        .operator_env
        .iter()
        .chain(&moto.operator_env)
        .chain(&gcp.operator_env)
        .chain(&eks.operator_env);
    for (name, local_value) in local {
        let value = env
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from e2e/kind/values.yaml"));
        if local_value.starts_with('/') {
            assert!(
                mounts.iter().any(|m| value.starts_with(m.as_str())),
                "{name}={value} is not under a mount {mounts:?}"
            );
        } else if !local_value.starts_with("http") {
            assert_eq!(value, local_value, "{name}");
        }
    }
    assert_eq!(env["AZURE_CLIENT_ID"], OPERATOR_CLIENT_ID);
    assert_eq!(
        env["AWS_ROLE_ARN"],
        format!("arn:aws:iam::{ACCOUNT}:role/{OPERATOR_ROLE}")
    );
    let audiences: Vec<String> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .flat_map(|v| {
            v["projected"]["sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| {
            s["serviceAccountToken"]["audience"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    for audience in [
        AZURE_AUDIENCE.to_string(),
        STS_AUDIENCE.to_string(),
        wib_testenv::gcp::token_audience(),
    ] {
        assert!(
            audiences.contains(&audience),
            "{audience} not projected: {audiences:?}"
        );
    }
    let credentials = extras
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .and_then(|c| c["data"]["credentials.json"].as_str())
        .expect("GCP credential configuration");
    let credentials: Value = serde_json::from_str(credentials).expect("credentials JSON");
    let local_config = gcp.credential_config(
        Path::new("/token"),
        &format!(
            "{}@{}.iam.gserviceaccount.com",
            wib_testenv::gcp::OPERATOR_ACCOUNT,
            attached.gcp_project
        ),
    );
    assert_eq!(credentials["audience"], local_config["audience"]);
    let impersonate = credentials["service_account_impersonation_url"]
        .as_str()
        .unwrap_or_default();
    let local_impersonate = local_config["service_account_impersonation_url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        impersonate.ends_with(local_impersonate.trim_start_matches(&gcp.url)),
        "{impersonate} vs {local_impersonate}"
    );
    let token_file = credentials["credential_source"]["file"]
        .as_str()
        .unwrap_or_default();
    assert!(
        mounts.iter().any(|m| token_file.starts_with(m.as_str())),
        "{token_file} is not under a mount"
    );

    // Applied for real (no nodes here, so nothing starts), then the chart
    // with the kind values as a server-side dry run.
    for file in ["e2e/kind/operator.yaml", "e2e/kind/fakes.yaml"] {
        run(
            {
                let mut c = cp.kubectl();
                c.args(["apply", "-f"]).arg(root().join(file));
                c
            },
            file,
        );
    }
    kubectl_stdin(&cp, &["apply", "--dry-run=server", "-f", "-"], &rendered);
}

/// `make test` lints inside its one compilation: this test binary was built
/// by clippy-driver with warnings denied, or the Makefile's wiring broke (a
/// plain `cargo test` outside `make` builds without it and fails here).
#[test]
// The constant is the point: it records how this binary was compiled.
#[allow(clippy::assertions_on_constants)]
fn make_builds_the_workspace_through_clippy_with_warnings_denied() {
    assert!(
        cfg!(clippy),
        "built without clippy-driver: run the suite through `make test` (RUSTC_WORKSPACE_WRAPPER)"
    );
    assert_eq!(option_env!("CLIPPY_ARGS"), Some("-Dwarnings"));
}

/// `kubectl create token` as `user`: (succeeded, output).
fn create_token_as(cp: &ControlPlane, user: &str, args: &str) -> (bool, String) {
    let mut cmd = cp.kubectl();
    cmd.args(["create", "token"])
        .args(args.split_whitespace())
        .arg(format!("--as={user}"));
    let out = cmd.output().expect("kubectl create token runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `verifyExchange.enabled` lets wib create ServiceAccount tokens, and its
/// ValidatingAdmissionPolicy holds them to what an exchange needs: ten
/// minutes, cloud audiences only (never the API server's, which would let
/// wib act as the ServiceAccount in the cluster), never in kube-system or
/// wib's own namespace. Off (the default), wib can create none.
#[tokio::test]
async fn verify_exchange_lets_wib_mint_only_short_lived_cloud_tokens() {
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    let rendered = run(
        helm_template(&[
            "--set",
            "verifyExchange.enabled=true",
            "--set",
            "verifyExchange.extraAudiences={my-audience}",
        ]),
        "helm template",
    );
    let wanted = documents_of_kinds(
        &rendered,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ],
    );
    kubectl_stdin(
        &cp,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: team\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: {NS}\n"
        ),
    );
    kubectl_stdin(&cp, &["apply", "-f", "-"], &wanted.join("\n---\n"));
    let wib = format!("system:serviceaccount:{NS}:{SA}");
    assert!(can_i(
        &cp,
        "create serviceaccounts --subresource=token -n team"
    ));
    // The policy may take a moment to be enforced after it is created.
    let refused = |args: &str| {
        let (ok, out) = create_token_as(&cp, &wib, args);
        !ok && out.contains("ValidatingAdmissionPolicy")
    };
    let api_server = cp.issuer();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !refused(&format!(
        "app -n team --audience {api_server} --duration 10m"
    )) {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never refused the API server's audience"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    for audience in [
        "api://AzureADTokenExchange",
        "sts.amazonaws.com",
        "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
        "my-audience",
    ] {
        let (ok, out) = create_token_as(
            &cp,
            &wib,
            &format!("app -n team --audience {audience} --duration 10m"),
        );
        assert!(ok, "{audience}: {out}");
    }
    for (what, args) in [
        (
            "an hour",
            "app -n team --audience sts.amazonaws.com --duration 1h".to_string(),
        ),
        ("no audience", "app -n team --duration 10m".to_string()),
        (
            "wib's own namespace",
            format!("app -n {NS} --audience sts.amazonaws.com --duration 10m"),
        ),
    ] {
        assert!(refused(&args), "{what} must be refused");
    }
}
