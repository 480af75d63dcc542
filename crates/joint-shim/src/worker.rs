//! Long-lived worker processes: one process serves many invocations of functions written in any
//! language, over JSON lines on its stdin and stdout (docs/workers.md). It removes the process
//! start of a `command:` function from every call.
//!
//! The protocol, one JSON object per line:
//! - joint → worker: `{"id": 7, "function": "a", "input": …, "context": {"run", "instance",
//!   "function", "cloud", "attempt", "vars"}}`
//! - worker → joint: `{"id": 7, "output": …}` or `{"id": 7, "error": {"kind": "…", "message":
//!   "…"}}`, in any order.
//!
//! A worker is started on the first call, in its own process group, and kept for the next
//! ones. When it exits, writes something that is not a response, or a call times out (the worker
//! may be stuck), its group is killed, its pending calls fail, and the next call starts a new one.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use joint_core::machine::FnError;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex as AsyncMutex, oneshot};

use crate::handler::{Context, Handler, ProcessGroup, STDERR_TAIL};

/// Largest response line accepted from a worker (the platforms' sync payload limits are of this
/// order); a longer line is a broken worker.
const MAX_LINE: usize = 32 * 1024 * 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, FnError>>>>>;

/// One running worker process.
struct Running {
    stdin: AsyncMutex<tokio::process::ChildStdin>,
    pending: Pending,
    group: Mutex<ProcessGroup>,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Running {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Kill the worker and fail every pending call with `why`.
    fn kill(&self, kind: &str, why: &str) {
        self.alive.store(false, Ordering::SeqCst);
        self.group.lock().unwrap_or_else(|p| p.into_inner()).kill();
        fail_all(&self.pending, kind, why);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.group
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .kill();
    }
}

fn fail_all(pending: &Pending, kind: &str, why: &str) {
    let waiting: Vec<_> = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for (_, tx) in waiting {
        let _ = tx.send(Err(FnError {
            kind: kind.to_string(),
            message: why.to_string(),
        }));
    }
}

/// A worker command and the process currently serving it (shared by every function that names
/// the same command and environment). Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    argv: Arc<Vec<String>>,
    env: Arc<BTreeMap<String, String>>,
    current: Arc<AsyncMutex<Option<Arc<Running>>>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("argv", &self.argv).finish()
    }
}

#[derive(Deserialize)]
struct Response {
    id: u64,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<ResponseError>,
}

#[derive(Deserialize)]
struct ResponseError {
    #[serde(default = "handler_error")]
    kind: String,
    #[serde(default)]
    message: String,
}

fn handler_error() -> String {
    "HandlerError".into()
}

impl Worker {
    /// The worker started by `argv` with the extra environment `env`.
    pub fn new(argv: Vec<String>, env: BTreeMap<String, String>) -> Worker {
        Worker {
            argv: Arc::new(argv),
            env: Arc::new(env),
            current: Arc::new(AsyncMutex::new(None)),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    fn err(kind: &str, message: String) -> FnError {
        FnError {
            kind: kind.into(),
            message,
        }
    }

    /// The running process, started if there is none (or the last one died).
    async fn running(&self) -> Result<Arc<Running>, FnError> {
        let mut cur = self.current.lock().await;
        if let Some(r) = cur.as_ref()
            && r.is_alive()
        {
            return Ok(r.clone());
        }
        let r = Arc::new(self.start()?);
        *cur = Some(r.clone());
        Ok(r)
    }

    fn start(&self) -> Result<Running, FnError> {
        let Some((prog, args)) = self.argv.split_first() else {
            return Err(Self::err(
                "WorkerFailed",
                "the worker command is empty".into(),
            ));
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .envs(self.env.iter())
            .env("JOINT_WORKER_PROTOCOL", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            Self::err(
                "WorkerFailed",
                format!("cannot start worker {:?}: {e}", self.argv),
            )
        })?;
        let group = ProcessGroup::of(&child);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Self::err(
                "WorkerFailed",
                "the worker's pipes are missing".into(),
            ));
        };
        let pending: Pending = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let argv = self.argv.clone();
        // stderr: free-form logs; keep a bounded tail for the message when the worker dies.
        let tail = Arc::new(Mutex::new(Vec::<u8>::new()));
        {
            let tail = tail.clone();
            let argv = argv.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(worker = ?argv, "{line}");
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.extend_from_slice(line.as_bytes());
                    t.push(b'\n');
                    if t.len() > STDERR_TAIL {
                        let cut = t.len() - STDERR_TAIL;
                        t.drain(..cut);
                    }
                }
            });
        }
        // stdout: responses, routed to their calls by id.
        {
            let pending = pending.clone();
            let alive = alive.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                let why = loop {
                    line.clear();
                    let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
                    match limited.read_until(b'\n', &mut line).await {
                        Ok(0) => break "exited".to_string(),
                        Err(e) => break format!("its stdout failed: {e}"),
                        Ok(_) if line.len() > MAX_LINE => {
                            break format!("wrote a line over {MAX_LINE} bytes");
                        }
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let resp: Response = match serde_json::from_str(text.trim()) {
                        Ok(r) => r,
                        Err(e) => {
                            break format!(
                                "wrote something that is not a response on stdout ({e}): {}",
                                crate::handler::tail(text.trim().as_bytes(), 300)
                            );
                        }
                    };
                    let tx = pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&resp.id);
                    let answer = match (resp.output, resp.error) {
                        (_, Some(e)) => Err(FnError {
                            kind: e.kind,
                            message: e.message,
                        }),
                        (Some(v), None) => Ok(v),
                        (None, None) => Ok(Value::Null),
                    };
                    if let Some(tx) = tx {
                        let _ = tx.send(answer);
                    }
                };
                alive.store(false, Ordering::SeqCst);
                let stderr =
                    String::from_utf8_lossy(&tail.lock().unwrap_or_else(|p| p.into_inner()))
                        .trim()
                        .to_string();
                let msg = if stderr.is_empty() {
                    format!("worker {argv:?} {why}")
                } else {
                    format!("worker {argv:?} {why}; its stderr ended with: {stderr}")
                };
                fail_all(&pending, "WorkerExited", &msg);
                // Reap it; the group is killed when the `Running` goes.
                let _ = child.wait().await;
            });
        }
        Ok(Running {
            stdin: AsyncMutex::new(stdin),
            pending,
            group: Mutex::new(group),
            alive,
        })
    }
}

#[async_trait]
impl Handler for WorkerFunction {
    async fn call(&self, input: Value, ctx: &Context) -> Result<Value, FnError> {
        let running = self.worker.running().await?;
        let id = self.worker.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        running
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        // If this call is dropped (timeout, cancel), the worker may be stuck in it: kill it.
        let guard = AbandonGuard {
            running: Some(running.clone()),
        };
        let mut line = serde_json::to_vec(&json!({
            "id": id,
            "function": self.function,
            "input": input,
            "context": {
                "run": ctx.workflow_id,
                "instance": ctx.instance,
                "function": ctx.function,
                "cloud": ctx.cloud,
                "attempt": ctx.attempt,
                "vars": ctx.vars,
            },
        }))
        .unwrap_or_default();
        line.push(b'\n');
        let sent = {
            let mut stdin = running.stdin.lock().await;
            match stdin.write_all(&line).await {
                Ok(()) => stdin.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            running.kill(
                "WorkerExited",
                &format!("cannot write to worker {:?}: {e}", self.worker.argv),
            );
        }
        let answer = rx.await.unwrap_or_else(|_| {
            Err(Worker::err(
                "WorkerExited",
                format!("worker {:?} went away", self.worker.argv),
            ))
        });
        guard.disarm();
        answer
    }
}

/// Kills the worker when a call is abandoned before its answer.
struct AbandonGuard {
    running: Option<Arc<Running>>,
}

impl AbandonGuard {
    fn disarm(mut self) {
        self.running = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.kill(
                "WorkerExited",
                "the worker was stopped: a call it was running was abandoned (timeout or cancel)",
            );
        }
    }
}

/// A function served by a [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerFunction {
    worker: Worker,
    function: String,
}

impl WorkerFunction {
    /// `function` as served by `worker`.
    pub fn new(worker: Worker, function: impl Into<String>) -> WorkerFunction {
        WorkerFunction {
            worker,
            function: function.into(),
        }
    }
}
