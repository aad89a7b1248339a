//! Microsoft.Authorization: role definitions (built-in, read-only, and
//! custom ones created through the API) and role assignments at any scope.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AzureCloud, Request, cloud_error, roles, with_faults};

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

/// A custom role definition: a name unique in the tenant and its actions.
#[derive(Clone, Debug)]
pub struct CustomRole {
    pub guid: String,
    pub name: String,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub assignable_scopes: Vec<String>,
}

/// What the role definition endpoints serve, built-in or custom.
struct Definition<'a> {
    name: &'a str,
    guid: &'a str,
    custom: Option<&'a CustomRole>,
}

impl Definition<'_> {
    fn to_json(&self, scope: &str) -> Value {
        let (kind, actions, not_actions, scopes) = match self.custom {
            Some(c) => (
                "CustomRole",
                c.actions.clone(),
                c.not_actions.clone(),
                c.assignable_scopes.clone(),
            ),
            None => ("BuiltInRole", Vec::new(), Vec::new(), vec!["/".to_string()]),
        };
        json!({
            "id": definition_id(scope, self.guid),
            "name": self.guid,
            "type": DEFINITION_TYPE,
            "properties": {
                "roleName": self.name,
                "type": kind,
                "description": format!("{kind} {}", self.name),
                "assignableScopes": scopes,
                "permissions": [{"actions": actions, "notActions": not_actions, "dataActions": [], "notDataActions": []}],
            },
        })
    }
}

/// Every definition the fake knows, built-in first.
fn definitions(custom: &BTreeMap<String, CustomRole>) -> Vec<Definition<'_>> {
    roles::BUILT_IN
        .iter()
        .map(|(name, guid)| Definition {
            name,
            guid,
            custom: None,
        })
        .chain(custom.values().map(|c| Definition {
            name: &c.name,
            guid: &c.guid,
            custom: Some(c),
        }))
        .collect()
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

pub(super) async fn handle(fake: &AzureCloud, request: Request) -> Response {
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
                    .map(|n| n.replace("''", "'"));
                let state = fake.state();
                let value: Vec<Value> = definitions(&state.custom_roles)
                    .iter()
                    .filter(|d| wanted.as_deref().is_none_or(|w| w == d.name))
                    .map(|d| d.to_json(&scope))
                    .collect();
                axum::Json(json!({"value": value})).into_response()
            })
            .await
        }
        ("roledefinitions", Some(guid), Method::GET) => {
            with_faults(fake, "RoleDefinitions_Get", || async {
                let state = fake.state();
                match definitions(&state.custom_roles)
                    .iter()
                    .find(|d| d.guid.eq_ignore_ascii_case(&guid))
                {
                    Some(d) => axum::Json(d.to_json(&scope)).into_response(),
                    None => cloud_error(
                        StatusCode::NOT_FOUND,
                        "RoleDefinitionDoesNotExist",
                        format!("The specified role definition with ID '{guid}' does not exist."),
                    ),
                }
            })
            .await
        }
        ("roledefinitions", Some(guid), Method::PUT) => {
            with_faults(fake, "RoleDefinitions_CreateOrUpdate", || async {
                create_definition(fake, &request, &scope, &guid)
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

fn create(fake: &AzureCloud, request: &Request, scope: &str, name: &str) -> Response {
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
    let mut state = fake.state();
    if roles::by_id(guid).is_none() && !state.custom_roles.contains_key(&guid.to_ascii_lowercase())
    {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{guid}' does not exist."),
        );
    }
    let replication = Duration::from_secs(fake.config().principal_replication_seconds);
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

/// RoleDefinitions_CreateOrUpdate for a custom role: its name must not be
/// another role's, built-in or custom.
fn create_definition(fake: &AzureCloud, request: &Request, scope: &str, guid: &str) -> Response {
    if uuid::Uuid::parse_str(guid).is_err() || roles::by_id(guid).is_some() {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{guid}' is not valid."),
        );
    }
    let body = request.json().unwrap_or_default();
    let props = &body["properties"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let name = props["roleName"].as_str().unwrap_or_default().to_string();
    let permissions = &props["permissions"][0];
    let role = CustomRole {
        guid: guid.to_ascii_lowercase(),
        name: name.clone(),
        actions: strings(&permissions["actions"]),
        not_actions: strings(&permissions["notActions"]),
        assignable_scopes: strings(&props["assignableScopes"]),
    };
    let mut state = fake.state();
    let taken = roles::by_name(&name).is_some()
        || state
            .custom_roles
            .values()
            .any(|c| c.name.eq_ignore_ascii_case(&name) && c.guid != role.guid);
    if name.is_empty() || taken {
        return cloud_error(
            StatusCode::CONFLICT,
            "RoleDefinitionWithSameNameExists",
            format!(
                "A role definition cannot be updated with a name that already exists: {name:?}."
            ),
        );
    }
    let json = Definition {
        name: &role.name,
        guid: &role.guid,
        custom: Some(&role),
    }
    .to_json(scope);
    state.custom_roles.insert(role.guid.clone(), role);
    (StatusCode::CREATED, axum::Json(json)).into_response()
}
