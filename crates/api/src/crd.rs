//! CRD generation: the YAML under `config/crd/` and the Helm chart's `crds/`
//! are rendered from the Rust types by `make generate`.

use kube::CustomResourceExt;

use crate::{ClusterIdentityProvider, WorkloadIdentityBinding};

/// Every CRD wib installs, as (file name, YAML document).
pub fn all() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (
            "wib.dev_workloadidentitybindings.yaml",
            render(&WorkloadIdentityBinding::crd())?,
        ),
        (
            "wib.dev_clusteridentityproviders.yaml",
            render(&ClusterIdentityProvider::crd())?,
        ),
    ])
}

fn render(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated from crates/api by `make generate`. Do not edit.\n{}",
        serde_yaml::to_string(crd)?
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn checked_in_crds_match_the_rust_types() {
        for (file, yaml) in super::all().expect("CRDs render") {
            for dir in ["config/crd", "charts/wib/crds"] {
                let path = repo_root().join(dir).join(file);
                let on_disk = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}; run `make generate`", path.display()));
                assert!(
                    on_disk == yaml,
                    "{} differs from the Rust types; run `make generate`",
                    path.display()
                );
            }
        }
    }
}
