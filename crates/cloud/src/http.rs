//! The HTTP client clouds are reached with: system roots, plus the PEM bundle
//! in `WIB_CLOUD_CA_FILE` when set (private endpoints, local fakes over https).

use std::time::Duration;

use wib_api::conditions::Reason;

use crate::CloudError;

/// The PEM bundle in `WIB_CLOUD_CA_FILE`, when set.
pub fn extra_ca_pem() -> Result<Option<Vec<u8>>, CloudError> {
    let Some(path) = std::env::var_os("WIB_CLOUD_CA_FILE") else {
        return Ok(None);
    };
    std::fs::read(&path).map(Some).map_err(|e| {
        CloudError::new(
            Reason::CloudNotConfigured,
            format!("reading WIB_CLOUD_CA_FILE {}: {e}", path.to_string_lossy()),
        )
    })
}

/// The certificates in `WIB_CLOUD_CA_FILE`, when set: trusted besides the
/// system roots.
pub fn extra_roots() -> Result<Vec<reqwest::Certificate>, CloudError> {
    let Some(pem) = extra_ca_pem()? else {
        return Ok(Vec::new());
    };
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        CloudError::new(
            Reason::CloudNotConfigured,
            format!("WIB_CLOUD_CA_FILE: {e}"),
        )
    })
}

/// The client, trusting the system roots and `roots`.
pub fn client_trusting(roots: &[reqwest::Certificate]) -> Result<reqwest::Client, CloudError> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10));
    for cert in roots {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder.build().map_err(|e| {
        CloudError::new(
            Reason::CloudNotConfigured,
            format!("building the HTTP client: {e}"),
        )
    })
}
