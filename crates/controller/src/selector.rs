//! Label selector matching (`matchLabels` and `matchExpressions`), as the API
//! server evaluates it, for the provider's `namespaceSelector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`. An empty selector matches everything;
/// an unknown operator matches nothing (fail closed).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn selector_cases() {
        let team_a = labels(&[("team", "a"), ("env", "prod")]);
        let none = labels(&[]);
        let match_labels = LabelSelector {
            match_labels: Some(labels(&[("team", "a")])),
            ..Default::default()
        };
        let cases: Vec<(&str, LabelSelector, &BTreeMap<String, String>, bool)> = vec![
            (
                "empty selector matches all",
                LabelSelector::default(),
                &none,
                true,
            ),
            ("matchLabels hit", match_labels.clone(), &team_a, true),
            ("matchLabels miss", match_labels, &none, false),
            ("In hit", expr("env", "In", &["prod", "qa"]), &team_a, true),
            (
                "In on missing key",
                expr("env", "In", &["prod"]),
                &none,
                false,
            ),
            (
                "NotIn on missing key",
                expr("env", "NotIn", &["prod"]),
                &none,
                true,
            ),
            ("NotIn hit", expr("env", "NotIn", &["prod"]), &team_a, false),
            ("Exists", expr("team", "Exists", &[]), &team_a, true),
            (
                "DoesNotExist",
                expr("team", "DoesNotExist", &[]),
                &team_a,
                false,
            ),
            (
                "unknown operator fails closed",
                expr("team", "Gt", &["1"]),
                &team_a,
                false,
            ),
        ];
        for (name, selector, labels, want) in cases {
            assert_eq!(matches(&selector, labels), want, "{name}");
        }
    }
}
