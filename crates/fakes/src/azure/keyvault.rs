//! Microsoft.KeyVault: vaults with access policies (management API
//! 2019-09-01 and later), secrets written through the management API, and
//! the one data-plane call a workload makes with them, reading a secret, so
//! that a pod stand-in proves an access policy entry works. The vault holds
//! its access policies as one array; `accessPolicies/{add,replace,remove}`
//! merge into it entry by entry (by tenant, object and application ID):
//! `add` joins permissions, `remove` takes them away (an entry left with
//! none goes), `replace` sets the entry's permissions.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AzureCloud, Request, cloud_error, with_faults};

const VERSIONS: &[&str] = &["2019-09-01", "2021-10-01", "2022-07-01", "2023-07-01"];
const DATA_PLANE_VERSIONS: &[&str] = &["7.0", "7.1", "7.2", "7.3", "7.4", "7.5"];
const VAULT_TYPE: &str = "Microsoft.KeyVault/vaults";
/// Key Vault's documented limit of access policy entries per vault.
pub const MAX_ENTRIES: usize = 1024;

const SECRETS: &[&str] = &[
    "all", "get", "list", "set", "delete", "backup", "restore", "recover", "purge",
];
const KEYS: &[&str] = &[
    "all",
    "encrypt",
    "decrypt",
    "wrapkey",
    "unwrapkey",
    "sign",
    "verify",
    "get",
    "list",
    "create",
    "update",
    "import",
    "delete",
    "backup",
    "restore",
    "recover",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
];
const CERTIFICATES: &[&str] = &[
    "all",
    "get",
    "list",
    "delete",
    "create",
    "import",
    "update",
    "managecontacts",
    "getissuers",
    "listissuers",
    "setissuers",
    "deleteissuers",
    "manageissuers",
    "recover",
    "purge",
    "backup",
    "restore",
];

#[derive(Clone, Debug)]
pub struct Vault {
    pub id: String,
    pub name: String,
    pub location: String,
    pub tenant_id: String,
    pub rbac: bool,
    pub entries: Vec<Entry>,
    /// Secret values by lower-cased name.
    pub secrets: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tenant_id: String,
    pub object_id: String,
    pub application_id: Option<String>,
    /// By kind (`keys`, `secrets`, `certificates`, `storage`), as written.
    pub permissions: BTreeMap<String, Vec<String>>,
}

impl Entry {
    fn same_principal(&self, other: &Entry) -> bool {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        eq(&self.tenant_id, &other.tenant_id)
            && eq(&self.object_id, &other.object_id)
            && match (&self.application_id, &other.application_id) {
                (Some(a), Some(b)) => eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    fn allows(&self, kind: &str, permission: &str) -> bool {
        self.permissions.get(kind).is_some_and(|list| {
            list.iter()
                .any(|p| p.eq_ignore_ascii_case(permission) || p.eq_ignore_ascii_case("all"))
        })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "tenantId": self.tenant_id,
            "objectId": self.object_id,
            "permissions": self.permissions,
        });
        if let Some(app) = &self.application_id {
            v["applicationId"] = json!(app);
        }
        v
    }

    /// An entry from a request body, or why it is not one.
    fn parse(v: &Value, at: &str) -> Result<Entry, String> {
        let text = |field: &str| v[field].as_str().unwrap_or_default().to_string();
        let (tenant_id, object_id) = (text("tenantId"), text("objectId"));
        if uuid::Uuid::parse_str(&tenant_id).is_err() {
            return Err(format!("{at}.tenantId must be a GUID, not '{tenant_id}'"));
        }
        if object_id.is_empty() {
            return Err(format!("{at}.objectId is required"));
        }
        let mut permissions = BTreeMap::new();
        for (kind, valid) in [
            ("secrets", SECRETS),
            ("keys", KEYS),
            ("certificates", CERTIFICATES),
        ] {
            let mut list = Vec::new();
            for (i, p) in v["permissions"][kind]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let p = p.as_str().unwrap_or_default();
                if !valid.contains(&p.to_ascii_lowercase().as_str()) {
                    return Err(format!(
                        "Invalid value found at {at}.permissions.{kind}[{i}]: '{p}'"
                    ));
                }
                list.push(p.to_string());
            }
            if !list.is_empty() {
                permissions.insert(kind.to_string(), list);
            }
        }
        Ok(Entry {
            tenant_id,
            object_id,
            application_id: v["applicationId"].as_str().map(str::to_string),
            permissions,
        })
    }
}

impl Vault {
    pub fn to_json(&self) -> Value {
        let entries: Vec<Value> = self.entries.iter().map(Entry::to_json).collect();
        json!({
            "id": self.id,
            "name": self.name,
            "type": VAULT_TYPE,
            "location": self.location,
            "tags": {},
            "properties": {
                "tenantId": self.tenant_id,
                "sku": {"family": "A", "name": "standard"},
                "accessPolicies": entries,
                "enableRbacAuthorization": self.rbac,
                "vaultUri": format!("https://{}.vault.azure.net/", self.name),
                "provisioningState": "Succeeded",
            },
        })
    }

    /// Merges `given` into the array as `kind` says.
    fn merge(&mut self, kind: &str, given: Vec<Entry>) {
        for entry in given {
            let existing = self.entries.iter().position(|e| e.same_principal(&entry));
            match (kind, existing) {
                ("add", Some(i)) => {
                    let held = &mut self.entries[i].permissions;
                    for (k, list) in entry.permissions {
                        let into = held.entry(k).or_default();
                        for p in list {
                            if !into.iter().any(|h| h.eq_ignore_ascii_case(&p)) {
                                into.push(p);
                            }
                        }
                    }
                }
                ("add" | "replace", None) => self.entries.push(entry),
                ("replace", Some(i)) => self.entries[i].permissions = entry.permissions,
                ("remove", Some(i)) => {
                    let held = &mut self.entries[i].permissions;
                    for (k, list) in entry.permissions {
                        if let Some(from) = held.get_mut(&k) {
                            from.retain(|h| !list.iter().any(|p| p.eq_ignore_ascii_case(h)));
                        }
                    }
                    held.retain(|_, list| !list.is_empty());
                    if held.is_empty() {
                        self.entries.remove(i);
                    }
                }
                _ => {}
            }
        }
    }
}

struct Path {
    subscription: String,
    resource_group: String,
    vault: String,
    /// What follows the vault's name: `accessPolicies/<kind>`, `secrets/<name>`.
    child: Option<(String, String)>,
}

fn parse(request: &Request) -> Option<Path> {
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
    let fixed = [
        "subscriptions",
        "",
        "resourcegroups",
        "",
        "providers",
        "microsoft.keyvault",
        "vaults",
    ];
    let matches = lower.len() >= 8
        && fixed
            .iter()
            .zip(&lower)
            .all(|(want, got)| want.is_empty() || want == got);
    if !matches || !(lower.len() == 8 || lower.len() == 10) {
        return None;
    }
    Some(Path {
        subscription: parts[1].to_string(),
        resource_group: parts[3].to_string(),
        vault: parts[7].to_string(),
        child: (lower.len() == 10).then(|| (lower[8].clone(), parts[9].to_string())),
    })
}

fn not_found(name: &str, resource_group: &str) -> Response {
    cloud_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{VAULT_TYPE}/{name}' under resource group '{resource_group}' was not found."
        ),
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    cloud_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub(super) async fn handle(fake: &AzureCloud, request: Request) -> Response {
    if let Some(rejected) = request.require_version(VERSIONS, VAULT_TYPE) {
        return rejected;
    }
    let Some(path) = parse(&request) else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceId",
            format!("'{}' is not a valid resource ID.", request.path),
        );
    };
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/{VAULT_TYPE}/{}",
        path.subscription, path.resource_group, path.vault
    );
    let key = id.to_ascii_lowercase();
    let child = path.child.as_ref().map(|(k, n)| (k.as_str(), n.as_str()));
    match (child, request.method.clone()) {
        (None, Method::GET) => {
            with_faults(fake, "Vaults_Get", || async {
                match fake.state().vaults.get(&key) {
                    Some(vault) => axum::Json(vault.to_json()).into_response(),
                    None => not_found(&path.vault, &path.resource_group),
                }
            })
            .await
        }
        (None, Method::PUT) => {
            with_faults(fake, "Vaults_CreateOrUpdate", || async {
                put_vault(fake, &request, &path, id, &key)
            })
            .await
        }
        (None, Method::DELETE) => {
            with_faults(fake, "Vaults_Delete", || async {
                match fake.state().vaults.remove(&key) {
                    Some(_) => StatusCode::OK.into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            })
            .await
        }
        (Some(("accesspolicies", kind)), Method::PUT) => {
            with_faults(fake, "Vaults_UpdateAccessPolicy", || async {
                update_access_policy(fake, &request, &path, &key, kind)
            })
            .await
        }
        (Some(("secrets", name)), Method::PUT) => {
            with_faults(fake, "Secrets_CreateOrUpdate", || async {
                let value = request
                    .json()
                    .and_then(|b| b["properties"]["value"].as_str().map(str::to_string));
                let Some(value) = value else {
                    return bad_request("properties.value is required.");
                };
                let mut state = fake.state();
                let Some(vault) = state.vaults.get_mut(&key) else {
                    return not_found(&path.vault, &path.resource_group);
                };
                vault.secrets.insert(name.to_ascii_lowercase(), value);
                let body = json!({"id": format!("{}/secrets/{name}", vault.id), "name": name,
                    "type": "Microsoft.KeyVault/vaults/secrets", "properties": {}});
                axum::Json(body).into_response()
            })
            .await
        }
        _ => cloud_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The requested resource does not support http method '{}'.",
                request.method
            ),
        ),
    }
}

fn put_vault(fake: &AzureCloud, request: &Request, path: &Path, id: String, key: &str) -> Response {
    let body = request.json().unwrap_or_default();
    let props = &body["properties"];
    let tenant_id = props["tenantId"].as_str().unwrap_or_default().to_string();
    if uuid::Uuid::parse_str(&tenant_id).is_err() {
        return bad_request("properties.tenantId must be a GUID.");
    }
    let Some(location) = body["location"].as_str() else {
        return bad_request("location is required.");
    };
    let mut entries = Vec::new();
    for (i, e) in props["accessPolicies"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        match Entry::parse(e, &format!("properties.accessPolicies[{i}]")) {
            Ok(entry) => entries.push(entry),
            Err(why) => return bad_request(why),
        }
    }
    let mut state = fake.state();
    let created = !state.vaults.contains_key(key);
    let secrets = state
        .vaults
        .get(key)
        .map(|v| v.secrets.clone())
        .unwrap_or_default();
    let vault = Vault {
        id,
        name: path.vault.clone(),
        location: location.to_string(),
        tenant_id,
        rbac: props["enableRbacAuthorization"].as_bool().unwrap_or(false),
        entries,
        secrets,
    };
    let body = vault.to_json();
    state.vaults.insert(key.to_string(), vault);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

fn update_access_policy(
    fake: &AzureCloud,
    request: &Request,
    path: &Path,
    key: &str,
    kind: &str,
) -> Response {
    let kind = kind.to_ascii_lowercase();
    if !["add", "replace", "remove"].contains(&kind.as_str()) {
        return bad_request(format!(
            "The value '{kind}' is not valid for operationKind: use add, replace or remove."
        ));
    }
    let body = request.json().unwrap_or_default();
    let Some(given) = body["properties"]["accessPolicies"].as_array() else {
        return bad_request("properties.accessPolicies is required.");
    };
    let mut entries = Vec::new();
    for (i, e) in given.iter().enumerate() {
        match Entry::parse(e, &format!("properties.accessPolicies[{i}]")) {
            Ok(entry) => entries.push(entry),
            Err(why) => return bad_request(why),
        }
    }
    let mut state = fake.state();
    let Some(vault) = state.vaults.get_mut(key) else {
        return not_found(&path.vault, &path.resource_group);
    };
    let mut merged = vault.clone();
    merged.merge(&kind, entries.clone());
    if merged.entries.len() > MAX_ENTRIES {
        return bad_request(format!(
            "The number of access policies exceeds the maximum of {MAX_ENTRIES} for vault '{}'.",
            vault.name
        ));
    }
    *vault = merged;
    let entries: Vec<Value> = entries.iter().map(Entry::to_json).collect();
    axum::Json(json!({
        "id": format!("{}/accessPolicies/{kind}", vault.id),
        "name": kind,
        "type": "Microsoft.KeyVault/vaults/accessPolicies",
        "location": vault.location,
        "properties": {"accessPolicies": entries},
    }))
    .into_response()
}

/// The data plane's `GET /secrets/{name}` of vault `vault`, served at
/// `/keyvault/{vault}/secrets/{name}`: allowed when the access token's
/// principal holds `get` on secrets in the vault's access policies (a vault
/// that authorizes with RBAC refuses it here).
pub(super) async fn get_secret(fake: &AzureCloud, request: Request, client_id: &str) -> Response {
    if !DATA_PLANE_VERSIONS.contains(&request.api_version.as_str()) {
        return data_plane_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!(
                "The specified version ({}) is not recognized. Consider using the latest supported version ({}).",
                request.api_version,
                DATA_PLANE_VERSIONS.last().copied().unwrap_or_default()
            ),
        );
    }
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (vault_name, secret) = match parts.as_slice() {
        [_, vault, kind, name, ..] if kind.eq_ignore_ascii_case("secrets") => (*vault, *name),
        _ => {
            return data_plane_error(StatusCode::NOT_FOUND, "NotFound", "No such operation.");
        }
    };
    with_faults(fake, "GetSecret", || async {
        let state = fake.state();
        let Some(vault) = state
            .vaults
            .values()
            .find(|v| v.name.eq_ignore_ascii_case(vault_name))
        else {
            return data_plane_error(
                StatusCode::NOT_FOUND,
                "VaultNotFound",
                &format!("Vault '{vault_name}' not found."),
            );
        };
        let principal = state
            .identities
            .values()
            .chain(state.apps.values())
            .find(|i| i.client_id.eq_ignore_ascii_case(client_id))
            .map(|i| i.principal_id.clone())
            .unwrap_or_default();
        let allowed = !vault.rbac
            && vault.entries.iter().any(|e| {
                e.object_id.eq_ignore_ascii_case(&principal)
                    && e.tenant_id.eq_ignore_ascii_case(&fake.tenant_id)
                    && e.allows("secrets", "get")
            });
        if !allowed {
            return data_plane_error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "The user, group or application 'appid={client_id};oid={principal}' does not have secrets get permission on key vault '{};location={}'.",
                    vault.name, vault.location
                ),
            );
        }
        match vault.secrets.get(&secret.to_ascii_lowercase()) {
            Some(value) => axum::Json(json!({
                "value": value,
                "id": format!("https://{}.vault.azure.net/secrets/{secret}/0", vault.name),
                "attributes": {"enabled": true},
            }))
            .into_response(),
            None => data_plane_error(
                StatusCode::NOT_FOUND,
                "SecretNotFound",
                &format!("A secret with (name/id) {secret} was not found in this key vault."),
            ),
        }
    })
    .await
}

fn data_plane_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: &str, secrets: &[&str]) -> Entry {
        Entry {
            tenant_id: "t".into(),
            object_id: object.into(),
            application_id: None,
            permissions: BTreeMap::from([(
                "secrets".to_string(),
                secrets.iter().map(|s| s.to_string()).collect(),
            )]),
        }
    }

    #[test]
    fn merges_touch_only_the_named_principals_entry() {
        let mut vault = Vault {
            id: "v".into(),
            name: "v".into(),
            location: "westeurope".into(),
            tenant_id: "t".into(),
            rbac: false,
            entries: vec![entry("other", &["get"])],
            secrets: BTreeMap::new(),
        };
        vault.merge("add", vec![entry("me", &["get"])]);
        vault.merge("add", vec![entry("ME", &["List", "get"])]);
        assert_eq!(vault.entries[1], entry("me", &["get", "List"]));
        vault.merge("remove", vec![entry("me", &["list"])]);
        assert_eq!(vault.entries[1], entry("me", &["get"]));
        vault.merge("replace", vec![entry("me", &["set"])]);
        assert_eq!(vault.entries[1], entry("me", &["set"]));
        vault.merge("remove", vec![entry("me", &["set"])]);
        assert_eq!(vault.entries, vec![entry("other", &["get"])]);
    }
}
