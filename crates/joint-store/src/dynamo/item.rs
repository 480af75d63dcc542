//! Items: building them and reading them back into the protocol's types.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use joint_core::machine::{JoinState, StoredItem};

use super::keys::{
    CNT, EXPIRES, INV, KIND, KIND_MEMBER, KIND_OUT, MEMBER_PREFIX, ORD, PK, SK, VAL, member_key,
    partition_of,
};

/// An item as the SDK returns it.
pub(crate) type Attrs = HashMap<String, AttributeValue>;

/// The key attributes of `key`.
pub(crate) fn key_attrs(key: &str) -> Attrs {
    HashMap::from([
        (
            PK.to_string(),
            AttributeValue::S(partition_of(key).to_string()),
        ),
        (SK.to_string(), AttributeValue::S(key.to_string())),
    ])
}

/// A new output item.
pub(crate) fn output_item(key: &str, value: &[u8], expires: u64) -> Attrs {
    let mut a = key_attrs(key);
    a.insert(KIND.into(), AttributeValue::S(KIND_OUT.into()));
    a.insert(VAL.into(), AttributeValue::B(Blob::new(value.to_vec())));
    a.insert(EXPIRES.into(), AttributeValue::N(expires.to_string()));
    a
}

/// The key an item was stored under.
pub(crate) fn key_of(a: &Attrs) -> Option<&str> {
    match a.get(SK) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// Whether the item is an output item (not a join).
pub(crate) fn is_output(a: &Attrs) -> bool {
    matches!(a.get(KIND), Some(AttributeValue::S(k)) if k == KIND_OUT)
}

/// The invoked set of an item.
pub(crate) fn invoked(a: &Attrs) -> BTreeSet<String> {
    match a.get(INV) {
        Some(AttributeValue::Ss(v)) => v.iter().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

/// An output item, or a description of what is wrong with it.
pub(crate) fn stored_item(a: &Attrs) -> Result<StoredItem, String> {
    let value = match a.get(VAL) {
        Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
        Some(_) => return Err(format!("attribute '{VAL}' is not binary")),
        None => return Err(format!("the item has no '{VAL}' attribute (is it a join?)")),
    };
    Ok(StoredItem {
        value,
        invoked: invoked(a),
    })
}

/// The member count of a join item.
pub(crate) fn join_count(a: &Attrs) -> Result<u32, String> {
    match a.get(CNT) {
        None => Ok(0),
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| format!("attribute '{CNT}' is not a count: {n}")),
        Some(_) => Err(format!("attribute '{CNT}' is not a number")),
    }
}

/// The state of a narrow join item as seen by `member` (`added` is the caller's to set): the
/// member at position `complete_at - 1` of the item's `ord` list completed the join.
pub(crate) fn join_state(
    a: Option<&Attrs>,
    member: &str,
    added: bool,
    complete_at: u32,
) -> Result<JoinState, String> {
    let Some(a) = a else {
        return Ok(JoinState {
            added,
            ..JoinState::default()
        });
    };
    let mut members = BTreeMap::new();
    for (name, v) in a {
        if let Some(m) = name.strip_prefix(MEMBER_PREFIX) {
            match v {
                AttributeValue::B(b) => {
                    members.insert(m.to_string(), b.as_ref().to_vec());
                }
                _ => return Err(format!("join member '{m}' is not binary")),
            }
        }
    }
    let count = join_count(a)?;
    let order = match a.get(ORD) {
        None => &[][..],
        Some(AttributeValue::L(order)) => order.as_slice(),
        Some(_) => return Err(format!("attribute '{ORD}' is not a list")),
    };
    let completed = if order.len() as u64 == u64::from(count) {
        match complete_at
            .checked_sub(1)
            .and_then(|i| order.get(i as usize))
        {
            Some(AttributeValue::S(m)) => m == member,
            Some(_) => return Err(format!("attribute '{ORD}' holds a non-string")),
            None => false,
        }
    } else {
        // An item written before `ord` existed: only the adding call can tell, by the count.
        added && count == complete_at
    };
    Ok(JoinState {
        added,
        completed,
        count,
        members,
    })
}

/// A new member item of a wide join.
pub(crate) fn member_item(
    join: &str,
    member: &str,
    value: &[u8],
    expires: AttributeValue,
) -> Attrs {
    let mut a = key_attrs(&member_key(join, member));
    a.insert(KIND.into(), AttributeValue::S(KIND_MEMBER.into()));
    a.insert(VAL.into(), AttributeValue::B(Blob::new(value.to_vec())));
    a.insert(EXPIRES.into(), expires);
    a
}

/// Whether the item is a wide join's member item.
pub(crate) fn is_member(a: &Attrs) -> bool {
    matches!(a.get(KIND), Some(AttributeValue::S(k)) if k == KIND_MEMBER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_item(members: &[&str], ord: Option<&[&str]>) -> Attrs {
        let mut a = key_attrs("r/J-join@0");
        a.insert(CNT.into(), AttributeValue::N(members.len().to_string()));
        for m in members {
            a.insert(
                format!("{MEMBER_PREFIX}{m}"),
                AttributeValue::B(Blob::new(m.as_bytes().to_vec())),
            );
        }
        if let Some(o) = ord {
            a.insert(
                ORD.into(),
                AttributeValue::L(o.iter().map(|m| AttributeValue::S(m.to_string())).collect()),
            );
        }
        a
    }

    #[test]
    fn the_member_at_complete_at_in_ord_completed_the_join() {
        let a = join_item(&["b", "a", "c"], Some(&["b", "a", "c"]));
        // 2 of 3: "a" was second. Its redelivery is told again; the others are not.
        assert!(
            join_state(Some(&a), "a", false, 2)
                .expect("state")
                .completed
        );
        assert!(!join_state(Some(&a), "c", true, 2).expect("state").completed);
        assert!(
            !join_state(Some(&a), "b", false, 2)
                .expect("state")
                .completed
        );
        let st = join_state(Some(&a), "c", true, 3).expect("state");
        assert!(st.completed && st.count == 3 && st.members.len() == 3);
        // Not complete yet.
        let a = join_item(&["b"], Some(&["b"]));
        assert!(!join_state(Some(&a), "b", true, 2).expect("state").completed);
    }

    #[test]
    fn an_item_from_before_ord_completes_by_count() {
        // Two members written before `ord`, the third after: `ord` holds only the third.
        let a = join_item(&["x", "y", "z"], Some(&["z"]));
        assert!(join_state(Some(&a), "z", true, 3).expect("state").completed);
        assert!(
            !join_state(Some(&a), "z", false, 3)
                .expect("state")
                .completed
        );
        let a = join_item(&["x", "y"], None);
        assert!(join_state(Some(&a), "y", true, 2).expect("state").completed);
    }
}
