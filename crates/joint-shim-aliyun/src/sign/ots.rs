//! Tablestore (OTS) SignV2: `x-ots-signature` over the `x-ots-*` headers, and the response
//! `Authorization: OTS ak:sig` a server returns.
//!
//! ```text
//! StringToSign = "/Action\nPOST\n\n" + join("\n", sorted("name:value" for x-ots-* except x-ots-signature)) + "\n"
//! ResponseSign = join("\n", sorted(x-ots-* response headers)) + "\n" + "/Action"
//! ```

use super::{Parts, VerifyError, b64, hmac_sha1, md5_base64, same};
use crate::credential::Credential;
use crate::time::Timestamp;

/// The API version every request carries.
pub const API_VERSION: &str = "2015-12-31";

fn ots_headers(headers: &[(String, String)]) -> String {
    let mut items: Vec<String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k.starts_with("x-ots-") && k != "x-ots-signature")
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

/// Sign a Tablestore request: returns every `x-ots-*` header to send (date, api version,
/// access key id, instance name, content md5, STS token, signature).
pub fn sign(
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
    let sts = string_to_sign(&format!("/{action}"), &h);
    h.push((
        "x-ots-signature".to_string(),
        signature(cred.access_key_secret(), &sts),
    ));
    h
}

/// Verify a request to `/Action` (`parts.path`) as Tablestore does.
pub fn verify(
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
    let ak = need("x-ots-accesskeyid")?;
    let sig = need("x-ots-signature")?;
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
    let sts = string_to_sign(&parts.path, &parts.headers);
    if same(&signature(cred.access_key_secret(), &sts), sig.trim()) {
        Ok(cred)
    } else {
        Err(VerifyError::Mismatch {
            string_to_sign: sts,
        })
    }
}

/// The `Authorization` header of a response to `/Action`.
pub fn response_authorization(
    path: &str,
    headers: &[(String, String)],
    cred: &Credential,
) -> String {
    let sts = format!("{}\n{path}", ots_headers(headers));
    format!(
        "OTS {}:{}",
        cred.access_key_id,
        signature(cred.access_key_secret(), &sts)
    )
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
