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
/// `kind` of joins (the one item of a narrow join, the head item of a wide one).
pub(crate) const KIND_JOIN: &str = "join";
/// `kind` of the member items of a wide join.
pub(crate) const KIND_MEMBER: &str = "jm";
/// A narrow join's member names in the order they were added (L of S): the member at
/// position `complete_at - 1` completed the join.
pub(crate) const ORD: &str = "ord";
/// A wide join's head: its capacity (N); marks the join as wide.
pub(crate) const WIDE: &str = "wide";
/// A wide join's head: the member that claimed the completion (S).
pub(crate) const DONE: &str = "done";
/// Separates a wide join's key from a member name in the member item's sort key. Keys may not
/// contain it, so a member item's key is never another item's.
pub(crate) const MEMBER_SEP: char = '\u{1}';
/// Longest member name, in bytes (bounds a narrow join's item size up front).
pub(crate) const MAX_MEMBER_NAME: usize = 255;
/// DynamoDB's item size limit.
pub(crate) const DYNAMODB_ITEM_MAX: u64 = 400 * 1024;

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

/// The attribute holding join member `member` in a narrow join.
pub(crate) fn member_attr(member: &str) -> String {
    format!("{MEMBER_PREFIX}{member}")
}

/// The sort-key prefix of a wide join's member items.
pub(crate) fn member_prefix(join: &str) -> String {
    format!("{join}{MEMBER_SEP}")
}

/// The key of wide join `join`'s member item for `member` (same partition as the join).
pub(crate) fn member_key(join: &str, member: &str) -> String {
    format!("{join}{MEMBER_SEP}{member}")
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
    fn member_items_share_the_join_partition() {
        let k = member_key("r/D-join@0", "12");
        assert_eq!(partition_of(&k), "r");
        assert!(k.starts_with(&member_prefix("r/D-join@0")));
        assert!(!k.starts_with(&member_prefix("r/D-join@01")));
        // A member item sorts after its join and before any longer key of a printable name.
        assert!(k.as_str() > "r/D-join@0" && k.as_str() < "r/D-join@0 ");
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
