//! Inline policy documents from a binding, pure: parsed from the JSON text
//! the binding holds (so a hostile document is one binding's error, never a
//! failure to list every binding), and judged against what a tenant may grant
//! itself without the platform team's say.
//!
//! A role's inline policy is whatever its binding writes, so without a check
//! a tenant turns "may have a role" into "may administer the account". Refused
//! unless the provider opts out (a permissions boundary on every role, or an
//! explicit allow): any statement that allows `*`, any action of IAM, STS or
//! Organizations by wildcard, `iam:PassRole`, an IAM action that is not a read
//! (`Get*`/`List*`), an action whose service is a wildcard, or `NotAction` /
//! `NotResource` with `Allow` (an allow of everything but a list).

use serde_json::Value;

/// Services whose wildcard grants administer identity or the organisation.
const GUARDED_SERVICES: [&str; 3] = ["iam", "sts", "organizations"];

/// The document in `text`, or why it is not one. serde_json's own recursion
/// limit bounds how deep a document may nest.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("is not a JSON policy document: {e}"))
}

/// Why `document` grants more than a tenant may, naming the statement (by
/// `Sid`, else by position) and the action; `None` when it does not.
pub fn privileged_grant(document: &Value) -> Option<String> {
    let statements: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single) => vec![single],
        None => Vec::new(),
    };
    statements.into_iter().enumerate().find_map(|(i, s)| {
        let effect = s.get("Effect").and_then(Value::as_str).unwrap_or("");
        if effect.eq_ignore_ascii_case("deny") {
            return None;
        }
        let name = match s.get("Sid").and_then(Value::as_str) {
            Some(sid) if !sid.is_empty() => format!("statement {sid:?}"),
            _ => format!("statement {}", i + 1),
        };
        for key in ["NotAction", "NotResource"] {
            if s.get(key).is_some() {
                return Some(format!("{name} uses {key} with Allow"));
            }
        }
        strings(s.get("Action"))
            .into_iter()
            .find_map(|action| action_problem(action).map(|why| format!("{name} {why}")))
    })
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// IAM matches actions case-insensitively, so the check does too.
fn action_problem(action: &str) -> Option<String> {
    let lower = action.trim().to_ascii_lowercase();
    let wildcard = |s: &str| s.contains('*') || s.contains('?');
    let Some((service, name)) = lower.split_once(':') else {
        return wildcard(&lower).then(|| format!("allows {action:?} (every action)"));
    };
    if wildcard(service) {
        return Some(format!("allows {action:?} (a wildcard service)"));
    }
    if GUARDED_SERVICES.contains(&service) && wildcard(name) {
        return Some(format!("allows {action:?} (a wildcard over {service})"));
    }
    if service == "iam" && name == "passrole" {
        return Some(format!("allows {action:?} (hands roles to services)"));
    }
    if service == "iam" && !(name.starts_with("get") || name.starts_with("list")) {
        return Some(format!("allows {action:?} (an IAM write)"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allow(action: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
    }

    #[test]
    fn privileged_actions_are_refused_whatever_the_spelling() {
        for action in [
            json!("*"),
            json!("*:*"),
            json!("iam:*"),
            json!("IAM:*"),
            json!("iam:Create*"),
            json!("iam:?assRole"),
            json!("iam:PassRole"),
            json!("iam:passrole"),
            json!("iam:CreateRole"),
            json!("iam:AttachRolePolicy"),
            json!("iam:UpdateAssumeRolePolicy"),
            json!("sts:*"),
            json!("organizations:*"),
            json!("i*:CreateUser"),
            json!(["s3:GetObject", "iam:PutRolePolicy"]),
        ] {
            assert!(
                privileged_grant(&allow(action.clone())).is_some(),
                "{action} was allowed"
            );
        }
    }

    #[test]
    fn ordinary_grants_pass() {
        for action in [
            json!("s3:GetObject"),
            json!("s3:*"),
            json!(["logs:PutLogEvents", "logs:CreateLogStream"]),
            json!("iam:GetRole"),
            json!("iam:ListRoles"),
            json!("sts:GetCallerIdentity"),
        ] {
            assert_eq!(privileged_grant(&allow(action.clone())), None, "{action}");
        }
    }

    #[test]
    fn not_action_and_not_resource_with_allow_are_refused_deny_is_not() {
        let not_action =
            json!({"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}});
        let message = privileged_grant(&not_action).expect("refused");
        assert!(message.contains("NotAction"), "{message}");
        let not_resource = json!({"Statement": [{"Sid": "All", "Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::x"}]});
        let message = privileged_grant(&not_resource).expect("refused");
        assert!(message.contains("\"All\""), "{message}");
        let deny = json!({"Statement": [{"Effect": "Deny", "NotAction": "*", "Action": "*", "Resource": "*"}]});
        assert_eq!(privileged_grant(&deny), None);
    }

    #[test]
    fn parsing_refuses_what_is_not_json_and_bounds_nesting() {
        assert!(parse("{\"Version\": \"2012-10-17\", \"Statement\": []}").is_ok());
        assert!(parse("Version: 2012-10-17").is_err());
        let deep = format!("{}{}", "[".repeat(140), "]".repeat(140));
        let error = parse(&deep).expect_err("too deep");
        assert!(error.contains("recursion"), "{error}");
    }
}
