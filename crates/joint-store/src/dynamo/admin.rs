//! Table administration: create the table with its key schema and enable TTL.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableStatus as SdkTableStatus, TimeToLiveSpecification,
};
use joint_shim::{Error, ErrorKind, Result};

use super::error::parse_error;
use super::keys::{EXPIRES, PK, SK};

/// What [`create_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    /// The table was created (and is active).
    Created,
    /// A table of that name existed already; nothing changed but TTL.
    Existed,
}

/// Create the coordination table (`pk` HASH + `sk` RANGE, on-demand billing), wait until it is
/// active and enable TTL on `expires`. Idempotent.
pub async fn create_table(client: &Client, table: &str) -> Result<TableStatus> {
    let backend = "dynamodb";
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
    };
    let build_err = |e: aws_sdk_dynamodb::error::BuildError| {
        Error::new(
            ErrorKind::InvalidInput,
            backend,
            "create_table",
            table,
            e.to_string(),
        )
    };
    let r = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr(PK).map_err(build_err)?)
        .attribute_definitions(attr(SK).map_err(build_err)?)
        .key_schema(key(PK, KeyType::Hash).map_err(build_err)?)
        .key_schema(key(SK, KeyType::Range).map_err(build_err)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    let status = match r {
        Ok(_) => TableStatus::Created,
        Err(e) => match e.as_service_error() {
            Some(CreateTableError::ResourceInUseException(_)) => TableStatus::Existed,
            _ => return Err(parse_error(&e, backend, "create_table", table)),
        },
    };
    // Wait until active (real DynamoDB takes seconds; emulators are immediate).
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| parse_error(&e, backend, "describe_table", table))?;
        let active = d
            .table
            .and_then(|t| t.table_status)
            .is_none_or(|s| s == SdkTableStatus::Active);
        if active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(EXPIRES)
        .build()
        .map_err(build_err)?;
    if let Err(e) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        // Enabling TTL twice is a ValidationException ("already enabled"): fine.
        let already = e
            .as_service_error()
            .and_then(|s| aws_sdk_dynamodb::error::ProvideErrorMetadata::message(s))
            .is_some_and(|m| m.contains("already enabled"));
        if !already {
            return Err(parse_error(&e, backend, "update_time_to_live", table));
        }
    }
    Ok(status)
}
