//! Microsoft.Authorization: role definitions (built-in, read-only) and role
//! assignments at any scope.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AzureFake, Request, cloud_error, roles, with_faults};

const VERSIONS: &[&str] = &["2022-04-01"];
const ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";
const DEFINITION_TYPE: &str = "Microsoft.Authorization/roleDefinitions";

#[derive(Clone, Debug)]
pub struct Assignment {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
}

impl Assignment {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "type": ASSIGNMENT_TYPE,
            "properties": {
                "roleDefinitionId": self.role_definition_id,
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "scope": self.scope,
            },
        })
    }
}

/// `{scope}/providers/Microsoft.Authorization/{kind}[/{name}]`
fn split(request: &Request) -> Option<(String, String, Option<String>)> {
    let marker = "/providers/microsoft.authorization/";
    let at = request.lower.rfind(marker)?;
    let scope = request.path[..at].to_string();
    let rest: Vec<&str> = request.path[at + marker.len()..].split('/').collect();
    Some((
        scope,
        rest[0].to_ascii_lowercase(),
        rest.get(1).map(|s| s.to_string()),
    ))
}

fn definition_id(scope: &str, guid: &str) -> String {
    let subscription = scope
        .split('/')
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("subscriptions"))
        .map(|w| w[1].to_string());
    match subscription {
        Some(sub) => format!("/subscriptions/{sub}/providers/{DEFINITION_TYPE}/{guid}"),
        None => format!("/providers/{DEFINITION_TYPE}/{guid}"),
    }
}

fn definition_json(scope: &str, name: &str, guid: &str) -> Value {
    json!({
        "id": definition_id(scope, guid),
        "name": guid,
        "type": DEFINITION_TYPE,
        "properties": {
            "roleName": name,
            "type": "BuiltInRole",
            "description": format!("Built-in role {name}"),
            "assignableScopes": ["/"],
            "permissions": [],
        },
    })
}

/// Whether two scopes are the same, or one contains the other.
fn related(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b
        || a.starts_with(&format!("{b}/"))
        || b.starts_with(&format!("{a}/"))
        || a.is_empty()
        || b.is_empty()
}

pub(super) async fn handle(fake: &AzureFake, request: Request) -> Response {
    if let Some(rejected) = request.require_version(VERSIONS, ASSIGNMENT_TYPE) {
        return rejected;
    }
    let Some((scope, kind, name)) = split(&request) else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceId",
            "Invalid resource ID.",
        );
    };
    match (kind.as_str(), name, request.method.clone()) {
        ("roledefinitions", None, Method::GET) => {
            with_faults(fake, "RoleDefinitions_List", || async {
                let filter = request.query.get("$filter").cloned().unwrap_or_default();
                let wanted = filter
                    .strip_prefix("roleName eq '")
                    .and_then(|f| f.strip_suffix('\''))
                    .map(str::to_string);
                let value: Vec<Value> = roles::BUILT_IN
                    .iter()
                    .filter(|(n, _)| wanted.as_deref().is_none_or(|w| w == *n))
                    .map(|(n, id)| definition_json(&scope, n, id))
                    .collect();
                axum::Json(json!({"value": value})).into_response()
            })
            .await
        }
        ("roledefinitions", Some(guid), Method::GET) => {
            with_faults(fake, "RoleDefinitions_Get", || async {
                match roles::by_id(&guid) {
                    Some(name) => {
                        axum::Json(definition_json(&scope, name, &guid.to_ascii_lowercase()))
                            .into_response()
                    }
                    None => cloud_error(
                        StatusCode::NOT_FOUND,
                        "RoleDefinitionDoesNotExist",
                        format!("The specified role definition with ID '{guid}' does not exist."),
                    ),
                }
            })
            .await
        }
        ("roleassignments", None, Method::GET) => {
            with_faults(fake, "RoleAssignments_ListForScope", || async {
                let filter = request.query.get("$filter").cloned().unwrap_or_default();
                let principal = filter
                    .strip_prefix("principalId eq '")
                    .and_then(|f| f.strip_suffix('\''))
                    .map(str::to_ascii_lowercase);
                let state = fake.state();
                let value: Vec<Value> = state
                    .assignments
                    .values()
                    .filter(|a| related(&a.scope, &scope))
                    .filter(|a| {
                        principal
                            .as_deref()
                            .is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p))
                    })
                    .map(Assignment::to_json)
                    .collect();
                axum::Json(json!({"value": value})).into_response()
            })
            .await
        }
        ("roleassignments", Some(name), Method::GET) => {
            with_faults(fake, "RoleAssignments_Get", || async {
                let id = format!("{scope}/providers/{ASSIGNMENT_TYPE}/{name}").to_ascii_lowercase();
                match fake.state().assignments.get(&id) {
                    Some(a) => axum::Json(a.to_json()).into_response(),
                    None => cloud_error(
                        StatusCode::NOT_FOUND,
                        "RoleAssignmentNotFound",
                        format!("The role assignment '{name}' is not found."),
                    ),
                }
            })
            .await
        }
        ("roleassignments", Some(name), Method::PUT) => {
            with_faults(fake, "RoleAssignments_Create", || async {
                create(fake, &request, &scope, &name)
            })
            .await
        }
        ("roleassignments", Some(name), Method::DELETE) => {
            with_faults(fake, "RoleAssignments_Delete", || async {
                let id = format!("{scope}/providers/{ASSIGNMENT_TYPE}/{name}").to_ascii_lowercase();
                match fake.state().assignments.remove(&id) {
                    Some(a) => axum::Json(a.to_json()).into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            })
            .await
        }
        _ => cloud_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The requested method is not allowed.",
        ),
    }
}

fn create(fake: &AzureFake, request: &Request, scope: &str, name: &str) -> Response {
    if uuid::Uuid::parse_str(name).is_err() {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        );
    }
    let body = request.json().unwrap_or_default();
    let props = &body["properties"];
    let role_definition_id = props["roleDefinitionId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let principal_id = props["principalId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let principal_type = props["principalType"]
        .as_str()
        .unwrap_or("ServicePrincipal")
        .to_string();
    let guid = role_definition_id.rsplit('/').next().unwrap_or_default();
    if roles::by_id(guid).is_none() {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{guid}' does not exist."),
        );
    }
    let replication = Duration::from_secs(fake.config().principal_replication_seconds);
    let mut state = fake.state();
    let created = state
        .identities
        .values()
        .chain(state.apps.values())
        .find(|i| i.principal_id.eq_ignore_ascii_case(&principal_id))
        .map(|i| i.created);
    let visible = created.is_some_and(|c| Instant::now().duration_since(c) >= replication);
    if !visible {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "PrincipalNotFound",
            format!(
                "Principal {} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                principal_id.replace('-', ""),
                fake.tenant_id
            ),
        );
    }
    let id = format!("{scope}/providers/{ASSIGNMENT_TYPE}/{name}");
    let key = id.to_ascii_lowercase();
    let same = |a: &Assignment| {
        a.scope.eq_ignore_ascii_case(scope)
            && a.principal_id.eq_ignore_ascii_case(&principal_id)
            && a.role_definition_id
                .rsplit('/')
                .next()
                .is_some_and(|g| g.eq_ignore_ascii_case(guid))
    };
    if let Some(existing) = state.assignments.get(&key) {
        if same(existing) {
            return (StatusCode::CREATED, axum::Json(existing.to_json())).into_response();
        }
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        );
    }
    if state.assignments.values().any(same) {
        return cloud_error(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        );
    }
    let assignment = Assignment {
        id,
        name: name.to_string(),
        scope: scope.to_string(),
        role_definition_id,
        principal_id,
        principal_type,
    };
    let body = assignment.to_json();
    state.assignments.insert(key, assignment);
    (StatusCode::CREATED, axum::Json(body)).into_response()
}
