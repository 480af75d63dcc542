//! OSS V4 signature, `OSS4-HMAC-SHA256`.
//!
//! ```text
//! CanonicalRequest = Method \n enc(/bucket/key) \n CanonicalQuery \n CanonicalHeaders \n AdditionalHeaders \n HashedPayload
//! Scope            = YYYYMMDD/region/oss/aliyun_v4_request
//! StringToSign     = "OSS4-HMAC-SHA256\n" + x-oss-date + "\n" + Scope + "\n" + hex(sha256(CanonicalRequest))
//! SigningKey       = hmac(hmac(hmac(hmac("aliyun_v4"+SK, YYYYMMDD), region), "oss"), "aliyun_v4_request")
//! ```

use super::{
    Parts, VerifyError, auth_params, hmac_sha256, percent_encode, percent_encode_path, same,
    sha256_hex,
};
use crate::credential::Credential;
use crate::time::Timestamp;

/// The algorithm name.
pub const ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// The payload hash clients normally send.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Canonical URI: RFC 3986 encoding of `/bucket/key` (bucket-level: `/bucket/`), `/` kept.
pub fn canonical_uri(bucket: &str, key: &str) -> String {
    if bucket.is_empty() {
        return format!("/{}", percent_encode_path(key));
    }
    format!("/{}/{}", percent_encode(bucket), percent_encode_path(key))
}

/// Canonical query: encoded `k=v` sorted by encoded key; an empty value is a bare `k`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_default_signed(name: &str) -> bool {
    name == "content-type" || name == "content-md5" || name.starts_with("x-oss-")
}

/// Canonical headers: `content-type`, `content-md5`, every `x-oss-*` and the `additional`
/// names, lowercase, sorted, values trimmed (repeated names joined by `,`).
pub fn canonical_headers(parts: &Parts, additional: &[String]) -> String {
    let mut names: Vec<String> = parts
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| is_default_signed(k) || additional.contains(k))
        .collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    for n in names {
        let vals: Vec<&str> = parts.get_all(&n).into_iter().map(str::trim).collect();
        out.push_str(&format!("{n}:{}\n", vals.join(",")));
    }
    out
}

/// The canonical request. `additional` are lowercase, sorted.
pub fn canonical_request(
    parts: &Parts,
    bucket: &str,
    key: &str,
    additional: &[String],
    hashed_payload: &str,
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        canonical_uri(bucket, key),
        canonical_query(&parts.query),
        canonical_headers(parts, additional),
        additional.join(";"),
        hashed_payload
    )
}

/// `YYYYMMDD/region/oss/aliyun_v4_request`.
pub fn scope(date: &str, region: &str) -> String {
    format!("{date}/{region}/oss/aliyun_v4_request")
}

/// The string to sign.
pub fn string_to_sign(canonical_request: &str, oss_date: &str, scope: &str) -> String {
    format!(
        "{ALGORITHM}\n{oss_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of `string_to_sign`.
pub fn signature(secret: &str, date: &str, region: &str, string_to_sign: &str) -> String {
    let k1 = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k2 = hmac_sha256(&k1, region.as_bytes());
    let k3 = hmac_sha256(&k2, b"oss");
    let k4 = hmac_sha256(&k3, b"aliyun_v4_request");
    hex::encode(hmac_sha256(&k4, string_to_sign.as_bytes()))
}

/// Sign a request for `bucket`/`key` in `region` (e.g. `cn-hangzhou`): returns the headers to
/// add — `x-oss-date`, `x-oss-content-sha256` (unless present), `x-oss-security-token` (STS)
/// and `Authorization`. `additional` opts extra headers (lowercase) into the signature.
pub fn sign(
    parts: &Parts,
    bucket: &str,
    key: &str,
    region: &str,
    additional: &[String],
    cred: &Credential,
    now: Timestamp,
) -> Vec<(String, String)> {
    let mut add = vec![("x-oss-date".to_string(), now.iso8601_basic())];
    if parts.get("x-oss-content-sha256").is_none() {
        add.push(("x-oss-content-sha256".into(), UNSIGNED_PAYLOAD.into()));
    }
    if let Some(t) = cred.security_token() {
        add.push(("x-oss-security-token".into(), t.to_string()));
    }
    let mut full = parts.clone();
    full.headers.extend(add.iter().cloned());
    let mut additional: Vec<String> = additional.iter().map(|s| s.to_ascii_lowercase()).collect();
    additional.sort();
    additional.dedup();
    add.push((
        "Authorization".into(),
        authorization(&full, bucket, key, region, &additional, cred, now),
    ));
    add
}

/// The `Authorization` value for fully prepared parts (they carry `x-oss-date` etc.).
pub fn authorization(
    parts: &Parts,
    bucket: &str,
    key: &str,
    region: &str,
    additional: &[String],
    cred: &Credential,
    now: Timestamp,
) -> String {
    let hashed = parts
        .get("x-oss-content-sha256")
        .unwrap_or(UNSIGNED_PAYLOAD);
    let canon = canonical_request(parts, bucket, key, additional, hashed);
    let date = now.date_basic();
    let sc = scope(&date, region);
    let sts = string_to_sign(&canon, &now.iso8601_basic(), &sc);
    let sig = signature(cred.access_key_secret(), &date, region, &sts);
    let extra = if additional.is_empty() {
        String::new()
    } else {
        format!(",AdditionalHeaders={}", additional.join(";"))
    };
    format!(
        "{ALGORITHM} Credential={}/{sc}{extra},Signature={sig}",
        cred.access_key_id
    )
}

/// Verify a V4-signed request for `bucket`/`key`. Accepts both `,` and `, ` separators.
pub fn verify(
    parts: &Parts,
    bucket: &str,
    key: &str,
    body: &[u8],
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
) -> Result<Credential, VerifyError> {
    let auth = parts
        .get("authorization")
        .ok_or_else(|| VerifyError::Malformed("no Authorization header".into()))?;
    let params = auth_params(auth.trim(), ALGORITHM)
        .ok_or_else(|| VerifyError::Malformed(format!("expected '{ALGORITHM} Credential=…'")))?;
    let get = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let credential =
        get("Credential").ok_or_else(|| VerifyError::Malformed("no Credential".into()))?;
    let sig = get("Signature").ok_or_else(|| VerifyError::Malformed("no Signature".into()))?;
    let mut additional: Vec<String> = get("AdditionalHeaders")
        .unwrap_or("")
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect();
    additional.sort();
    let mut cparts = credential.split('/');
    let (ak, date, region, service, term) = (
        cparts.next().unwrap_or_default(),
        cparts.next().unwrap_or_default(),
        cparts.next().unwrap_or_default(),
        cparts.next().unwrap_or_default(),
        cparts.next().unwrap_or_default(),
    );
    if service != "oss" || term != "aliyun_v4_request" || cparts.next().is_some() {
        return Err(VerifyError::Malformed(format!(
            "bad credential scope '{credential}'"
        )));
    }
    let cred = lookup(ak).ok_or_else(|| VerifyError::UnknownAccessKey(ak.to_string()))?;
    let oss_date = parts
        .get("x-oss-date")
        .ok_or_else(|| VerifyError::Malformed("no x-oss-date header".into()))?;
    let t = Timestamp::parse(oss_date)
        .ok_or_else(|| VerifyError::Malformed(format!("bad x-oss-date '{oss_date}'")))?;
    if t.date_basic() != date {
        return Err(VerifyError::Malformed(format!(
            "scope date {date} does not match x-oss-date {oss_date}"
        )));
    }
    if t.skew_secs(&now) > max_skew_secs {
        return Err(VerifyError::Skewed(format!("x-oss-date {oss_date}")));
    }
    let hashed = parts
        .get("x-oss-content-sha256")
        .ok_or_else(|| VerifyError::Malformed("no x-oss-content-sha256 header".into()))?;
    if hashed != UNSIGNED_PAYLOAD && !same(hashed, &sha256_hex(body)) {
        return Err(VerifyError::BadDigest("x-oss-content-sha256".into()));
    }
    if let Some(tok) = cred.security_token()
        && parts.get("x-oss-security-token") != Some(tok)
    {
        return Err(VerifyError::Malformed(
            "missing or wrong x-oss-security-token".into(),
        ));
    }
    let canon = canonical_request(parts, bucket, key, &additional, hashed);
    let sts = string_to_sign(&canon, oss_date, &scope(date, region));
    let want = signature(cred.access_key_secret(), date, region, &sts);
    if same(&want, sig) {
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

    /// The request of Go v2 `signer_test.go::TestV4AuthHeader*`.
    fn go_parts(t: Timestamp, token: Option<&str>) -> Parts {
        let mut p = Parts::new("PUT", "/1234%2B-/123/1.txt")
            .header("x-oss-head1", "value")
            .header("abc", "value")
            .header("ZAbc", "value")
            .header("XYZ", "value")
            .header("content-type", "text/plain")
            .header("x-oss-content-sha256", UNSIGNED_PAYLOAD)
            .query("param1", "value1")
            .query("+param1", "value3")
            .query("|param1", "value4")
            .query("+param2", "")
            .query("|param2", "")
            .query("param2", "")
            .header("x-oss-date", &t.iso8601_basic());
        if let Some(tok) = token {
            p = p.header("x-oss-security-token", tok);
        }
        p
    }

    /// V4-1 [SDK-test] TestV4AuthHeader.
    #[test]
    fn v4_1_go_sdk() {
        let t = Timestamp::from_unix(1702743657);
        let p = go_parts(t, None);
        let canon = canonical_request(&p, "bucket", "1234+-/123/1.txt", &[], UNSIGNED_PAYLOAD);
        assert_eq!(
            canon,
            "PUT\n/bucket/1234%2B-/123/1.txt\n%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2\ncontent-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20231216T162057Z\nx-oss-head1:value\n\n\nUNSIGNED-PAYLOAD"
        );
        let sts = string_to_sign(
            &canon,
            &t.iso8601_basic(),
            &scope(&t.date_basic(), "cn-hangzhou"),
        );
        assert_eq!(
            sts,
            "OSS4-HMAC-SHA256\n20231216T162057Z\n20231216/cn-hangzhou/oss/aliyun_v4_request\nf4613657f1b108998e8dbd10a1aa5da621dc2c6e02c9ddec0f163664848704c4"
        );
        let cred = Credential::new("ak", "sk");
        assert_eq!(
            authorization(
                &p,
                "bucket",
                "1234+-/123/1.txt",
                "cn-hangzhou",
                &[],
                &cred,
                t
            ),
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe"
        );
    }

    /// V4-2 [SDK-test] TestV4AuthHeaderWithAdditionalHeaders.
    #[test]
    fn v4_2_additional_headers() {
        let t = Timestamp::from_unix(1702747512);
        let p = go_parts(t, None);
        let add = vec!["abc".to_string(), "zabc".to_string()];
        let canon = canonical_request(&p, "bucket", "1234+-/123/1.txt", &add, UNSIGNED_PAYLOAD);
        let sts = string_to_sign(
            &canon,
            &t.iso8601_basic(),
            &scope(&t.date_basic(), "cn-hangzhou"),
        );
        assert!(
            sts.ends_with("16b86004ed2cc3406dd7a13081bd940ef6a5ad49e508da2d4fdf84e8a5dd2145"),
            "{sts}"
        );
        assert_eq!(
            authorization(
                &p,
                "bucket",
                "1234+-/123/1.txt",
                "cn-hangzhou",
                &add,
                &Credential::new("ak", "sk"),
                t
            ),
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=abc;zabc,Signature=4a4183c187c07c8947db7620deb0a6b38d9fbdd34187b6dbaccb316fa251212f"
        );
    }

    /// V4-3 [SDK-test] TestV4AuthHeaderToken.
    #[test]
    fn v4_3_sts_token() {
        let t = Timestamp::from_unix(1702784856);
        let cred = Credential::new("ak", "sk").with_security_token("token");
        let base = go_parts(t, None);
        // The signer adds the token header itself.
        let mut unsigned = base.clone();
        unsigned.headers.retain(|(k, _)| k != "x-oss-date");
        let added = sign(
            &unsigned,
            "bucket",
            "1234+-/123/1.txt",
            "cn-hangzhou",
            &[],
            &cred,
            t,
        );
        let auth = &added
            .iter()
            .find(|(k, _)| k == "Authorization")
            .expect("auth")
            .1;
        assert!(
            auth.ends_with(
                "Signature=b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea"
            ),
            "{auth}"
        );
    }

    /// V4-4 [SDK-test, DOC inputs] opendal-reqsign golden output.
    #[test]
    fn v4_4_doc_example() {
        let t = Timestamp::parse("20250411T064124Z").expect("date");
        let p = Parts::new("PUT", "/exampleobject")
            .header("content-disposition", "attachment")
            .header("content-length", "3")
            .header("content-md5", "ICy5YqxZB1uWSwcVLSNLcA==")
            .header("content-type", "text/plain")
            .header("x-oss-content-sha256", UNSIGNED_PAYLOAD)
            .header("x-oss-date", "20250411T064124Z");
        let add = vec![
            "content-disposition".to_string(),
            "content-length".to_string(),
        ];
        let canon = canonical_request(&p, "examplebucket", "exampleobject", &add, UNSIGNED_PAYLOAD);
        assert_eq!(
            canon,
            "PUT\n/examplebucket/exampleobject\n\ncontent-disposition:attachment\ncontent-length:3\ncontent-md5:ICy5YqxZB1uWSwcVLSNLcA==\ncontent-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20250411T064124Z\n\ncontent-disposition;content-length\nUNSIGNED-PAYLOAD"
        );
        let sc = scope("20250411", "cn-hangzhou");
        let sts = string_to_sign(&canon, "20250411T064124Z", &sc);
        assert_eq!(
            sts,
            "OSS4-HMAC-SHA256\n20250411T064124Z\n20250411/cn-hangzhou/oss/aliyun_v4_request\nc46d96390bdbc2d739ac9363293ae9d710b14e48081fcb22cd8ad54b63136eca"
        );
        assert_eq!(
            signature("yourAccessKeySecret", "20250411", "cn-hangzhou", &sts),
            "d3694c2dfc5371ee6acd35e88c4871ac95a7ba01d3a2f476768fe61218590097"
        );
        let _ = t;
    }

    #[test]
    fn verify_round_trip_and_tamper() {
        let cred = Credential::new("ak", "sk");
        let now = Timestamp::from_unix(1_800_000_000);
        let mut p = Parts::new("PUT", "/b/run1/x").header("x-oss-forbid-overwrite", "true");
        let add = sign(&p, "b", "run1/x", "cn-hangzhou", &[], &cred, now);
        p.headers.extend(add);
        let lookup = |k: &str| (k == "ak").then(|| cred.clone());
        assert!(verify(&p, "b", "run1/x", b"", lookup, now, 900).is_ok());
        assert!(matches!(
            verify(&p, "b", "run1/y", b"", lookup, now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
        let mut t = p.clone();
        t.headers.retain(|(k, _)| k != "x-oss-forbid-overwrite");
        assert!(matches!(
            verify(&t, "b", "run1/x", b"", lookup, now, 900),
            Err(VerifyError::Mismatch { .. })
        ));
    }
}
