//! The EKS API's Pod Identity associations and their tags, in restJson1 as
//! aws-sdk-eks 1.x sends them: `…/clusters/{name}/pod-identity-associations`
//! and `…/tags/{resourceArn}`. The rules the operator must cope with are
//! the real ones: one association per (cluster, namespace, service
//! account), `clientRequestToken` idempotency, IAM role ARN validation, and
//! `externalId` appearing only with a target role.
// A refusal here is the handler's HTTP answer, returned early with `?`;
// boxing it would buy a fake nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Cluster, EksCloud, aws_error};
use crate::percent::query_pairs;

/// At most this many tags on a resource (EKS's tagging limit).
const MAX_TAGS: usize = 50;
/// `ListPodIdentityAssociations`' page size bounds.
const MAX_RESULTS: usize = 100;

/// One Pod Identity association, with everything the fake remembers.
#[derive(Clone, Debug)]
pub struct Association {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub external_id: Option<String>,
    pub disable_session_tags: bool,
    pub tags: BTreeMap<String, String>,
    /// Set for associations someone else (an EKS add-on) owns.
    pub owner_arn: Option<String>,
    pub created_at: u64,
    pub modified_at: u64,
    /// The create call's token and parameters, for idempotent retries.
    pub created_by: Option<(String, Params)>,
}

impl Association {
    /// The API's `PodIdentityAssociation` shape.
    pub fn to_json(&self) -> Value {
        let mut association = json!({
            "clusterName": self.cluster,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "roleArn": self.role_arn,
            "associationArn": self.arn,
            "associationId": self.id,
            "tags": self.tags,
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
            "disableSessionTags": self.disable_session_tags,
        });
        if let Some(owner) = &self.owner_arn {
            association["ownerArn"] = json!(owner);
        }
        if let Some(target) = &self.target_role_arn {
            association["targetRoleArn"] = json!(target);
        }
        if let Some(external_id) = &self.external_id {
            association["externalId"] = json!(external_id);
        }
        association
    }

    /// The API's `PodIdentityAssociationSummary` shape.
    fn summary(&self) -> Value {
        let mut summary = json!({
            "clusterName": self.cluster,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "associationArn": self.arn,
            "associationId": self.id,
        });
        if let Some(owner) = &self.owner_arn {
            summary["ownerArn"] = json!(owner);
        }
        summary
    }

    /// Everything, for the admin API (the token that created it too).
    pub fn to_admin_json(&self) -> Value {
        let mut full = self.to_json();
        if let Some((token, _)) = &self.created_by {
            full["clientRequestToken"] = json!(token);
        }
        full
    }
}

/// `CreatePodIdentityAssociation`'s body.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub client_request_token: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub disable_session_tags: Option<bool>,
    #[serde(default)]
    pub target_role_arn: Option<String>,
}

/// A create call's parameters, compared when its token comes again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    namespace: String,
    service_account: String,
    role_arn: String,
    target_role_arn: Option<String>,
    disable_session_tags: bool,
    tags: BTreeMap<String, String>,
}

impl Params {
    fn from_request(request: &CreateRequest) -> Result<Self, Response> {
        let required = |value: &Option<String>, name: &str| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid_parameter(format!("{name} is required.")))
        };
        let namespace = required(&request.namespace, "namespace")?;
        let service_account = required(&request.service_account, "serviceAccount")?;
        let role_arn = required(&request.role_arn, "roleArn")?;
        check_role_arn(&role_arn, "roleArn")?;
        let target_role_arn = request.target_role_arn.clone().filter(|t| !t.is_empty());
        if let Some(target) = &target_role_arn {
            check_role_arn(target, "targetRoleArn")?;
        }
        let tags = request.tags.clone().unwrap_or_default();
        check_tags(&tags).map_err(invalid_parameter)?;
        Ok(Self {
            namespace,
            service_account,
            role_arn,
            target_role_arn,
            disable_session_tags: request.disable_session_tags.unwrap_or(false),
            tags,
        })
    }
}

/// `UpdatePodIdentityAssociation`'s body.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    target_role_arn: Option<String>,
    #[serde(default)]
    disable_session_tags: Option<bool>,
}

fn invalid_parameter(message: impl Into<String>) -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

pub fn no_cluster(name: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!("No cluster found for name: {name}."),
    )
}

fn no_association(id: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!("No Pod Identity Association found for id: {id}."),
    )
}

fn association_response(association: &Association) -> Response {
    axum::Json(json!({"association": association.to_json()})).into_response()
}

/// Whether `arn` matches `^arn:aws[a-z-]*:iam::\d{12}:role/.+` (the
/// pattern IAM role ARNs follow in every partition).
pub fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    if !partition
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '-')
    {
        return false;
    }
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, name)) = rest.split_once(":role/") else {
        return false;
    };
    account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) && !name.is_empty()
}

fn check_role_arn(arn: &str, member: &str) -> Result<(), Response> {
    if is_role_arn(arn) {
        return Ok(());
    }
    Err(invalid_parameter(format!(
        "{member} {arn:?} is not a valid IAM role ARN."
    )))
}

/// EKS's tag rules: at most 50, keys of 1 to 128 characters outside the
/// reserved `aws:` prefix, values of at most 256.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("A resource can have at most {MAX_TAGS} tags."));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 {
            return Err(format!("Tag key {key:?} must be 1 to 128 characters."));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(format!("Tag key {key:?} uses the reserved prefix aws:."));
        }
        if value.chars().count() > 256 {
            return Err(format!("The value of tag {key:?} exceeds 256 characters."));
        }
    }
    Ok(())
}

/// `a-` and 17 lowercase letters and digits, as EKS's association IDs.
pub fn new_association_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let random: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().to_vec())
        .collect();
    let tail: String = random
        .iter()
        .take(17)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("a-{tail}")
}

fn association_arn(cluster: &Cluster, id: &str) -> String {
    format!(
        "arn:aws:eks:{}:{}:podidentityassociation/{}/{id}",
        cluster.region, cluster.account, cluster.name
    )
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| invalid_parameter(format!("The request body is not valid: {e}")))
}

/// `CreatePodIdentityAssociation` (and the admin API's creation "as someone
/// else", with an `owner_arn`).
pub fn create_association(
    fake: &EksCloud,
    cluster_name: &str,
    request: &CreateRequest,
    owner_arn: Option<String>,
) -> Response {
    let now = fake.verifier.clock.now();
    let mut state = fake.state();
    let Some(cluster) = state.clusters.get(cluster_name).cloned() else {
        return no_cluster(cluster_name);
    };
    let params = match Params::from_request(request) {
        Ok(params) => params,
        Err(response) => return response,
    };
    let token = request
        .client_request_token
        .clone()
        .filter(|t| !t.is_empty());
    if let Some(token) = &token {
        let earlier = state.associations.values().find(|a| {
            a.cluster == cluster.name && a.created_by.as_ref().is_some_and(|(t, _)| t == token)
        });
        if let Some(earlier) = earlier {
            if earlier.created_by.as_ref().map(|(_, p)| p) == Some(&params) {
                return association_response(earlier);
            }
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestException",
                "The client request token was already used with different parameters.",
            );
        }
    }
    if let Some(existing) = state.associations.values().find(|a| {
        a.cluster == cluster.name
            && a.namespace == params.namespace
            && a.service_account == params.service_account
    }) {
        return aws_error(
            StatusCode::CONFLICT,
            "ResourceInUseException",
            format!("Association already exists: {}", existing.id),
        );
    }
    let id = loop {
        let id = new_association_id();
        if !state.associations.contains_key(&id) {
            break id;
        }
    };
    let association = Association {
        arn: association_arn(&cluster, &id),
        id: id.clone(),
        cluster: cluster.name.clone(),
        namespace: params.namespace.clone(),
        service_account: params.service_account.clone(),
        role_arn: params.role_arn.clone(),
        external_id: params
            .target_role_arn
            .as_ref()
            .map(|_| uuid::Uuid::new_v4().to_string()),
        target_role_arn: params.target_role_arn.clone(),
        disable_session_tags: params.disable_session_tags,
        tags: params.tags.clone(),
        owner_arn,
        created_at: now,
        modified_at: now,
        created_by: token.map(|t| (t, params)),
    };
    let response = association_response(&association);
    state.associations.insert(id, association);
    response
}

pub async fn create(fake: &EksCloud, cluster: &str, body: &[u8]) -> Response {
    match parse_body::<CreateRequest>(body) {
        Ok(request) => create_association(fake, cluster, &request, None),
        Err(response) => response,
    }
}

pub async fn list(fake: &EksCloud, cluster: &str, query: &str) -> Response {
    let mut namespace = None;
    let mut service_account = None;
    let mut max_results = MAX_RESULTS;
    let mut next_token = None;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "namespace" => namespace = Some(value),
            "serviceAccount" => service_account = Some(value),
            "nextToken" => next_token = Some(value),
            "maxResults" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_RESULTS).contains(&n) => max_results = n,
                _ => {
                    return invalid_parameter(format!(
                        "maxResults must be between 1 and {MAX_RESULTS}."
                    ));
                }
            },
            _ => {}
        }
    }
    let state = fake.state();
    if !state.clusters.contains_key(cluster) {
        return no_cluster(cluster);
    }
    // Pages run in association ID order; a token is the ID the next page
    // starts at, so a deletion between pages skips nothing.
    let start = next_token.unwrap_or_default();
    let mut matching = state
        .associations
        .range(start..)
        .map(|(_, a)| a)
        .filter(|a| a.cluster == cluster)
        .filter(|a| namespace.as_ref().is_none_or(|n| &a.namespace == n))
        .filter(|a| {
            service_account
                .as_ref()
                .is_none_or(|s| &a.service_account == s)
        });
    let page: Vec<Value> = matching
        .by_ref()
        .take(max_results)
        .map(Association::summary)
        .collect();
    let next = matching.next().map(|a| a.id.clone());
    axum::Json(json!({"associations": page, "nextToken": next})).into_response()
}

/// The association `id` of `cluster`, or the response saying which is missing.
fn find<'a>(
    associations: &'a mut BTreeMap<String, Association>,
    clusters: &BTreeMap<String, Cluster>,
    cluster: &str,
    id: &str,
) -> Result<&'a mut Association, Response> {
    if !clusters.contains_key(cluster) {
        return Err(no_cluster(cluster));
    }
    associations
        .get_mut(id)
        .filter(|a| a.cluster == cluster)
        .ok_or_else(|| no_association(id))
}

pub async fn describe(fake: &EksCloud, cluster: &str, id: &str) -> Response {
    let mut guard = fake.state();
    let state = &mut *guard;
    match find(&mut state.associations, &state.clusters, cluster, id) {
        Ok(association) => association_response(association),
        Err(response) => response,
    }
}

pub async fn update(fake: &EksCloud, cluster: &str, id: &str, body: &[u8]) -> Response {
    let request = match parse_body::<UpdateRequest>(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    if let Some(role) = &request.role_arn
        && let Err(response) = check_role_arn(role, "roleArn")
    {
        return response;
    }
    if let Some(target) = request.target_role_arn.as_ref().filter(|t| !t.is_empty())
        && let Err(response) = check_role_arn(target, "targetRoleArn")
    {
        return response;
    }
    let now = fake.verifier.clock.now();
    let mut guard = fake.state();
    let state = &mut *guard;
    let association = match find(&mut state.associations, &state.clusters, cluster, id) {
        Ok(association) => association,
        Err(response) => return response,
    };
    if let Some(role) = request.role_arn {
        association.role_arn = role;
    }
    match request.target_role_arn {
        // An empty string removes the target role, and its external ID.
        Some(target) if target.is_empty() => {
            association.target_role_arn = None;
            association.external_id = None;
        }
        Some(target) => {
            association.target_role_arn = Some(target);
            association
                .external_id
                .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
        }
        None => {}
    }
    if let Some(disable) = request.disable_session_tags {
        association.disable_session_tags = disable;
    }
    association.modified_at = now;
    association_response(association)
}

pub async fn delete(fake: &EksCloud, cluster: &str, id: &str) -> Response {
    let mut guard = fake.state();
    let state = &mut *guard;
    if let Err(response) = find(&mut state.associations, &state.clusters, cluster, id) {
        return response;
    }
    match state.associations.remove(id) {
        Some(association) => association_response(&association),
        None => no_association(id),
    }
}

fn no_resource(arn: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "NotFoundException",
        format!("Resource not found: {arn}"),
    )
}

/// The tags of the association with this ARN (only associations carry
/// tags in this fake).
fn tags_of<'a>(
    associations: &'a mut BTreeMap<String, Association>,
    arn: &str,
) -> Result<&'a mut BTreeMap<String, String>, Response> {
    associations
        .values_mut()
        .find(|a| a.arn == arn)
        .map(|a| &mut a.tags)
        .ok_or_else(|| no_resource(arn))
}

pub async fn tag(fake: &EksCloud, arn: &str, body: &[u8]) -> Response {
    #[derive(Default, Deserialize)]
    struct TagRequest {
        #[serde(default)]
        tags: Option<BTreeMap<String, String>>,
    }
    let request = match parse_body::<TagRequest>(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let mut state = fake.state();
    let tags = match tags_of(&mut state.associations, arn) {
        Ok(tags) => tags,
        Err(response) => return response,
    };
    let mut merged = tags.clone();
    merged.extend(request.tags.unwrap_or_default());
    if let Err(message) = check_tags(&merged) {
        return aws_error(StatusCode::BAD_REQUEST, "BadRequestException", message);
    }
    *tags = merged;
    axum::Json(json!({})).into_response()
}

pub async fn untag(fake: &EksCloud, arn: &str, query: &str) -> Response {
    let keys: Vec<String> = query_pairs(query)
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    let mut state = fake.state();
    let tags = match tags_of(&mut state.associations, arn) {
        Ok(tags) => tags,
        Err(response) => return response,
    };
    for key in keys {
        tags.remove(&key);
    }
    axum::Json(json!({})).into_response()
}

pub async fn list_tags(fake: &EksCloud, arn: &str) -> Response {
    let mut state = fake.state();
    match tags_of(&mut state.associations, arn) {
        Ok(tags) => axum::Json(json!({"tags": tags})).into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn association_ids_look_like_eks_ones() {
        for _ in 0..100 {
            let id = new_association_id();
            let tail = id.strip_prefix("a-").expect("a- prefix");
            assert_eq!(tail.len(), 17, "{id}");
            assert!(
                tail.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{id}"
            );
        }
        assert_ne!(new_association_id(), new_association_id());
    }

    #[test]
    fn role_arns_are_validated_as_eks_does() {
        for good in [
            "arn:aws:iam::123456789012:role/app",
            "arn:aws-cn:iam::123456789012:role/path/app",
            "arn:aws-us-gov:iam::123456789012:role/a",
        ] {
            assert!(is_role_arn(good), "{good}");
        }
        for bad in [
            "",
            "app",
            "arn:aws:iam::123456789012:user/app",
            "arn:aws:iam::12345678901:role/app",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:role/app",
            "arn:aws:iam:us-east-1:123456789012:role/app",
            "arn:AWS:iam::123456789012:role/app",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
    }

    #[test]
    fn tags_follow_eks_limits() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(check_tags(&one("team", "a")).is_ok());
        assert!(check_tags(&one("aws:created", "a")).is_err());
        assert!(check_tags(&one("", "a")).is_err());
        assert!(check_tags(&one("k", &"v".repeat(257))).is_err());
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(check_tags(&many).is_err());
    }
}
