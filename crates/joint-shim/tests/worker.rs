//! Worker processes over the JSON-lines protocol, with the Python and Node helpers of sdk/: one
//! process serves many calls, errors keep their kind, a dead or misbehaving worker fails its
//! calls and is replaced, an abandoned call stops the worker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use joint_shim::Handler;
use joint_shim::handler::Context;
use joint_shim::worker::{Worker, WorkerFunction};
use serde_json::{Value, json};

fn sdk(lang: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sdk")
        .join(lang)
        .canonicalize()
        .expect("sdk dir")
}

fn ctx(attempt: u32) -> Context {
    Context {
        workflow_id: "r1".into(),
        instance: "r1/a_0".into(),
        function: "a".into(),
        cloud: "local".into(),
        attempt,
        vars: BTreeMap::new(),
    }
}

const PY: &str = r#"
import os, sys, time
from joint_worker import FunctionError, serve

def pid(x, ctx):
    return {"pid": os.getpid(), "x": x, "attempt": ctx.attempt, "instance": ctx.instance}

def fail(x, ctx):
    raise FunctionError("OutOfStock", "no more " + str(x))

def crash(x, ctx):
    os._exit(3)

def garbage(x, ctx):
    sys.__stdout__.write("this is not a response\n"); sys.__stdout__.flush()
    return 1

def slow(x, ctx):
    time.sleep(60)

def chatty(x, ctx):
    print("hello from user code")   # goes to stderr, not the protocol
    return "ok"

serve({f.__name__: f for f in [pid, fail, crash, garbage, slow, chatty]})
"#;

fn python_worker(dir: &Path) -> Worker {
    let script = dir.join("w.py");
    std::fs::write(&script, PY).unwrap();
    let env = BTreeMap::from([(
        "PYTHONPATH".to_string(),
        sdk("python").to_string_lossy().to_string(),
    )]);
    Worker::new(
        vec!["python3".into(), script.to_string_lossy().to_string()],
        env,
    )
}

async fn call(w: &Worker, f: &str, input: Value) -> Result<Value, joint_core::machine::FnError> {
    WorkerFunction::new(w.clone(), f).call(input, &ctx(1)).await
}

#[tokio::test]
async fn one_python_process_serves_many_calls() {
    let dir = tempfile::tempdir().unwrap();
    let w = python_worker(dir.path());
    let a = call(&w, "pid", json!(1)).await.unwrap();
    let b = call(&w, "pid", json!(2)).await.unwrap();
    assert_eq!(a["pid"], b["pid"], "the same process: {a} {b}");
    assert_eq!((a["x"].clone(), b["x"].clone()), (json!(1), json!(2)));
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["instance"], "r1/a_0");
    assert_eq!(call(&w, "chatty", json!(null)).await.unwrap(), json!("ok"));
}

#[tokio::test]
async fn errors_keep_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let w = python_worker(dir.path());
    let e = call(&w, "fail", json!("pens")).await.unwrap_err();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("OutOfStock", "no more pens")
    );
    let e = call(&w, "nosuch", json!(1)).await.unwrap_err();
    assert_eq!(e.kind, "HandlerNotFound");
    assert!(
        e.message.contains("nosuch") && e.message.contains("pid"),
        "{e}"
    );
}

#[tokio::test]
async fn a_worker_that_dies_or_writes_garbage_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let w = python_worker(dir.path());
    let before = call(&w, "pid", json!(0)).await.unwrap()["pid"].clone();
    let e = call(&w, "crash", json!(0)).await.unwrap_err();
    assert_eq!(e.kind, "WorkerExited", "{e}");
    let after = call(&w, "pid", json!(0)).await.unwrap()["pid"].clone();
    assert_ne!(before, after, "a new process after the crash");
    let e = call(&w, "garbage", json!(0)).await.unwrap_err();
    assert_eq!(e.kind, "WorkerExited", "{e}");
    assert!(e.message.contains("not a response"), "{e}");
    let again = call(&w, "pid", json!(0)).await.unwrap()["pid"].clone();
    assert_ne!(after, again);
}

#[tokio::test]
async fn an_abandoned_call_stops_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let w = python_worker(dir.path());
    let pid = call(&w, "pid", json!(0)).await.unwrap()["pid"]
        .as_u64()
        .unwrap();
    let slow = WorkerFunction::new(w.clone(), "slow");
    let c = ctx(1);
    let r = tokio::time::timeout(Duration::from_millis(300), slow.call(json!(0), &c)).await;
    assert!(r.is_err(), "the slow call was abandoned");
    // The process (and its group) is gone; the next call starts a fresh one.
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "worker {pid} was killed");
    let next = call(&w, "pid", json!(0)).await.unwrap()["pid"]
        .as_u64()
        .unwrap();
    assert_ne!(pid, next);
}

#[tokio::test]
async fn a_node_worker_answers_concurrent_calls_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("w.js");
    std::fs::write(
        &script,
        format!(
            r#"const {{ serve, FunctionError }} = require({:?});
serve({{
  wait: (ms) => new Promise((ok) => setTimeout(() => ok({{ ms, pid: process.pid }}), ms)),
  fail: () => {{ throw new FunctionError("Declined", "card declined"); }},
}});"#,
            sdk("node").join("joint-worker.js")
        ),
    )
    .unwrap();
    let w = Worker::new(
        vec!["node".into(), script.to_string_lossy().to_string()],
        BTreeMap::new(),
    );
    let slow = tokio::spawn({
        let w = w.clone();
        async move { call(&w, "wait", json!(400)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fast = call(&w, "wait", json!(10)).await.unwrap();
    // The fast call was answered while the slow one still ran: not queued behind it.
    assert!(!slow.is_finished(), "the slow call is still running");
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(fast["pid"], slow["pid"]);
    let e = call(&w, "fail", json!(null)).await.unwrap_err();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("Declined", "card declined")
    );
}
