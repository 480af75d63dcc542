//! User functions: Rust handlers registered by name, and local commands.

use std::collections::BTreeMap;
use std::fmt;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use joint_core::machine::FnError;
use joint_core::subgraph::SubGraph;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorKind, Result};

/// What a user function learns about its invocation.
#[derive(Debug, Clone)]
pub struct Context {
    /// Run id.
    pub workflow_id: String,
    /// Instance id (`{run}/{Func}_{step}-bindex-…`), a natural idempotency key for side effects.
    pub instance: String,
    /// Function name.
    pub function: String,
    /// Cloud executing it.
    pub cloud: String,
    /// 1 for the first attempt of the runtime's retry loop.
    pub attempt: u32,
    /// Loop variables.
    pub vars: BTreeMap<String, i64>,
}

/// A user function.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Run on `input`; return the output or an error.
    async fn call(&self, input: Value, ctx: &Context) -> std::result::Result<Value, FnError>;
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Value, Context) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = std::result::Result<Value, FnError>> + Send,
{
    async fn call(&self, input: Value, ctx: &Context) -> std::result::Result<Value, FnError> {
        (self.0)(input, ctx.clone()).await
    }
}

/// Wrap an async closure as a handler.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Value, Context) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<Value, FnError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// A function error with kind `HandlerError`.
pub fn fn_error(message: impl Into<String>) -> FnError {
    FnError {
        kind: "HandlerError".into(),
        message: message.into(),
    }
}

/// A local command: JSON input on stdin, JSON output on stdout; a non-zero exit is a function
/// error carrying stderr. The instance id and run id are in `JOINT_INSTANCE` / `JOINT_RUN`.
#[derive(Clone)]
pub struct CommandHandler {
    argv: Vec<String>,
}

impl fmt::Debug for CommandHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandler")
            .field("argv", &self.argv)
            .finish()
    }
}

impl CommandHandler {
    /// A command; `argv[0]` is looked up on PATH.
    pub fn new(argv: Vec<String>) -> Self {
        CommandHandler { argv }
    }
}

fn tail(s: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(s);
    let t = text.trim();
    if t.len() <= max {
        t.to_string()
    } else {
        let mut start = t.len() - max;
        while !t.is_char_boundary(start) {
            start += 1;
        }
        format!("…{}", &t[start..])
    }
}

#[async_trait]
impl Handler for CommandHandler {
    async fn call(&self, input: Value, ctx: &Context) -> std::result::Result<Value, FnError> {
        let err = |kind: &str, message: String| FnError {
            kind: kind.into(),
            message,
        };
        let Some((prog, args)) = self.argv.split_first() else {
            return Err(err("CommandFailed", "the command is empty".into()));
        };
        let mut child = tokio::process::Command::new(prog)
            .args(args)
            .env("JOINT_INSTANCE", &ctx.instance)
            .env("JOINT_RUN", &ctx.workflow_id)
            .env("JOINT_FUNCTION", &ctx.function)
            .env("JOINT_CLOUD", &ctx.cloud)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                err(
                    "CommandFailed",
                    format!("cannot start {:?}: {e}", self.argv),
                )
            })?;
        let body = serde_json::to_vec(&input).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input closes the pipe early; that is fine.
            let _ = stdin.write_all(&body).await;
            drop(stdin);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| err("CommandFailed", format!("waiting for {:?}: {e}", self.argv)))?;
        if !out.status.success() {
            return Err(err(
                "CommandFailed",
                format!(
                    "{:?} exited with {}: {}",
                    self.argv,
                    out.status,
                    tail(&out.stderr, 2000)
                ),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text.trim()).map_err(|e| {
            err(
                "BadCommandOutput",
                format!(
                    "{:?} wrote something that is not JSON on stdout ({e}): {}",
                    self.argv,
                    tail(&out.stdout, 500)
                ),
            )
        })
    }
}

/// Handlers by name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_name: BTreeMap<String, Arc<dyn Handler>>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `handler` as `name`.
    pub fn register(&mut self, name: impl Into<String>, handler: Arc<dyn Handler>) -> &mut Self {
        self.by_name.insert(name.into(), handler);
        self
    }

    /// Registered names.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The implementation of `sub`'s function: its registered handler or its command.
    pub fn resolve(&self, sub: &SubGraph) -> Result<Arc<dyn Handler>> {
        if let Some(argv) = &sub.command {
            return Ok(Arc::new(CommandHandler::new(argv.clone())));
        }
        let name = sub.handler.as_deref().unwrap_or(&sub.name);
        self.by_name.get(name).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "runtime",
                "resolve_handler",
                &sub.name,
                format!(
                    "function '{}' uses handler '{name}', which is not registered (registered: {})",
                    sub.name,
                    self.names().join(", ")
                ),
            )
        })
    }
}
