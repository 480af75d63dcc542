//! Tablestore (OTS) request signatures — SignV2 (`x-ots-signature`, the SDKs' default) and
//! SignV4 (`x-ots-signaturev4`, what the official SDKs send when a region is configured) —
//! and the response `Authorization: OTS ak:sig` a server returns.
//!
//! ```text
//! StringToSign = "/Action\nPOST\n\n" + join("\n", sorted("name:value" for x-ots-* except the signatures)) + "\n"
//! SignV2       = base64(HMAC-SHA1(secret, StringToSign))
//! SignV4       = base64(HMAC-SHA256(SigningKey, StringToSign + "ots")), with x-ots-signdate
//!                (yyyyMMdd) and x-ots-signregion among the signed headers, and
//! SigningKey   = base64(HMAC-SHA256(HMAC-SHA256(HMAC-SHA256(HMAC-SHA256(
//!                  "aliyun_v4" + secret, signdate), region), "ots"), "aliyun_v4_request"))
//! ResponseSign = base64(HMAC-SHA1(key, join("\n", sorted(x-ots-* response headers)) + "\n" + "/Action"))
//!                with key = the secret (V2) or the V4 SigningKey (V4)
//! ```
//!
//! A V4 signing key is bound to a day and a region: [`verify_request`] accepts a sign date
//! within a day of the request's `x-ots-date` (which must itself be within the clock-skew
//! window), and, given an expected region, refuses another.

use super::{Parts, VerifyError, b64, hmac_sha1, hmac_sha256, md5_base64, same};
use crate::credential::Credential;
use crate::time::Timestamp;

/// The API version every request carries.
pub const API_VERSION: &str = "2015-12-31";

/// The header of a SignV4 signature.
pub const SIGNATURE_V4: &str = "x-ots-signaturev4";

/// Which signature a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SignVersion {
    /// SignV2 (`x-ots-signature`, HMAC-SHA1 with the secret): the SDKs' default.
    #[default]
    V2,
    /// SignV4 (`x-ots-signaturev4`) scoped to a region, e.g. `cn-hangzhou`.
    V4 {
        /// The instance's region.
        region: String,
    },
}

fn ots_headers(headers: &[(String, String)]) -> String {
    let mut items: Vec<String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k.starts_with("x-ots-") && k != "x-ots-signature" && k != SIGNATURE_V4)
        .map(|(k, v)| format!("{k}:{}", v.trim()))
        .collect();
    items.sort();
    items.join("\n")
}

/// The request string to sign for `/Action`.
pub fn string_to_sign(path: &str, headers: &[(String, String)]) -> String {
    format!("{path}\nPOST\n\n{}\n", ots_headers(headers))
}

/// base64 HMAC-SHA1.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    b64(&hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// The SignV4 signing key of `secret` for `sign_date` (`yyyyMMdd`) and `region`: the base64
/// text whose bytes key the request HMAC-SHA256 and the response HMAC-SHA1.
pub fn v4_signing_key(secret: &str, sign_date: &str, region: &str) -> String {
    let k1 = hmac_sha256(
        format!("aliyun_v4{secret}").as_bytes(),
        sign_date.as_bytes(),
    );
    let k2 = hmac_sha256(&k1, region.as_bytes());
    let k3 = hmac_sha256(&k2, b"ots");
    let k4 = hmac_sha256(&k3, b"aliyun_v4_request");
    b64(&k4)
}

/// base64 HMAC-SHA256 of `string_to_sign` + `"ots"` with the V4 signing key.
pub fn signature_v4(signing_key: &str, string_to_sign: &str) -> String {
    b64(&hmac_sha256(
        signing_key.as_bytes(),
        format!("{string_to_sign}ots").as_bytes(),
    ))
}

/// Sign a Tablestore request with SignV2: returns every `x-ots-*` header to send (date, api
/// version, access key id, instance name, content md5, STS token, signature).
pub fn sign(
    action: &str,
    instance: &str,
    body: &[u8],
    cred: &Credential,
    now: Timestamp,
) -> Vec<(String, String)> {
    sign_with(&SignVersion::V2, action, instance, body, cred, now)
}

/// Sign a Tablestore request with `version`: the `x-ots-*` headers to send (for V4 also
/// `x-ots-signdate`, `x-ots-signregion` and `x-ots-signaturev4`).
pub fn sign_with(
    version: &SignVersion,
    action: &str,
    instance: &str,
    body: &[u8],
    cred: &Credential,
    now: Timestamp,
) -> Vec<(String, String)> {
    let mut h = vec![
        ("x-ots-date".to_string(), now.iso8601_millis()),
        ("x-ots-apiversion".to_string(), API_VERSION.to_string()),
        ("x-ots-accesskeyid".to_string(), cred.access_key_id.clone()),
        ("x-ots-instancename".to_string(), instance.to_string()),
        ("x-ots-contentmd5".to_string(), md5_base64(body)),
    ];
    if let Some(t) = cred.security_token() {
        h.push(("x-ots-ststoken".to_string(), t.to_string()));
    }
    match version {
        SignVersion::V2 => {
            let sts = string_to_sign(&format!("/{action}"), &h);
            h.push((
                "x-ots-signature".to_string(),
                signature(cred.access_key_secret(), &sts),
            ));
        }
        SignVersion::V4 { region } => {
            let date = now.date_basic();
            h.push(("x-ots-signdate".to_string(), date.clone()));
            h.push(("x-ots-signregion".to_string(), region.clone()));
            let sts = string_to_sign(&format!("/{action}"), &h);
            let key = v4_signing_key(cred.access_key_secret(), &date, region);
            h.push((SIGNATURE_V4.to_string(), signature_v4(&key, &sts)));
        }
    }
    h
}

/// The key of a verified request's response signature (see [`response_authorization_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseKey {
    /// SignV2: the secret.
    V2,
    /// SignV4: the request's signing key.
    V4(String),
}

/// A request [`verify_request`] accepted.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Whose request it is.
    pub credential: Credential,
    /// What its response must be signed with.
    pub response_key: ResponseKey,
}

/// Verify a request to `/Action` (`parts.path`) as Tablestore does, SignV2 or SignV4 (see
/// [`verify_request`]).
pub fn verify(
    parts: &Parts,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
) -> Result<Credential, VerifyError> {
    verify_request(parts, body, lookup, now, max_skew_secs, None).map(|v| v.credential)
}

/// Verify a request to `/Action` (`parts.path`), signed with SignV2 (`x-ots-signature`) or
/// SignV4 (`x-ots-signaturev4`); with `region`, a V4 request must be scoped to it.
pub fn verify_request(
    parts: &Parts,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
    region: Option<&str>,
) -> Result<Verified, VerifyError> {
    if parts.get(SIGNATURE_V4).is_some() {
        return verify_v4(parts, body, lookup, now, max_skew_secs, region);
    }
    verify_v2(parts, body, lookup, now, max_skew_secs).map(|credential| Verified {
        credential,
        response_key: ResponseKey::V2,
    })
}

/// The checks both versions share: access key, date within the window, body digest, STS
/// token. Returns the credential and the request time.
fn common(
    parts: &Parts,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
) -> Result<(Credential, Timestamp), VerifyError> {
    let need = |n: &str| {
        parts
            .get(n)
            .ok_or_else(|| VerifyError::Malformed(format!("missing header {n}")))
    };
    let ak = need("x-ots-accesskeyid")?;
    let date = need("x-ots-date")?;
    let md5 = need("x-ots-contentmd5")?;
    need("x-ots-apiversion")?;
    let cred = lookup(ak).ok_or_else(|| VerifyError::UnknownAccessKey(ak.to_string()))?;
    let t = Timestamp::parse(date)
        .ok_or_else(|| VerifyError::Malformed(format!("bad x-ots-date '{date}'")))?;
    if t.skew_secs(&now) > max_skew_secs {
        return Err(VerifyError::Skewed(format!(
            "Mismatch between system time and x-ots-date: {date}"
        )));
    }
    if !same(md5, &md5_base64(body)) {
        return Err(VerifyError::BadDigest("x-ots-contentmd5".into()));
    }
    if let Some(tok) = cred.security_token()
        && parts.get("x-ots-ststoken") != Some(tok)
    {
        return Err(VerifyError::Malformed(
            "missing or wrong x-ots-ststoken".into(),
        ));
    }
    Ok((cred, t))
}

fn verify_v4(
    parts: &Parts,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
    region: Option<&str>,
) -> Result<Verified, VerifyError> {
    let (cred, t) = common(parts, body, lookup, now, max_skew_secs)?;
    let need = |n: &str| {
        parts
            .get(n)
            .map(str::trim)
            .ok_or_else(|| VerifyError::Malformed(format!("missing header {n}")))
    };
    let sig = need(SIGNATURE_V4)?;
    let sign_date = need("x-ots-signdate")?;
    let sign_region = need("x-ots-signregion")?;
    // The key is scoped to a day: within a day of the request time (which is within the
    // clock-skew window), so a key derived for another day does not sign today's requests.
    let day_ms = 86_400_000;
    let ok_day = [-day_ms, 0, day_ms]
        .iter()
        .any(|d| Timestamp::from_unix_millis(t.unix_millis() + d).date_basic() == sign_date);
    if !ok_day {
        return Err(VerifyError::Skewed(format!(
            "x-ots-signdate {sign_date} is not within a day of x-ots-date {}",
            t.iso8601_millis()
        )));
    }
    if let Some(r) = region
        && r != sign_region
    {
        return Err(VerifyError::Malformed(format!(
            "x-ots-signregion '{sign_region}' is not this instance's region '{r}'"
        )));
    }
    let sts = string_to_sign(&parts.path, &parts.headers);
    let key = v4_signing_key(cred.access_key_secret(), sign_date, sign_region);
    if same(&signature_v4(&key, &sts), sig) {
        Ok(Verified {
            credential: cred,
            response_key: ResponseKey::V4(key),
        })
    } else {
        Err(VerifyError::Mismatch {
            string_to_sign: format!("{sts}ots"),
        })
    }
}

fn verify_v2(
    parts: &Parts,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
) -> Result<Credential, VerifyError> {
    let need = |n: &str| {
        parts
            .get(n)
            .ok_or_else(|| VerifyError::Malformed(format!("missing header {n}")))
    };
    let sig = need("x-ots-signature")?;
    let (cred, _) = common(parts, body, lookup, now, max_skew_secs)?;
    let sts = string_to_sign(&parts.path, &parts.headers);
    if same(&signature(cred.access_key_secret(), &sts), sig.trim()) {
        Ok(cred)
    } else {
        Err(VerifyError::Mismatch {
            string_to_sign: sts,
        })
    }
}

/// The `Authorization` header of a response to a SignV2 request to `/Action`.
pub fn response_authorization(
    path: &str,
    headers: &[(String, String)],
    cred: &Credential,
) -> String {
    response_authorization_with(path, headers, cred, &ResponseKey::V2)
}

/// The `Authorization` header of a response to `/Action`, signed with `key`: the secret for a
/// SignV2 request, the request's signing key for a SignV4 one (as the SDKs check it).
pub fn response_authorization_with(
    path: &str,
    headers: &[(String, String)],
    cred: &Credential,
    key: &ResponseKey,
) -> String {
    let sts = format!("{}\n{path}", ots_headers(headers));
    let secret = match key {
        ResponseKey::V2 => cred.access_key_secret(),
        ResponseKey::V4(k) => k.as_str(),
    };
    format!("OTS {}:{}", cred.access_key_id, signature(secret, &sts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_shape() {
        let h = vec![
            (
                "x-ots-date".to_string(),
                "2024-01-01T00:00:00.000Z".to_string(),
            ),
            ("X-OTS-APIVersion".to_string(), " 2015-12-31 ".to_string()),
            ("User-Agent".to_string(), "x".to_string()),
            ("x-ots-signature".to_string(), "ignored".to_string()),
        ];
        assert_eq!(
            string_to_sign("/GetRow", &h),
            "/GetRow\nPOST\n\nx-ots-apiversion:2015-12-31\nx-ots-date:2024-01-01T00:00:00.000Z\n"
        );
    }

    #[test]
    fn sign_v4_verify_tamper() {
        let cred = Credential::new("ak", "sk");
        let now = Timestamp::from_unix(1_800_000_000);
        let v4 = SignVersion::V4 {
            region: "cn-hangzhou".into(),
        };
        let mut p = Parts::new("POST", "/GetRow");
        p.headers = sign_with(&v4, "GetRow", "inst", b"body", &cred, now);
        assert!(p.get("x-ots-signature").is_none());
        assert_eq!(p.get("x-ots-signdate"), Some(now.date_basic().as_str()));
        let lookup = |k: &str| (k == "ak").then(|| cred.clone());
        let v = verify_request(&p, b"body", lookup, now, 900, Some("cn-hangzhou")).expect("v4");
        assert!(matches!(v.response_key, ResponseKey::V4(_)));
        assert!(matches!(
            verify_request(&p, b"body", lookup, now, 900, Some("cn-beijing")),
            Err(VerifyError::Malformed(_))
        ));
        // Another region or day in the headers breaks the signature or the day scope.
        for (h, v) in [
            ("x-ots-signregion", "cn-beijing"),
            ("x-ots-instancename", "other"),
        ] {
            let mut t = p.clone();
            for (k, val) in &mut t.headers {
                if k == h {
                    *val = v.into();
                }
            }
            assert!(
                matches!(
                    verify_request(&t, b"body", lookup, now, 900, None),
                    Err(VerifyError::Mismatch { .. })
                ),
                "{h}"
            );
        }
        let later = Timestamp::from_unix(1_800_000_000 + 3 * 86_400);
        let mut old = Parts::new("POST", "/GetRow");
        old.headers = sign_with(&v4, "GetRow", "inst", b"body", &cred, now);
        for (k, v) in &mut old.headers {
            if k == "x-ots-date" {
                *v = later.iso8601_millis();
            }
        }
        assert!(matches!(
            verify_request(&old, b"body", lookup, later, 900, None),
            Err(VerifyError::Skewed(_))
        ));
    }

    #[test]
    fn sign_verify_tamper() {
        let cred = Credential::new("ak", "sk");
        let now = Timestamp::from_unix(1_800_000_000);
        let mut p = Parts::new("POST", "/PutRow");
        p.headers = sign("PutRow", "inst", b"body", &cred, now);
        let lookup = |k: &str| (k == "ak").then(|| cred.clone());
        assert!(verify(&p, b"body", lookup, now, 900).is_ok());
        assert!(matches!(
            verify(&p, b"bodx", lookup, now, 900),
            Err(VerifyError::BadDigest(_))
        ));
        let mut t = p.clone();
        t.path = "/DeleteRow".into();
        assert!(matches!(
            verify(&t, b"body", lookup, now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
        let mut t = p.clone();
        for (k, v) in &mut t.headers {
            if k == "x-ots-instancename" {
                *v = "other".into();
            }
        }
        assert!(matches!(
            verify(&t, b"body", lookup, now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
    }
}
