//! Keys and attribute names of the table.

/// Partition key attribute.
pub(crate) const PK: &str = "pk";
/// Sort key attribute (the whole key).
pub(crate) const SK: &str = "sk";
/// `out` or `join`.
pub(crate) const KIND: &str = "kind";
/// The value of an output item.
pub(crate) const VAL: &str = "val";
/// The invoked set of an output item.
pub(crate) const INV: &str = "inv";
/// A join's member count.
pub(crate) const CNT: &str = "cnt";
/// The TTL attribute.
pub(crate) const EXPIRES: &str = "expires";
/// Prefix of a join member's attribute.
pub(crate) const MEMBER_PREFIX: &str = "m:";
/// `kind` of output items.
pub(crate) const KIND_OUT: &str = "out";
/// `kind` of joins.
pub(crate) const KIND_JOIN: &str = "join";

/// The partition of `key`: its first path segment, or its first two when it starts with `_`
/// (`_runs/{id}`, `_batch/{workflow}`). A key without `/` is its own partition.
///
/// ```
/// use joint_store::dynamo::partition_of;
/// assert_eq!(partition_of("run1/A_0"), "run1");
/// assert_eq!(partition_of("_runs/run1/record"), "_runs/run1");
/// assert_eq!(partition_of("_batch/wf/T/3"), "_batch/wf");
/// assert_eq!(partition_of("solo"), "solo");
/// ```
pub fn partition_of(key: &str) -> &str {
    let segments = if key.starts_with('_') { 2 } else { 1 };
    let mut end = 0;
    for _ in 0..segments {
        match key[end..].find('/') {
            Some(i) => end += i + 1,
            None => return key,
        }
    }
    &key[..end - 1]
}

/// The partition that holds every key starting with `prefix`, if there is exactly one: the
/// prefix must contain its whole partition followed by `/`. `None` means the prefix spans
/// partitions (`run` matches `run1/…` and `run2/…`).
pub(crate) fn partition_of_prefix(prefix: &str) -> Option<&str> {
    let p = partition_of(prefix);
    if p.len() < prefix.len() {
        Some(p)
    } else {
        None
    }
}

/// The attribute holding join member `member`.
pub(crate) fn member_attr(member: &str) -> String {
    format!("{MEMBER_PREFIX}{member}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        assert_eq!(partition_of("r/A_0-bindex-1"), "r");
        assert_eq!(partition_of("r/D-join@0"), "r");
        assert_eq!(partition_of("_runs/r/record"), "_runs/r");
        assert_eq!(partition_of("_runs"), "_runs");
        assert_eq!(partition_of("_runs/r"), "_runs/r");
        assert_eq!(partition_of("conf-1/run1/A_0"), "conf-1");
    }

    #[test]
    fn prefixes() {
        assert_eq!(partition_of_prefix("r/"), Some("r"));
        assert_eq!(partition_of_prefix("r/A_"), Some("r"));
        assert_eq!(partition_of_prefix("_runs/r/"), Some("_runs/r"));
        assert_eq!(partition_of_prefix("run1"), None);
        assert_eq!(partition_of_prefix("_runs/"), None);
        assert_eq!(partition_of_prefix("_runs/r"), None);
        assert_eq!(partition_of_prefix(""), None);
    }
}
