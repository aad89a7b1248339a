//! Test harness: a real local Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager) for integration tests, e2e tests and `make run`,
//! and helpers to run the operator binary against it.

pub mod binaries;
pub mod controlplane;
pub mod fakes;
pub mod gcp;
pub mod moto;
pub mod operator;
pub mod pki;
pub mod process;

pub use controlplane::{ControlPlane, Options};
pub use operator::Operator;
