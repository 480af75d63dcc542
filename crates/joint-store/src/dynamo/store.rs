//! [`DynamoCoordStore`]: the `CoordStore` operations, one round trip each (a wide join: two or
//! three, see [`super`]).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};
use joint_shim::{CoordStore, Created, Error, ErrorKind, Result, StoreCapabilities};

use super::builder::Limits;
use super::error::parse_error;
use super::item::{self, Attrs};
use super::keys::{EXPIRES, INV, MEMBER_SEP, PK};
use joint_shim::JoinSize;

/// The coordination store on one DynamoDB table (see the [module docs](super) for the design).
/// Cheap to clone.
#[derive(Clone)]
pub struct DynamoCoordStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) backend: String,
    ttl: Duration,
    item_limit: u64,
    pub(crate) join_value_limit: u64,
    pub(crate) wide_join_above: u32,
}

impl std::fmt::Debug for DynamoCoordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoCoordStore")
            .field("backend", &self.backend)
            .field("table", &self.table)
            .field("ttl", &self.ttl)
            .field("item_limit", &self.item_limit)
            .field("join_value_limit", &self.join_value_limit)
            .field("wide_join_above", &self.wide_join_above)
            .finish()
    }
}

impl DynamoCoordStore {
    pub(crate) fn new(
        client: Client,
        table: String,
        backend: String,
        ttl: Duration,
        limits: Limits,
    ) -> Self {
        DynamoCoordStore {
            client,
            table,
            backend,
            ttl,
            item_limit: limits.item,
            join_value_limit: limits.join_value,
            wide_join_above: limits.wide_join_above,
        }
    }

    /// Whether joins of `capacity` members are wide on this store: a head item plus one item
    /// per member (ADR 0101), rather than one item.
    pub fn is_wide_join(&self, capacity: u32) -> bool {
        !self.is_narrow(capacity)
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SDK client (for administration such as [`super::create_table`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn err(&self, kind: ErrorKind, op: &'static str, key: &str, msg: String) -> Error {
        Error::new(kind, self.backend.as_str(), op, key, msg)
    }

    /// A malformed item in the table (written by something else).
    pub(crate) fn corrupt(&self, op: &'static str, key: &str, msg: String) -> Error {
        self.err(
            ErrorKind::Other,
            op,
            key,
            format!("unexpected item in table '{}': {msg}", self.table),
        )
    }

    pub(crate) fn expires(&self) -> AttributeValue {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        AttributeValue::N((now + self.ttl).as_secs().to_string())
    }

    fn check_size(&self, op: &'static str, key: &str, len: usize) -> Result<()> {
        if len as u64 > self.item_limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                op,
                key,
                format!(
                    "value of {len} bytes is over the {}-byte item limit",
                    self.item_limit
                ),
            ));
        }
        self.check_user_key(op, key)
    }

    pub(crate) fn check_key(&self, op: &'static str, key: &str) -> Result<()> {
        if key.is_empty() || key.len() > 1024 {
            return Err(self.err(
                ErrorKind::InvalidInput,
                op,
                key,
                "a key must be 1-1024 bytes (DynamoDB sort key limit; a wide join's member item's key is the join's key, U+0001 and the member)".into(),
            ));
        }
        Ok(())
    }

    /// A key the caller gives: [`Self::check_key`], and no U+0001 (it separates a wide join's
    /// key from its members' names).
    fn check_user_key(&self, op: &'static str, key: &str) -> Result<()> {
        if key.contains(MEMBER_SEP) {
            return Err(self.err(
                ErrorKind::InvalidInput,
                op,
                key,
                "a key must not contain U+0001 (reserved for join member items)".into(),
            ));
        }
        self.check_key(op, key)
    }

    /// Consistent read of the raw item.
    pub(crate) async fn get_attrs(&self, op: &'static str, key: &str) -> Result<Option<Attrs>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| parse_error(&e, &self.backend, op, key))?;
        Ok(out.item)
    }
}

#[async_trait]
impl CoordStore for DynamoCoordStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities {
            item_limit: self.item_limit,
            join_value_limit: self.join_value_limit,
            max_join_width: None,
            atomic_join: true,
            consistent_read: true,
            retention: Some(self.ttl),
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Created> {
        self.check_size("create", key, value.len())?;
        let mut attrs = item::output_item(key, &value, 0);
        attrs.insert(EXPIRES.into(), self.expires());
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attrs))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match r {
            Ok(_) => return Ok(Created::New),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
                _ => return Err(parse_error(&e, &self.backend, "create", key)),
            },
        };
        // A store that does not return the old item costs one consistent read here.
        let old = match old {
            Some(a) => a,
            None => self.get_attrs("create", key).await?.ok_or_else(|| {
                self.err(
                    ErrorKind::Unavailable,
                    "create",
                    key,
                    "the item existed for the condition but not for the read that followed".into(),
                )
            })?,
        };
        let it = item::stored_item(&old).map_err(|m| self.corrupt("create", key, m))?;
        Ok(Created::Existing(it))
    }

    async fn get(&self, key: &str) -> Result<Option<StoredItem>> {
        self.check_user_key("get", key)?;
        match self.get_attrs("get", key).await? {
            None => Ok(None),
            Some(a) => item::stored_item(&a)
                .map(Some)
                .map_err(|m| self.corrupt("get", key, m)),
        }
    }

    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
        self.check_user_key("add_invoked", key)?;
        if names.is_empty() {
            // DynamoDB has no empty sets: nothing to add, so read.
            return match self.get_attrs("add_invoked", key).await? {
                Some(a) => Ok(item::invoked(&a)),
                None => Err(self.err(
                    ErrorKind::NotFound,
                    "add_invoked",
                    key,
                    "no output item to record invocations in".into(),
                )),
            };
        }
        let set: Vec<String> = names
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key_attrs(key)))
            // Every write moves the item's expiry: it is kept for the retention after its last
            // write (ADR 0009). Same request, same write units.
            .update_expression("ADD #inv :names SET #exp = :exp")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#inv", INV)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_values(":names", AttributeValue::Ss(set))
            .expression_attribute_values(":exp", self.expires())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => Ok(out
                .attributes
                .as_ref()
                .map(item::invoked)
                .unwrap_or_default()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Err(self
                    .err(
                        ErrorKind::NotFound,
                        "add_invoked",
                        key,
                        "no output item to record invocations in".into(),
                    )
                    .with_provider_code("ConditionalCheckFailedException")),
                _ => Err(parse_error(&e, &self.backend, "add_invoked", key)),
            },
        }
    }

    async fn join(
        &self,
        key: &str,
        member: &str,
        value: Bytes,
        size: JoinSize,
    ) -> Result<JoinState> {
        let JoinSize {
            capacity,
            complete_at,
        } = size;
        self.check_user_key("join", key)?;
        self.check_join(key, member, &value)?;
        if self.is_narrow(capacity) {
            self.join_narrow(key, member, value, capacity, complete_at)
                .await
        } else {
            self.join_wide(key, member, value, capacity, complete_at)
                .await
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, StoredItem)>> {
        let mut out = Vec::new();
        for a in self.query_prefix("list", prefix, false).await? {
            if !item::is_output(&a) {
                continue;
            }
            let Some(k) = item::key_of(&a) else {
                return Err(self.corrupt("list", prefix, "an item without a sort key".into()));
            };
            let it = item::stored_item(&a).map_err(|m| self.corrupt("list", k, m))?;
            out.push((k.to_string(), it));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let keys = self.query_prefix("delete_prefix", prefix, true).await?;
        self.batch_delete(prefix, keys).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.check_user_key("delete", key)?;
        // A wide join's member items go first: a join deleted halfway must not leave members
        // that a new join at the key would take for its own. One Query finds none for other
        // items.
        let members = self.member_keys("delete", key).await?;
        let had_members = !members.is_empty();
        self.batch_delete(key, members).await?;
        // Output items and joins share the key space: one DeleteItem removes whichever it is,
        // and the old item (if any) says whether there was one.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(item::key_attrs(key)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| parse_error(&e, &self.backend, "delete", key))?;
        Ok(had_members || out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
