//! Prefix operations: `list` and `delete_prefix` (GC). A prefix that lies inside one partition
//! (`{run}/…`, `_runs/{id}/…`) is a Query with `begins_with(sk, :prefix)`; only a prefix that
//! spans partitions (an administrative `joint gc --all`-style sweep) falls back to a Scan.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use joint_shim::{ErrorKind, Result};

use super::error::parse_error;
use super::item::{self, Attrs};
use super::keys::{KIND, KIND_OUT, PK, SK, partition_of_prefix};
use super::store::DynamoCoordStore;

/// BatchWriteItem's limit.
const BATCH: usize = 25;
/// Attempts for unprocessed items of one batch before giving up with `Throttled`.
const BATCH_ATTEMPTS: u32 = 8;

impl DynamoCoordStore {
    /// Every item whose key starts with `prefix`: only the keys and `kind` when `keys_only`
    /// (wide joins' member items included), else only output items, whole.
    pub(crate) async fn query_prefix(
        &self,
        op: &'static str,
        prefix: &str,
        keys_only: bool,
    ) -> Result<Vec<Attrs>> {
        let mut items = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let (page, next) = match partition_of_prefix(prefix) {
                Some(pk) => {
                    let mut q = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .consistent_read(true)
                        .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#sk", SK)
                        .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                        .expression_attribute_values(
                            ":prefix",
                            AttributeValue::S(prefix.to_string()),
                        )
                        .set_exclusive_start_key(start.take());
                    q = if keys_only {
                        q.projection_expression("#pk, #sk, #kind")
                            .expression_attribute_names("#kind", KIND)
                    } else {
                        q.filter_expression("#kind = :out")
                            .expression_attribute_names("#kind", KIND)
                            .expression_attribute_values(":out", AttributeValue::S(KIND_OUT.into()))
                    };
                    let out = q
                        .send()
                        .await
                        .map_err(|e| parse_error(&e, &self.backend, op, prefix))?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
                None => {
                    let mut s = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .consistent_read(true)
                        .expression_attribute_names("#sk", SK)
                        .expression_attribute_values(
                            ":prefix",
                            AttributeValue::S(prefix.to_string()),
                        )
                        .set_exclusive_start_key(start.take());
                    s = if keys_only {
                        s.filter_expression("begins_with(#sk, :prefix)")
                            .projection_expression("#pk, #sk, #kind")
                            .expression_attribute_names("#pk", PK)
                            .expression_attribute_names("#kind", KIND)
                    } else {
                        s.filter_expression("begins_with(#sk, :prefix) AND #kind = :out")
                            .expression_attribute_names("#kind", KIND)
                            .expression_attribute_values(":out", AttributeValue::S(KIND_OUT.into()))
                    };
                    let out = s
                        .send()
                        .await
                        .map_err(|e| parse_error(&e, &self.backend, op, prefix))?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
            };
            items.extend(page);
            match next {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(items)
    }

    /// Delete the items (key attributes and `kind`), 25 per BatchWriteItem, retrying
    /// unprocessed items with backoff. Returns how many output items and joins were deleted:
    /// a wide join's member items are part of their join, not counted.
    pub(crate) async fn batch_delete(&self, prefix: &str, items: Vec<Attrs>) -> Result<u64> {
        let mut deleted = 0u64;
        for chunk in items.chunks(BATCH) {
            let mut pending = Vec::with_capacity(chunk.len());
            for a in chunk {
                let key = item::key_of(a).unwrap_or(prefix);
                let mut k = Attrs::new();
                for name in [PK, SK] {
                    match a.get(name) {
                        Some(v) => {
                            k.insert(name.to_string(), v.clone());
                        }
                        None => {
                            return Err(self.corrupt(
                                "delete_prefix",
                                key,
                                format!("an item without '{name}'"),
                            ));
                        }
                    }
                }
                let del = DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map_err(|e| {
                        self.err(ErrorKind::InvalidInput, "delete_prefix", key, e.to_string())
                    })?;
                pending.push(WriteRequest::builder().delete_request(del).build());
            }
            let n = chunk.iter().filter(|a| !item::is_member(a)).count() as u64;
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    if attempt >= BATCH_ATTEMPTS {
                        return Err(self.err(
                            ErrorKind::Throttled,
                            "delete_prefix",
                            prefix,
                            format!(
                                "{} deletes stayed unprocessed after {BATCH_ATTEMPTS} attempts",
                                pending.len()
                            ),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                }
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(self.table.clone(), std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| parse_error(&e, &self.backend, "delete_prefix", prefix))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
            deleted += n;
        }
        Ok(deleted)
    }
}
