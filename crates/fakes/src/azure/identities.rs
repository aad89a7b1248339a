//! Microsoft.ManagedIdentity: user-assigned identities and their federated
//! identity credentials.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AzureCloud, Request, cloud_error, now_rate_limited, with_faults};

const VERSIONS: &[&str] = &["2023-01-31", "2023-07-31-preview", "2024-11-30"];
const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
const FIC_TYPE: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";
/// Entra allows 20 federated identity credentials per identity.
pub const MAX_FICS: usize = 20;

#[derive(Clone, Debug)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub tenant_id: String,
    pub principal_id: String,
    pub client_id: String,
    pub created: Instant,
    pub fics: BTreeMap<String, Fic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fic {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl Identity {
    /// An Entra application outside ARM (wib's own identity in tests).
    pub fn app(client_id: &str) -> Self {
        Self {
            id: String::new(),
            name: client_id.to_string(),
            location: String::new(),
            tags: BTreeMap::new(),
            tenant_id: String::new(),
            principal_id: uuid::Uuid::new_v4().to_string(),
            client_id: client_id.to_string(),
            created: Instant::now() - Duration::from_secs(3600),
            fics: BTreeMap::new(),
        }
    }

    pub fn to_json(&self, with_fics: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "type": IDENTITY_TYPE,
            "location": self.location,
            "tags": self.tags,
            "properties": {
                "tenantId": self.tenant_id,
                "principalId": self.principal_id,
                "clientId": self.client_id,
            },
        });
        if with_fics {
            v["federatedIdentityCredentials"] =
                self.fics.values().map(|f| f.to_json(&self.id)).collect();
        }
        v
    }
}

impl Fic {
    fn to_json(&self, identity_id: &str) -> Value {
        json!({
            "id": format!("{identity_id}/federatedIdentityCredentials/{}", self.name),
            "name": self.name,
            "type": FIC_TYPE,
            "properties": {"issuer": self.issuer, "subject": self.subject, "audiences": self.audiences},
        })
    }
}

struct Path {
    subscription: String,
    resource_group: String,
    identity: Option<String>,
    fic: Option<Option<String>>,
}

fn parse(request: &Request) -> Option<Path> {
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
    if lower.len() < 7
        || lower[0] != "subscriptions"
        || lower[2] != "resourcegroups"
        || lower[4] != "providers"
        || lower[5] != "microsoft.managedidentity"
        || lower[6] != "userassignedidentities"
    {
        return None;
    }
    let fic = match lower.get(8).map(String::as_str) {
        None => None,
        Some("federatedidentitycredentials") => Some(parts.get(9).map(|s| s.to_string())),
        Some(_) => return None,
    };
    Some(Path {
        subscription: parts[1].to_string(),
        resource_group: parts[3].to_string(),
        identity: parts.get(7).map(|s| s.to_string()),
        fic,
    })
}

fn valid_name(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    (3..=max).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

pub(super) async fn handle(fake: &AzureCloud, request: Request) -> Response {
    if let Some(rejected) = request.require_version(VERSIONS, IDENTITY_TYPE) {
        return rejected;
    }
    let Some(path) = parse(&request) else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceId",
            format!("'{}' is not a valid resource ID.", request.path),
        );
    };
    let id = match &path.identity {
        Some(name) => format!(
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            path.subscription, path.resource_group
        ),
        None => String::new(),
    };
    let key = id.to_ascii_lowercase();
    match (&path.identity, &path.fic, request.method.clone()) {
        (None, None, Method::GET) => {
            with_faults(
                fake,
                "UserAssignedIdentities_ListByResourceGroup",
                || async {
                    let prefix = format!(
                        "/subscriptions/{}/resourcegroups/{}/",
                        path.subscription.to_ascii_lowercase(),
                        path.resource_group.to_ascii_lowercase()
                    );
                    let state = fake.state();
                    let value: Vec<Value> = state
                        .identities
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(_, i)| i.to_json(false))
                        .collect();
                    axum::Json(json!({"value": value})).into_response()
                },
            )
            .await
        }
        (Some(name), None, Method::GET) => {
            with_faults(fake, "UserAssignedIdentities_Get", || async {
                match fake.state().identities.get(&key) {
                    Some(identity) => axum::Json(identity.to_json(false)).into_response(),
                    None => not_found(name, &path.resource_group),
                }
            })
            .await
        }
        (Some(name), None, Method::PUT) => {
            with_faults(fake, "UserAssignedIdentities_CreateOrUpdate", || async {
                put_identity(fake, &request, &path, name, &id, &key)
            })
            .await
        }
        (Some(name), None, Method::PATCH) => {
            with_faults(fake, "UserAssignedIdentities_Update", || async {
                let body = request.json().unwrap_or_default();
                let mut state = fake.state();
                let Some(identity) = state.identities.get_mut(&key) else {
                    return not_found(name, &path.resource_group);
                };
                if let Some(tags) = body
                    .get("tags")
                    .and_then(|t| serde_json::from_value(t.clone()).ok())
                {
                    identity.tags = tags;
                }
                axum::Json(identity.to_json(false)).into_response()
            })
            .await
        }
        (Some(_), None, Method::DELETE) => {
            with_faults(fake, "UserAssignedIdentities_Delete", || async {
                match fake.state().identities.remove(&key) {
                    Some(_) => StatusCode::OK.into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            })
            .await
        }
        (Some(name), Some(None), Method::GET) => {
            with_faults(fake, "FederatedIdentityCredentials_List", || async {
                match fake.state().identities.get(&key) {
                    Some(identity) => {
                        let value: Vec<Value> = identity
                            .fics
                            .values()
                            .map(|f| f.to_json(&identity.id))
                            .collect();
                        axum::Json(json!({"value": value})).into_response()
                    }
                    None => not_found(name, &path.resource_group),
                }
            })
            .await
        }
        (Some(name), Some(Some(fic)), Method::GET) => {
            with_faults(fake, "FederatedIdentityCredentials_Get", || async {
                let state = fake.state();
                match state.identities.get(&key).and_then(|i| {
                    i.fics
                        .get(&fic.to_ascii_lowercase())
                        .map(|f| f.to_json(&i.id))
                }) {
                    Some(found) => axum::Json(found).into_response(),
                    None if state.identities.contains_key(&key) => cloud_error(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("Federated identity credential '{fic}' not found."),
                    ),
                    None => not_found(name, &path.resource_group),
                }
            })
            .await
        }
        (Some(name), Some(Some(fic)), Method::PUT) => {
            with_faults(
                fake,
                "FederatedIdentityCredentials_CreateOrUpdate",
                || async {
                    fic_write(fake, &key, name, &path.resource_group, || {
                        put_fic(fake, &request, &key, fic)
                    })
                    .await
                },
            )
            .await
        }
        (Some(name), Some(Some(fic)), Method::DELETE) => {
            with_faults(fake, "FederatedIdentityCredentials_Delete", || async {
                fic_write(fake, &key, name, &path.resource_group, || {
                    let mut state = fake.state();
                    let removed = state
                        .identities
                        .get_mut(&key)
                        .and_then(|i| i.fics.remove(&fic.to_ascii_lowercase()));
                    if removed.is_some() {
                        StatusCode::OK
                    } else {
                        StatusCode::NO_CONTENT
                    }
                    .into_response()
                })
                .await
            })
            .await
        }
        _ => cloud_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The requested method {} is not allowed on '{}'.",
                request.method, request.path
            ),
        ),
    }
}

fn not_found(name: &str, resource_group: &str) -> Response {
    cloud_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{IDENTITY_TYPE}/{name}' under resource group '{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn put_identity(
    fake: &AzureCloud,
    request: &Request,
    path: &Path,
    name: &str,
    id: &str,
    key: &str,
) -> Response {
    if !valid_name(name, 128) {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name can be up to 128 characters long. Valid characters include alphanumeric, underscore, and hyphen characters. The first character must be alphanumeric."
            ),
        );
    }
    let Some(body) = request.json() else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized.",
        );
    };
    let Some(location) = body
        .get("location")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
    else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "The location property is required for this definition.",
        );
    };
    if now_rate_limited(fake, &path.subscription) {
        let mut response = cloud_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:00:01.",
        );
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return response;
    }
    let tags: BTreeMap<String, String> = body
        .get("tags")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    let mut state = fake.state();
    if let Some(existing) = state.identities.get_mut(key) {
        existing.tags = tags;
        return (StatusCode::OK, axum::Json(existing.to_json(false))).into_response();
    }
    let identity = Identity {
        id: id.to_string(),
        name: name.to_string(),
        location: location.to_string(),
        tags,
        tenant_id: fake.tenant_id.clone(),
        principal_id: uuid::Uuid::new_v4().to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        created: Instant::now(),
        fics: BTreeMap::new(),
    };
    let body = identity.to_json(false);
    state.identities.insert(key.to_string(), identity);
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Serialises credential writes per identity the way Azure does: a write
/// that overlaps another on the same identity is refused with 409.
async fn fic_write(
    fake: &AzureCloud,
    key: &str,
    name: &str,
    resource_group: &str,
    write: impl FnOnce() -> Response,
) -> Response {
    {
        let mut state = fake.state();
        if !state.identities.contains_key(key) {
            return not_found(name, resource_group);
        }
        if !state.fic_busy.insert(key.to_string()) {
            return cloud_error(
                StatusCode::CONFLICT,
                "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                "Too many Federated Identity Credentials are written concurrently for the managed identity. Please retry after the previous write completes.",
            );
        }
    }
    let hold = fake.config().fic_write_millis;
    if hold > 0 {
        tokio::time::sleep(Duration::from_millis(hold)).await;
    }
    let response = write();
    fake.state().fic_busy.remove(key);
    response
}

fn put_fic(fake: &AzureCloud, request: &Request, key: &str, name: &str) -> Response {
    if !valid_name(name, 120) {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "The federated identity credential name '{name}' is invalid: 3-120 characters, alphanumeric, '-' or '_', starting with an alphanumeric character."
            ),
        );
    }
    let body = request.json().unwrap_or_default();
    let props = &body["properties"];
    let issuer = props["issuer"].as_str().unwrap_or_default().to_string();
    let subject = props["subject"].as_str().unwrap_or_default().to_string();
    let audiences: Vec<String> =
        serde_json::from_value(props["audiences"].clone()).unwrap_or_default();
    if !issuer.starts_with("https://") {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The issuer must be a valid https URL.",
        );
    }
    if subject.is_empty() || audiences.len() != 1 {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "A federated identity credential needs a subject and exactly one audience.",
        );
    }
    let mut state = fake.state();
    let Some(identity) = state.identities.get_mut(key) else {
        return cloud_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The managed identity was not found.",
        );
    };
    let lower = name.to_ascii_lowercase();
    if identity
        .fics
        .iter()
        .any(|(n, f)| *n != lower && f.issuer == issuer && f.subject == subject)
    {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "A federated identity credential with issuer '{issuer}' and subject '{subject}' already exists on this identity."
            ),
        );
    }
    if !identity.fics.contains_key(&lower) && identity.fics.len() >= MAX_FICS {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "The managed identity already has the maximum of {MAX_FICS} federated identity credentials."
            ),
        );
    }
    let created = !identity.fics.contains_key(&lower);
    let fic = Fic {
        name: name.to_string(),
        issuer,
        subject,
        audiences,
    };
    let body = fic.to_json(&identity.id);
    let written = super::fic_key(&identity.client_id, &lower);
    identity.fics.insert(lower, fic);
    state.fics_written.insert(written, Instant::now());
    (
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(body),
    )
        .into_response()
}
