//! Local fakes of cloud APIs for wib's tests, written from the public REST
//! specifications: real paths, api-versions, status codes and error bodies,
//! with call counters and fault injection on an admin API.

pub mod azure;
pub mod clock;
pub mod faults;
pub mod gcp;
pub mod oidc;
pub mod quotas;
pub mod serve;
pub mod tls;
