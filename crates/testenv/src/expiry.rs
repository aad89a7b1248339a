//! What the three clouds' fakes share for tests of time: a clock a test
//! moves forward, and the operator's token file rotated as the kubelet does.

use std::path::Path;

use anyhow::Result;

use crate::ClusterRef;

/// A fake whose issued tokens and presented assertions expire by a clock
/// the test moves, and whose operator token file the test rotates.
#[allow(async_fn_in_trait)]
pub trait Expiring {
    /// Moves the fake's clock forward by `seconds`.
    async fn advance_clock(&self, seconds: u64) -> Result<()>;
    /// The operator's projected token file and the audience it is for.
    fn operator_token(&self, cluster: &ClusterRef) -> (std::path::PathBuf, String);
    /// (expired access tokens or sessions refused, expired assertions refused)
    async fn expiry_refusals(&self) -> Result<(u64, u64)>;

    /// Writes a fresh token into the operator's token file, valid for
    /// `seconds` of real time, atomically as the kubelet swaps its files.
    async fn rotate_operator_token(&self, cluster: &ClusterRef, seconds: u64) -> Result<()> {
        let (file, audience) = self.operator_token(cluster);
        let token = cluster
            .service_account_token_lasting(
                crate::fakes::OPERATOR_NAMESPACE,
                crate::fakes::OPERATOR_SERVICE_ACCOUNT,
                &audience,
                seconds,
            )
            .await?;
        write_atomically(&file, &token)
    }
}

/// The two counters the Azure and GCP fakes keep in their `/admin/state`.
pub fn refusals_in(state: &serde_json::Value) -> (u64, u64) {
    (
        state["expiredTokensRefused"].as_u64().unwrap_or_default(),
        state["expiredAssertionsRefused"]
            .as_u64()
            .unwrap_or_default(),
    )
}

fn write_atomically(file: &Path, contents: &str) -> Result<()> {
    let staged = file.with_extension("new");
    std::fs::write(&staged, contents)?;
    std::fs::rename(&staged, file)?;
    Ok(())
}
