//! [`DynamoCoordStore`]: the `CoordStore` operations, one round trip each.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use bytes::Bytes;
use joint_core::machine::{JoinState, StoredItem};
use joint_shim::{CoordStore, Created, Error, ErrorKind, Result, StoreCapabilities};

use super::error::parse_error;
use super::item::{self, Attrs};
use super::keys::{CNT, EXPIRES, INV, KIND, KIND_JOIN, PK, member_attr};

/// The coordination store on one DynamoDB table (see the [module docs](super) for the design).
/// Cheap to clone.
#[derive(Clone)]
pub struct DynamoCoordStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) backend: String,
    ttl: Duration,
    item_limit: u64,
}

impl std::fmt::Debug for DynamoCoordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoCoordStore")
            .field("backend", &self.backend)
            .field("table", &self.table)
            .field("ttl", &self.ttl)
            .field("item_limit", &self.item_limit)
            .finish()
    }
}

impl DynamoCoordStore {
    pub(crate) fn new(
        client: Client,
        table: String,
        backend: String,
        ttl: Duration,
        item_limit: u64,
    ) -> Self {
        DynamoCoordStore {
            client,
            table,
            backend,
            ttl,
            item_limit,
        }
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

    fn expires(&self) -> AttributeValue {
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
        self.check_key(op, key)
    }

    fn check_key(&self, op: &'static str, key: &str) -> Result<()> {
        if key.is_empty() || key.len() > 1024 {
            return Err(self.err(
                ErrorKind::InvalidInput,
                op,
                key,
                "a key must be 1-1024 bytes (DynamoDB sort key limit)".into(),
            ));
        }
        Ok(())
    }

    /// Consistent read of the raw item.
    async fn get_attrs(&self, op: &'static str, key: &str) -> Result<Option<Attrs>> {
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
        match self.get_attrs("get", key).await? {
            None => Ok(None),
            Some(a) => item::stored_item(&a)
                .map(Some)
                .map_err(|m| self.corrupt("get", key, m)),
        }
    }

    async fn add_invoked(&self, key: &str, names: &[String]) -> Result<BTreeSet<String>> {
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
        capacity: u32,
        _complete_at: u32,
    ) -> Result<JoinState> {
        self.check_size("join", key, value.len())?;
        if member.is_empty() {
            return Err(self.err(
                ErrorKind::InvalidInput,
                "join",
                key,
                "a join member name must not be empty".into(),
            ));
        }
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key_attrs(key)))
            .update_expression(
                "SET #m = :v, #kind = :join, #exp = if_not_exists(#exp, :exp) ADD #cnt :one",
            )
            .condition_expression(
                "attribute_not_exists(#m) AND (attribute_not_exists(#cnt) OR #cnt < :cap)",
            )
            .expression_attribute_names("#m", member_attr(member))
            .expression_attribute_names("#kind", KIND)
            .expression_attribute_names("#exp", EXPIRES)
            .expression_attribute_names("#cnt", CNT)
            .expression_attribute_values(":v", AttributeValue::B(Blob::new(value.to_vec())))
            .expression_attribute_values(":join", AttributeValue::S(KIND_JOIN.into()))
            .expression_attribute_values(":exp", self.expires())
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":cap", AttributeValue::N(capacity.to_string()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let (attrs, added): (Option<HashMap<_, _>>, bool) = match r {
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
        item::join_state(attrs.as_ref(), added).map_err(|m| self.corrupt("join", key, m))
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
        self.check_key("delete", key)?;
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
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
