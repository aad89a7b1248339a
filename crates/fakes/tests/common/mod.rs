//! Tokens like the API server's, made here: the same claims, algorithm and
//! key ID, but expired, not valid yet, or signed by a key the issuer never
//! published. The fakes must refuse each, as Entra and Google STS do.

use serde_json::Value;
use wib_testenv::ControlPlane;

pub enum Forgery {
    /// Signed with the cluster's key, expired a minute ago.
    Expired,
    /// Signed with the cluster's key, `nbf` ten minutes ahead.
    NotYetValid,
    /// Well-formed and current, signed by another key under the same kid.
    ForeignKey,
}

pub fn forged(cp: &ControlPlane, real: &str, forgery: Forgery) -> String {
    let header = jsonwebtoken::decode_header(real).expect("header");
    let mut claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(real).expect("claims");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (iat, nbf, exp) = match forgery {
        Forgery::Expired => (now - 3660, now - 3660, now - 60),
        Forgery::NotYetValid => (now, now + 600, now + 3600),
        Forgery::ForeignKey => (now - 10, now - 10, now + 600),
    };
    claims["iat"] = iat.into();
    claims["nbf"] = nbf.into();
    claims["exp"] = exp.into();
    let pem = match forgery {
        Forgery::ForeignKey => rcgen::KeyPair::generate()
            .expect("foreign key")
            .serialize_pem()
            .into_bytes(),
        _ => std::fs::read(cp.dir().join("sa.key")).expect("the cluster's signing key"),
    };
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("EC key");
    let mut out = jsonwebtoken::Header::new(header.alg);
    out.kid = header.kid;
    jsonwebtoken::encode(&out, &claims, &key).expect("sign")
}
