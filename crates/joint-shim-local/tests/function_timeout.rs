//! A function's `timeout:` in a running workflow: the attempt fails with `Timeout`, a command's
//! whole process group is killed, a Rust handler's future is dropped, and the function's retry
//! policy applies as for any other error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use joint_shim::{Handlers, handler_fn};
use joint_shim_local::runner::{RunOptions, RunReport, run_local};
use serde_json::{Value, json};

async fn run(def: &str, handlers: Handlers) -> RunReport {
    let w = Arc::new(joint_core::compile::load("t.yaml", def).unwrap_or_else(|e| panic!("{e}")));
    let opts = RunOptions {
        input: json!(1),
        timeout: Some(Duration::from_secs(120)),
        ..RunOptions::default()
    };
    run_local(w, handlers, opts).await.unwrap()
}

/// Whether process `pid` runs (a zombie waiting for a parent that is not ours to reap does not).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    state.is_some_and(|s| s != "Z")
}

/// Wait (bounded, so a regression fails instead of hanging) until none of `pids` runs.
async fn assert_gone(pids: &[u32]) {
    for _ in 0..1000 {
        if !pids.iter().any(|p| running(*p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left: Vec<_> = pids.iter().filter(|p| running(**p)).collect();
    panic!("processes {left:?} of the timed-out command are still running");
}

#[tokio::test]
async fn a_command_past_its_timeout_fails_with_timeout_and_its_process_group_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The shell is the group leader; the sleep is another process of its group.
    let def = format!(
        "workflow: t
functions:
  - name: slow
    cloud: local-a
    command: [sh, -c, 'sleep 30 & echo \"$$ $!\" > {}; wait']
    timeout: 0.5
",
        pids.display()
    );
    let report = run(&def, Handlers::new()).await;
    assert_eq!(report.status, "failed");
    let e = report.error.expect("a failure");
    assert_eq!(e.function, "slow");
    assert_eq!(e.kind, "Timeout", "{e}");
    assert!(
        e.message
            .contains("function 'slow' did not finish within its timeout of 0.5 s"),
        "{e}"
    );
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<u32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    assert_gone(&pids).await;
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_and_the_second_attempt_succeeds() {
    let def = "workflow: t
functions:
  - name: flaky
    cloud: local-a
    command: [sh, -c, 'if [ \"$JOINT_ATTEMPT\" = 1 ]; then sleep 30; fi; echo \"{\\\"attempt\\\": $JOINT_ATTEMPT}\"']
    timeout: 0.5
    retry: { max_attempts: 2, backoff_ms: 1 }
";
    let report = run(def, Handlers::new()).await;
    assert_eq!(report.status, "succeeded", "{:?}", report.error);
    assert_eq!(report.output, Some(json!({"attempt": 2})));
}

/// Sets its flag when dropped.
struct OnDrop(Arc<AtomicBool>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_rust_handler_past_its_timeout_is_dropped_and_retried() {
    let dropped = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let mut h = Handlers::new();
    let (d, n) = (dropped.clone(), calls.clone());
    h.register(
        "hang",
        handler_fn(move |_: Value, ctx| {
            let guard = OnDrop(d.clone());
            n.fetch_add(1, Ordering::SeqCst);
            async move {
                let _guard = guard;
                if ctx.attempt == 1 {
                    futures::future::pending::<()>().await;
                }
                Ok(json!(ctx.attempt))
            }
        }),
    );
    let def = "workflow: t
functions:
  - { name: hang, cloud: local-a, handler: hang, timeout: 0.2, retry: { max_attempts: 2, backoff_ms: 1 } }
";
    let report = run(def, h).await;
    assert_eq!(report.output, Some(json!(2)), "{:?}", report.error);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the hung attempt's future was dropped"
    );
}

#[tokio::test]
async fn without_retries_a_rust_handler_past_its_timeout_fails_the_run() {
    let mut h = Handlers::new();
    h.register(
        "hang",
        handler_fn(|_: Value, _| async {
            futures::future::pending::<()>().await;
            Ok(Value::Null)
        }),
    );
    let def = "workflow: t
functions:
  - { name: hang, cloud: local-a, handler: hang, timeout: 0.2 }
";
    let report = run(def, h).await;
    let e = report.error.expect("a failure");
    assert_eq!(
        (e.function.as_str(), e.kind.as_str()),
        ("hang", "Timeout"),
        "{e}"
    );
    assert!(e.message.contains("attempt 1 of 1"), "{e}");
}
