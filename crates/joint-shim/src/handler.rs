//! User functions: Rust handlers registered by name, and local commands.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use joint_core::machine::FnError;
use joint_core::subgraph::SubGraph;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Wrap an async function of typed input and output as a handler: the input is decoded from
/// JSON into `I` (a mismatch fails the attempt with kind `BadInput`, naming what did not fit),
/// the output encoded from `O`, and an error `E` becomes the function's failure through
/// `Into<FnError>` (implement `From<YourError> for FnError` to give it a stable kind that catch
/// routes and retry filters match on; [`fn_error`] makes a `HandlerError`).
///
/// ```
/// # use joint_shim::{Context, typed_handler, fn_error};
/// #[derive(serde::Deserialize)]
/// struct Order { id: String, qty: u32 }
/// #[derive(serde::Serialize)]
/// struct Line { id: String, total: u32 }
///
/// let price = typed_handler(|o: Order, _ctx: Context| async move {
///     if o.qty == 0 {
///         return Err(fn_error(format!("order {} has no items", o.id)));
///     }
///     Ok(Line { id: o.id, total: o.qty * 10 })
/// });
/// # let _ = price;
/// ```
pub fn typed_handler<I, O, E, F, Fut>(f: F) -> Arc<dyn Handler>
where
    I: serde::de::DeserializeOwned + Send + 'static,
    O: serde::Serialize + Send + 'static,
    E: Into<FnError> + Send + 'static,
    F: Fn(I, Context) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<O, E>> + Send + 'static,
{
    let f = Arc::new(f);
    handler_fn(move |v: Value, ctx: Context| {
        let f = f.clone();
        async move {
            let input: I = serde_json::from_value(v).map_err(|e| FnError {
                kind: "BadInput".into(),
                message: format!(
                    "function '{}': its input does not fit the handler's type: {e}",
                    ctx.function
                ),
            })?;
            let out = f(input, ctx).await.map_err(Into::into)?;
            serde_json::to_value(out).map_err(|e| FnError {
                kind: "BadOutput".into(),
                message: format!("the handler's output cannot be encoded as JSON: {e}"),
            })
        }
    })
}

/// A function error with kind `HandlerError`.
pub fn fn_error(message: impl Into<String>) -> FnError {
    FnError {
        kind: "HandlerError".into(),
        message: message.into(),
    }
}

/// How much of a command's stderr is kept: the last this many bytes. A failing command's error
/// carries (the end of) it; a succeeding command's is logged at debug level.
pub const STDERR_TAIL: usize = 4096;

/// A local command: JSON input on stdin, JSON output on stdout; a non-zero exit is a function
/// error carrying the end of stderr.
///
/// The command runs as the leader of a process group of its own. When it exits, whatever it left
/// running in that group is killed; when the call's future is dropped (a timeout, the runtime
/// shutting down, a cancelled request) the whole group is killed. Its environment is the
/// runtime's, plus the function's `env`, plus `JOINT_RUN`, `JOINT_INSTANCE`, `JOINT_FUNCTION`,
/// `JOINT_CLOUD` and `JOINT_ATTEMPT` (see `docs/definition-format.md`).
#[derive(Clone)]
pub struct CommandHandler {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
}

impl fmt::Debug for CommandHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandHandler")
            .field("argv", &self.argv)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CommandHandler {
    /// A command; `argv[0]` is looked up on PATH unless it contains a `/`.
    pub fn new(argv: Vec<String>) -> Self {
        CommandHandler {
            argv,
            env: BTreeMap::new(),
        }
    }

    /// Also set these environment variables (the function's `env:`). The `JOINT_*` variables
    /// are set after them and win.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }
}

pub(crate) fn tail(s: &[u8], max: usize) -> String {
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

/// Kills a command's process group: once when the command has exited (what it left behind), or
/// when dropped before that (the call was abandoned).
pub(crate) struct ProcessGroup {
    #[cfg(unix)]
    pgid: Option<libc::pid_t>,
}

impl ProcessGroup {
    pub(crate) fn of(child: &tokio::process::Child) -> ProcessGroup {
        #[cfg(unix)]
        {
            ProcessGroup {
                pgid: child
                    .id()
                    .and_then(|p| libc::pid_t::try_from(p).ok())
                    .filter(|p| *p > 0),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = child;
            ProcessGroup {}
        }
    }

    /// SIGKILL every process of the group (the child was spawned as its leader, so the group id
    /// is its pid). Idempotent.
    pub(crate) fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: killpg only sends a signal; the group was created for this command.
            // ESRCH (the group is already gone) is the expected answer after a clean exit.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Read `r` to its end, keeping only the last `keep` bytes.
async fn read_tail<R: tokio::io::AsyncRead + Unpin>(mut r: R, keep: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * keep {
                    buf.drain(..buf.len() - keep);
                }
            }
        }
    }
    if buf.len() > keep {
        buf.drain(..buf.len() - keep);
    }
    buf
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
        let body = serde_json::to_vec(&input)
            .map_err(|e| err("CommandFailed", format!("cannot encode the input: {e}")))?;
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .envs(&self.env)
            .env("JOINT_INSTANCE", &ctx.instance)
            .env("JOINT_RUN", &ctx.workflow_id)
            .env("JOINT_FUNCTION", &ctx.function)
            .env("JOINT_CLOUD", &ctx.cloud)
            .env("JOINT_ATTEMPT", ctx.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            err(
                "CommandFailed",
                format!("cannot start {:?}: {e}", self.argv),
            )
        })?;
        // Declared after `child`, so dropped before it: an abandoned call kills the whole group,
        // then the child itself is killed and reaped by tokio.
        let mut group = ProcessGroup::of(&child);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // Write the input while reading the output: a command that writes before it has read
        // everything would otherwise fill a pipe and wait for us while we wait for it.
        let write = async move {
            if let Some(mut stdin) = stdin {
                // A command that does not read its input closes the pipe early; that is fine.
                let _ = stdin.write_all(&body).await;
                let _ = stdin.shutdown().await;
            }
        };
        let read_out = async move {
            let mut out = Vec::new();
            match stdout {
                Some(mut s) => s.read_to_end(&mut out).await.map(|_| out),
                None => Ok(out),
            }
        };
        let read_err = async move {
            match stderr {
                Some(s) => read_tail(s, STDERR_TAIL).await,
                None => Vec::new(),
            }
        };
        let exit = async {
            let status = child.wait().await;
            // Whatever the command left running in its group would keep the pipes open.
            group.kill();
            status
        };
        let ((), stdout, stderr, status) = tokio::join!(write, read_out, read_err, exit);
        let status = status
            .map_err(|e| err("CommandFailed", format!("waiting for {:?}: {e}", self.argv)))?;
        let stdout = stdout.map_err(|e| {
            err(
                "CommandFailed",
                format!("reading the stdout of {:?}: {e}", self.argv),
            )
        })?;
        if !status.success() {
            return Err(err(
                "CommandFailed",
                format!(
                    "{:?} exited with {}: {}",
                    self.argv,
                    status,
                    tail(&stderr, 2000)
                ),
            ));
        }
        if !stderr.is_empty() {
            tracing::debug!(
                instance = %ctx.instance,
                function = %ctx.function,
                attempt = ctx.attempt,
                stderr = %tail(&stderr, STDERR_TAIL),
                "command succeeded and wrote to stderr"
            );
        }
        let text = String::from_utf8_lossy(&stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text.trim()).map_err(|e| {
            err(
                "BadCommandOutput",
                format!(
                    "{:?} wrote something that is not JSON on stdout ({e}): {}",
                    self.argv,
                    tail(&stdout, 500)
                ),
            )
        })
    }
}

/// Handlers by name.
#[derive(Clone, Default)]
pub struct Handlers {
    by_name: BTreeMap<String, Arc<dyn Handler>>,
    command_dir: Option<PathBuf>,
    /// Worker processes by command and environment, shared by clones.
    workers: Arc<std::sync::Mutex<BTreeMap<WorkerKey, crate::worker::Worker>>>,
}

type WorkerKey = (Vec<String>, BTreeMap<String, String>);

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

    /// Resolve a command whose program is a relative path (`argv[0]` contains a `/` and does
    /// not start with one, e.g. `./steps/a.py`) against `dir` — the directory of the definition
    /// file — instead of the working directory. A program without a `/` is still looked up on
    /// PATH, and the other arguments are passed as written.
    pub fn set_command_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.command_dir = Some(dir.into());
        self
    }

    /// The directory relative command paths are resolved against, if set.
    pub fn command_dir(&self) -> Option<&Path> {
        self.command_dir.as_deref()
    }

    /// `argv` with its paths resolved as [`Handlers::set_command_dir`] says: the program when it
    /// contains a `/` and is relative, and every argument that starts with `./` or `../` (a
    /// script given to an interpreter: `[python3, ./steps.py]`).
    pub fn command_argv(&self, argv: &[String]) -> Vec<String> {
        let mut argv = argv.to_vec();
        let Some(dir) = &self.command_dir else {
            return argv;
        };
        let resolve = |p: &str| {
            let mut rel = p;
            while let Some(rest) = rel.strip_prefix("./") {
                rel = rest.trim_start_matches('/');
            }
            dir.join(rel).to_string_lossy().into_owned()
        };
        for (i, a) in argv.iter_mut().enumerate() {
            let program = i == 0 && a.contains('/') && !Path::new(a.as_str()).is_absolute();
            let script = i > 0 && (a.starts_with("./") || a.starts_with("../"));
            if program || script {
                *a = resolve(a);
            }
        }
        argv
    }

    /// The implementation of `sub`'s function: its registered handler, its command, or the
    /// worker process that serves it (started once and shared by the functions that name the
    /// same worker command and environment).
    pub fn resolve(&self, sub: &SubGraph) -> Result<Arc<dyn Handler>> {
        if let Some(argv) = &sub.worker {
            let key = (self.command_argv(argv), sub.env.clone());
            let worker = self
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_insert_with(|| crate::worker::Worker::new(key.0, key.1))
                .clone();
            return Ok(Arc::new(crate::worker::WorkerFunction::new(
                worker,
                sub.name.clone(),
            )));
        }
        if let Some(argv) = &sub.command {
            return Ok(Arc::new(
                CommandHandler::new(self.command_argv(argv)).with_env(sub.env.clone()),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn relative_programs_resolve_against_the_command_dir() {
        let mut h = Handlers::new();
        let same = argv(&["./steps/a.py", "./data.json"]);
        assert_eq!(h.command_argv(&same), same, "no directory set: as written");
        h.set_command_dir("/defs/proj");
        for (prog, want) in [
            ("./steps/a.py", "/defs/proj/steps/a.py"),
            ("steps/a.py", "/defs/proj/steps/a.py"),
            ("../bin/x", "/defs/proj/../bin/x"),
            ("/usr/bin/env", "/usr/bin/env"),
            ("python3", "python3"),
        ] {
            assert_eq!(
                h.command_argv(&argv(&[prog, "-v", "plain/arg"])),
                argv(&[want, "-v", "plain/arg"]),
                "{prog}"
            );
        }
        // A script given to an interpreter: arguments starting with ./ or ../ resolve too.
        assert_eq!(
            h.command_argv(&argv(&["python3", "./steps.py", "../data.json", "x/y"])),
            argv(&[
                "python3",
                "/defs/proj/steps.py",
                "/defs/proj/../data.json",
                "x/y"
            ])
        );
        assert!(h.command_argv(&[]).is_empty());
    }
}
