//! Schema fragments schemars cannot derive.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form JSON object kept as written (IAM policy documents).
pub fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
