//! joint-shim-aws: the AWS backend of joint.
//!
//! - [`LambdaFaas`]: invocations through the Lambda Invoke API (`Event` for async,
//!   `RequestResponse` for sync), with provider errors mapped to the shim's kinds.
//! - [`S3BlobStore`]: create-only puts (`If-None-Match: *`), reads and prefix deletes on S3.
//! - [`AwsBuilder`]: one AWS cloud (Lambda + S3 + the DynamoDB table of `joint-store`) from
//!   configuration keys and the environment; secrets are redacted in `Debug`.
//! - [`lambda`]: the adapter that runs a joint function inside the Lambda runtime.
//! - [`deploy`]: the `provided.al2023` package and an idempotent create-or-update of a function.
//!
//! See the crate README for the configuration keys, deployment and the emulator tests.
#![deny(missing_docs)]

pub mod builder;
pub mod deploy;
pub mod error;
pub mod faas;
pub mod lambda;
pub mod s3;

pub use builder::{AWS_ENV, AWS_KEYS, AwsBuilder, AwsCloud};
pub use faas::LambdaFaas;
pub use s3::S3BlobStore;
