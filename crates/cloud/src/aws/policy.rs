//! IAM policy documents, pure: the trust statement of one ServiceAccount, the
//! trust policy of a role shared by several, semantic comparison (key order,
//! statement order and a single value versus a one-element array are not
//! drift) and IAM's size quota.

use serde_json::{Value, json};
use wib_api::binding::AwsMode;

pub const POLICY_VERSION: &str = "2012-10-17";
pub const WEB_IDENTITY_ACTION: &str = "sts:AssumeRoleWithWebIdentity";
/// Every trust statement wib writes has a `Sid` starting with this.
pub const WIB_SID_PREFIX: &str = "wib";
/// Left in the trust policy of a retained role once its last binding is
/// gone: IAM requires a statement, and this one lets nobody in.
pub const RETAINED_SID: &str = "wibRetainedNoFederation";
/// IAM's default quota for a role trust policy, in characters.
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;
/// IAM's quota for all inline policies of one role together, in characters.
pub const INLINE_POLICIES_MAX_CHARS: usize = 10240;

/// The service principal EKS Pod Identity assumes roles as.
pub const PODS_PRINCIPAL: &str = "pods.eks.amazonaws.com";
/// What EKS Pod Identity needs of the trust policy: it assumes the role and
/// tags the session with the pod's cluster, namespace and ServiceAccount.
pub const PODS_ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];

/// Who may assume the role: exactly one ServiceAccount, through the
/// cluster's OIDC provider (IRSA) or through EKS Pod Identity.
#[derive(Clone, Debug)]
pub struct Federation {
    pub provider_arn: String,
    /// Issuer host and path, the prefix of IAM's condition keys.
    pub issuer_key: String,
    pub subject: String,
    pub audience: String,
    pub sid: String,
    pub mode: AwsMode,
    pub pods: PodsTrust,
}

/// What a Pod Identity statement names: the session tags EKS sets from the
/// pod (so only that ServiceAccount of that cluster matches), and the
/// account whose clusters may assume the role.
#[derive(Clone, Debug)]
pub struct PodsTrust {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    pub account_id: String,
}

impl Federation {
    /// The statement ID of the binding's statement in `mode`: two modes,
    /// two statements, so a mode change can keep the old one a while.
    pub fn sid_in(&self, mode: AwsMode) -> String {
        match mode {
            AwsMode::Irsa => self.sid.clone(),
            AwsMode::PodIdentity => format!("{}Pods", self.sid),
        }
    }
}

/// The trust statement of one ServiceAccount, in the binding's mode.
pub fn statement(f: &Federation) -> Value {
    statement_in(f, f.mode)
}

fn statement_in(f: &Federation, mode: AwsMode) -> Value {
    match mode {
        AwsMode::Irsa => json!({
            "Sid": f.sid_in(mode),
            "Effect": "Allow",
            "Principal": {"Federated": f.provider_arn},
            "Action": WEB_IDENTITY_ACTION,
            "Condition": {"StringEquals": {
                format!("{}:sub", f.issuer_key): f.subject,
                format!("{}:aud", f.issuer_key): f.audience,
            }},
        }),
        AwsMode::PodIdentity => json!({
            "Sid": f.sid_in(mode),
            "Effect": "Allow",
            "Principal": {"Service": PODS_PRINCIPAL},
            "Action": PODS_ACTIONS,
            "Condition": {"StringEquals": {
                "aws:SourceAccount": f.pods.account_id,
                "aws:RequestTag/eks-cluster-name": f.pods.cluster,
                "aws:RequestTag/kubernetes-namespace": f.pods.namespace,
                "aws:RequestTag/kubernetes-service-account": f.pods.service_account,
            }},
        }),
    }
}

fn statements(document: Option<&Value>) -> Vec<Value> {
    match document.and_then(|d| d.get("Statement")) {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    }
}

fn sid(statement: &Value) -> &str {
    statement.get("Sid").and_then(Value::as_str).unwrap_or("")
}

fn is_wib(statement: &Value) -> bool {
    sid(statement).starts_with(WIB_SID_PREFIX) && sid(statement) != RETAINED_SID
}

fn document(statements: Vec<Value>) -> Value {
    json!({"Version": POLICY_VERSION, "Statement": statements})
}

/// Which way a statement lets pods in: through a service principal (Pod
/// Identity) or a federated one.
fn mode_of(statement: &Value) -> AwsMode {
    match statement.get("Principal").and_then(|p| p.get("Service")) {
        Some(_) => AwsMode::PodIdentity,
        None => AwsMode::Irsa,
    }
}

/// The subject a trust statement admits (`<issuer>:sub`, or the namespace
/// and ServiceAccount session tags), if it names one.
fn subject(statement: &Value) -> Option<String> {
    let conditions = statement
        .get("Condition")?
        .get("StringEquals")?
        .as_object()?;
    if let Some((_, value)) = conditions.iter().find(|(key, _)| key.ends_with(":sub")) {
        return value.as_str().map(str::to_string);
    }
    let tag = |key: &str| conditions.get(&format!("aws:RequestTag/{key}"))?.as_str();
    Some(format!(
        "system:serviceaccount:{}:{}",
        tag("kubernetes-namespace")?,
        tag("kubernetes-service-account")?
    ))
}

/// Whether `statement` is the binding's statement in `mode`: wib's, with its
/// `Sid` or (as an older wib named an IRSA one) its subject.
fn is_ours_in(statement: &Value, ours: &Federation, mode: AwsMode) -> bool {
    is_wib(statement)
        && mode_of(statement) == mode
        && (sid(statement) == ours.sid_in(mode)
            || (mode == AwsMode::Irsa
                && subject(statement).as_deref() == Some(ours.subject.as_str())))
}

/// Whether `statement` is one of the binding's, in either mode.
fn is_ours(statement: &Value, ours: &Federation) -> bool {
    is_ours_in(statement, ours, AwsMode::Irsa) || is_ours_in(statement, ours, AwsMode::PodIdentity)
}

/// A statement with our `Sid` that admits another exact subject: wib never
/// overwrites it. (One with our `Sid` widened to a pattern is drift of our
/// own statement, and is narrowed back.)
pub fn sid_conflict(current: Option<&Value>, ours: &Federation) -> bool {
    let sid_now = ours.sid_in(ours.mode);
    statements(current)
        .iter()
        .any(|s| sid(s) == sid_now && subject(s).is_some_and(|sub| sub != ours.subject))
}

/// The trust policy with `ours` in place. Other wib statements (bindings
/// sharing the role) stay; statements wib did not write stay only when
/// `keep_foreign` (an adopted role), since on a role wib created they would
/// widen who can assume it. The binding's statement of another mode goes,
/// unless it is `keeping` that mode while pods move off it.
pub fn with_statement(
    current: Option<&Value>,
    ours: &Federation,
    keep_foreign: bool,
    keeping: Option<AwsMode>,
) -> Value {
    let mut kept: Vec<Value> = statements(current)
        .into_iter()
        .filter(|s| {
            let old_mode_kept = keeping.is_some_and(|m| m != ours.mode && is_ours_in(s, ours, m));
            old_mode_kept
                || (!is_ours(s, ours) && sid(s) != RETAINED_SID && (is_wib(s) || keep_foreign))
        })
        .collect();
    kept.push(statement(ours));
    document(kept)
}

/// The trust policy without the binding's statements; a deny placeholder
/// when nothing would be left.
pub fn without_statement(current: &Value, ours: &Federation) -> Value {
    let kept: Vec<Value> = statements(Some(current))
        .into_iter()
        .filter(|s| !is_ours(s, ours))
        .collect();
    if kept.is_empty() {
        let placeholder = match ours.mode {
            AwsMode::Irsa => json!({
                "Sid": RETAINED_SID,
                "Effect": "Deny",
                "Principal": {"Federated": ours.provider_arn},
                "Action": WEB_IDENTITY_ACTION,
            }),
            AwsMode::PodIdentity => json!({
                "Sid": RETAINED_SID,
                "Effect": "Deny",
                "Principal": {"Service": PODS_PRINCIPAL},
                "Action": PODS_ACTIONS,
            }),
        };
        return document(vec![placeholder]);
    }
    document(kept)
}

/// How many statements other than the binding's still let someone in: the
/// other ServiceAccounts that share the role, and, unless `only_wib` (an
/// adopted role, whose own statements were there before wib), any
/// statement wib did not write.
pub fn other_statements(current: &Value, ours: &Federation, only_wib: bool) -> usize {
    statements(Some(current))
        .iter()
        .filter(|s| !is_ours(s, ours) && sid(s) != RETAINED_SID && (is_wib(s) || !only_wib))
        .count()
}

/// Whether the trust policy holds the binding's statement in `mode`.
pub fn has_statement_in(current: Option<&Value>, ours: &Federation, mode: AwsMode) -> bool {
    statements(current)
        .iter()
        .any(|s| is_ours_in(s, ours, mode))
}

/// A canonical text of a policy for comparison: object keys sorted, arrays
/// sorted, one-element arrays equal to their element.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) if items.len() == 1 => canonical(&items[0]),
        Value::Array(items) => {
            let mut parts: Vec<String> = items.iter().map(canonical).collect();
            parts.sort();
            parts.dedup();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Whether two policy documents mean the same.
pub fn same(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// The length IAM counts against its quotas: the document without whitespace.
pub fn size(document: &Value) -> usize {
    compact(document).chars().count()
}

pub fn compact(document: &Value) -> String {
    serde_json::to_string(document).unwrap_or_default()
}

/// Parses a policy as IAM returns it: URL-encoded JSON in the Query API.
pub fn parse(raw: &str) -> Option<Value> {
    serde_json::from_str(raw).ok().or_else(|| {
        urlencoding::decode(raw)
            .ok()
            .and_then(|decoded| serde_json::from_str(&decoded).ok())
    })
}

/// What is wrong with an inline policy document, if anything IAM would surely reject.
pub fn document_problem(document: &Value) -> Option<String> {
    let Some(object) = document.as_object() else {
        return Some("must be a JSON object with Version and Statement".into());
    };
    match object.get("Statement") {
        None => Some("has no Statement".into()),
        Some(Value::Array(items)) if items.is_empty() => Some("has an empty Statement".into()),
        Some(Value::Array(_) | Value::Object(_)) => None,
        Some(_) => Some("Statement must be an object or a list of objects".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federation(sa: &str) -> Federation {
        Federation {
            provider_arn: "arn:aws:iam::123456789012:oidc-provider/oidc.example/id/1".into(),
            issuer_key: "oidc.example/id/1".into(),
            subject: format!("system:serviceaccount:ns:{sa}"),
            audience: "sts.amazonaws.com".into(),
            sid: format!("wib{sa}"),
            mode: AwsMode::Irsa,
            pods: PodsTrust {
                cluster: "c".into(),
                namespace: "ns".into(),
                service_account: sa.into(),
                account_id: "123456789012".into(),
            },
        }
    }

    fn pods(sa: &str) -> Federation {
        Federation {
            mode: AwsMode::PodIdentity,
            ..federation(sa)
        }
    }

    #[test]
    fn the_pod_identity_statement_is_scoped_by_the_session_tags_and_the_account() {
        let s = statement(&pods("a"));
        assert_eq!(s["Principal"]["Service"], PODS_PRINCIPAL);
        assert_eq!(s["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
        let c = &s["Condition"]["StringEquals"];
        assert_eq!(c["aws:RequestTag/eks-cluster-name"], "c");
        assert_eq!(c["aws:RequestTag/kubernetes-namespace"], "ns");
        assert_eq!(c["aws:RequestTag/kubernetes-service-account"], "a");
        assert_eq!(c["aws:SourceAccount"], "123456789012");
        assert_eq!(subject(&s).as_deref(), Some("system:serviceaccount:ns:a"));
    }

    #[test]
    fn a_mode_change_keeps_the_old_statement_only_while_asked() {
        let irsa = with_statement(None, &federation("a"), false, None);
        let both = with_statement(Some(&irsa), &pods("a"), false, Some(AwsMode::Irsa));
        assert!(has_statement_in(Some(&both), &pods("a"), AwsMode::Irsa));
        assert!(has_statement_in(
            Some(&both),
            &pods("a"),
            AwsMode::PodIdentity
        ));
        let after = with_statement(Some(&both), &pods("a"), false, Some(AwsMode::PodIdentity));
        assert!(!has_statement_in(Some(&after), &pods("a"), AwsMode::Irsa));
        assert_eq!(statements(Some(&after)).len(), 1);
        // Another binding's statements of either mode stay.
        let shared = with_statement(Some(&after), &federation("b"), false, None);
        assert!(has_statement_in(
            Some(&shared),
            &pods("a"),
            AwsMode::PodIdentity
        ));
        let gone = without_statement(&shared, &pods("a"));
        assert_eq!(other_statements(&gone, &pods("a"), false), 1);
        let last = without_statement(&gone, &federation("b"));
        assert_eq!(sid(&statements(Some(&last))[0]), RETAINED_SID);
    }

    #[test]
    fn a_pod_identity_statement_of_our_sid_for_another_service_account_is_a_conflict() {
        let mut theirs = statement(&pods("b"));
        theirs["Sid"] = json!(pods("a").sid_in(AwsMode::PodIdentity));
        let current = json!({"Version": POLICY_VERSION, "Statement": [theirs]});
        assert!(sid_conflict(Some(&current), &pods("a")));
        assert!(!sid_conflict(Some(&current), &federation("a")));
    }

    #[test]
    fn the_statement_is_the_public_eks_shape() {
        let s = statement(&federation("app"));
        assert_eq!(s["Action"], WEB_IDENTITY_ACTION);
        assert_eq!(
            s["Condition"]["StringEquals"]["oidc.example/id/1:sub"],
            "system:serviceaccount:ns:app"
        );
        assert_eq!(
            s["Condition"]["StringEquals"]["oidc.example/id/1:aud"],
            "sts.amazonaws.com"
        );
        assert_eq!(
            s["Principal"]["Federated"],
            "arn:aws:iam::123456789012:oidc-provider/oidc.example/id/1"
        );
    }

    #[test]
    fn key_order_and_single_values_are_not_drift() {
        let ours = with_statement(None, &federation("a"), false, None);
        let reordered: Value = serde_json::from_str(
            r#"{"Statement":{"Condition":{"StringEquals":{"oidc.example/id/1:aud":["sts.amazonaws.com"],"oidc.example/id/1:sub":"system:serviceaccount:ns:a"}},"Action":["sts:AssumeRoleWithWebIdentity"],"Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.example/id/1"},"Effect":"Allow","Sid":"wiba"},"Version":"2012-10-17"}"#,
        )
        .expect("json");
        assert!(same(&ours, &reordered));
        let mut edited = ours.clone();
        edited["Statement"][0]["Condition"]["StringEquals"]["oidc.example/id/1:sub"] =
            json!("system:serviceaccount:ns:*");
        assert!(!same(&ours, &edited));
    }

    #[test]
    fn shared_roles_keep_other_bindings_and_drop_foreign_statements() {
        let foreign =
            json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"});
        let a = with_statement(None, &federation("a"), false, None);
        let mut current = a.clone();
        current["Statement"]
            .as_array_mut()
            .expect("array")
            .push(foreign.clone());
        let ab = with_statement(Some(&current), &federation("b"), false, None);
        assert_eq!(statements(Some(&ab)).len(), 2);
        assert_eq!(
            other_statements(&ab, &federation("a"), false),
            1,
            "b; the foreign one is gone"
        );
        let adopted = with_statement(Some(&current), &federation("b"), true, None);
        assert_eq!(statements(Some(&adopted)).len(), 3);
        // Re-adding ours replaces it rather than duplicating it.
        let again = with_statement(Some(&ab), &federation("b"), false, None);
        assert!(same(&again, &ab));
    }

    #[test]
    fn dropping_the_last_statement_leaves_a_deny() {
        let a = with_statement(None, &federation("a"), false, None);
        let left = without_statement(&a, &federation("a"));
        assert_eq!(left["Statement"][0]["Effect"], "Deny");
        assert_eq!(other_statements(&left, &federation("x"), false), 0);
        let back = with_statement(Some(&left), &federation("a"), false, None);
        assert_eq!(statements(Some(&back)).len(), 1);
    }

    #[test]
    fn statements_are_ours_by_sid_or_by_subject_and_a_clash_is_seen() {
        let a = federation("a");
        // An older wib named the same subject's statement differently.
        let mut older = a.clone();
        older.sid = "wibolder".into();
        let current = with_statement(None, &older, false, None);
        let replaced = with_statement(Some(&current), &a, false, None);
        assert_eq!(statements(Some(&replaced)).len(), 1);
        assert_eq!(other_statements(&current, &a, false), 0);
        // Our Sid admitting another subject is a clash, never overwritten.
        let mut thief = federation("thief");
        thief.sid = a.sid.clone();
        let stolen = with_statement(None, &thief, false, None);
        assert!(sid_conflict(Some(&stolen), &a));
        assert!(!sid_conflict(Some(&current), &a));
        // A statement wib did not write keeps the role alive.
        let mut foreign = current.clone();
        foreign["Statement"].as_array_mut().expect("array").push(
            json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "sts:AssumeRole"}),
        );
        assert_eq!(other_statements(&foreign, &a, false), 1);
        assert_eq!(
            other_statements(&foreign, &a, true),
            0,
            "adopted: the role's own"
        );
        // Our statement widened to a pattern is ours to narrow back.
        let mut widened = current.clone();
        widened["Statement"][0]["Sid"] = json!(a.sid);
        widened["Statement"][0]["Condition"] =
            json!({"StringLike": {"oidc.example/id/1:sub": "system:serviceaccount:*:*"}});
        assert!(!sid_conflict(Some(&widened), &a));
    }

    #[test]
    fn size_and_parsing() {
        let a = with_statement(None, &federation("a"), false, None);
        assert!(size(&a) < TRUST_POLICY_MAX_CHARS);
        let encoded = urlencoding::encode(&compact(&a)).into_owned();
        assert_eq!(parse(&encoded), Some(a.clone()));
        assert_eq!(parse(&compact(&a)), Some(a));
        assert!(document_problem(&json!({"Version": POLICY_VERSION})).is_some());
        assert!(document_problem(&json!({"Statement": []})).is_some());
        assert!(document_problem(&json!({"Statement": [{"Effect": "Allow"}]})).is_none());
    }
}
