//! Deploying joint functions to Lambda: the `provided.al2023` package and an idempotent
//! create-or-update of one function (what `joint deploy` and the emulator tests use).

use std::io::Write;

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime as LambdaRuntime};
use joint_shim::{Error, ErrorKind, Result};

use crate::error::{Service, parse_error};

/// A zip archive holding `exe` as `bootstrap` with mode 0755 — the package a `provided.al2023`
/// (and an FC custom-runtime) function runs.
pub fn zip_bootstrap(exe: &[u8]) -> Result<Vec<u8>> {
    let bad = |e: String| Error::new(ErrorKind::Other, "deploy", "zip", "bootstrap", e);
    let mut out = std::io::Cursor::new(Vec::with_capacity(exe.len() / 2 + 256));
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o755);
        z.start_file("bootstrap", opts)
            .map_err(|e| bad(e.to_string()))?;
        z.write_all(exe).map_err(|e| bad(e.to_string()))?;
        z.finish().map_err(|e| bad(e.to_string()))?;
    }
    Ok(out.into_inner())
}

/// One Lambda function to create or update.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Function name.
    pub name: String,
    /// The package (see [`zip_bootstrap`]).
    pub zip: Vec<u8>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Execution role ARN.
    pub role: String,
    /// Memory in MB.
    pub memory_mb: i32,
    /// Timeout in seconds.
    pub timeout_secs: i32,
}

/// What [`deploy_function`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployed {
    /// The function did not exist and was created.
    Created,
    /// It existed; its code and configuration were updated.
    Updated,
}

/// Create `spec` as a `provided.al2023` function (handler `bootstrap`), or update its code and
/// configuration when it exists. Idempotent.
pub async fn deploy_function(client: &Client, spec: &FunctionSpec) -> Result<Deployed> {
    let backend = "lambda(deploy)";
    let mut env = Environment::builder();
    for (k, v) in &spec.env {
        env = env.variables(k.clone(), v.clone());
    }
    let env = env.build();
    let exists = match client.get_function().function_name(&spec.name).send().await {
        Ok(_) => true,
        Err(e) => {
            let err = parse_error(&e, Service::Lambda, backend, "get_function", &spec.name);
            if err.kind() == ErrorKind::FunctionNotFound || err.kind() == ErrorKind::NotFound {
                false
            } else {
                return Err(err);
            }
        }
    };
    if !exists {
        client
            .create_function()
            .function_name(&spec.name)
            .runtime(LambdaRuntime::Providedal2023)
            .handler("bootstrap")
            .role(&spec.role)
            .timeout(spec.timeout_secs)
            .memory_size(spec.memory_mb)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(spec.zip.clone()))
                    .build(),
            )
            .environment(env)
            .send()
            .await
            .map_err(|e| {
                parse_error(&e, Service::Lambda, backend, "create_function", &spec.name)
            })?;
        return Ok(Deployed::Created);
    }
    client
        .update_function_code()
        .function_name(&spec.name)
        .zip_file(Blob::new(spec.zip.clone()))
        .send()
        .await
        .map_err(|e| {
            parse_error(
                &e,
                Service::Lambda,
                backend,
                "update_function_code",
                &spec.name,
            )
        })?;
    client
        .update_function_configuration()
        .function_name(&spec.name)
        .role(&spec.role)
        .timeout(spec.timeout_secs)
        .memory_size(spec.memory_mb)
        .environment(env)
        .send()
        .await
        .map_err(|e| {
            parse_error(
                &e,
                Service::Lambda,
                backend,
                "update_function_configuration",
                &spec.name,
            )
        })?;
    Ok(Deployed::Updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_holds_an_executable_bootstrap() {
        let exe = b"#!/bin/sh\necho hi\n".repeat(100);
        let zip = zip_bootstrap(&exe).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut f = archive.by_name("bootstrap").unwrap();
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, exe);
    }
}
