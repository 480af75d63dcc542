//! Items: building them and reading them back into the protocol's types.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use joint_core::machine::{JoinState, StoredItem};

use super::keys::{CNT, EXPIRES, INV, KIND, KIND_OUT, MEMBER_PREFIX, PK, SK, VAL, partition_of};

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

/// The state of a join item (`added` is the caller's to set).
pub(crate) fn join_state(a: Option<&Attrs>, added: bool) -> Result<JoinState, String> {
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
    Ok(JoinState {
        added,
        count: join_count(a)?,
        members,
    })
}
