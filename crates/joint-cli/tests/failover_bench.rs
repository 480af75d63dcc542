//! `joint bench failover` through the provider shims, briefly (3 s, a run every 100 ms): cloud b
//! and its replica cloud c served by the AWS shim (Lambda through an in-process `joint serve`,
//! DynamoDB and S3 on moto) and the Aliyun shim (FC, OSS and Tablestore through `joint serve`).
//! What must hold, not timings: every run completes, none fails, some fail over.
//!
//! The AWS cases need moto: `JOINT_TEST_MOTO_URL` (scripts/test.sh starts it). Without it they
//! are skipped with a message, or fail under `JOINT_TEST_STRICT=1`.

use std::collections::BTreeMap;
use std::process::{Command, Output};

fn joint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joint"));
    // The test decides where moto is; nothing leaks in from the caller's environment.
    c.env_remove("JOINT_MOTO_URL")
        .env_remove("JOINT_TEST_MOTO_URL");
    c
}

fn strict() -> bool {
    std::env::var("JOINT_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// moto's URL, or None after saying why the test is skipped (a panic under strict).
fn moto(test: &str) -> Option<String> {
    match std::env::var("JOINT_TEST_MOTO_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                !strict(),
                "{test}: JOINT_TEST_MOTO_URL is not set, but JOINT_TEST_STRICT=1"
            );
            eprintln!("skipped {test}: set JOINT_TEST_MOTO_URL (scripts/test.sh starts moto)");
            None
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The counts of the `runs started N · completed N · …` line.
fn counts(o: &Output) -> BTreeMap<String, u64> {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("runs started "))
        .unwrap_or_else(|| panic!("no 'runs started' line: {}", text(o)));
    line.split(" · ")
        .map(|part| {
            let (label, n) = part
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("'{part}' in {line}"));
            let n = n
                .parse()
                .unwrap_or_else(|_| panic!("'{part}' in {line} does not end in a count"));
            (label.to_string(), n)
        })
        .collect()
}

/// Run the bench briefly with `backend` and check what must hold.
fn brief(backend: &str, moto: Option<&str>) -> Output {
    let mut c = joint();
    c.args([
        "bench",
        "failover",
        "--backend",
        backend,
        "--seconds",
        "3",
        "--interval-ms",
        "100",
    ]);
    if let Some(m) = moto {
        c.args(["--endpoint", m]);
    }
    let o = c.output().expect("run joint");
    assert!(o.status.success(), "{}", text(&o));
    let n = counts(&o);
    let started = n["runs started"];
    assert!(started >= 10, "a run every 100 ms for 3 s: {}", text(&o));
    assert_eq!(n["completed"], started, "every run completed: {}", text(&o));
    assert_eq!(n["failed"], 0, "{}", text(&o));
    assert_eq!(n["failed to start"], 0, "{}", text(&o));
    assert!(
        n["runs that failed over"] > 0,
        "runs in the outage fail over to cloud c: {}",
        text(&o)
    );
    o
}

#[test]
fn b_on_aws_failing_over_to_c_on_aliyun() {
    let Some(url) = moto("b_on_aws_failing_over_to_c_on_aliyun") else {
        return;
    };
    let o = brief("aws,aliyun", Some(&url));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--backend aws,aliyun"), "{out}");
    assert!(
        out.contains("cloud b: AWS shim") && out.contains(&format!("on moto at {url}")),
        "{out}"
    );
    assert!(out.contains("cloud c: Aliyun shim"), "{out}");
    assert!(out.contains("the network to cloud b's FaaS fails"), "{out}");
}

#[test]
fn b_on_aliyun_failing_over_to_c_on_aws() {
    let Some(url) = moto("b_on_aliyun_failing_over_to_c_on_aws") else {
        return;
    };
    let o = brief("aliyun,aws", Some(&url));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("cloud b: Aliyun shim") && out.contains("cloud c: AWS shim"),
        "{out}"
    );
}

#[test]
fn both_clouds_on_aliyun_need_no_emulator() {
    let o = brief("aliyun", None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("cloud b: Aliyun shim") && out.contains("cloud c: Aliyun shim"),
        "{out}"
    );
}

#[test]
fn aws_without_moto_is_an_error_naming_what_is_missing() {
    let o = joint()
        .args(["bench", "failover", "--backend", "aws", "--seconds", "3"])
        .output()
        .expect("run joint");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("moto") && err.contains("JOINT_MOTO_URL") && err.contains("--endpoint"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "{}", text(&o));

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = joint()
        .args(["bench", "failover", "--backend", "aws", "--seconds", "3"])
        .env("JOINT_MOTO_URL", &url)
        .output()
        .expect("run joint");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "moto server at {url} (from $JOINT_MOTO_URL) is not reachable"
        )),
        "{err}"
    );
}

#[test]
fn an_unknown_backend_is_named() {
    let o = joint()
        .args(["bench", "failover", "--backend", "aws,gcp"])
        .output()
        .expect("run joint");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--backend 'aws,gcp': unknown backend 'gcp' (known: local, aws, aliyun)"),
        "{err}"
    );
}
