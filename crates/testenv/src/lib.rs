//! Test harness: a real local Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager) for integration tests, e2e tests and `make run`,
//! and helpers to run the operator binary against it.

pub mod attached;
pub mod azure;
pub mod binaries;
pub mod cluster;
pub mod controlplane;
pub mod eks;
pub mod expiry;
pub mod fakes;
pub mod gcp;
pub mod moto;
pub mod operator;
pub mod pki;
pub mod ports;
pub mod process;
pub mod webhook;

pub use attached::Attached;
pub use cluster::ClusterRef;
pub use controlplane::{ControlPlane, Options};
pub use operator::Operator;
