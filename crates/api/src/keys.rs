//! Label, annotation and finalizer keys wib reads and writes.

/// Finalizer that holds a binding until its cloud resources and ServiceAccount
/// fields are cleaned up.
pub const FINALIZER: &str = "wib.dev/cleanup";

/// Finalizer on a ClusterIdentityProvider: held while bindings resolve to
/// it, since their cleanup needs it.
pub const PROVIDER_FINALIZER: &str = "wib.dev/in-use-protection";

/// Marks the ClusterIdentityProvider used by bindings without `providerRef`
/// (like `storageclass.kubernetes.io/is-default-class`).
pub const DEFAULT_PROVIDER_ANNOTATION: &str = "wib.dev/is-default-provider";

/// Set on a binding (by `kubectl wib reconcile`, or anyone) to ask for an
/// immediate reconcile, past any backoff; the value handled last is
/// `status.lastHandledReconcileAt` (as Flux's `reconcile.fluxcd.io/requestedAt`).
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "wib.dev/reconcile-requested-at";

/// Set on every ServiceAccount wib manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "wib";

/// `wib.dev/<cloud>-binding: <binding name>` on the ServiceAccount: which
/// binding manages its annotations for that cloud. Also how a second binding
/// for the same ServiceAccount and cloud is detected.
pub fn binding_annotation(cloud: crate::Cloud) -> String {
    format!("wib.dev/{}-binding", cloud.as_str())
}
