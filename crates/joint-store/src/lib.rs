//! joint-store: coordination stores on managed cloud tables.
//!
//! - `dynamo` (feature `dynamodb`): `DynamoCoordStore`, the `CoordStore` on an Amazon DynamoDB
//!   table (aws-sdk-dynamodb): one partition per run, every operation one round trip.
//! - `tablestore` (feature `tablestore`): `TablestoreCoordStore`, the `CoordStore` on an Alibaba
//!   Cloud Tablestore table (protobuf + PlainBuffer + SignV2/V4 from joint-shim-aliyun).
//!
//! Both features are off by default, so a crate that needs one store compiles only its SDK.
//!
//! Every store passes `joint_shim::conformance::coord_store`; see the crate README for the
//! configuration keys and how to run the tests against ministack and moto server.
#![deny(missing_docs)]

#[cfg(feature = "dynamodb")]
pub mod dynamo;
#[cfg(feature = "tablestore")]
pub mod tablestore;

#[cfg(feature = "dynamodb")]
pub use dynamo::{AwsConnection, DynamoCoordStore, DynamoStoreBuilder};
#[cfg(feature = "tablestore")]
pub use tablestore::{TablestoreCoordStore, TablestoreStoreBuilder};
