//! The Azure fake over plain HTTP: ARM semantics, Entra token exchange with
//! a real ServiceAccount token from the local control plane, fault injection.

use std::sync::Arc;

use serde_json::{Value, json};
use wib_fakes::azure::{AzureCloud, router};
use wib_testenv::{ControlPlane, Options};

mod common;
use common::{Forgery, forged};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";
const AUD: &str = "api://AzureADTokenExchange";

struct Fake {
    url: String,
    http: reqwest::Client,
    _fake: Arc<AzureCloud>,
}

impl Fake {
    async fn start(cp: &ControlPlane) -> Self {
        let fake = AzureCloud::new(TENANT.into(), Some(cp.ca_pem().as_bytes())).expect("fake");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = router(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            http: reqwest::Client::new(),
            _fake: fake,
        }
    }

    async fn admin(&self, path: &str, body: Value) {
        let status = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("admin")
            .status();
        assert!(status.is_success(), "{path}: {status}");
    }

    async fn exchange(&self, client_id: &str, assertion: &str) -> (u16, Value) {
        wib_testenv::azure::entra_token(&self.http, &self.url, client_id, assertion)
            .await
            .expect("token endpoint")
    }

    async fn arm(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("arm");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, retry_after)
    }
}

fn identity_path(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

#[tokio::test]
async fn entra_exchanges_only_tokens_matching_a_federated_credential_and_arm_follows_the_spec() {
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    let fake = Fake::start(&cp).await;
    let operator_token = cp
        .service_account_token("default", "operator", AUD)
        .await
        .expect("token");
    fake.admin(
        "/admin/apps",
        json!({"clientId": "operator-app", "federatedCredentials": [{"issuer": cp.issuer(), "subject": "system:serviceaccount:default:operator"}]}),
    )
    .await;

    // Token exchange: the real thing, and each way it can fail.
    let (status, body) = fake.exchange("operator-app", &operator_token).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let other_sa = cp
        .service_account_token("default", "intruder", AUD)
        .await
        .expect("token");
    let (status, body) = fake.exchange("operator-app", &other_sa).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (400, Some(700213)),
        "{body}"
    );
    let wrong_audience = cp
        .service_account_token("default", "operator", "sts.amazonaws.com")
        .await
        .expect("token");
    let (_, body) = fake.exchange("operator-app", &wrong_audience).await;
    assert_eq!(body["error_codes"][0].as_u64(), Some(700212), "{body}");
    fake.admin(
        "/admin/apps",
        json!({"clientId": "other-issuer-app", "federatedCredentials": [{"issuer": "https://issuer.example.com", "subject": "system:serviceaccount:default:operator"}]}),
    )
    .await;
    let (_, body) = fake.exchange("other-issuer-app", &operator_token).await;
    assert_eq!(body["error_codes"][0].as_u64(), Some(700211), "{body}");
    for forgery in [Forgery::Expired, Forgery::NotYetValid] {
        let (_, body) = fake
            .exchange("operator-app", &forged(&cp, &operator_token, forgery))
            .await;
        assert_eq!(body["error_codes"][0].as_u64(), Some(700024), "{body}");
    }
    // Current and well-formed, signed by a key the issuer never published.
    let (status, body) = fake
        .exchange(
            "operator-app",
            &forged(&cp, &operator_token, Forgery::ForeignKey),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (_, body) = fake.exchange("no-such-app", &operator_token).await;
    assert_eq!(body["error_codes"][0].as_u64(), Some(700016), "{body}");
    let mut tampered = operator_token.clone();
    tampered.pop();
    tampered.push(if operator_token.ends_with('A') {
        'B'
    } else {
        'A'
    });
    let (status, _) = fake.exchange("operator-app", &tampered).await;
    assert_eq!(status, 401, "a bad signature is refused");

    // ARM needs a token the tenant issued.
    let (status, body, _) = fake
        .arm(
            reqwest::Method::GET,
            &format!("{}?api-version=2023-01-31", identity_path("id1")),
            "forged",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );

    let get = format!("{}?api-version=2023-01-31", identity_path("id1"));
    let (status, body, _) = fake.arm(reqwest::Method::GET, &get, &access, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound")),
        "{body}"
    );
    let (status, _, _) = fake
        .arm(reqwest::Method::GET, &identity_path("id1"), &access, None)
        .await;
    assert_eq!(status, 400, "api-version is required");

    let (status, identity, _) = fake
        .arm(
            reqwest::Method::PUT,
            &get,
            &access,
            Some(json!({"location": "westeurope", "tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(status, 201, "{identity}");
    assert_eq!(identity["properties"]["tenantId"], TENANT);
    let principal = identity["properties"]["principalId"]
        .as_str()
        .expect("principal")
        .to_string();
    let client_id = identity["properties"]["clientId"]
        .as_str()
        .expect("client")
        .to_string();
    let (status, _, _) = fake
        .arm(
            reqwest::Method::PUT,
            &get,
            &access,
            Some(json!({"location": "westeurope"})),
        )
        .await;
    assert_eq!(status, 200, "PUT of an existing identity updates it");

    // Federated credentials: 20 at most, concurrent writes refused.
    for i in 0..20 {
        let path = format!(
            "{}/federatedIdentityCredentials/fic-{i}?api-version=2023-01-31",
            identity_path("id1")
        );
        let body = json!({"properties": {"issuer": cp.issuer(), "subject": format!("system:serviceaccount:ns:sa{i}"), "audiences": [AUD]}});
        let (status, body, _) = fake
            .arm(reqwest::Method::PUT, &path, &access, Some(body))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let path = format!(
        "{}/federatedIdentityCredentials/fic-20?api-version=2023-01-31",
        identity_path("id1")
    );
    let body = json!({"properties": {"issuer": cp.issuer(), "subject": "system:serviceaccount:ns:sa20", "audiences": [AUD]}});
    let (status, body, _) = fake
        .arm(reqwest::Method::PUT, &path, &access, Some(body))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("20"),
        "{body}"
    );

    fake.admin("/admin/config", json!({"ficWriteMillis": 300}))
        .await;
    let fic = |i: u32| {
        let path = format!(
            "{}/federatedIdentityCredentials/fic-{i}?api-version=2023-01-31",
            identity_path("id1")
        );
        let body = json!({"properties": {"issuer": cp.issuer(), "subject": format!("system:serviceaccount:ns:sa{i}"), "audiences": [AUD]}});
        let (fake, access) = (&fake, &access);
        async move {
            fake.arm(reqwest::Method::PUT, &path, access, Some(body))
                .await
        }
    };
    let (a, b) = tokio::join!(fic(1), fic(2));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 409],
        "one write wins, the concurrent one is refused"
    );
    let conflict = if a.0 == 409 { a.1 } else { b.1 };
    assert_eq!(
        conflict["error"]["code"],
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    );

    // Role assignments: replication delay, duplicates, deterministic names.
    fake.admin("/admin/config", json!({"principalReplicationSeconds": 30}))
        .await;
    let scope = format!("/subscriptions/{SUB}/resourceGroups/rg");
    let role = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6"
    );
    let assign = |name: &str| {
        format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"
        )
    };
    let body = json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
    let first = "11111111-1111-1111-1111-111111111111";
    let (status, err, _) = fake
        .arm(
            reqwest::Method::PUT,
            &assign(first),
            &access,
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("PrincipalNotFound")),
        "{err}"
    );
    fake.admin("/admin/config", json!({"principalReplicationSeconds": 0}))
        .await;
    let (status, _, _) = fake
        .arm(
            reqwest::Method::PUT,
            &assign(first),
            &access,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201);
    let (status, err, _) = fake
        .arm(
            reqwest::Method::PUT,
            &assign("22222222-2222-2222-2222-222222222222"),
            &access,
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("RoleAssignmentExists"))
    );
    let list = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=principalId%20eq%20'{principal}'"
    );
    let (_, listed, _) = fake.arm(reqwest::Method::GET, &list, &access, None).await;
    assert_eq!(
        listed["value"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let defs = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01&$filter=roleName%20eq%20'Key%20Vault%20Secrets%20User'"
    );
    let (_, defs, _) = fake.arm(reqwest::Method::GET, &defs, &access, None).await;
    assert_eq!(
        defs["value"][0]["name"], "4633458b-17de-408a-b874-0445c86b69e6",
        "{defs}"
    );

    // Faults: 429 with Retry-After, then back to normal; counters see everything.
    fake.admin(
        "/admin/faults",
        json!({"operation": "UserAssignedIdentities_Get", "status": 429, "retryAfter": 3}),
    )
    .await;
    let (status, _, retry) = fake.arm(reqwest::Method::GET, &get, &access, None).await;
    assert_eq!((status, retry.as_deref()), (429, Some("3")));
    let (status, _, _) = fake.arm(reqwest::Method::GET, &get, &access, None).await;
    assert_eq!(status, 200);
    let calls: Value = fake
        .http
        .get(format!("{}/admin/calls", fake.url))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    assert_eq!(
        calls["operations"]["UserAssignedIdentities_Get"], 3,
        "unauthenticated and malformed calls are not served: {calls}"
    );
    assert!(
        calls["writes"].as_u64().unwrap_or_default() >= 25,
        "{calls}"
    );

    // ARM's managed-identity write limit per subscription, when enforced.
    fake.admin("/admin/config", json!({"identityWritesPerSecond": 2}))
        .await;
    let mut throttled = None;
    for i in 0..3 {
        let path = format!(
            "{}?api-version=2023-01-31",
            identity_path(&format!("burst-{i}"))
        );
        let (status, body, retry) = fake
            .arm(
                reqwest::Method::PUT,
                &path,
                &access,
                Some(json!({"location": "westeurope"})),
            )
            .await;
        if status == 429 {
            throttled = Some((body, retry));
        }
    }
    let (body, retry) = throttled.expect("the third write within a second is throttled");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(retry.as_deref(), Some("1"));
    fake.admin("/admin/config", json!({})).await;

    // Deleting the identity: 200, then 204 when already gone.
    let (status, _, _) = fake.arm(reqwest::Method::DELETE, &get, &access, None).await;
    assert_eq!(status, 200);
    let (status, _, _) = fake.arm(reqwest::Method::DELETE, &get, &access, None).await;
    assert_eq!(status, 204);
    let _ = client_id;
}
