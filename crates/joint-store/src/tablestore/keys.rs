//! Key and column-name mapping.

use joint_shim_aliyun::ots::Value;

/// Primary key values `(p, k)` of a key.
pub(crate) fn pk(key: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("p", Value::String(partition(key).to_string())),
        ("k", Value::String(key.to_string())),
    ]
}

/// The partition of a key: up to its first `/` (the whole key when it has none).
pub(crate) fn partition(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

/// Column names must match `[A-Za-z_][A-Za-z0-9_]*` (≤ 255 bytes): names are hex-encoded.
pub(crate) fn column(prefix: &str, name: &str) -> Option<String> {
    let c = format!("{prefix}{}", hex::encode(name.as_bytes()));
    (c.len() <= 255).then_some(c)
}

/// Decode a column made by [`column`].
pub(crate) fn uncolumn(prefix: &str, col: &str) -> Option<String> {
    let h = col.strip_prefix(prefix)?;
    String::from_utf8(hex::decode(h).ok()?).ok()
}

/// The smallest string greater than every string starting with `prefix`, when it is cheap to
/// compute (last character ASCII below DEL).
pub(crate) fn successor(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if last >= 0x7e || !last.is_ascii() {
        return None;
    }
    let mut s = prefix[..prefix.len() - 1].to_string();
    s.push((last + 1) as char);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(partition("run1/A_0"), "run1");
        assert_eq!(partition("_runs/r/record"), "_runs");
        assert_eq!(partition("plain"), "plain");
        let c = column("i_", "B_1-bindex-0+1").expect("fits");
        assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'));
        assert_eq!(uncolumn("i_", &c).as_deref(), Some("B_1-bindex-0+1"));
        assert!(column("i_", &"x".repeat(200)).is_none());
        assert_eq!(successor("run1/").as_deref(), Some("run10"));
        assert_eq!(successor(""), None);
        assert!("run1/zzz" < "run10" && "run1/" >= "run1/");
    }
}
