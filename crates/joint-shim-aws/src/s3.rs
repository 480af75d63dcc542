//! [`S3BlobStore`]: spilled payloads and results in an S3 bucket.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use joint_shim::{BlobCapabilities, BlobStore, Error, ErrorKind, Result};

use crate::error::{Service, parse_error};

/// Largest object a single PutObject writes (5 GB).
const MAX_OBJECT: u64 = 5 * 1024 * 1024 * 1024;
/// DeleteObjects' limit.
const DELETE_BATCH: usize = 1000;
/// Attempts of a create-only put that meets a concurrent conditional write (HTTP 409).
const CONFLICT_ATTEMPTS: u32 = 6;

/// A blob store on one S3 bucket, optionally under a key prefix. Cheap to clone.
#[derive(Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    key_prefix: String,
    conditional_put: bool,
    backend: String,
    retention: Option<Duration>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("backend", &self.backend)
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("conditional_put", &self.conditional_put)
            .finish()
    }
}

impl S3BlobStore {
    /// A store on `bucket` (built by [`crate::AwsBuilder`]). `conditional_put: false` is for
    /// S3-compatible stores without `If-None-Match: *` (see ADR 0102).
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        key_prefix: impl Into<String>,
        conditional_put: bool,
        cloud: &str,
    ) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
            key_prefix: key_prefix.into(),
            conditional_put,
            backend: format!("s3({cloud})"),
            retention: None,
        }
    }

    /// How long objects are kept: the bucket's lifecycle expiration, which
    /// [`S3BlobStore::create_bucket`] configures (rounded up to whole days, as S3 counts them).
    /// `None` (the default of [`S3BlobStore::new`]): objects are kept until deleted.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention =
            retention.map(|r| Duration::from_secs(r.as_secs().div_ceil(86_400).max(1) * 86_400));
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Create the bucket (setup: `joint aws create-bucket`, the benches and the tests).
    ///
    /// With a retention ([`S3BlobStore::with_retention`]) it also sets the bucket's lifecycle
    /// rule `joint-retention`: objects under the key prefix expire that many days after they
    /// were written (S3 deletes them for free; ADR 0009).
    pub async fn create_bucket(&self) -> Result<()> {
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                parse_error(
                    &e,
                    Service::S3,
                    &self.backend,
                    "create_bucket",
                    &self.bucket,
                )
            })?;
        self.put_lifecycle().await
    }

    /// Set the `joint-retention` lifecycle rule (nothing without a retention).
    pub async fn put_lifecycle(&self) -> Result<()> {
        use aws_sdk_s3::types::{
            BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
            LifecycleRuleFilter,
        };
        let Some(retention) = self.retention else {
            return Ok(());
        };
        let days = i32::try_from(retention.as_secs() / 86_400).unwrap_or(i32::MAX);
        let bad = |e: aws_sdk_s3::error::BuildError| {
            self.err(
                ErrorKind::InvalidInput,
                "put_lifecycle",
                &self.bucket,
                e.to_string(),
            )
        };
        let rule = LifecycleRule::builder()
            .id("joint-retention")
            .status(ExpirationStatus::Enabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(&self.key_prefix)
                    .build(),
            )
            .expiration(LifecycleExpiration::builder().days(days).build())
            .build()
            .map_err(bad)?;
        let cfg = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(bad)?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(cfg)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                parse_error(
                    &e,
                    Service::S3,
                    &self.backend,
                    "put_lifecycle",
                    &self.bucket,
                )
            })
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    fn err(&self, kind: ErrorKind, op: &'static str, key: &str, msg: impl Into<String>) -> Error {
        Error::new(kind, self.backend.as_str(), op, key, msg)
    }

    fn exists_err(&self, key: &str) -> Error {
        self.err(
            ErrorKind::AlreadyExists,
            "put_new",
            key,
            format!("s3://{}/{} exists", self.bucket, self.object_key(key)),
        )
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => {
                Ok(false)
            }
            Err(e) => {
                let err = parse_error(&e, Service::S3, &self.backend, "put_new", key);
                if err.kind() == ErrorKind::NotFound {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn capabilities(&self) -> BlobCapabilities {
        BlobCapabilities {
            create_only: self.conditional_put,
            max_object: MAX_OBJECT,
            retention: self.retention,
        }
    }

    async fn put_new(&self, key: &str, bytes: Bytes) -> Result<()> {
        if bytes.len() as u64 > MAX_OBJECT {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                "put_new",
                key,
                format!("{} bytes is over S3's single-put limit", bytes.len()),
            ));
        }
        if !self.conditional_put && self.exists(key).await? {
            return Err(self.exists_err(key));
        }
        let mut attempt = 0;
        loop {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.object_key(key))
                .body(ByteStream::from(bytes.clone()));
            if self.conditional_put {
                req = req.if_none_match("*");
            }
            match req.send().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let err = parse_error(&e, Service::S3, &self.backend, "put_new", key);
                    match err.kind() {
                        ErrorKind::AlreadyExists => return Err(self.exists_err(key)),
                        // Also a 412 without the code.
                        ErrorKind::Precondition
                            if e.raw_response().map(|r| r.status().as_u16()) == Some(412) =>
                        {
                            return Err(self.exists_err(key));
                        }
                        // 409 ConditionalRequestConflict: a concurrent conditional write is in
                        // flight; S3 asks to retry, which then answers 412 or succeeds.
                        ErrorKind::Precondition if attempt + 1 < CONFLICT_ATTEMPTS => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                        }
                        _ => return Err(err),
                    }
                }
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) {
                    return Err(self
                        .err(ErrorKind::NotFound, "get", key, "no such blob")
                        .with_provider_code("NoSuchKey"));
                }
                return Err(parse_error(&e, Service::S3, &self.backend, "get", key));
            }
        };
        let body = out.body.collect().await.map_err(|e| {
            self.err(
                ErrorKind::Unavailable,
                "get",
                key,
                format!("reading the body failed: {e}"),
            )
        })?;
        Ok(body.into_bytes())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let full = self.object_key(prefix);
        let mut deleted = 0u64;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    parse_error(&e, Service::S3, &self.backend, "delete_prefix", prefix)
                })?;
            let keys: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .filter(|k| k.starts_with(&full))
                .collect();
            for chunk in keys.chunks(DELETE_BATCH) {
                let ids = chunk
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(k).build())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| {
                        self.err(
                            ErrorKind::InvalidInput,
                            "delete_prefix",
                            prefix,
                            e.to_string(),
                        )
                    })?;
                let del = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| {
                        self.err(
                            ErrorKind::InvalidInput,
                            "delete_prefix",
                            prefix,
                            e.to_string(),
                        )
                    })?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(del)
                    .send()
                    .await
                    .map_err(|e| {
                        parse_error(&e, Service::S3, &self.backend, "delete_prefix", prefix)
                    })?;
                if let Some(first) = out.errors().first() {
                    return Err(self
                        .err(
                            ErrorKind::Other,
                            "delete_prefix",
                            first.key().unwrap_or(prefix),
                            format!(
                                "{} of {} deletes failed: {}",
                                out.errors().len(),
                                chunk.len(),
                                first.message().unwrap_or("no message")
                            ),
                        )
                        .with_provider_code(first.code().unwrap_or("unknown")));
                }
                deleted += chunk.len() as u64;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(deleted)
    }
}
