//! joint-store: coordination stores on managed cloud tables.
//!
//! - [`dynamo`]: [`DynamoCoordStore`], the `CoordStore` on an Amazon DynamoDB table
//!   (aws-sdk-dynamodb): one partition per run, every operation one round trip.
//! - [`tablestore`]: [`TablestoreCoordStore`], the `CoordStore` on an Alibaba Cloud
//!   Tablestore table (protobuf + PlainBuffer + SignV2 from joint-shim-aliyun).
//!
//! Every store passes `joint_shim::conformance::coord_store`; see the crate README for the
//! configuration keys and how to run the tests against ministack and moto server.
#![deny(missing_docs)]

pub mod dynamo;
pub mod tablestore;

pub use dynamo::{AwsConnection, DynamoCoordStore, DynamoStoreBuilder};
pub use tablestore::{TablestoreCoordStore, TablestoreStoreBuilder};
