//! IAM's evaluation of a role trust policy, cut down to what EKS Pod
//! Identity exercises: may this principal perform these `sts:` actions on
//! the role, given these request context keys. Written from the IAM policy
//! evaluation logic (an explicit Deny wins over any Allow, an action with no
//! matching Allow is implicitly denied, every condition of a statement must
//! hold, one of a key's values suffices) so that a wrong trust policy is
//! refused here as AWS would refuse it, not discovered in production.
//!
//! What the fake does not model fails closed: an unknown condition operator
//! or context key, `NotPrincipal`/`NotAction`, or a malformed element never
//! makes an Allow statement apply, and always makes a Deny statement apply.

use std::collections::BTreeMap;

use serde_json::Value;

pub const ASSUME_ROLE: &str = "sts:AssumeRole";
pub const TAG_SESSION: &str = "sts:TagSession";

/// The context keys the fake sets (lowercase: IAM compares key names
/// without case); a condition on any other key fails closed.
pub const KNOWN_KEYS: &[&str] = &[
    "aws:requesttag/eks-cluster-name",
    "aws:requesttag/eks-cluster-arn",
    "aws:requesttag/kubernetes-namespace",
    "aws:requesttag/kubernetes-service-account",
    "aws:requesttag/kubernetes-pod-name",
    "aws:requesttag/kubernetes-pod-uid",
    "aws:sourceaccount",
    "aws:sourcearn",
    "sts:externalid",
];

/// Who asks to assume the role.
#[derive(Clone, Copy, Debug)]
pub enum Principal<'a> {
    /// An AWS service principal (`pods.eks.amazonaws.com`).
    Service(&'a str),
    /// An IAM role, by ARN (the association's role assuming its target role).
    Role(&'a str),
}

impl std::fmt::Display for Principal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Service(service) => write!(f, "service {service}"),
            Principal::Role(arn) => write!(f, "{arn}"),
        }
    }
}

/// One authorization request: every action must be allowed.
pub struct Request<'a> {
    pub principal: Principal<'a>,
    pub actions: &'a [&'a str],
    /// Context keys (any case) and their values; a known key left out is
    /// absent from the request, so conditions on it do not hold.
    pub context: &'a BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Why not, for the AccessDenied message.
    Denied(String),
}

/// Three-valued: whether a statement (or one of its elements) applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applies {
    Yes,
    No,
    /// The fake cannot tell (an element it does not model).
    Unknown,
}

impl Applies {
    /// All of them: one `No` settles it; otherwise one `Unknown` leaves it unknown.
    fn all(items: impl IntoIterator<Item = Applies>) -> Applies {
        let mut result = Applies::Yes;
        for item in items {
            match item {
                Applies::No => return Applies::No,
                Applies::Unknown => result = Applies::Unknown,
                Applies::Yes => {}
            }
        }
        result
    }
}

/// Evaluates a trust policy document (JSON) for `request`.
pub fn evaluate(document: &str, request: &Request<'_>) -> Decision {
    let Ok(policy) = serde_json::from_str::<Value>(document) else {
        return Decision::Denied("the trust policy is not valid JSON".into());
    };
    let statements: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(statements)) => statements.iter().collect(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => Vec::new(),
    };
    let context: BTreeMap<String, &str> = request
        .context
        .iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value.as_str()))
        .collect();
    for action in request.actions {
        let applies_to =
            |statement: &Value| applies(statement, request.principal, action, &context);
        if let Some(deny) = statements
            .iter()
            .copied()
            .find(|s| effect(s) == Some("Deny") && applies_to(s) != Applies::No)
        {
            return Decision::Denied(format!(
                "an explicit Deny{} covers {action} for {}",
                sid(deny),
                request.principal
            ));
        }
        if !statements
            .iter()
            .copied()
            .any(|s| effect(s) == Some("Allow") && applies_to(s) == Applies::Yes)
        {
            return Decision::Denied(format!(
                "no Allow statement grants {action} to {}",
                request.principal
            ));
        }
    }
    Decision::Allowed
}

fn effect(statement: &Value) -> Option<&str> {
    statement.get("Effect").and_then(Value::as_str)
}

fn sid(statement: &Value) -> String {
    statement
        .get("Sid")
        .and_then(Value::as_str)
        .map(|sid| format!(" ({sid})"))
        .unwrap_or_default()
}

fn applies(
    statement: &Value,
    principal: Principal<'_>,
    action: &str,
    context: &BTreeMap<String, &str>,
) -> Applies {
    if statement.get("NotPrincipal").is_some() || statement.get("NotAction").is_some() {
        return Applies::Unknown;
    }
    Applies::all([
        principal_matches(statement.get("Principal"), principal),
        action_matches(statement.get("Action"), action),
        conditions_hold(statement.get("Condition"), context),
    ])
}

fn principal_matches(element: Option<&Value>, principal: Principal<'_>) -> Applies {
    let map = match element {
        Some(Value::String(any)) if any == "*" => return Applies::Yes,
        Some(Value::Object(map)) => map,
        _ => return Applies::Unknown,
    };
    // IAM documents `{"AWS": "*"}` as equivalent to `"*"`: everyone.
    if map
        .get("AWS")
        .and_then(strings)
        .is_some_and(|values| values.iter().any(|v| v == "*"))
    {
        return Applies::Yes;
    }
    let kind = match principal {
        Principal::Service(_) => "Service",
        Principal::Role(_) => "AWS",
    };
    let Some(values) = map.get(kind) else {
        return Applies::No;
    };
    let Some(values) = strings(values) else {
        return Applies::Unknown;
    };
    let matches = |value: &String| match principal {
        Principal::Service(service) => value.eq_ignore_ascii_case(service),
        Principal::Role(arn) => aws_principal_matches(value, arn),
    };
    if values.iter().any(matches) {
        Applies::Yes
    } else {
        Applies::No
    }
}

/// `"*"`, the role's own ARN, or its account (as `arn:…:iam::<id>:root`
/// or the bare ID), which lets any principal of that account in.
fn aws_principal_matches(value: &str, role_arn: &str) -> bool {
    let account = role_arn.split(':').nth(4).unwrap_or_default();
    let partition = role_arn.split(':').nth(1).unwrap_or("aws");
    value == "*"
        || value == role_arn
        || (!account.is_empty()
            && (value == account || value == format!("arn:{partition}:iam::{account}:root")))
}

fn action_matches(element: Option<&Value>, action: &str) -> Applies {
    let Some(patterns) = element.and_then(strings) else {
        return Applies::Unknown;
    };
    let action = action.to_ascii_lowercase();
    if patterns
        .iter()
        .any(|p| glob(&p.to_ascii_lowercase(), &action))
    {
        Applies::Yes
    } else {
        Applies::No
    }
}

/// Every operator block and every key in it must hold; a key holds when
/// one of its values matches. A key absent from the request does not hold
/// (IAM's rule for operators without `IfExists`).
fn conditions_hold(element: Option<&Value>, context: &BTreeMap<String, &str>) -> Applies {
    let Some(element) = element else {
        return Applies::Yes;
    };
    let Value::Object(operators) = element else {
        return Applies::Unknown;
    };
    let mut results = Vec::new();
    for (operator, block) in operators {
        let like = match operator.as_str() {
            "StringEquals" | "ArnEquals" => false,
            "StringLike" | "ArnLike" => true,
            _ => return Applies::Unknown,
        };
        let Value::Object(keys) = block else {
            return Applies::Unknown;
        };
        for (key, expected) in keys {
            let key = key.to_ascii_lowercase();
            if !KNOWN_KEYS.contains(&key.as_str()) {
                results.push(Applies::Unknown);
                continue;
            }
            let Some(expected) = strings(expected) else {
                results.push(Applies::Unknown);
                continue;
            };
            let Some(actual) = context.get(&key) else {
                results.push(Applies::No);
                continue;
            };
            let hit = expected
                .iter()
                .any(|e| if like { glob(e, actual) } else { e == actual });
            results.push(if hit { Applies::Yes } else { Applies::No });
        }
    }
    Applies::all(results)
}

/// A policy element's string or list of strings (numbers and booleans as
/// written); `None` for any other shape.
fn strings(value: &Value) -> Option<Vec<String>> {
    fn scalar(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

/// IAM's wildcards: `*` any run of characters, `?` exactly one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/app";
    const SERVICE: &str = "pods.eks.amazonaws.com";
    const BOTH: &[&str] = &[ASSUME_ROLE, TAG_SESSION];

    fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod_context() -> BTreeMap<String, String> {
        context(&[
            ("aws:RequestTag/eks-cluster-name", "wib-local"),
            (
                "aws:RequestTag/eks-cluster-arn",
                "arn:aws:eks:us-east-1:123456789012:cluster/wib-local",
            ),
            ("aws:RequestTag/kubernetes-namespace", "team-a"),
            ("aws:RequestTag/kubernetes-service-account", "app"),
            ("aws:SourceAccount", "123456789012"),
            (
                "aws:SourceArn",
                "arn:aws:eks:us-east-1:123456789012:cluster/wib-local",
            ),
        ])
    }

    fn service(document: serde_json::Value, context: &BTreeMap<String, String>) -> Decision {
        evaluate(
            &document.to_string(),
            &Request {
                principal: Principal::Service(SERVICE),
                actions: BOTH,
                context,
            },
        )
    }

    fn allow(action: serde_json::Value, condition: serde_json::Value) -> serde_json::Value {
        let mut statement = serde_json::json!({
            "Effect": "Allow",
            "Principal": {"Service": SERVICE},
            "Action": action,
        });
        if !condition.is_null() {
            statement["Condition"] = condition;
        }
        serde_json::json!({"Version": "2012-10-17", "Statement": [statement]})
    }

    #[test]
    fn the_documented_pod_identity_trust_policy_allows() {
        let policy = allow(
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
            serde_json::json!({"StringEquals": {
                "aws:RequestTag/kubernetes-namespace": "team-a",
                "aws:SourceAccount": "123456789012",
            }}),
        );
        assert_eq!(service(policy, &pod_context()), Decision::Allowed);
    }

    #[test]
    fn a_single_statement_object_and_wildcard_actions_allow() {
        for action in ["sts:*", "*", "STS:Assume*"] {
            let mut policy = allow(serde_json::json!([action, "sts:TagSession"]), Value::Null);
            policy["Statement"] = policy["Statement"][0].clone();
            assert_eq!(
                service(policy, &pod_context()),
                Decision::Allowed,
                "{action}"
            );
        }
    }

    #[test]
    fn a_wrong_namespace_tag_refuses() {
        let policy = allow(
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
            serde_json::json!({"StringEquals": {"aws:RequestTag/kubernetes-namespace": ["team-b", "team-c"]}}),
        );
        assert!(matches!(
            service(policy, &pod_context()),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn missing_tag_session_refuses() {
        let policy = allow(serde_json::json!("sts:AssumeRole"), Value::Null);
        let Decision::Denied(why) = service(policy, &pod_context()) else {
            panic!("allowed without sts:TagSession");
        };
        assert!(why.contains("sts:TagSession"), "{why}");
    }

    #[test]
    fn an_explicit_deny_wins() {
        let mut policy = allow(
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
            Value::Null,
        );
        policy["Statement"]
            .as_array_mut()
            .expect("statements")
            .push(serde_json::json!({
                "Sid": "NoTeamA",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-a"}},
            }));
        let Decision::Denied(why) = service(policy, &pod_context()) else {
            panic!("the Deny was ignored");
        };
        assert!(why.contains("NoTeamA"), "{why}");
    }

    #[test]
    fn a_deny_whose_condition_does_not_hold_does_not_apply() {
        let mut policy = allow(
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
            Value::Null,
        );
        policy["Statement"]
            .as_array_mut()
            .expect("statements")
            .push(serde_json::json!({
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sts:*",
                "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-z"}},
            }));
        assert_eq!(service(policy, &pod_context()), Decision::Allowed);
    }

    #[test]
    fn string_like_matches_wildcards() {
        let like = |pattern: &str| {
            allow(
                serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
                serde_json::json!({"StringLike": {
                    "aws:RequestTag/kubernetes-namespace": pattern,
                    "aws:SourceArn": "arn:aws:eks:*:123456789012:cluster/*",
                }}),
            )
        };
        assert_eq!(service(like("team-*"), &pod_context()), Decision::Allowed);
        assert_eq!(service(like("team-?"), &pod_context()), Decision::Allowed);
        assert!(matches!(
            service(like("other-*"), &pod_context()),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn an_unknown_condition_key_or_operator_fails_closed() {
        for condition in [
            serde_json::json!({"StringEquals": {"aws:PrincipalTag/team": "a"}}),
            serde_json::json!({"StringNotEquals": {"aws:RequestTag/kubernetes-namespace": "x"}}),
            serde_json::json!({"StringEqualsIfExists": {"aws:SourceAccount": "123456789012"}}),
        ] {
            let policy = allow(
                serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
                condition.clone(),
            );
            assert!(
                matches!(service(policy, &pod_context()), Decision::Denied(_)),
                "{condition}"
            );
        }
    }

    #[test]
    fn request_tag_conditions_fail_when_session_tags_are_disabled() {
        let policy = allow(
            serde_json::json!(["sts:AssumeRole"]),
            serde_json::json!({"StringEquals": {"aws:RequestTag/kubernetes-namespace": "team-a"}}),
        );
        let untagged = context(&[("aws:SourceAccount", "123456789012")]);
        let decision = evaluate(
            &policy.to_string(),
            &Request {
                principal: Principal::Service(SERVICE),
                actions: &[ASSUME_ROLE],
                context: &untagged,
            },
        );
        assert!(matches!(decision, Decision::Denied(_)));
    }

    #[test]
    fn another_service_principal_is_refused() {
        let policy = serde_json::json!({"Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }]});
        assert!(matches!(
            service(policy, &pod_context()),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn a_target_role_trusts_the_association_role_with_its_external_id() {
        let policy = serde_json::json!({"Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": ROLE},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"sts:ExternalId": "ext-1"}},
        }]});
        let decide = |principal: &str, external: &str| {
            let context = context(&[("sts:ExternalId", external)]);
            evaluate(
                &policy.to_string(),
                &Request {
                    principal: Principal::Role(principal),
                    actions: BOTH,
                    context: &context,
                },
            )
        };
        assert_eq!(decide(ROLE, "ext-1"), Decision::Allowed);
        assert!(matches!(decide(ROLE, "ext-2"), Decision::Denied(_)));
        assert!(matches!(
            decide("arn:aws:iam::123456789012:role/other", "ext-1"),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn an_account_root_principal_lets_the_account_s_roles_in() {
        let policy = serde_json::json!({"Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::123456789012:root"]},
            "Action": "sts:*",
        }]});
        let empty = BTreeMap::new();
        let decision = evaluate(
            &policy.to_string(),
            &Request {
                principal: Principal::Role(ROLE),
                actions: BOTH,
                context: &empty,
            },
        );
        assert_eq!(decision, Decision::Allowed);
    }

    #[test]
    fn not_principal_never_allows() {
        let policy = serde_json::json!({"Statement": [{
            "Effect": "Allow",
            "NotPrincipal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:*",
        }]});
        assert!(matches!(
            service(policy, &pod_context()),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
