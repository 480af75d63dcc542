//! Joins (ADR 0101): a narrow join is one item updated by one UpdateItem; a wide join is a head
//! item plus one item per member, so a member's write is billed on its own size.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use bytes::Bytes;
use joint_core::machine::JoinState;
use joint_shim::{ErrorKind, Result};

use super::error::parse_error;
use super::item::{self, Attrs};
use super::keys::{
    CNT, DONE, DYNAMODB_ITEM_MAX, EXPIRES, KIND, KIND_JOIN, MAX_MEMBER_NAME, ORD, PK, SK, VAL,
    WIDE, member_attr, member_key, member_prefix, partition_of,
};
use super::store::DynamoCoordStore;

/// Bytes of a narrow join item besides its members: both key attributes (a key is at most
/// 1024 bytes), `kind`, `cnt`, `expires` and the `ord` list's own overhead, rounded up.
const NARROW_HEAD_BYTES: u64 = 2 * 1024 + 128;
/// Bytes a narrow member adds besides its value: the `m:` attribute name and the name's entry
/// in `ord` (each at most [`MAX_MEMBER_NAME`] bytes), with DynamoDB's per-element overhead.
const NARROW_MEMBER_BYTES: u64 = 2 * MAX_MEMBER_NAME as u64 + 8;
/// Attempts of one request that DynamoDB cancels for a conflicting transaction on the head.
const CONFLICT_ATTEMPTS: u32 = 12;

/// How DynamoDB took a wide join's add.
enum Add {
    Added,
    /// The member was there already.
    Present,
    /// The join is full (or a narrow join: the read that follows says).
    Full,
}

/// Whether a cancellation reason or error code is a conflict with another transaction.
fn is_conflict(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TransactionConflict" | "TransactionConflictException")
    )
}

/// Backoff before attempt `attempt` (1-based) after a transaction conflict: exponential from
/// 8 ms, capped at 1 s, with jitter so that conflicting writers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 8u64 << attempt.min(7);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(base.min(1000) / 2 + nanos % (base.min(1000) / 2 + 1))
}

impl DynamoCoordStore {
    /// Whether a join of `capacity` members is narrow (one item). Decided from the capacity
    /// alone, so every member of one join agrees: at most `wide_join_above` members, and the
    /// item cannot outgrow 400 KB even with every member at `join_value_limit` and its name at
    /// [`MAX_MEMBER_NAME`]. Values are counted at their base64 length: DynamoDB counts a binary
    /// value's bytes, moto its base64 text, and a narrow join must fit both.
    pub(crate) fn is_narrow(&self, capacity: u32) -> bool {
        let value = self.join_value_limit.div_ceil(3) * 4;
        capacity <= self.wide_join_above
            && NARROW_HEAD_BYTES + u64::from(capacity) * (value + NARROW_MEMBER_BYTES)
                <= DYNAMODB_ITEM_MAX
    }

    pub(crate) fn check_join(&self, key: &str, member: &str, value: &[u8]) -> Result<()> {
        self.check_key("join", key)?;
        if member.is_empty() || member.len() > MAX_MEMBER_NAME {
            return Err(self.err(
                ErrorKind::InvalidInput,
                "join",
                key,
                format!(
                    "a join member name must be 1-{MAX_MEMBER_NAME} bytes, '{member}' is {}",
                    member.len()
                ),
            ));
        }
        if value.len() as u64 > self.join_value_limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                "join",
                key,
                format!(
                    "member '{member}': value of {} bytes is over the {}-byte join member limit",
                    value.len(),
                    self.join_value_limit
                ),
            ));
        }
        self.check_key("join", &member_key(key, member))
    }

    fn layout_mismatch(&self, key: &str, capacity: u32, found: &str) -> joint_shim::Error {
        self.err(
            ErrorKind::InvalidInput,
            "join",
            key,
            format!(
                "the join exists as a {found} join, but a join of capacity {capacity} on this store is {}: were its members written with a different `wide_join_above` or `join_value_limit`?",
                if found == "wide" { "narrow" } else { "wide" }
            ),
        )
    }

    /// One UpdateItem: `SET m:{member}`, append the member to `ord`, `ADD cnt 1`, if the member
    /// is absent and the join not full. `ALL_NEW` on success, `ALL_OLD` on a failed condition.
    pub(crate) async fn join_narrow(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        capacity: u32,
        complete_at: u32,
    ) -> Result<JoinState> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key_attrs(key)))
            .update_expression(
                "SET #m = :v, #kind = :join, #exp = if_not_exists(#exp, :exp), \
                 #ord = list_append(if_not_exists(#ord, :nil), :me) ADD #cnt :one",
            )
            .condition_expression(
                "attribute_not_exists(#m) AND (attribute_not_exists(#cnt) OR #cnt < :cap) \
                 AND attribute_not_exists(#wide)",
            )
            .expression_attribute_names("#m", member_attr(member))
            .expression_attribute_names("#kind", KIND)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_names("#cnt", CNT)
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_names("#wide", WIDE)
            .expression_attribute_values(":v", AttributeValue::B(Blob::new(value.to_vec())))
            .expression_attribute_values(":join", AttributeValue::S(KIND_JOIN.into()))
            .expression_attribute_values(":exp", self.expires())
            .expression_attribute_values(":nil", AttributeValue::L(vec![]))
            .expression_attribute_values(
                ":me",
                AttributeValue::L(vec![AttributeValue::S(member.into())]),
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":cap", AttributeValue::N(capacity.to_string()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let (attrs, added): (Option<Attrs>, bool) = match r {
            Ok(out) => (out.attributes, true),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => match &c.item {
                    Some(old) => (Some(old.clone()), false),
                    // Not returned: one consistent read on this (losing) path only.
                    None => (self.get_attrs("join", key).await?, false),
                },
                _ => return Err(parse_error(&e, &self.backend, "join", key)),
            },
        };
        if attrs.as_ref().is_some_and(|a| a.contains_key(WIDE)) {
            return Err(self.layout_mismatch(key, capacity, "wide"));
        }
        item::join_state(attrs.as_ref(), member, added, complete_at)
            .map_err(|m| self.corrupt("join", key, m))
    }

    /// A wide join: TransactWriteItems {Put the member item if absent; Update the head `ADD cnt
    /// 1` if not full}, a consistent read of the head, and for a call that finds the join
    /// complete and unclaimed a conditional claim (`completed` = won it); the completer and
    /// calls whose member was not added Query the member items.
    pub(crate) async fn join_wide(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        capacity: u32,
        complete_at: u32,
    ) -> Result<JoinState> {
        let add = self.add_member(key, member, &value, capacity).await?;
        let added = matches!(add, Add::Added);
        let head = self.get_attrs("join", key).await?.unwrap_or_default();
        if head.contains_key(ORD) {
            return Err(self.layout_mismatch(key, capacity, "narrow"));
        }
        let count = item::join_count(&head).map_err(|m| self.corrupt("join", key, m))?;
        let mut completed = false;
        if count >= complete_at {
            completed = match head.get(DONE) {
                Some(AttributeValue::S(m)) => m == member,
                None => self.claim(key, member, complete_at).await?,
                Some(_) => {
                    return Err(self.corrupt("join", key, format!("'{DONE}' is not a string")));
                }
            };
        }
        let members = if count >= complete_at && (completed || !added) {
            self.query_members(key).await?
        } else {
            BTreeMap::new()
        };
        Ok(JoinState {
            added,
            completed,
            count,
            members,
        })
    }

    async fn add_member(&self, key: &str, member: &str, value: &[u8], cap: u32) -> Result<Add> {
        let bad = |e: aws_sdk_dynamodb::error::BuildError| {
            self.err(ErrorKind::InvalidInput, "join", key, e.to_string())
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item::member_item(key, member, value, self.expires())))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(bad)?;
        let head = Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key_attrs(key)))
            .update_expression(
                "SET #kind = :join, #wide = :cap, #exp = if_not_exists(#exp, :exp) ADD #cnt :one",
            )
            .condition_expression(
                "(attribute_not_exists(#cnt) OR #cnt < :cap) AND attribute_not_exists(#ord)",
            )
            .expression_attribute_names("#kind", KIND)
            .expression_attribute_names("#wide", WIDE)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_names("#cnt", CNT)
            .expression_attribute_names("#ord", ORD)
            .expression_attribute_values(":join", AttributeValue::S(KIND_JOIN.into()))
            .expression_attribute_values(":cap", AttributeValue::N(cap.to_string()))
            .expression_attribute_values(":exp", self.expires())
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .build()
            .map_err(bad)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(head).build(),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match r {
                Ok(_) => return Ok(Add::Added),
                Err(e) => e,
            };
            let conflict = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let code = |i: usize| c.cancellation_reasons().get(i).and_then(|r| r.code());
                    if code(0) == Some("ConditionalCheckFailed") {
                        return Ok(Add::Present);
                    }
                    if code(1) == Some("ConditionalCheckFailed") {
                        return Ok(Add::Full);
                    }
                    is_conflict(code(0)) || is_conflict(code(1))
                }
                // A retry of a request still in flight (same token): wait for it.
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
                _ => false,
            };
            if !conflict || attempt >= CONFLICT_ATTEMPTS {
                let mut err = parse_error(&e, &self.backend, "join", key);
                if conflict {
                    err = self
                        .err(
                            ErrorKind::Throttled,
                            "join",
                            key,
                            format!(
                                "member '{member}': the join's head stayed in conflicting transactions for {CONFLICT_ATTEMPTS} attempts"
                            ),
                        )
                        .with_provider_code("TransactionCanceledException");
                }
                return Err(err);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Claim the completion of a complete wide join for `member`: exactly one member wins;
    /// the winner's redeliveries win again.
    async fn claim(&self, key: &str, member: &str, complete_at: u32) -> Result<bool> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(item::key_attrs(key)))
                .update_expression("SET #done = :me")
                .condition_expression(
                    "#cnt >= :at AND (attribute_not_exists(#done) OR #done = :me)",
                )
                .expression_attribute_names("#done", DONE)
                .expression_attribute_names("#cnt", CNT)
                .expression_attribute_values(":me", AttributeValue::S(member.into()))
                .expression_attribute_values(":at", AttributeValue::N(complete_at.to_string()))
                .send()
                .await;
            match r {
                Ok(_) => return Ok(true),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => return Ok(false),
                    Some(UpdateItemError::TransactionConflictException(_))
                        if attempt < CONFLICT_ATTEMPTS =>
                    {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    _ => return Err(parse_error(&e, &self.backend, "join", key)),
                },
            }
        }
    }

    /// Every member item of the wide join at `key`: a consistent, paginated Query.
    async fn query_members(&self, key: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let prefix = member_prefix(key);
        let mut members = BTreeMap::new();
        let mut start: Option<Attrs> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .projection_expression("#sk, #val")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#val", VAL)
                .expression_attribute_values(":pk", AttributeValue::S(partition_of(key).into()))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| parse_error(&e, &self.backend, "join", key))?;
            for a in out.items.unwrap_or_default() {
                let name = item::key_of(&a).and_then(|k| k.strip_prefix(&prefix));
                match (name, a.get(VAL)) {
                    (Some(m), Some(AttributeValue::B(v))) => {
                        members.insert(m.to_string(), v.as_ref().to_vec());
                    }
                    _ => {
                        return Err(self.corrupt(
                            "join",
                            key,
                            "a join member item without a name or a binary value".into(),
                        ));
                    }
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(members),
            }
        }
    }

    /// The keys of the wide join's member items at `key` (none for other items).
    pub(crate) async fn member_keys(&self, op: &'static str, key: &str) -> Result<Vec<Attrs>> {
        let prefix = member_prefix(key);
        let mut keys = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .projection_expression("#pk, #sk, #kind")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_names("#kind", KIND)
                .expression_attribute_values(":pk", AttributeValue::S(partition_of(key).into()))
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| parse_error(&e, &self.backend, op, key))?;
            keys.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(keys),
            }
        }
    }
}
