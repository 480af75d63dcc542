//! [`LambdaFaas`]: invoking functions through the Lambda Invoke API.

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use joint_shim::{Error, ErrorKind, Faas, FaasCapabilities, Result};
use serde::Deserialize;

use crate::error::{Service, parse_error};

/// Lambda's asynchronous payload limit: 1 MB since 2025 (it was 256 KB). "For asynchronous
/// invocations, the maximum payload size is 1 MB":
/// <https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html>. The local FaaS uses the same.
pub const DEFAULT_ASYNC_LIMIT: u64 = 1024 * 1024;
/// Lambda's synchronous payload limit (6 MB).
pub const DEFAULT_SYNC_LIMIT: u64 = 6 * 1024 * 1024;
/// How long after accepting an asynchronous event Lambda may still deliver it, by default: its
/// maximum event age (6 hours, the longest `MaximumEventAgeInSeconds` allows) plus the longest
/// function timeout (15 minutes) for the last attempt. Lower it with `redelivery_window_seconds`
/// when the functions' event-invoke configuration is shorter.
pub const DEFAULT_REDELIVERY_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(6 * 3600 + 15 * 60);

/// Invokes Lambda functions of one cloud. Workflow function `F` is the Lambda function
/// `{function_prefix}F`, at `qualifier` (version or alias) when set. Cheap to clone.
#[derive(Clone)]
pub struct LambdaFaas {
    client: Client,
    function_prefix: String,
    qualifier: Option<String>,
    caps: FaasCapabilities,
    backend: String,
}

impl std::fmt::Debug for LambdaFaas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaFaas")
            .field("backend", &self.backend)
            .field("function_prefix", &self.function_prefix)
            .field("qualifier", &self.qualifier)
            .field("caps", &self.caps)
            .finish()
    }
}

/// Lambda's error document for a function error.
#[derive(Deserialize)]
struct FunctionErrorBody {
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(rename = "errorMessage", default)]
    error_message: Option<String>,
}

impl LambdaFaas {
    /// A Lambda invoker (built by [`crate::AwsBuilder`]).
    pub fn new(
        client: Client,
        function_prefix: impl Into<String>,
        qualifier: Option<String>,
        caps: FaasCapabilities,
        cloud: &str,
    ) -> Self {
        LambdaFaas {
            client,
            function_prefix: function_prefix.into(),
            qualifier,
            caps,
            backend: format!("lambda({cloud})"),
        }
    }

    /// The Lambda function name of workflow function `function`.
    pub fn function_name(&self, function: &str) -> String {
        format!("{}{function}", self.function_prefix)
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn check(&self, op: &'static str, function: &str, len: usize, limit: u64) -> Result<()> {
        if len as u64 > limit {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                self.backend.as_str(),
                op,
                function,
                format!("payload of {len} bytes is over the {limit}-byte limit"),
            ));
        }
        Ok(())
    }

    async fn invoke(
        &self,
        op: &'static str,
        function: &str,
        payload: Bytes,
        kind: InvocationType,
    ) -> Result<aws_sdk_lambda::operation::invoke::InvokeOutput> {
        self.client
            .invoke()
            .function_name(self.function_name(function))
            .set_qualifier(self.qualifier.clone())
            .invocation_type(kind)
            .payload(Blob::new(payload.to_vec()))
            .send()
            .await
            .map_err(|e| parse_error(&e, Service::Lambda, &self.backend, op, function))
    }
}

/// The shim error for a function error (`X-Amz-Function-Error`) with Lambda's JSON body.
pub(crate) fn function_error(backend: &str, function: &str, header: &str, body: &[u8]) -> Error {
    let (ty, msg) = match serde_json::from_slice::<FunctionErrorBody>(body) {
        Ok(b) => (
            b.error_type.unwrap_or_else(|| header.to_string()),
            b.error_message.unwrap_or_default(),
        ),
        Err(_) => (
            header.to_string(),
            String::from_utf8_lossy(body).into_owned(),
        ),
    };
    Error::new(
        ErrorKind::FunctionError,
        backend,
        "invoke_sync",
        function,
        format!("{ty}: {msg}"),
    )
    .with_provider_code(ty)
}

#[async_trait]
impl Faas for LambdaFaas {
    fn capabilities(&self) -> FaasCapabilities {
        self.caps
    }

    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.check(
            "invoke_async",
            function,
            payload.len(),
            self.caps.async_payload_limit,
        )?;
        let out = self
            .invoke("invoke_async", function, payload, InvocationType::Event)
            .await?;
        if out.status_code != 202 {
            return Err(Error::new(
                ErrorKind::Other,
                self.backend.as_str(),
                "invoke_async",
                function,
                format!(
                    "Lambda answered {} to an Event invocation (expected 202)",
                    out.status_code
                ),
            ));
        }
        Ok(())
    }

    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        self.check(
            "invoke_sync",
            function,
            payload.len(),
            self.caps.sync_payload_limit,
        )?;
        let out = self
            .invoke(
                "invoke_sync",
                function,
                payload,
                InvocationType::RequestResponse,
            )
            .await?;
        let body = out.payload.map(|b| b.into_inner()).unwrap_or_default();
        if let Some(header) = out.function_error {
            return Err(function_error(&self.backend, function, &header, &body));
        }
        Ok(Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_carry_type_and_message() {
        let e = function_error(
            "lambda(aws)",
            "F",
            "Unhandled",
            br#"{"errorMessage":"boom","errorType":"HandlerError"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::FunctionError);
        assert_eq!(e.message(), "HandlerError: boom");
        let e = function_error("lambda(aws)", "F", "Unhandled", b"not json");
        assert_eq!(e.message(), "Unhandled: not json");
    }
}
