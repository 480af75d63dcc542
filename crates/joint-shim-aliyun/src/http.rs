//! Small HTTP helpers shared by the FC and OSS clients.

/// `host[:port]` of an `http(s)://` URL (what the `Host` header carries).
pub fn authority(url: &str) -> &str {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// Whether a host (without port) is an IP address or `localhost` — such endpoints use
/// path-style URLs (`/bucket/key`), as the official SDKs do.
pub fn is_ip_or_localhost(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
}

/// Response headers as owned lowercase pairs.
pub fn header_pairs(h: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// The first header called `name` (lowercase) in `pairs`.
pub fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_and_style() {
        assert_eq!(authority("http://127.0.0.1:9000/x"), "127.0.0.1:9000");
        assert_eq!(
            authority("https://b.oss-cn-hangzhou.aliyuncs.com"),
            "b.oss-cn-hangzhou.aliyuncs.com"
        );
        assert!(is_ip_or_localhost("127.0.0.1:9000"));
        assert!(is_ip_or_localhost("localhost"));
        assert!(is_ip_or_localhost("[::1]:80"));
        assert!(!is_ip_or_localhost("oss-cn-hangzhou.aliyuncs.com"));
    }
}
