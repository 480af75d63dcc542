//! OSS V1 signature: `Authorization: OSS ak:base64(hmac-sha1(SK, StringToSign))`.
//!
//! ```text
//! StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedOSSHeaders CanonicalizedResource
//! ```

use super::{Parts, VerifyError, b64, hmac_sha1, same};
use crate::credential::Credential;
use crate::time::Timestamp;

/// Query parameters that are part of the canonicalized resource (OSS "sub-resources").
pub const SUBRESOURCES: &[&str] = &[
    "acl",
    "uploads",
    "location",
    "cors",
    "logging",
    "website",
    "referer",
    "lifecycle",
    "delete",
    "append",
    "tagging",
    "objectMeta",
    "uploadId",
    "partNumber",
    "security-token",
    "position",
    "img",
    "style",
    "styleName",
    "replication",
    "replicationProgress",
    "replicationLocation",
    "cname",
    "bucketInfo",
    "comp",
    "qos",
    "live",
    "status",
    "vod",
    "startTime",
    "endTime",
    "symlink",
    "x-oss-process",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "udf",
    "udfName",
    "udfImage",
    "udfId",
    "udfImageDesc",
    "udfApplication",
    "udfApplicationLog",
    "restore",
    "callback",
    "callback-var",
    "qosInfo",
    "policy",
    "stat",
    "encryption",
    "versions",
    "versioning",
    "versionId",
    "requestPayment",
    "x-oss-request-payer",
    "sequential",
    "inventory",
    "inventoryId",
    "continuation-token",
    "asyncFetch",
    "worm",
    "wormId",
    "wormExtend",
    "x-oss-traffic-limit",
    "objectInfo",
    "group",
    "link",
    "transferAcceleration",
    "metaQuery",
    "resourceGroup",
    "regionList",
    "x-oss-async-process",
    "x-oss-write-get-object-response",
    "accessPoint",
    "accessPointPolicy",
    "publicAccessBlock",
    "x-oss-access-point-name",
    "httpsConfig",
    "bucketArchiveDirectRead",
    "redundancyTransition",
    "x-oss-target-redundancy-type",
    "x-oss-redundancy-transition-taskid",
    "requesterQosInfo",
    "qosRequester",
    "resourcePoolInfo",
    "resourcePool",
    "resourcePoolBuckets",
    "x-oss-ac-source-ip",
    "x-oss-ac-subnet-mask",
    "x-oss-ac-vpc-id",
    "x-oss-ac-forward-allow",
];

/// `/bucket/key` (raw key) plus the sorted sub-resources (`k` or `k=v`, raw values).
pub fn canonicalized_resource(bucket: &str, key: &str, query: &[(String, String)]) -> String {
    let mut r = if bucket.is_empty() {
        "/".to_string()
    } else {
        format!("/{bucket}/{key}")
    };
    let mut subs: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| SUBRESOURCES.contains(&k.as_str()) || k.starts_with("x-oss-"))
        .collect();
    subs.sort();
    if !subs.is_empty() {
        r.push('?');
        r.push_str(
            &subs
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect::<Vec<_>>()
                .join("&"),
        );
    }
    r
}

/// The string to sign.
pub fn string_to_sign(parts: &Parts, bucket: &str, key: &str) -> String {
    let mut oss: Vec<(String, String)> = Vec::new();
    for (k, v) in &parts.headers {
        let k = k.to_ascii_lowercase();
        if k.starts_with("x-oss-") {
            match oss.iter_mut().find(|(n, _)| *n == k) {
                Some((_, val)) => {
                    val.push(',');
                    val.push_str(v.trim());
                }
                None => oss.push((k, v.trim().to_string())),
            }
        }
    }
    oss.sort();
    let headers: String = oss.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}{}",
        parts.method,
        parts.get("content-md5").unwrap_or(""),
        parts.get("content-type").unwrap_or(""),
        parts.get("date").unwrap_or(""),
        headers,
        canonicalized_resource(bucket, key, &parts.query)
    )
}

/// base64 HMAC-SHA1 of the string to sign.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    b64(&hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// Sign: returns `Date`, `x-oss-security-token` (STS) and `Authorization` to add.
pub fn sign(
    parts: &Parts,
    bucket: &str,
    key: &str,
    cred: &Credential,
    now: Timestamp,
) -> Vec<(String, String)> {
    let mut add = vec![("Date".to_string(), now.http_date())];
    if let Some(t) = cred.security_token() {
        add.push(("x-oss-security-token".into(), t.to_string()));
    }
    let mut full = parts.clone();
    full.headers.extend(add.iter().cloned());
    let sig = signature(
        cred.access_key_secret(),
        &string_to_sign(&full, bucket, key),
    );
    add.push((
        "Authorization".into(),
        format!("OSS {}:{sig}", cred.access_key_id),
    ));
    add
}

/// Verify a V1-signed request.
pub fn verify(
    parts: &Parts,
    bucket: &str,
    key: &str,
    lookup: impl Fn(&str) -> Option<Credential>,
    now: Timestamp,
    max_skew_secs: i64,
) -> Result<Credential, VerifyError> {
    let auth = parts
        .get("authorization")
        .ok_or_else(|| VerifyError::Malformed("no Authorization header".into()))?;
    let (ak, sig) = auth
        .trim()
        .strip_prefix("OSS ")
        .and_then(|r| r.split_once(':'))
        .ok_or_else(|| VerifyError::Malformed("expected 'OSS ak:signature'".into()))?;
    let cred = lookup(ak).ok_or_else(|| VerifyError::UnknownAccessKey(ak.to_string()))?;
    let date = parts
        .get("date")
        .ok_or_else(|| VerifyError::Malformed("no Date header".into()))?;
    let t = Timestamp::parse(date)
        .ok_or_else(|| VerifyError::Malformed(format!("bad Date '{date}'")))?;
    if t.skew_secs(&now) > max_skew_secs {
        return Err(VerifyError::Skewed(format!("Date {date}")));
    }
    if let Some(tok) = cred.security_token()
        && parts.get("x-oss-security-token") != Some(tok)
    {
        return Err(VerifyError::Malformed(
            "missing or wrong x-oss-security-token".into(),
        ));
    }
    let sts = string_to_sign(parts, bucket, key);
    if same(&signature(cred.access_key_secret(), &sts), sig.trim()) {
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

    const DATE: &str = "Wed, 28 Dec 2022 10:27:41 GMT";

    fn v1_parts() -> Parts {
        Parts::new("PUT", "/nelson")
            .header("Content-MD5", "eB5eJF1ptWaXm4bijSPyxw==")
            .header("Content-Type", "text/html")
            .header("x-oss-meta-author", "alice")
            .header("x-oss-meta-magic", "abracadabra")
            .header("x-oss-date", DATE)
            .header("Date", DATE)
    }

    /// V1-1 and V1-2 [SDK-test] Go v2 TestV1AuthHeader.
    #[test]
    fn v1_object_vectors() {
        let p = v1_parts();
        let sts = string_to_sign(&p, "examplebucket", "nelson");
        assert_eq!(
            sts,
            "PUT\neB5eJF1ptWaXm4bijSPyxw==\ntext/html\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\nx-oss-meta-author:alice\nx-oss-meta-magic:abracadabra\n/examplebucket/nelson"
        );
        assert_eq!(signature("sk", &sts), "kSHKmLxlyEAKtZPkJhG9bZb5k7M=");
        let acl = v1_parts().query("acl", "");
        assert_eq!(
            signature("sk", &string_to_sign(&acl, "examplebucket", "nelson")),
            "/afkugFbmWDQ967j1vr6zygBLQk="
        );
    }

    /// V1-3 and V1-4 [SDK-test]: bucket-level sub-resources.
    #[test]
    fn v1_bucket_vectors() {
        let p = Parts::new("GET", "/")
            .header("x-oss-date", DATE)
            .header("Date", DATE)
            .query("resourceGroup", "")
            .query("non-resousce", "null");
        let sts = string_to_sign(&p, "examplebucket", "");
        assert_eq!(
            sts,
            "GET\n\n\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\n/examplebucket/?resourceGroup"
        );
        assert_eq!(signature("sk", &sts), "vkQmfuUDyi1uDi3bKt67oemssIs=");
        let p = Parts::new("GET", "/")
            .header("x-oss-date", DATE)
            .header("Date", DATE)
            .query("resourceGroup", "")
            .query("acl", "");
        assert_eq!(
            signature("sk", &string_to_sign(&p, "examplebucket", "")),
            "x3E5TgOvl/i7PN618s5mEvpJDYk="
        );
    }

    /// V1-Q [SDK-test] presigned URL: Date replaced by Expires.
    #[test]
    fn v1_presign_vector() {
        let p = Parts::new("GET", "/key")
            .header("Date", "1699807420")
            .query("versionId", "versionId");
        let sts = string_to_sign(&p, "bucket", "key");
        assert_eq!(sts, "GET\n\n\n1699807420\n/bucket/key?versionId=versionId");
        assert_eq!(signature("sk", &sts), "dcLTea+Yh9ApirQ8o8dOPqtvJXQ=");
    }

    #[test]
    fn verify_round_trip() {
        let cred = Credential::new("ak", "sk");
        let now = Timestamp::from_unix(1_800_000_000);
        let mut p = Parts::new("GET", "/b/k");
        p.headers.extend(sign(&p, "b", "k", &cred, now));
        assert!(verify(&p, "b", "k", |_| Some(cred.clone()), now, 900).is_ok());
        assert!(verify(&p, "b", "k2", |_| Some(cred.clone()), now, 900).is_err());
    }
}
