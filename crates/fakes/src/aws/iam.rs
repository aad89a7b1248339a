//! The two IAM/STS calls EKS Pod Identity makes on a pod's behalf, sent to
//! moto (the repository's AWS IAM/STS fake) over the Query API: `GetRole`
//! for the role's trust policy, which the fake evaluates itself because moto
//! does not, and `AssumeRole` for the credentials. moto checks no signature
//! but routes a request by its SigV4 credential scope, so each call carries
//! an `Authorization` header naming `iam` or `sts`, and `x-moto-account-id`
//! picks the role's account.

use std::time::Duration;

/// The access key the fake signs its own calls with; moto maps an unknown
/// key to its default account, and `x-moto-account-id` overrides that.
const FAKE_ACCESS_KEY: &str = "AKIAWIBFAKEEKSAUTH00";
/// IAM is global: its credential scope always names us-east-1.
const IAM_REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto could not be reached: {0}")]
    Unreachable(String),
    #[error("moto answered {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("moto's answer has no {0}")]
    Malformed(&'static str),
}

/// Temporary credentials, as STS returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Seconds since the Unix epoch.
    pub expiration: u64,
}

/// An `AssumeRole` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assumed {
    pub credentials: Credentials,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub arn: String,
    pub assumed_role_id: String,
}

/// One `AssumeRole` call.
pub struct AssumeRole<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub external_id: Option<&'a str>,
    /// Session tags (EKS's `eks-cluster-name`, `kubernetes-namespace`, …).
    pub tags: &'a [(String, String)],
    /// The access key of the session making the call (role chaining), if
    /// not the fake's own.
    pub signer: Option<&'a str>,
}

pub struct Moto {
    http: reqwest::Client,
    url: String,
    region: String,
}

impl Moto {
    pub fn new(url: &str, region: &str) -> anyhow::Result<Self> {
        // moto's development server closes every connection after
        // answering; a pooled connection would fail the next request.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            region: region.to_string(),
        })
    }

    /// The role's trust policy (JSON), or `None` when no role has exactly
    /// this ARN (name and path).
    pub async fn trust_policy(&self, role_arn: &str) -> Result<Option<String>, MotoError> {
        let form = pairs(&[
            ("Action", "GetRole"),
            ("RoleName", role_name(role_arn)),
            ("Version", "2010-05-08"),
        ]);
        let account = account_of(role_arn).unwrap_or_default();
        let body = match self
            .call("iam", IAM_REGION, account, FAKE_ACCESS_KEY, &form)
            .await
        {
            Ok(body) => body,
            Err(MotoError::Refused { code, .. }) if code == "NoSuchEntity" => return Ok(None),
            Err(e) => return Err(e),
        };
        if element(&body, "Arn").map(unescape).as_deref() != Some(role_arn) {
            return Ok(None);
        }
        let raw = element(&body, "AssumeRolePolicyDocument")
            .ok_or(MotoError::Malformed("AssumeRolePolicyDocument"))?;
        Ok(Some(policy_document(raw)))
    }

    pub async fn assume_role(&self, request: &AssumeRole<'_>) -> Result<Assumed, MotoError> {
        let mut form = pairs(&[
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", request.role_arn),
            ("RoleSessionName", request.session_name),
        ]);
        if let Some(external_id) = request.external_id {
            form.push(("ExternalId".into(), external_id.into()));
        }
        for (i, (key, value)) in request.tags.iter().enumerate() {
            form.push((format!("Tags.member.{}.Key", i + 1), key.clone()));
            form.push((format!("Tags.member.{}.Value", i + 1), value.clone()));
        }
        let account = account_of(request.role_arn).unwrap_or_default();
        let signer = request.signer.unwrap_or(FAKE_ACCESS_KEY);
        let body = self
            .call("sts", &self.region, account, signer, &form)
            .await?;
        parse_assumed(&body)
    }

    async fn call(
        &self,
        service: &str,
        region: &str,
        account: &str,
        access_key: &str,
        form: &[(String, String)],
    ) -> Result<String, MotoError> {
        let amz_date = amz_date();
        let day = amz_date.get(..8).unwrap_or_default();
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/{day}/{region}/{service}/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={}",
            "0".repeat(64)
        );
        let mut request = self
            .http
            .post(format!("{}/", self.url))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header("x-amz-date", amz_date.as_str())
            .header("authorization", authorization)
            .body(form_encode(form));
        if !account.is_empty() {
            request = request.header("x-moto-account-id", account);
        }
        let unreachable = |e: reqwest::Error| MotoError::Unreachable(e.to_string());
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        Err(MotoError::Refused {
            status: status.as_u16(),
            code: element(&text, "Code")
                .map(unescape)
                .unwrap_or_else(|| "Unknown".into()),
            message: element(&text, "Message").map(unescape).unwrap_or_default(),
        })
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The account ID in an ARN (`arn:aws:iam::<account>:role/…`).
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// A role's name: the ARN's last path segment (`role/path/name`).
pub fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// `YYYYMMDDTHHMMSSZ` of the real clock (SigV4's `x-amz-date`).
fn amz_date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    crate::clock::rfc3339(now).replace(['-', ':'], "")
}

/// `application/x-www-form-urlencoded`, escaping all but RFC 3986's
/// unreserved characters (as SigV4 canonicalization does).
fn form_encode(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The text of the first `<tag>…</tag>` in a Query API answer.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml.get(start..)?.find(&close)?;
    xml.get(start..end)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

/// IAM returns a role's trust policy URL-encoded inside the XML.
fn policy_document(raw: &str) -> String {
    let text = unescape(raw.trim());
    if text.starts_with('{') {
        return text;
    }
    crate::percent::decode(&text, false).unwrap_or(text)
}

fn parse_assumed(body: &str) -> Result<Assumed, MotoError> {
    let credentials = element(body, "Credentials").ok_or(MotoError::Malformed("Credentials"))?;
    let user = element(body, "AssumedRoleUser").ok_or(MotoError::Malformed("AssumedRoleUser"))?;
    let field = |xml: &str, tag: &'static str| {
        element(xml, tag)
            .map(unescape)
            .ok_or(MotoError::Malformed(tag))
    };
    let expiration = field(credentials, "Expiration")?;
    Ok(Assumed {
        credentials: Credentials {
            access_key_id: field(credentials, "AccessKeyId")?,
            secret_access_key: field(credentials, "SecretAccessKey")?,
            session_token: field(credentials, "SessionToken")?,
            expiration: parse_iso8601(&expiration).ok_or(MotoError::Malformed("Expiration"))?,
        },
        arn: field(user, "Arn")?,
        assumed_role_id: field(user, "AssumedRoleId")?,
    })
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff…]Z`, as STS writes
/// `Expiration`.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
    let year = i32::from(number(0..4)?);
    let month = time::Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let part = |range| u8::try_from(number(range)?).ok();
    let date = time::Date::from_calendar_date(year, month, part(8..10)?).ok()?;
    let clock = time::Time::from_hms(part(11..13)?, part(14..16)?, part(17..19)?).ok()?;
    let unix = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    u64::try_from(unix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_parse_with_and_without_fractions() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601("2026-11-28T00:00:00.841325Z"),
            Some(1_795_824_000)
        );
        assert_eq!(parse_iso8601("not a date"), None);
    }

    #[test]
    fn the_trust_policy_is_read_from_a_get_role_answer() {
        let xml = "<GetRoleResponse><GetRoleResult><Role><Path>/</Path><Arn>arn:aws:iam::123456789012:role/app</Arn><AssumeRolePolicyDocument>%7B%22Statement%22%3A%20%5B%5D%2C%20%22a%22%3A%20%22x%26y%22%7D</AssumeRolePolicyDocument><RoleLastUsed/></Role></GetRoleResult></GetRoleResponse>";
        assert_eq!(
            element(xml, "Arn"),
            Some("arn:aws:iam::123456789012:role/app")
        );
        let raw = element(xml, "AssumeRolePolicyDocument").expect("document");
        assert_eq!(policy_document(raw), r#"{"Statement": [], "a": "x&y"}"#);
    }

    #[test]
    fn an_assume_role_answer_parses() {
        let xml = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s+/e</SecretAccessKey><SessionToken>t&amp;k</SessionToken><Expiration>1970-01-01T01:00:00Z</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA1:eks-c-sa</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/app/eks-c-sa</Arn></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>";
        let assumed = parse_assumed(xml).expect("parsed");
        assert_eq!(assumed.credentials.session_token, "t&k");
        assert_eq!(assumed.credentials.expiration, 3600);
        assert_eq!(assumed.assumed_role_id, "AROA1:eks-c-sa");
    }

    #[test]
    fn forms_escape_reserved_characters() {
        let form = pairs(&[("RoleArn", "arn:aws:iam::1:role/a b")]);
        assert_eq!(
            form_encode(&form),
            "RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b"
        );
        assert_eq!(role_name("arn:aws:iam::1:role/path/name"), "name");
        assert_eq!(
            account_of("arn:aws:iam::123456789012:role/x"),
            Some("123456789012")
        );
    }
}
