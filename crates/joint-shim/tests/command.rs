//! Command functions run as real processes: input and output through pipes, the process group
//! killed when the call ends or is abandoned, the documented environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use joint_shim::{CommandHandler, Context, Handler};
use serde_json::{Value, json};

fn ctx(attempt: u32) -> Context {
    Context {
        workflow_id: "run-1".into(),
        instance: "run-1/f_1".into(),
        function: "f".into(),
        cloud: "local-a".into(),
        attempt,
        vars: BTreeMap::new(),
    }
}

fn sh(script: &str) -> CommandHandler {
    CommandHandler::new(vec!["sh".into(), "-c".into(), script.into()])
}

/// Whether process `pid` is running (a zombie waiting for a parent that is not ours to reap
/// runs nothing). Also returns its process group.
fn running(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp …; comm may contain spaces, so split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(2)?.parse().ok()
}

/// Wait (bounded, so a regression fails instead of hanging) until none of `pids` runs.
async fn assert_gone(pids: &[u32], what: &str) {
    for _ in 0..1000 {
        if pids.iter().all(|p| running(*p).is_none()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left: Vec<_> = pids.iter().filter(|p| running(**p).is_some()).collect();
    panic!("{what}: processes {left:?} of the command are still running");
}

/// The `shell_pid sleep_pid` line a test command writes to `file` once it has started.
fn started(file: &Path) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<u32>().ok());
    let (Some(Some(a)), Some(Some(b))) = (it.next(), it.next()) else {
        return None;
    };
    Some((a, b))
}

#[tokio::test]
async fn an_input_larger_than_a_pipe_buffer_goes_through_cat() {
    // 200 KB: far over the 64 KB a pipe holds, so writing all of stdin before reading stdout
    // deadlocks (cat blocks writing its output, we block writing its input).
    let big = "y".repeat(200 * 1024);
    let handler = sh("cat");
    let input = json!([big, 1]);
    let c = ctx(1);
    let out = tokio::time::timeout(Duration::from_secs(60), handler.call(input.clone(), &c))
        .await
        .expect("the command deadlocked on its pipes: stdin was written before stdout was read");
    assert_eq!(out.unwrap(), input);
}

#[tokio::test]
async fn a_dropped_call_kills_the_commands_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("started");
    // The shell stays the group leader and the sleep is a separate process of its group.
    let handler = sh(&format!(
        "sleep 30 & echo \"$$ $!\" > '{}'; wait",
        file.display()
    ));
    let c = ctx(1);
    let mut call = handler.call(json!(null), &c);
    let (shell, sleep) = loop {
        tokio::select! {
            r = &mut call => panic!("the command ended early: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                if let Some(p) = started(&file) {
                    break p;
                }
            }
        }
    };
    assert!(running(sleep).is_some());
    // What a timeout, a runtime shutdown or a cancelled request does to the call.
    drop(call);
    assert_gone(&[shell, sleep], "after the call was dropped").await;
}

#[tokio::test]
async fn what_a_command_leaves_running_is_killed_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("started");
    // The background sleep does not hold the pipes: the shell exits at once and leaves it.
    let handler = sh(&format!(
        "sleep 30 >/dev/null 2>&1 </dev/null & echo \"$$ $!\" > '{}'; echo 7",
        file.display()
    ));
    let out = handler.call(json!(null), &ctx(1)).await;
    assert_eq!(out.unwrap(), json!(7));
    let (shell, sleep) = started(&file).expect("the command wrote its pids");
    assert_gone(&[shell, sleep], "after the command exited").await;
}

#[tokio::test]
async fn a_command_runs_as_the_leader_of_its_own_process_group() {
    let out = sh("echo \"[$$, $(cut -d' ' -f5 /proc/$$/stat)]\"")
        .call(json!(null), &ctx(1))
        .await
        .unwrap();
    assert_eq!(
        out[0], out[1],
        "pid and process group of the command: {out}"
    );
}

#[tokio::test]
async fn the_documented_environment_reaches_the_command() {
    let handler = sh(
        r#"printf '{"run":"%s","instance":"%s","function":"%s","cloud":"%s","attempt":"%s"}' "$JOINT_RUN" "$JOINT_INSTANCE" "$JOINT_FUNCTION" "$JOINT_CLOUD" "$JOINT_ATTEMPT""#,
    );
    let out = handler.call(json!(null), &ctx(3)).await.unwrap();
    assert_eq!(
        out,
        json!({"run": "run-1", "instance": "run-1/f_1", "function": "f", "cloud": "local-a", "attempt": "3"})
    );
}

#[tokio::test]
async fn a_failing_command_reports_the_end_of_its_stderr() {
    // 100 KB of stderr: drained while the command runs (it would block on a full pipe
    // otherwise), only the end is kept.
    let handler = sh("head -c 100000 /dev/zero | tr '\\0' a >&2; echo ' the end' >&2; exit 3");
    let e = handler.call(json!(null), &ctx(1)).await.unwrap_err();
    assert_eq!(e.kind, "CommandFailed");
    assert!(e.message.contains("exit status: 3"), "{e}");
    assert!(e.message.ends_with("the end"), "{e}");
    assert!(
        e.message.len() < 3000,
        "the whole stderr was kept: {} bytes",
        e.message.len()
    );
}

#[tokio::test]
async fn output_that_is_not_json_is_a_bad_command_output() {
    let e = sh("echo not json")
        .call(Value::Null, &ctx(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "BadCommandOutput");
    assert!(e.message.contains("not json"), "{e}");
}

#[tokio::test]
async fn the_functions_env_reaches_the_command_and_cannot_override_joint_variables() {
    let env = BTreeMap::from([
        ("MODE".to_string(), "fast lane".to_string()),
        ("EMPTY".to_string(), String::new()),
        // Refused by validation; set anyway, the runtime's value wins.
        ("JOINT_ATTEMPT".to_string(), "99".to_string()),
    ]);
    let handler = sh(r#"printf '{"mode":"%s","empty":"%s","set":"%s","attempt":"%s"}' "$MODE" "$EMPTY" "${EMPTY+yes}" "$JOINT_ATTEMPT""#)
        .with_env(env);
    let out = handler.call(json!(null), &ctx(2)).await.unwrap();
    assert_eq!(
        out,
        json!({"mode": "fast lane", "empty": "", "set": "yes", "attempt": "2"})
    );
}
