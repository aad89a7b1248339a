//! ClusterIdentityProvider: issuer discovery and reachability on its status,
//! and the guardrails a binding meets before anything is written.

use kube::api::Api;
use wib_api::ClusterIdentityProvider;
use wib_api::conditions::{CLOUD_CREDENTIALS_READY, ISSUER_READY, READY, SERVICE_ACCOUNT_READY};
use wib_e2e::{Env, WAIT, provider_yaml};

fn binding(name: &str, ns: &str, provider_ref: Option<&str>) -> String {
    let reference = provider_ref
        .map(|p| format!("\n  providerRef:\n    name: {p}"))
        .unwrap_or_default();
    format!(
        "apiVersion: wib.dev/v1alpha1\nkind: WorkloadIdentityBinding\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:{reference}\n  gcp: {{}}\n"
    )
}

async fn provider_condition(
    env: &Env,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> ClusterIdentityProvider {
    let api: Api<ClusterIdentityProvider> = Api::all(env.client.clone());
    let what = format!("{name}: {type_} {status}/{reason}");
    wib_e2e::poll_until(WAIT, &what, async || {
        let p = api.get(name).await.map_err(|e| e.to_string())?;
        let found = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
        match found.is_some_and(|c| c.status == status && c.reason == reason) {
            true => Ok(p),
            false => Err(format!("{:?}", p.status)),
        }
    })
    .await
    .expect("provider condition")
}

#[tokio::test]
async fn provider_reports_the_discovered_issuer_and_an_unreachable_one() {
    let env = Env::start().await.expect("env");
    env.apply(&provider_yaml("discovered", false, None))
        .await
        .expect("provider");
    let p = provider_condition(&env, "discovered", ISSUER_READY, "True", "Provisioned").await;
    let status = p.status.expect("status");
    assert_eq!(
        status.issuer.as_deref(),
        Some(env.cp.issuer()),
        "issuer discovered from the API server"
    );
    assert_eq!(
        status.jwks_uri,
        Some(format!("{}/openid/v1/jwks", env.cp.issuer()))
    );
    assert_eq!(status.jwks_keys, Some(1));
    assert_eq!(status.observed_generation, p.metadata.generation);

    let unreachable = provider_yaml("unreachable", false, None).replace(
        "  clusterName: e2e",
        "  clusterName: e2e\n  issuer: https://127.0.0.1:9/no-issuer-here",
    );
    env.apply(&unreachable).await.expect("provider");
    let p = provider_condition(&env, "unreachable", READY, "False", "IssuerUnreachable").await;
    let message = &p
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == READY)
        .expect("ready")
        .message;
    assert!(
        message.contains("https://127.0.0.1:9/no-issuer-here/.well-known/openid-configuration"),
        "{message}"
    );
    // wib's own cloud credentials are checked with one cheap read per cloud
    // the provider configures; a refusal shows on the provider.
    provider_condition(
        &env,
        "discovered",
        CLOUD_CREDENTIALS_READY,
        "True",
        "Provisioned",
    )
    .await;
    provider_condition(&env, "discovered", READY, "True", "Provisioned").await;
    env.azure()
        .inject(serde_json::json!({"operation": "UserAssignedIdentities_Get", "status": 403, "times": 1000}))
        .await
        .expect("fault");
    let p = provider_condition(
        &env,
        "discovered",
        CLOUD_CREDENTIALS_READY,
        "False",
        "CloudAuthorizationFailed",
    )
    .await;
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "CloudAuthorizationFailed")
    );
    assert!(ready.message.starts_with("Azure: "), "{}", ready.message);
}

#[tokio::test]
async fn bindings_meet_the_provider_guardrails_before_anything_is_written() {
    let env = Env::start().await.expect("env");
    env.namespace("apps", &[]).await.expect("ns");
    env.namespace("outside", &[]).await.expect("ns");

    // No provider at all, then a named one that does not exist.
    env.apply(&binding("no-default", "apps", None))
        .await
        .expect("binding");
    env.wait_condition("apps", "no-default", READY, "False", "ProviderNotFound")
        .await
        .expect("no default provider");
    env.apply(&binding("named", "apps", Some("missing")))
        .await
        .expect("binding");
    let b = env
        .wait_condition("apps", "named", READY, "False", "ProviderNotFound")
        .await
        .expect("unknown provider");
    assert!(
        wib_e2e::condition(&b, READY)
            .expect("ready")
            .message
            .contains("\"missing\"")
    );
    for name in ["no-default", "named"] {
        assert!(
            env.service_accounts("apps")
                .get_opt(name)
                .await
                .expect("get")
                .is_none(),
            "nothing written for {name}"
        );
    }

    // Creating the named provider un-blocks its binding without a spec change.
    env.apply(&provider_yaml("missing", false, None))
        .await
        .expect("provider");
    env.wait_condition("apps", "named", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("provider appeared");

    // Two defaults are ambiguous.
    env.apply(&provider_yaml("default-a", true, None))
        .await
        .expect("provider");
    env.apply(&provider_yaml("default-b", true, None))
        .await
        .expect("provider");
    env.wait_condition("apps", "no-default", READY, "False", "ProviderAmbiguous")
        .await
        .expect("ambiguous default");
    env.apply(&provider_yaml("default-b", false, None))
        .await
        .expect("un-default");

    // Without a namespaceSelector, the cluster's system namespaces and wib's
    // own are still not admitted; nothing is written there.
    env.namespace("wib-system", &[]).await.expect("namespace");
    for ns in ["kube-system", "wib-system"] {
        env.apply(&binding("app", ns, None)).await.expect("binding");
        let b = env
            .wait_condition(ns, "app", READY, "False", "NamespaceNotAllowed")
            .await
            .expect("refused");
        let message = &wib_e2e::condition(&b, READY).expect("Ready").message;
        assert!(message.contains("system namespace"), "{message}");
        assert!(
            env.service_accounts(ns)
                .get_opt("app")
                .await
                .expect("get")
                .is_none(),
            "nothing written in {ns}"
        );
        env.delete_binding(ns, "app").await.expect("deleted");
    }

    // A namespace outside the provider's selector is refused until it is labelled.
    env.apply(&provider_yaml(
        "default-a",
        true,
        Some("wib.dev/allowed: \"true\""),
    ))
    .await
    .expect("selector");
    env.apply(&binding("app", "outside", None))
        .await
        .expect("binding");
    let b = env
        .wait_condition("outside", "app", READY, "False", "NamespaceNotAllowed")
        .await
        .expect("refused");
    assert!(
        wib_e2e::condition(&b, READY)
            .expect("ready")
            .message
            .contains("namespaceSelector")
    );
    assert!(
        env.service_accounts("outside")
            .get_opt("app")
            .await
            .expect("get")
            .is_none(),
        "refused binding wrote nothing"
    );
    env.namespace("outside", &[("wib.dev/allowed", "true")])
        .await
        .expect("label");
    env.wait_condition("outside", "app", SERVICE_ACCOUNT_READY, "True", "Applied")
        .await
        .expect("allowed after labelling");
}

fn accounts(state: &serde_json::Value) -> usize {
    state["serviceAccounts"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default()
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wib_e2e::poll_until(WAIT, &format!("{name} gone"), async || {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            Some(_) => Err("still there".to_string()),
            None => Ok(()),
        }
    })
    .await
    .expect("gone");
}

#[tokio::test]
async fn a_provider_stays_while_bindings_use_it_even_when_deleted_with_their_namespace() {
    use k8s_openapi::api::core::v1::Namespace;
    let env = Env::start().await.expect("env");
    let providers: Api<ClusterIdentityProvider> = Api::all(env.client.clone());
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    env.apply(&provider_yaml("shared", false, None))
        .await
        .expect("provider");
    // The fake holds wib's own account too.
    let before = accounts(&env.gcp().state().await.expect("state"));
    for ns in ["staying", "leaving"] {
        env.namespace(ns, &[]).await.expect("namespace");
        env.apply(&binding("app", ns, Some("shared")))
            .await
            .expect("binding");
        env.wait_condition(ns, "app", READY, "True", "Provisioned")
            .await
            .expect("Ready");
    }
    assert_eq!(
        accounts(&env.gcp().state().await.expect("state")),
        before + 2
    );

    // Deleted while in use: it stays, says by whom, and bindings go on.
    providers
        .delete("shared", &Default::default())
        .await
        .expect("delete requested");
    let waiting = provider_condition(&env, "shared", READY, "False", "ProviderInUse").await;
    let message = &waiting
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .expect("Ready")
        .message;
    assert!(
        message.contains("2 binding(s)") && message.contains("leaving/app"),
        "{message}"
    );

    // A namespace deletion races the provider's: its binding is cleaned up
    // through the provider, and the namespace finishes.
    namespaces
        .delete("leaving", &Default::default())
        .await
        .expect("namespace deletion");
    wait_gone(&namespaces, "leaving").await;
    assert_eq!(
        accounts(&env.gcp().state().await.expect("state")),
        before + 1,
        "the leaving binding's account went with it"
    );
    assert!(providers.get_opt("shared").await.expect("read").is_some());

    // The last user goes: so does the provider.
    env.delete_binding("staying", "app")
        .await
        .expect("binding deleted");
    wait_gone(&providers, "shared").await;
    assert_eq!(accounts(&env.gcp().state().await.expect("state")), before);
}

/// `verifyExchange`: Ready means a pod's token works. Each cloud's fake
/// takes a while to accept a new federation (Entra's AADSTS70021, IAM's
/// eventual consistency); until it does the binding is `Ready=False`
/// `WaitingForPropagation` with the time waited, and `kubectl wait` holds.
/// A tenant cannot switch verification on, and the token wib minted is in
/// no status, Event or log line.
#[tokio::test]
async fn with_verify_exchange_ready_waits_until_each_cloud_accepts_the_pods_token() {
    const NS: &str = "verify";
    let env = Env::start()
        .await
        .expect("control plane, fakes and operator");
    env.namespace(NS, &[]).await.expect("namespace");
    let mut provider: serde_json::Value =
        serde_yaml::from_str(&provider_yaml("default", true, None)).expect("provider YAML");
    let gcp = &mut provider["spec"]["gcp"];
    gcp["projectNumber"] = serde_json::json!(wib_testenv::gcp::PROJECT_NUMBER);
    gcp["workloadIdentityPool"] = serde_json::json!(wib_testenv::gcp::POOL);
    gcp["workloadIdentityProvider"] = serde_json::json!(wib_testenv::gcp::POOL_PROVIDER);
    provider["spec"]["aws"]["eksClusterName"] = serde_json::json!(wib_testenv::eks::CLUSTER);
    env.apply(&provider.to_string()).await.expect("provider");

    // A tenant cannot turn verification on: providers are the platform's.
    let tenant = env.tenant("carol", NS).await.expect("tenant user");
    provider["spec"]["verifyExchange"] = serde_json::json!(true);
    let error = tenant
        .apply(&provider.to_string())
        .await
        .expect_err("a tenant patching the provider");
    assert!(format!("{error:#}").contains("forbidden"), "{error:#}");
    env.apply(&provider.to_string())
        .await
        .expect("verifyExchange on");

    env.azure()
        .configure(serde_json::json!({"ficPropagationSeconds": 6}))
        .await
        .expect("Entra replication delay");
    env.gcp()
        .post(
            "/admin/config",
            serde_json::json!({"propagationSeconds": 6}),
        )
        .await
        .expect("IAM propagation delay");
    for (name, cloud, spec) in [
        ("azure", "azure", serde_json::json!({})),
        ("aws", "aws", serde_json::json!({})),
        (
            "aws-pods",
            "aws",
            serde_json::json!({"mode": "PodIdentity"}),
        ),
        ("gcp", "gcp", serde_json::json!({})),
    ] {
        let binding = serde_json::json!({
            "apiVersion": "wib.dev/v1alpha1", "kind": "WorkloadIdentityBinding",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"serviceAccount": {"name": name}, cloud: spec},
        });
        tenant.apply(&binding.to_string()).await.expect("binding");
    }
    for (cloud, said) in [("azure", "AADSTS70021"), ("gcp", "impersonating")] {
        let b = env
            .wait_condition(NS, cloud, READY, "False", "WaitingForPropagation")
            .await
            .unwrap_or_else(|e| panic!("{cloud}: {e:#}"));
        let message = wib_e2e::condition(&b, READY)
            .expect("Ready")
            .message
            .clone();
        assert!(
            message.contains(said) && message.contains("waiting") && message.contains(cloud),
            "{cloud}: {message}"
        );
    }
    for cloud in ["azure", "aws", "aws-pods", "gcp"] {
        let b = env
            .wait_condition(NS, cloud, READY, "True", "Provisioned")
            .await
            .unwrap_or_else(|e| panic!("{cloud}: {e:#}"));
        let verified = wib_e2e::condition(&b, wib_api::conditions::EXCHANGE_VERIFIED)
            .unwrap_or_else(|| panic!("{cloud}: no ExchangeVerified"));
        assert_eq!(
            (verified.status.as_str(), verified.reason.as_str()),
            ("True", "ExchangeWorks"),
            "{cloud}"
        );
        let seen = serde_json::to_string(&b).expect("binding JSON");
        assert!(
            !seen.contains("eyJ"),
            "{cloud}: a token in the binding: {seen}"
        );
    }
    // A provider defaulting to Pod Identity in a cluster EKS does not know
    // says so itself, before any binding tries.
    let mut elsewhere = provider.clone();
    elsewhere["metadata"] = serde_json::json!({"name": "eks-elsewhere"});
    elsewhere["spec"]["aws"]["mode"] = serde_json::json!("PodIdentity");
    elsewhere["spec"]["aws"]["eksClusterName"] = serde_json::json!("no-such-cluster");
    env.apply(&elsewhere.to_string()).await.expect("provider");
    let p = provider_condition(
        &env,
        "eks-elsewhere",
        CLOUD_CREDENTIALS_READY,
        "False",
        "CloudNotConfigured",
    )
    .await;
    let message = serde_json::to_string(&p.status).expect("status JSON");
    assert!(message.contains("no-such-cluster"), "{message}");

    // The Pod Identity binding was verified as the node agent exchanges.
    assert!(
        env.eks()
            .call_count("AssumeRoleForPodIdentity")
            .await
            .expect("EKS calls")
            >= 1
    );
    let events = env.events_for(NS, "azure").await.expect("events");
    let events = serde_json::to_string(&events).expect("events JSON");
    assert!(!events.contains("eyJ"), "a token in an Event: {events}");
    assert!(
        !env.operator_logs().contains("eyJ"),
        "a token in the operator's log"
    );
}
