//! `verifyExchange` on Azure: the bound ServiceAccount's token presented
//! to Entra ID as the identity's client assertion: the client-credentials
//! request `azure_identity`'s workload identity credential makes in a pod,
//! sent through the same `azure_core` transport, read here so that Entra's
//! own answer (AADSTS70021 while a new federated credential replicates)
//! reaches the status; the SDK's error keeps only the HTTP status.

use std::sync::Arc;

use azure_core::{Method, Url, headers};
use wib_api::conditions::Reason;

use crate::exchange::{Endpoints, failed, form, waiting};
use crate::{CloudError, Outcome};

const SCOPE: &str = "https://management.azure.com/.default";

pub async fn verify(
    http: Arc<dyn azure_core::HttpClient>,
    outcome: &Outcome,
    token: &str,
    endpoints: &Endpoints,
) -> Result<(), CloudError> {
    let azure = outcome.status.azure.clone().unwrap_or_default();
    let (Some(client_id), Some(tenant)) = (azure.client_id, azure.tenant_id) else {
        return Err(CloudError::new(
            Reason::TransientError,
            "the identity's client and tenant IDs are not known yet; retried",
        ));
    };
    let url = Url::parse(&endpoints.azure_authority_host)
        .and_then(|host| host.join(&format!("/{tenant}/oauth2/v2.0/token")))
        .map_err(|e| failed("the Azure authority host", e))?;
    let form = form(&[
        ("client_id", client_id.as_str()),
        ("scope", SCOPE),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", token),
        ("grant_type", "client_credentials"),
    ]);
    let mut request = azure_core::Request::new(url, Method::Post);
    request.insert_header(headers::CONTENT_TYPE, "application/x-www-form-urlencoded");
    request.set_body(form);
    let response = http
        .execute_request(&request)
        .await
        .map_err(|e| failed("exchanging the token with Entra ID", e))?;
    let status = u16::from(response.status());
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = response.into_body().collect().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if (400..500).contains(&status) {
        // Entra's own refusal (AADSTS70021 while a new federated credential
        // replicates, AADSTS700016 while a new identity does).
        return Err(waiting(format!(
            "Entra ID refused the ServiceAccount's token for client {client_id}: {}",
            entra_reason(&text)
        )));
    }
    Err(failed(
        "exchanging the token with Entra ID",
        format!("HTTP {status}"),
    ))
}

/// Entra's `AADSTS…` sentence, without the request and trace IDs that
/// change on every attempt (the status would be rewritten each time).
fn entra_reason(text: &str) -> String {
    let start = text.find("AADSTS").unwrap_or(0);
    let reason = &text[start..];
    let end = reason.find(" Trace ID").unwrap_or(reason.len());
    reason[..end]
        .split(['"', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn entra_reason_keeps_the_sentence_and_drops_what_changes_each_time() {
        let text = r#"server returned error {"error_description":"AADSTS70021: No matching federated identity record found for presented assertion. Trace ID: 1 Correlation ID: 2"}"#;
        assert_eq!(
            super::entra_reason(text),
            "AADSTS70021: No matching federated identity record found for presented assertion."
        );
    }
}
