//! The GCP fake over plain HTTP: service account lifecycle, IAM policy etags
//! (stale etag → 409 ABORTED, no etag → overwrite), STS exchange that
//! verifies a real ServiceAccount token from the local control plane, and
//! impersonation gated on roles/iam.workloadIdentityUser.

use std::sync::Arc;

use serde_json::{Value, json};
use wib_fakes::gcp::{GcpCloud, OWNER_TOKEN, router};
use wib_testenv::{ControlPlane, Options};

mod common;
use common::{Forgery, forged};

const PROJECT: &str = "fake-project";
const NUMBER: &str = "42";

struct Fake {
    url: String,
    http: reqwest::Client,
    _fake: Arc<GcpCloud>,
}

impl Fake {
    async fn start(ca_pem: Option<&[u8]>) -> Self {
        let fake = GcpCloud::new(ca_pem).expect("fake");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = router(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let this = Self {
            url,
            http: reqwest::Client::new(),
            _fake: fake,
        };
        this.call(
            "POST",
            "/admin/projects",
            None,
            Some(json!({"projectId": PROJECT, "projectNumber": NUMBER})),
        )
        .await;
        this
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.url),
        );
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn owner(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(method, path, Some(OWNER_TOKEN), Some(body)).await
    }
}

fn email(id: &str) -> String {
    format!("{id}@{PROJECT}.iam.gserviceaccount.com")
}

#[tokio::test]
async fn service_accounts_and_policies_follow_the_rest_spec() {
    let fake = Fake::start(None).await;
    let accounts = format!("/v1/projects/{PROJECT}/serviceAccounts");

    // Unauthenticated calls are refused as Google does.
    let (status, body) = fake.call("GET", &format!("{accounts}/x"), None, None).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    let (status, created) = fake
        .owner(
            "POST",
            &accounts,
            json!({"accountId": "app-one", "serviceAccount": {"displayName": "App"}}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["email"], email("app-one"));
    let (status, again) = fake
        .owner("POST", &accounts, json!({"accountId": "app-one"}))
        .await;
    assert_eq!(
        (status, again["error"]["status"].as_str()),
        (409, Some("ALREADY_EXISTS"))
    );
    let (status, bad) = fake
        .owner("POST", &accounts, json!({"accountId": "Bad_Id"}))
        .await;
    assert_eq!(
        (status, bad["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );

    // PATCH with an update mask changes only the masked fields.
    let (status, patched) = fake
        .owner(
            "PATCH",
            &format!("{accounts}/{}", email("app-one")),
            json!({"serviceAccount": {"description": "d"}, "updateMask": "description"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            patched["description"].as_str(),
            patched["displayName"].as_str()
        ),
        (Some("d"), Some("App"))
    );

    // Etags: a write with the etag read succeeds, a second with the same
    // (now stale) etag is ABORTED, one without an etag overwrites.
    let project = format!("/v3/projects/{PROJECT}");
    let (_, policy) = fake
        .owner("POST", &format!("{project}:getIamPolicy"), json!({}))
        .await;
    let etag = policy["etag"].as_str().expect("etag").to_string();
    let write = |etag: Option<&str>, member: &str| {
        let mut policy = json!({"bindings": [{"role": "roles/viewer", "members": [member]}]});
        if let Some(etag) = etag {
            policy["etag"] = json!(etag);
        }
        json!({"policy": policy})
    };
    let (status, _) = fake
        .owner(
            "POST",
            &format!("{project}:setIamPolicy"),
            write(Some(&etag), "user:a@x"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, aborted) = fake
        .owner(
            "POST",
            &format!("{project}:setIamPolicy"),
            write(Some(&etag), "user:b@x"),
        )
        .await;
    assert_eq!(
        (status, aborted["error"]["status"].as_str()),
        (409, Some("ABORTED"))
    );
    let (status, overwritten) = fake
        .owner(
            "POST",
            &format!("{project}:setIamPolicy"),
            write(None, "user:c@x"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(overwritten["bindings"][0]["members"], json!(["user:c@x"]));
    assert_ne!(overwritten["etag"].as_str(), Some(etag.as_str()));

    // Deleting the account removes it and its policy.
    let (status, _) = fake
        .call(
            "DELETE",
            &format!("{accounts}/{}", email("app-one")),
            Some(OWNER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = fake
        .call(
            "GET",
            &format!("{accounts}/{}", email("app-one")),
            Some(OWNER_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Injected faults answer with Google's error shape and Retry-After.
    let (status, _) = fake
        .call(
            "POST",
            "/admin/faults",
            None,
            Some(json!({"operation": "iam.projects.serviceAccounts.get", "status": 429, "retryAfter": 3})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, throttled) = fake
        .call(
            "GET",
            &format!("{accounts}/{}", email("x-y-z-w")),
            Some(OWNER_TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (status, throttled["error"]["status"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED"))
    );
    let (_, calls) = fake.call("GET", "/admin/calls", None, None).await;
    assert!(calls["writes"].as_u64() >= Some(4), "{calls}");
}

#[tokio::test]
async fn sts_verifies_the_kubernetes_token_and_impersonation_needs_workload_identity_user() {
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    let fake = Fake::start(Some(cp.ca_pem().as_bytes())).await;
    let provider =
        format!("projects/{NUMBER}/locations/global/workloadIdentityPools/pool/providers/k8s");
    fake.call(
        "POST",
        "/admin/pools",
        None,
        Some(json!({"projectNumber": NUMBER, "pool": "pool", "provider": "k8s", "issuer": cp.issuer()})),
    )
    .await;
    fake.owner(
        "POST",
        &format!("/v1/projects/{PROJECT}/serviceAccounts"),
        json!({"accountId": "impersonated"}),
    )
    .await;
    let exchange = |token: String, audience: String| {
        let http = fake.http.clone();
        let url = fake.url.clone();
        async move {
            let response = http
                .post(format!("{url}/v1/token"))
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("audience", &audience),
                    ("scope", "https://www.googleapis.com/auth/cloud-platform"),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("subject_token", &token),
                    ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ])
                .send()
                .await
                .expect("sts");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let token = cp
        .service_account_token(
            "default",
            "default",
            &format!("https://iam.googleapis.com/{provider}"),
        )
        .await
        .expect("token");
    // Wrong audience in the token: refused.
    let wrong = cp
        .service_account_token("default", "default", "sts.amazonaws.com")
        .await
        .expect("token");
    let (status, body) = exchange(wrong, format!("//iam.googleapis.com/{provider}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // Expired, not yet valid, or signed by another key: refused.
    for forgery in [Forgery::Expired, Forgery::NotYetValid, Forgery::ForeignKey] {
        let (status, body) = exchange(
            forged(&cp, &token, forgery),
            format!("//iam.googleapis.com/{provider}"),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    // A tampered signature: refused.
    let tampered = format!("{}x", token.trim_end_matches('='));
    let (status, _) = exchange(tampered, format!("//iam.googleapis.com/{provider}")).await;
    assert_eq!(status, 400);
    // Unknown provider: refused.
    let (status, _) = exchange(
        token.clone(),
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/x/providers/y"
            .into(),
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = exchange(token, format!("//iam.googleapis.com/{provider}")).await;
    assert_eq!(status, 200, "{body}");
    let federated = body["access_token"].as_str().expect("token").to_string();
    let impersonate = format!(
        "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        email("impersonated")
    );
    let body =
        json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"});
    let (status, denied) = fake
        .call("POST", &impersonate, Some(&federated), Some(body.clone()))
        .await;
    assert_eq!(
        (status, denied["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );

    let member = format!(
        "principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/pool/subject/system:serviceaccount:default:default"
    );
    fake.owner(
        "POST",
        &format!("/v1/projects/{PROJECT}/serviceAccounts/{}:setIamPolicy", email("impersonated")),
        json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}}),
    )
    .await;
    let (status, granted) = fake
        .call("POST", &impersonate, Some(&federated), Some(body))
        .await;
    assert_eq!(status, 200, "{granted}");
    assert!(granted["accessToken"].as_str().is_some());
    assert!(
        granted["expireTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

/// `POST /admin/reset` (what an e2e run on a long-lived cluster does between
/// scenarios): accounts, policies and faults go; projects and the callers'
/// tokens stay, and no etag handed out before comes back.
#[tokio::test]
async fn reset_forgets_resources_and_faults_but_not_projects_or_tokens() {
    let fake = Fake::start(None).await;
    let accounts = format!("/v1/projects/{PROJECT}/serviceAccounts");
    let create = || fake.owner("POST", &accounts, json!({"accountId": "before-reset"}));
    let (status, body) = create().await;
    assert_eq!(status, 200, "{body}");
    let policy = format!("/v3/projects/{PROJECT}:getIamPolicy");
    let (_, before) = fake.owner("POST", &policy, json!({})).await;
    fake.call(
        "POST",
        "/admin/faults",
        None,
        Some(json!({"operation": "*", "status": 503, "times": 5})),
    )
    .await;

    let (status, _) = fake.call("POST", "/admin/reset", None, None).await;
    assert_eq!(status, 204);
    let (status, state) = fake.call("GET", "/admin/state", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(state["serviceAccounts"], json!([]), "{state}");
    // No fault left, the owner's token still valid, the project still there.
    let (status, after) = fake.owner("POST", &policy, json!({})).await;
    assert_eq!(status, 200, "{after}");
    assert_ne!(after["etag"], before["etag"]);
    let (status, body) = create().await;
    assert_eq!(status, 200, "{body}");
}
