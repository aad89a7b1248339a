//! IAM v1 service accounts and the `getIamPolicy` / `setIamPolicy` methods of
//! IAM (service accounts) and Resource Manager v3 (projects). A policy's etag
//! changes on every write; a `setIamPolicy` carrying a stale etag gets 409
//! `ABORTED`, one without an etag overwrites, as in GCP.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{GcpCloud, Request, rpc_error, with_faults};

#[derive(Clone, Debug)]
pub struct Account {
    pub project: String,
    pub email: String,
    pub unique_id: String,
    pub display_name: String,
    pub description: String,
}

impl Account {
    pub fn name(&self) -> String {
        format!("projects/{}/serviceAccounts/{}", self.project, self.email)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name(),
            "projectId": self.project,
            "uniqueId": self.unique_id,
            "email": self.email,
            "displayName": self.display_name,
            "description": self.description,
            "oauth2ClientId": self.unique_id,
            "etag": base64::engine::general_purpose::STANDARD.encode(self.unique_id.as_bytes()),
        })
    }
}

/// One role binding: a role, its members and, from policy version 3, an
/// IAM Condition (`{expression, title, description}`) kept verbatim.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleBinding {
    pub role: String,
    pub members: Vec<String>,
    pub condition: Option<Value>,
}

/// An IAM policy and its write counter (the etag).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub bindings: Vec<RoleBinding>,
    pub revision: u64,
}

/// What GCP says to a caller that reads or writes a policy holding
/// conditional bindings without version 3.
const VERSION_REQUIRED: &str = "Policy contains conditional role bindings: request and write it with policy version 3 (requestedPolicyVersion: 3, version: 3); see https://cloud.google.com/iam/help/conditions/resource-policies";

impl Policy {
    pub fn etag(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("etag-{}", self.revision))
    }

    fn conditional(&self) -> bool {
        self.bindings.iter().any(|b| b.condition.is_some())
    }

    /// The policy as `getIamPolicy` returns it to a caller asking for
    /// `requested` (0 or 1 when unset): refused below 3 when a binding has a
    /// condition, as GCP does; `version` is 3 only then.
    pub fn to_json(&self, requested: u64) -> Result<Value, &'static str> {
        if self.conditional() && requested < 3 {
            return Err(VERSION_REQUIRED);
        }
        let bindings: Vec<Value> = self
            .bindings
            .iter()
            .map(|b| {
                let mut binding = json!({"role": b.role, "members": b.members});
                if let Some(condition) = &b.condition {
                    binding["condition"] = condition.clone();
                }
                binding
            })
            .collect();
        let version = if self.conditional() { 3 } else { 1 };
        let mut policy = json!({"version": version, "etag": self.etag()});
        if !bindings.is_empty() {
            policy["bindings"] = Value::Array(bindings);
        }
        Ok(policy)
    }

    /// Whether `member` holds `role` without a condition (the fake does not
    /// evaluate CEL; a conditional grant never counts).
    pub fn grants(&self, role: &str, member: &str) -> bool {
        self.bindings.iter().any(|b| {
            b.role == role && b.condition.is_none() && b.members.iter().any(|m| m == member)
        })
    }
}

/// `requestedPolicyVersion` from the body (`options`, Resource Manager v3)
/// or the query (`options.requestedPolicyVersion`, IAM v1).
fn requested_version(request: &Request) -> u64 {
    let from_body = request.json()["options"]["requestedPolicyVersion"].as_u64();
    let from_query = request.query.split('&').find_map(|pair| {
        pair.strip_prefix("options.requestedPolicyVersion=")
            .and_then(|v| v.parse().ok())
    });
    from_body.or(from_query).unwrap_or(0)
}

fn not_found(what: &str) -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found."),
    )
}

/// `serviceAccounts.list`: a project's accounts by email, `pageSize`
/// (default 20, at most 100) at a time, `nextPageToken` naming the next
/// page's first email.
fn list(fake: &GcpCloud, project: &str, request: &Request) -> Response {
    let query = |key: &str| {
        request.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key)
                .then(|| crate::percent::decode(v, true))
                .flatten()
        })
    };
    let size = query("pageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
        .min(100);
    let after = query("pageToken").unwrap_or_default();
    let state = fake.state();
    let mut accounts = state
        .accounts
        .values()
        .filter(|a| a.project == project && a.email.as_str() >= after.as_str());
    let page: Vec<Value> = accounts.by_ref().take(size).map(Account::to_json).collect();
    let mut body = json!({ "accounts": page });
    if let Some(next) = accounts.next() {
        body["nextPageToken"] = json!(next.email);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(crate) async fn handle(fake: &GcpCloud, request: Request) -> Response {
    let path = request.path.clone();
    if let Some(rest) = path.strip_prefix("/v3/") {
        return match rest.split_once(':') {
            Some((resource, "getIamPolicy")) if resource.starts_with("projects/") => {
                with_faults(fake, "cloudresourcemanager.projects.getIamPolicy", async {
                    get_policy(fake, resource, &request)
                })
                .await
            }
            Some((resource, "setIamPolicy")) if resource.starts_with("projects/") => {
                with_faults(fake, "cloudresourcemanager.projects.setIamPolicy", async {
                    set_policy(fake, resource, &request)
                })
                .await
            }
            _ => not_found(&format!("Method {path}")),
        };
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return not_found(&format!("Method {path}"));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (request.method.clone(), segments.as_slice()) {
        (Method::GET, ["projects", project, "serviceAccounts"]) => {
            with_faults(fake, "iam.projects.serviceAccounts.list", async {
                list(fake, project, &request)
            })
            .await
        }
        (Method::POST, ["projects", project, "serviceAccounts"]) => {
            with_faults(fake, "iam.projects.serviceAccounts.create", async {
                create(fake, project, &request)
            })
            .await
        }
        (method, ["projects", project, "serviceAccounts", account]) => {
            if let Some((email, verb)) = account.split_once(':') {
                let resource = format!("projects/{project}/serviceAccounts/{email}");
                if resolve(fake, project, email).is_none() {
                    return not_found(&format!("Service account {resource}"));
                }
                let resource = format!(
                    "projects/{}/serviceAccounts/{email}",
                    resolve(fake, project, email).unwrap_or_default()
                );
                return match verb {
                    "getIamPolicy" => {
                        with_faults(fake, "iam.projects.serviceAccounts.getIamPolicy", async {
                            get_policy(fake, &resource, &request)
                        })
                        .await
                    }
                    "setIamPolicy" => {
                        with_faults(fake, "iam.projects.serviceAccounts.setIamPolicy", async {
                            set_policy(fake, &resource, &request)
                        })
                        .await
                    }
                    _ => not_found(&format!("Method {verb}")),
                };
            }
            let email = *account;
            match method {
                Method::GET => {
                    with_faults(fake, "iam.projects.serviceAccounts.get", async {
                        match fake.state().accounts.get(email) {
                            Some(a) if project == &"-" || a.project == *project => {
                                axum::Json(a.to_json()).into_response()
                            }
                            _ => not_found(&format!(
                                "Service account projects/{project}/serviceAccounts/{email}"
                            )),
                        }
                    })
                    .await
                }
                Method::PATCH | Method::PUT => {
                    with_faults(fake, "iam.projects.serviceAccounts.patch", async {
                        patch(fake, email, &request)
                    })
                    .await
                }
                Method::DELETE => {
                    with_faults(fake, "iam.projects.serviceAccounts.delete", async {
                        let mut state = fake.state();
                        match state.accounts.remove(email) {
                            Some(a) => {
                                state.policies.remove(&a.name());
                                axum::Json(json!({})).into_response()
                            }
                            None => not_found(&format!("Service account {email}")),
                        }
                    })
                    .await
                }
                _ => not_found(&format!("Method {path}")),
            }
        }
        _ => not_found(&format!("Method {path}")),
    }
}

/// The project of an existing account, `-` standing for any project.
fn resolve(fake: &GcpCloud, project: &str, email: &str) -> Option<String> {
    fake.state()
        .accounts
        .get(email)
        .filter(|a| project == "-" || a.project == project)
        .map(|a| a.project.clone())
}

fn valid_account_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (6..=30).contains(&id.len())
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn create(fake: &GcpCloud, project: &str, request: &Request) -> Response {
    let body = request.json();
    let account_id = body["accountId"].as_str().unwrap_or_default().to_string();
    if !valid_account_id(&account_id) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!(
                "Invalid account ID '{account_id}': it must be 6-30 characters of lower-case letters, digits and hyphens, starting with a letter."
            ),
        );
    }
    let email = format!("{account_id}@{project}.iam.gserviceaccount.com");
    let mut state = fake.state();
    if !state.projects.contains_key(project) {
        return rpc_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Project {project} not found or permission denied."),
        );
    }
    if state.accounts.contains_key(&email) {
        return rpc_error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!(
                "Service account {account_id} already exists within project projects/{project}."
            ),
        );
    }
    let unique_id = format!("1{:020}", state.accounts.len() as u64 + 1000);
    let account = Account {
        project: project.to_string(),
        email: email.clone(),
        unique_id,
        display_name: body["serviceAccount"]["displayName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        description: body["serviceAccount"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let json = account.to_json();
    state.policies.insert(account.name(), Policy::default());
    state.accounts.insert(email, account);
    axum::Json(json).into_response()
}

fn patch(fake: &GcpCloud, email: &str, request: &Request) -> Response {
    let body = request.json();
    // PATCH carries {serviceAccount, updateMask}; the older PUT the account itself.
    let fields = if body.get("serviceAccount").is_some() {
        body["serviceAccount"].clone()
    } else {
        body.clone()
    };
    let mask: Vec<String> = body["updateMask"]
        .as_str()
        .map(|m| m.split(',').map(|f| f.trim().to_string()).collect())
        .unwrap_or_else(|| vec!["displayName".into(), "description".into()]);
    let mut state = fake.state();
    let Some(account) = state.accounts.get_mut(email) else {
        return not_found(&format!("Service account {email}"));
    };
    for field in &mask {
        match field.as_str() {
            "displayName" | "display_name" => {
                account.display_name = fields["displayName"].as_str().unwrap_or_default().into()
            }
            "description" => {
                account.description = fields["description"].as_str().unwrap_or_default().into()
            }
            other => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    format!("Field {other} cannot be updated."),
                );
            }
        }
    }
    axum::Json(account.to_json()).into_response()
}

fn get_policy(fake: &GcpCloud, resource: &str, request: &Request) -> Response {
    let requested = requested_version(request);
    match fake
        .state()
        .policies
        .get(resource)
        .map(|p| p.to_json(requested))
    {
        Some(Ok(policy)) => axum::Json(policy).into_response(),
        Some(Err(message)) => rpc_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message),
        None => rpc_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("The caller does not have permission on {resource}, or it does not exist."),
        ),
    }
}

/// Principals one allow policy may name (GCP's documented limit).
pub const MAX_PRINCIPALS: usize = 1500;

fn set_policy(fake: &GcpCloud, resource: &str, request: &Request) -> Response {
    let body = request.json();
    let new = &body["policy"];
    let mut state = fake.state();
    let Some(current) = state.policies.get_mut(resource) else {
        return rpc_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!("The caller does not have permission on {resource}, or it does not exist."),
        );
    };
    if let Some(etag) = new["etag"].as_str()
        && etag != current.etag()
    {
        return rpc_error(
            StatusCode::CONFLICT,
            "ABORTED",
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
        );
    }
    let mut bindings = Vec::new();
    for binding in new["bindings"].as_array().into_iter().flatten() {
        let role = binding["role"].as_str().unwrap_or_default().to_string();
        let members: Vec<String> = binding["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        if role.is_empty() || members.is_empty() {
            continue;
        }
        // The fake serves no custom roles API (`projects.roles`), so every
        // custom role is one that does not exist, and GCP refuses a policy
        // naming a role that does not exist.
        if role.starts_with("projects/") || role.starts_with("organizations/") {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                format!("Role ({role}) does not exist in the resource's hierarchy."),
            );
        }
        let condition = binding.get("condition").filter(|c| !c.is_null()).cloned();
        bindings.push(RoleBinding {
            role,
            members,
            condition,
        });
    }
    // GCP's limit on one allow policy: its bindings may name 1,500
    // principals in all (a principal in two bindings counts twice).
    let principals: usize = bindings.iter().map(|b| b.members.len()).sum();
    if principals > MAX_PRINCIPALS {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            format!(
                "The number of members in the policy ({principals}) is larger than the maximum allowed size {MAX_PRINCIPALS}."
            ),
        );
    }
    // A write below version 3 may neither add conditions nor replace a
    // policy that has them (it would drop them).
    let version = new["version"].as_u64().unwrap_or(0);
    if version < 3 && (current.conditional() || bindings.iter().any(|b| b.condition.is_some())) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            VERSION_REQUIRED,
        );
    }
    let now = std::time::Instant::now();
    let added: Vec<(String, String, String)> = bindings
        .iter()
        .filter(|b| b.condition.is_none())
        .flat_map(|b| b.members.iter().map(move |m| (b.role.clone(), m.clone())))
        .filter(|(role, member)| !current.grants(role, member))
        .map(|(role, member)| (resource.to_string(), role, member))
        .collect();
    current.bindings = bindings;
    current.revision += 1;
    let written = current.to_json(3);
    // Grants made before a delay was configured have long propagated.
    if state.propagation_seconds > 0 {
        for grant in added {
            state.granted_at.insert(grant, now);
        }
    }
    match written {
        Ok(policy) => axum::Json(policy).into_response(),
        Err(message) => rpc_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message),
    }
}
