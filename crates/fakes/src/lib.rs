//! Local fakes of cloud APIs for wib's tests, written from the public REST
//! specifications: real paths, api-versions, status codes and error bodies,
//! with call counters and fault injection on an admin API. Azure (ARM,
//! Authorization, Entra, Key Vault), GCP (IAM, STS) and Amazon EKS Pod
//! Identity (EKS associations, EKS Auth and a node agent stand-in; IAM and
//! STS themselves are moto's).

pub mod aws;
pub mod azure;
pub mod clock;
pub mod faults;
pub mod gcp;
pub mod oidc;
pub mod percent;
pub mod quotas;
pub mod serve;
pub mod tls;
