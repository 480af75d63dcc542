//! joint-shim-aliyun: Alibaba Cloud for joint, signed by hand (hmac, sha1/sha2, md5, base64
//! over reqwest — no Alibaba SDK in the dependency tree).
//!
//! - [`sign`]: ACS3-HMAC-SHA256 (FC 3.0), OSS V4 and V1, Tablestore SignV2 — pure functions of
//!   (request parts, credential, time, nonce), each with a verifier built from the same code.
//! - [`FcFaas`]: Function Compute 3.0 InvokeFunction; [`fc::adapter`]: the custom-runtime
//!   HTTP server that runs a joint function inside FC.
//! - [`OssBlobStore`]: create-only put, get, delete by prefix.
//! - [`ots`]: Tablestore wire code (protobuf, PlainBuffer with CRC-8, errors) and a small
//!   client; the Tablestore `CoordStore` lives in `joint-store`.
#![deny(missing_docs)]

pub mod credential;
pub mod fc;
pub mod http;
pub mod oss;
pub mod ots;
pub mod sign;
pub mod time;

pub use credential::Credential;
pub use fc::{FcFaas, FcFaasBuilder};
pub use oss::{OssBlobStore, OssBlobStoreBuilder};
pub use time::Timestamp;
