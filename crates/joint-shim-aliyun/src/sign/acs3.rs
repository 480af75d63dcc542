//! ACS3-HMAC-SHA256: the Alibaba Cloud OpenAPI V3 signature (Function Compute 3.0).
//!
//! ```text
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n HashedPayload
//! StringToSign     = "ACS3-HMAC-SHA256\n" + hex(sha256(CanonicalRequest))
//! Authorization    = ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex(hmac256(SK, StringToSign))
//! ```

use super::{Parts, VerifyError, auth_params, hmac_sha256, percent_encode, same, sha256_hex};
use crate::credential::Credential;
use crate::time::Timestamp;

/// The algorithm name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// SHA-256 of the empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The sorted, lowercase names a client signs by default: `host`, `content-type` and every
/// `x-acs-*` header present.
pub fn default_signed_headers(parts: &Parts) -> Vec<String> {
    let mut names: Vec<String> = parts
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| k == "host" || k == "content-type" || k.starts_with("x-acs-"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Canonical query: `enc(k)=enc(v)` sorted by key, joined by `&` (an empty value keeps `k=`).
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Canonical headers for `names` (lowercase): duplicate names merged with sorted values joined
/// by `,`, values trimmed, each line `name:value\n`.
pub fn canonical_headers(parts: &Parts, names: &[String]) -> String {
    let mut out = String::new();
    for n in names {
        let mut vals: Vec<&str> = parts.get_all(n).into_iter().map(str::trim).collect();
        vals.sort();
        out.push_str(n);
        out.push(':');
        out.push_str(&vals.join(","));
        out.push('\n');
    }
    out
}

/// The canonical request over the headers `signed` (lowercase, sorted).
pub fn canonical_request(parts: &Parts, signed: &[String], hashed_payload: &str) -> String {
    let uri = if parts.path.is_empty() {
        "/"
    } else {
        parts.path.as_str()
    };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        uri,
        canonical_query(&parts.query),
        canonical_headers(parts, signed),
        signed.join(";"),
        hashed_payload
    )
}

/// `ACS3-HMAC-SHA256\n` + hex(sha256(canonical request)).
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The `Authorization` header value for `parts`, signing the headers `signed`.
pub fn authorization(
    parts: &Parts,
    signed: &[String],
    hashed_payload: &str,
    cred: &Credential,
) -> String {
    let sts = string_to_sign(&canonical_request(parts, signed, hashed_payload));
    let sig = hex::encode(hmac_sha256(
        cred.access_key_secret().as_bytes(),
        sts.as_bytes(),
    ));
    format!(
        "{ALGORITHM} Credential={},SignedHeaders={},Signature={sig}",
        cred.access_key_id,
        signed.join(";")
    )
}

/// Sign a request: returns the headers to add — `x-acs-date`, `x-acs-signature-nonce`,
/// `x-acs-content-sha256`, `x-acs-security-token` (STS) and `Authorization`. `parts` must
/// already carry `host`, `x-acs-action`, `x-acs-version` and `content-type`.
pub fn sign(
    parts: &Parts,
    body: &[u8],
    cred: &Credential,
    now: Timestamp,
    nonce: &str,
) -> Vec<(String, String)> {
    let hashed = sha256_hex(body);
    let mut add = vec![
        ("x-acs-date".to_string(), now.iso8601()),
        ("x-acs-signature-nonce".to_string(), nonce.to_string()),
        ("x-acs-content-sha256".to_string(), hashed.clone()),
    ];
    if let Some(t) = cred.security_token() {
        add.push(("x-acs-security-token".to_string(), t.to_string()));
    }
    let mut full = parts.clone();
    full.headers.extend(add.iter().cloned());
    let signed = default_signed_headers(&full);
    add.push((
        "Authorization".to_string(),
        authorization(&full, &signed, &hashed, cred),
    ));
    add
}

/// A parsed `Authorization: ACS3-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// AccessKey id.
    pub access_key_id: String,
    /// Signed header names, as listed.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parse an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, VerifyError> {
    let params = auth_params(value.trim(), ALGORITHM).ok_or_else(|| {
        VerifyError::Malformed(format!(
            "expected '{ALGORITHM} Credential=…,SignedHeaders=…,Signature=…'"
        ))
    })?;
    let find = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| VerifyError::Malformed(format!("missing {k}")))
    };
    Ok(Authorization {
        access_key_id: find("Credential")?,
        signed_headers: find("SignedHeaders")?
            .split(';')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        signature: find("Signature")?,
    })
}

/// Verify a signed request as the service does: the signature over the listed headers, `host`
/// and every `x-acs-*` header signed, the body digest, the access key, and the clock skew
/// (`max_skew_secs`; the services allow 15 minutes).
pub fn verify(
    parts: &Parts,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
) -> Result<Credential, VerifyError> {
    let auth = parts
        .get("authorization")
        .ok_or_else(|| VerifyError::Malformed("no Authorization header".into()))?;
    let a = parse_authorization(auth)?;
    let cred = lookup(&a.access_key_id)
        .ok_or_else(|| VerifyError::UnknownAccessKey(a.access_key_id.clone()))?;
    for (k, _) in &parts.headers {
        let k = k.to_ascii_lowercase();
        if (k == "host" || k.starts_with("x-acs-")) && !a.signed_headers.contains(&k) {
            return Err(VerifyError::Malformed(format!(
                "header '{k}' must be signed"
            )));
        }
    }
    let date = parts
        .get("x-acs-date")
        .ok_or_else(|| VerifyError::Malformed("no x-acs-date header".into()))?;
    let t = Timestamp::parse(date)
        .ok_or_else(|| VerifyError::Malformed(format!("bad x-acs-date '{date}'")))?;
    if t.skew_secs(&now) > max_skew_secs {
        return Err(VerifyError::Skewed(format!(
            "x-acs-date {date} vs server time {}",
            now.iso8601()
        )));
    }
    let hashed = parts
        .get("x-acs-content-sha256")
        .ok_or_else(|| VerifyError::Malformed("no x-acs-content-sha256 header".into()))?;
    let actual = sha256_hex(body);
    if !same(&hashed.to_ascii_lowercase(), &actual) {
        return Err(VerifyError::BadDigest(format!(
            "x-acs-content-sha256 {hashed} but the body hashes to {actual}"
        )));
    }
    if let Some(t) = cred.security_token()
        && parts.get("x-acs-security-token") != Some(t)
    {
        return Err(VerifyError::Malformed(
            "missing or wrong x-acs-security-token".into(),
        ));
    }
    let canon = canonical_request(parts, &a.signed_headers, hashed);
    let sts = string_to_sign(&canon);
    let want = hex::encode(hmac_sha256(
        cred.access_key_secret().as_bytes(),
        sts.as_bytes(),
    ));
    if same(&want, &a.signature.to_ascii_lowercase()) {
        Ok(cred)
    } else {
        Err(VerifyError::Mismatch {
            string_to_sign: sts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parts: &Parts) -> Vec<String> {
        let mut n: Vec<String> = parts
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        n.sort();
        n.dedup();
        n
    }

    /// V-ACS3-1 [DOC]: ECS RunInstances example of the V3 signature document.
    #[test]
    fn v_acs3_1_doc_example() {
        let p = Parts::new("POST", "/")
            .query(
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            )
            .query("RegionId", "cn-shanghai")
            .header("host", "ecs.cn-shanghai.aliyuncs.com")
            .header("x-acs-action", "RunInstances")
            .header("x-acs-content-sha256", EMPTY_SHA256)
            .header("x-acs-date", "2023-10-26T10:22:32Z")
            .header("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d")
            .header("x-acs-version", "2014-05-26");
        let signed = default_signed_headers(&p);
        let canon = canonical_request(&p, &signed, EMPTY_SHA256);
        assert_eq!(
            string_to_sign(&canon),
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let cred = Credential::new("YourAccessKeyId", "YourAccessKeySecret");
        assert_eq!(
            authorization(&p, &signed, EMPTY_SHA256, &cred),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    fn sdk_test_parts(method: &str) -> Parts {
        Parts::new(method, "")
            .query("test", "ok")
            .query("empty", "")
            .header("x-acs-test", "http")
            .header("x-acs-TEST", "https")
    }
    const SDK_PAYLOAD: &str = "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23";

    /// V-ACS3-2 [SDK-test]: darabonba-openapi-util python test_get_authorization.
    #[test]
    fn v_acs3_2_python_sdk_test() {
        let p = sdk_test_parts("GET");
        let signed = names(&p);
        let canon = canonical_request(&p, &signed, SDK_PAYLOAD);
        assert_eq!(
            canon,
            "GET\n/\nempty=&test=ok\nx-acs-test:http,https\n\nx-acs-test\n55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23"
        );
        assert_eq!(
            string_to_sign(&canon),
            "ACS3-HMAC-SHA256\n6c416f315497f25326e3f67e06370dbfce4d082b99aecdfc2411eeecd152f68f"
        );
        assert_eq!(
            authorization(
                &p,
                &signed,
                SDK_PAYLOAD,
                &Credential::new("acesskey", "secret")
            ),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
        );
    }

    /// V-ACS3-3 [SDK-test]: the Go test has no method.
    #[test]
    fn v_acs3_3_go_sdk_test() {
        let p = sdk_test_parts("");
        let signed = names(&p);
        let canon = canonical_request(&p, &signed, SDK_PAYLOAD);
        assert_eq!(
            string_to_sign(&canon),
            "ACS3-HMAC-SHA256\nde5b11a1e2e756c1d859871395fe0b6d47f2564e88a5477eb586c03c6fc105ff"
        );
        assert_eq!(
            authorization(
                &p,
                &signed,
                SDK_PAYLOAD,
                &Credential::new("acesskey", "secret")
            ),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
        );
    }

    fn signed_request(cred: &Credential, body: &[u8], now: Timestamp) -> Parts {
        let mut p = Parts::new("POST", "/2023-03-30/functions/echo/invocations")
            .header("host", "123.cn-hangzhou.fc.aliyuncs.com")
            .header("content-type", "application/octet-stream")
            .header("x-acs-action", "InvokeFunction")
            .header("x-acs-version", "2023-03-30")
            .header("x-fc-invocation-type", "Async");
        let add = sign(&p, body, cred, now, "nonce-1");
        p.headers.extend(add);
        p
    }

    #[test]
    fn sign_then_verify_and_tampering_is_refused() {
        let cred = Credential::new("ak", "sk").with_security_token("sts");
        let now = Timestamp::from_unix(1_800_000_000);
        let p = signed_request(&cred, b"{}", now);
        let lookup = |id: &str| (id == "ak").then(|| cred.clone());
        assert!(verify(&p, b"{}", lookup, now, 900).is_ok());
        // body changed
        assert!(matches!(
            verify(&p, b"{ }", lookup, now, 900),
            Err(VerifyError::BadDigest(_))
        ));
        // a signed header changed
        let mut t = p.clone();
        t.headers.retain(|(k, _)| k != "x-acs-action");
        t.headers
            .push(("x-acs-action".into(), "DeleteFunction".into()));
        assert!(matches!(
            verify(&t, b"{}", lookup, now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
        // the path changed
        let mut t = p.clone();
        t.path = "/2023-03-30/functions/other/invocations".into();
        assert!(matches!(
            verify(&t, b"{}", lookup, now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
        // an unsigned x-acs header smuggled in
        let t = p.clone().header("x-acs-extra", "1");
        assert!(matches!(
            verify(&t, b"{}", lookup, now, 900),
            Err(VerifyError::Malformed(_))
        ));
        // wrong secret
        let other = Credential::new("ak", "other").with_security_token("sts");
        assert!(matches!(
            verify(&p, b"{}", |_| Some(other.clone()), now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
        // unknown key, skew
        assert!(matches!(
            verify(&p, b"{}", |_| None, now, 900),
            Err(VerifyError::UnknownAccessKey(_))
        ));
        let later = Timestamp::from_unix(1_800_000_000 + 901);
        assert!(matches!(
            verify(&p, b"{}", lookup, later, 900),
            Err(VerifyError::Skewed(_))
        ));
    }
}
