//! The local runner as a user meets it: bounded waits, runs that cannot start, handler names
//! `validate` can check, and `joint status` that only reads.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn joint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_joint"))
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write definition");
    p.to_string_lossy().to_string()
}

/// `--timeout` bounds the whole command, and the message says what did not commit.
#[test]
fn the_timeout_bounds_the_run() {
    let dir = tempfile::tempdir().expect("dir");
    let def = write(
        dir.path(),
        "slow.yaml",
        "workflow: slow
functions:
  - {name: a, handler: inc, next: [{to: b}]}
  - {name: b, command: [sleep, '3600']}
",
    );
    let t0 = Instant::now();
    let o = joint()
        .args(["run", &def, "--input", "1", "--timeout", "1", "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .expect("joint");
    // Far above the 1 s limit and far below the function's hour: the limit held.
    assert!(t0.elapsed() < Duration::from_secs(60), "{}", text(&o));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("did not finish within 1.0 s") && err.contains("b_1"),
        "{}",
        text(&o)
    );
}

/// A start whose handler does not exist fails at once as a failed run with one error naming
/// the function, instead of being redelivered and resumed until the queue gives up.
#[test]
fn an_unregistered_handler_fails_the_run_once() {
    let dir = tempfile::tempdir().expect("dir");
    let def = write(
        dir.path(),
        "typo.yaml",
        "workflow: typo
functions:
  - {name: a, handler: incc}
",
    );
    let o = joint()
        .args(["run", &def, "--input", "1", "--json", "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .expect("joint");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["status"], "failed", "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.contains("HandlerNotFound") && e.contains("'incc'"), "{e}");
    assert_eq!(out.matches("HandlerNotFound").count(), 1, "{}", text(&o));
    assert!(o.stdout.len() + o.stderr.len() < 4096, "{}", text(&o));
}

/// `validate` knows this binary's handlers: a typo is an error with a suggestion.
#[test]
fn validate_refuses_a_handler_the_binary_does_not_have() {
    let dir = tempfile::tempdir().expect("dir");
    let def = write(
        dir.path(),
        "typo.yaml",
        "workflow: typo
functions:
  - {name: a, handler: incc, next: [{to: b}]}
  - {name: b, command: [cat]}
",
    );
    let o = joint().args(["validate", &def]).output().expect("joint");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("function 'a' uses handler 'incc'") && err.contains("did you mean 'inc'?"),
        "{}",
        text(&o)
    );
}

/// `joint status` opens the state directory read-only: it writes nothing, not even the purge of
/// expired state that opening for a run does.
#[test]
fn status_only_reads_the_state_directory() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let def = write(
        dir.path(),
        "chain.yaml",
        "workflow: chain
functions:
  - {name: a, handler: inc, next: [{to: b}]}
  - {name: b, handler: inc}
",
    );
    let o = joint()
        .args([
            "run",
            &def,
            "--input",
            "1",
            "--keep",
            "--run-id",
            "r1",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .expect("joint");
    assert!(o.status.success(), "{}", text(&o));
    let db = state.join("local").join("coord.db");
    let before = std::fs::read(&db).expect("db");
    let o = joint()
        .args(["status", "r1", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .expect("joint");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"], 3, "{v}");
    assert_eq!(
        std::fs::read(&db).expect("db"),
        before,
        "status wrote to the store"
    );
}

/// The process running a workflow is killed in the middle (SIGKILL, between two instances): the
/// events it had accepted are on disk, and the next `joint run` of that run id takes them over
/// and finishes the run — nobody has to know to run `joint resume`.
#[test]
fn a_killed_run_is_finished_by_the_next_process() {
    let dir = tempfile::tempdir().expect("dir");
    let mark = dir.path().join("killed-once");
    let def = write(
        dir.path(),
        "kill.yaml",
        &format!(
            "workflow: kill
functions:
  - {{name: a, handler: inc, next: [{{to: b}}]}}
  - name: b
    command: [sh, -c, 'if [ ! -e {m} ]; then touch {m}; kill -9 $PPID; sleep 5; fi; cat']
    next: [{{to: c}}]
  - {{name: c, handler: inc}}
",
            m = mark.display()
        ),
    );
    let state = dir.path().join("state");
    let run = |extra: &[&str]| {
        joint()
            .args([
                "run",
                &def,
                "--input",
                "1",
                "--run-id",
                "k1",
                "--json",
                "--state-dir",
            ])
            .arg(&state)
            .args(extra)
            .output()
            .expect("joint")
    };
    let first = run(&[]);
    assert_eq!(
        first.status.code(),
        None,
        "killed by a signal: {}",
        text(&first)
    );
    assert!(mark.exists());
    let second = run(&[]);
    assert!(second.status.success(), "{}", text(&second));
    let v: serde_json::Value =
        serde_json::from_slice(&second.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&second)));
    assert_eq!(v["output"], 3, "{v}");
    assert!(
        v["queue"]["recovered"].as_u64().unwrap_or(0) >= 1,
        "the dead process's event was taken over: {v}"
    );
}

/// Two processes on one run id: the second waits for the first's events instead of calling
/// the run stalled, and reports the same result.
#[test]
fn a_second_process_on_a_running_run_waits_for_it() {
    let dir = tempfile::tempdir().expect("dir");
    let def = write(
        dir.path(),
        "slow.yaml",
        "workflow: slow
functions:
  - {name: a, handler: inc, next: [{to: b}]}
  - {name: b, command: [sh, -c, 'sleep 2; cat'], next: [{to: c}]}
  - {name: c, handler: inc}
",
    );
    let state = dir.path().join("state");
    let cmd = || {
        let mut c = joint();
        c.args([
            "run",
            &def,
            "--input",
            "1",
            "--run-id",
            "two",
            "--json",
            "--no-resume",
            "--state-dir",
        ])
        .arg(&state);
        c
    };
    let first = cmd()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("first");
    // Let the first process reach `b` before the second one starts.
    std::thread::sleep(Duration::from_millis(700));
    let second = cmd().output().expect("second");
    let first = first.wait_with_output().expect("first");
    for o in [&first, &second] {
        assert!(o.status.success(), "{}", text(o));
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)));
        assert_eq!(v["output"], 3, "{v}");
    }
}
