//! `joint serve` runs its hosted functions with the configuration of a deployed function: with
//! `JOINT_KEYS` set, unsigned and forged events sent to its Lambda endpoint are refused and
//! commit nothing, and a correctly signed event runs the workflow to its end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use joint_core::envelope::{ENVELOPE_VERSION, Envelope, Input};
use joint_core::sign::Keyring;
use serde_json::{Value, json};

const K1: &str = "k1:000102030405060708090a0b0c0d0e0f";
const K2: &str = "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A `joint serve` child, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(state: &Path, keys: &str) -> (Serve, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_joint"))
        .arg("serve")
        .arg(example("chain.yaml"))
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", "lambda=127.0.0.1:0"])
        .env("JOINT_KEYS", keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start joint serve");
    let out = child.stdout.take().expect("stdout");
    let guard = Serve(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("read joint serve's first line");
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("joint serve printed {line:?}: {e}"));
    let url = v["listening"]["lambda"].as_str().expect("lambda url");
    (guard, url.trim_start_matches("http://").to_string())
}

/// A synchronous Lambda Invoke of `function` over a plain socket: (status, headers, body).
fn invoke(addr: &str, function: &str, body: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let head = format!(
        "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, headers.to_ascii_lowercase(), body.to_string())
}

fn status(state: &Path, run: &str) -> (Option<i32>, Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_joint"))
        .args(["status", run, "--json", "--state-dir"])
        .arg(state)
        .output()
        .expect("joint status");
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v)
}

fn start_event(run: &str) -> Envelope {
    let src = std::fs::read_to_string(example("chain.yaml")).expect("chain.yaml");
    let w = joint_core::compile::load("chain.yaml", &src).expect("definition");
    Envelope {
        v: ENVELOPE_VERSION,
        workflow: w.name.clone(),
        workflow_id: run.into(),
        function: "first".into(),
        step: 0,
        branch: vec![],
        vars: Default::default(),
        input: Input::Inline(json!(3)),
        home: "local-a".into(),
        def_hash: w.hash.clone(),
        trace: None,
        tag: None,
    }
}

#[test]
fn joint_serve_refuses_unsigned_and_forged_events_when_keys_are_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (_serve, addr) = serve(&state, K1);

    // Unsigned: refused as a function error, nothing committed.
    let unsigned = start_event("unsigned-run");
    let (code, headers, body) = invoke(&addr, "first", &unsigned.encode());
    assert_eq!(code, 200, "{headers}\n{body}");
    assert!(
        headers.contains("x-amz-function-error: unhandled"),
        "{headers}"
    );
    assert!(body.contains("not signed"), "{body}");

    // Forged: signed with a key the deployment does not have.
    let mut forged = start_event("forged-run");
    Keyring::parse(K2).expect("k2").sign(&mut forged);
    let (code, headers, body) = invoke(&addr, "first", &forged.encode());
    assert_eq!(code, 200, "{headers}\n{body}");
    assert!(
        headers.contains("x-amz-function-error: unhandled"),
        "{headers}"
    );
    assert!(body.contains("key 'k2'"), "{body}");
    assert!(!body.contains("f0f1f2"), "no secret in errors: {body}");

    for run in ["unsigned-run", "forged-run"] {
        let (code, v) = status(&state, run);
        assert_eq!(code, Some(1), "{run} must have committed nothing: {v}");
    }

    // Signed with the deployment's key: runs to the end (3 -> 6).
    let mut good = start_event("signed-run");
    Keyring::parse(K1).expect("k1").sign(&mut good);
    let (code, headers, body) = invoke(&addr, "first", &good.encode());
    assert_eq!(code, 200, "{headers}\n{body}");
    assert!(
        !headers.contains("x-amz-function-error"),
        "{headers}\n{body}"
    );
    let mut last = Value::Null;
    for _ in 0..600 {
        let (_, v) = status(&state, "signed-run");
        if v["status"] == "succeeded" {
            assert_eq!(v["output"], 6, "{v}");
            return;
        }
        last = v;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the signed run did not finish: {last}");
}
