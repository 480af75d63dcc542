//! The `joint` binary, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn joint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_joint"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn ex(name: &str) -> String {
    examples().join(name).to_string_lossy().to_string()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_json(def: &str, input: &str, extra: &[&str], state: &Path) -> (Value, Output) {
    let o = joint()
        .args(["run", def, "--json", "--input", input, "--state-dir"])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "--json prints exactly one JSON object: {}",
        text(&o)
    );
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (v, o)
}

fn definitions(dir: &Path, out: &mut Vec<PathBuf>) {
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_dir() {
            // latency profiles and inputs are not workflows
            if p.file_name()
                .is_some_and(|n| n != "latency" && n != "inputs")
            {
                definitions(&p, out);
            }
        } else if p
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(p);
        }
    }
}

#[test]
fn every_example_validates() {
    let mut files = Vec::new();
    definitions(&examples(), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for p in files {
        let o = joint().arg("validate").arg(&p).output().unwrap();
        assert!(o.status.success(), "{}: {}", p.display(), text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: workflow"));
    }
}

#[test]
fn examples_run_to_their_documented_results() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, Value)] = &[
        ("chain.yaml", "3", json!(6)),
        ("parallel.yaml", "3", json!(13)),
        ("choice.yaml", "5", json!(6)),
        ("choice.yaml", "50", json!(2500)),
        ("map.yaml", r#"{"n": 4}"#, json!(14)),
        ("by_redundant.yaml", "1", json!([2])),
        ("commands.yaml", "3", json!({"value": 6, "even": true})),
        ("paper-subgraphs.json", "3", json!(13)),
    ];
    for (def, input, want) in cases {
        let (v, o) = run_json(&ex(def), input, &[], dir.path());
        assert_eq!(v["status"], "succeeded", "{def}: {}", text(&o));
        assert_eq!(&v["output"], want, "{def} with {input}");
        for k in ["run_id", "makespan_ms", "instances", "ops"] {
            assert!(v.get(k).is_some(), "{def}: key {k} missing in {v}");
        }
        for k in ["reads", "writes", "invokes", "blob_puts", "blob_gets"] {
            assert!(v["ops"][k].is_u64(), "{def}: ops.{k} missing in {v}");
        }
    }
    let (v, _) = run_json(&ex("cycle.yaml"), r#"{"i": 0}"#, &[], dir.path());
    assert_eq!(v["output"]["i"], 5, "{v}");
}

#[test]
fn the_same_run_id_returns_the_first_result_without_running_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = run_json(&ex("parallel.yaml"), "3", &["--run-id", "r-1"], dir.path());
    assert_eq!(a["output"], 13);
    assert_eq!(a["reused"], false);
    // The same input: the first result, nothing runs.
    let (b, o) = run_json(&ex("parallel.yaml"), "3", &["--run-id", "r-1"], dir.path());
    assert_eq!(b["output"], 13, "{}", text(&o));
    assert_eq!(b["reused"], true);
    assert_eq!(b["ops"]["invokes"], 0);
    assert_eq!(b["instances"], 0);
    // Another input (or another workflow): refused, like Step Functions' ExecutionAlreadyExists.
    let (c, o) = run_json(&ex("parallel.yaml"), "4", &["--run-id", "r-1"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(c["status"], "error", "{c}");
    assert_eq!(c["run_id"], "r-1", "{c}");
    assert!(
        c["error"]
            .as_str()
            .is_some_and(|e| e.contains("AlreadyExists") && e.contains("different input")),
        "{c}"
    );
}

#[test]
fn chaos_gives_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..4 {
        let chaos = format!("seed={seed},crash=0.1,dup=0.2,drop=0.1,throttle=0.1");
        let (v, o) = run_json(
            &ex("map.yaml"),
            r#"{"n": 6}"#,
            &["--chaos", &chaos],
            dir.path(),
        );
        assert_eq!(v["output"], 55, "{}", text(&o));
    }
}

#[test]
fn a_failing_function_fails_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("f.yaml");
    std::fs::write(
        &def,
        "workflow: f\nfunctions:\n  - {name: a, handler: inc, next: [{to: b}]}\n  - {name: b, handler: fail}\n",
    )
    .unwrap();
    let o = joint()
        .args(["run"])
        .arg(&def)
        .args(["--input", "1", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAILED"), "{}", text(&o));
    assert!(out.contains("function 'b'"), "{}", text(&o));
    assert!(out.contains("fail was asked to fail"), "{}", text(&o));
}

#[test]
fn a_relative_command_path_resolves_against_the_definitions_directory() {
    use std::os::unix::fs::PermissionsExt;
    let project = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let steps = project.path().join("steps");
    std::fs::create_dir(&steps).unwrap();
    let script = steps.join("script.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"note from $JOINT_FUNCTION\" >&2\nread -r x\necho \"[$x, \\\"$MODE\\\", $JOINT_ATTEMPT]\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let def = project.path().join("wf.yaml");
    std::fs::write(
        &def,
        "workflow: rel\nfunctions:\n  - { name: step, command: [./steps/script.sh], env: { MODE: fast }, timeout: 30 }\n",
    )
    .unwrap();
    // Run from another directory: `./steps/script.sh` is next to the definition, not here.
    let o = joint()
        .current_dir(elsewhere.path())
        .env("JOINT_LOG", "joint_shim=debug")
        .args(["run"])
        .arg(&def)
        .args(["--json", "--input", "41", "--state-dir"])
        .arg(elsewhere.path().join("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["status"], "succeeded", "{}", text(&o));
    assert_eq!(v["output"], json!([41, "fast", 1]), "{}", text(&o));
    // A succeeding command's stderr is not lost: it is logged at debug level with the instance.
    let stderr = String::from_utf8_lossy(&o.stderr);
    let run_id = v["run_id"].as_str().unwrap();
    assert!(
        stderr.lines().any(|l| l.contains("note from step")
            && l.contains("instance")
            && l.contains(&format!("{run_id}/step_0"))),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_definitions_are_refused_with_the_place_of_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("bad.yaml");
    std::fs::write(
        &def,
        "workflow: bad\nfunctions:\n  - name: a\n    handler: inc\n    next: [{to: bee}]\n  - name: b\n    handler: inc\n",
    )
    .unwrap();
    for cmd in ["validate", "run", "compile"] {
        let o = joint().arg(cmd).arg(&def).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("unknown function 'bee'"),
            "{cmd}: {}",
            text(&o)
        );
        assert!(err.contains("at 5:"), "line of the edge: {}", text(&o));
    }
    let o = joint()
        .args(["run", &ex("chain.yaml"), "--input", "{oops"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--input is not JSON"),
        "{}",
        text(&o)
    );
    let o = joint()
        .args(["run", &ex("chain.yaml"), "--chaos", "crash=7"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("between 0 and 1"),
        "{}",
        text(&o)
    );
}

#[test]
fn compile_writes_subgraphs_that_run_as_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let o = joint()
        .args(["compile", &ex("parallel.yaml")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let subs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "A")
        .unwrap();
    assert_eq!(a["Start"], true);
    assert_eq!(a["Next"][0]["InvokeMode"], "Sequence");
    assert!(a["Next"][0]["FaaS"].is_string());
    let out = dir.path().join("subgraphs");
    let o = joint()
        .args(["compile", &ex("parallel.yaml"), "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("D.json").exists());
    let (v, o) = run_json(&out.to_string_lossy(), "3", &[], dir.path());
    assert_eq!(v["output"], 13, "{}", text(&o));
}

#[test]
fn status_and_gc_of_a_kept_run() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = run_json(
        &ex("parallel.yaml"),
        "3",
        &["--run-id", "kept", "--keep"],
        dir.path(),
    );
    assert_eq!(v["output"], 13);
    let o = joint()
        .args(["status", "kept", "--json", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["output"], 13);
    let names: Vec<&str> = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"kept/B_1-bindex-0"));
    assert!(names.contains(&"kept/D_2"));
    let o = joint()
        .args(["gc", "kept", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = joint()
        .args(["status", "kept", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("succeeded") && out.contains("collected"),
        "{}",
        text(&o)
    );
    let o = joint()
        .args(["status", "nope", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run 'nope'"));
}

#[test]
fn by_batch_starts_one_run_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        let (v, o) = run_json(&ex("by_batch.yaml"), &i.to_string(), &[], dir.path());
        assert_eq!(v["status"], "succeeded", "{}", text(&o));
        assert_eq!(v["output"], i + 1);
    }
    let o = joint()
        .args(["status", "by_batch.batch.total.0", "--json", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["output"], 10, "1+2+3+4");
}

#[test]
fn signed_runs_with_joint_keys_and_bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = joint()
        .env("JOINT_KEYS", "k1:000102030405060708090a0b0c0d0e0f")
        .args([
            "run",
            &ex("parallel.yaml"),
            "--json",
            "--input",
            "3",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["output"], 13);
    let o = joint()
        .env("JOINT_KEYS", "k1:0001")
        .args(["run", &ex("parallel.yaml"), "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("JOINT_KEYS") && err.contains("at least 16"),
        "{}",
        text(&o)
    );
    assert!(!err.contains("0001"), "the secret is not echoed: {err}");
}

/// Credentials and keys never appear in logs, errors or Debug output: a verbose run against
/// unreachable AWS and Aliyun endpoints, with every secret set, must not print any of them.
#[test]
fn secrets_never_appear_in_a_verbose_failing_run() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy.yaml");
    std::fs::write(
        &deploy,
        "clouds:\n  aws: {backend: aws, region: us-east-1, endpoint_url: 'http://127.0.0.1:9', table: joint, bucket: joint-bucket}\n  aliyun: {backend: aliyun, region: cn-hangzhou, account_id: '123', fc_endpoint: 'http://127.0.0.1:9', oss_endpoint: 'http://127.0.0.1:9', bucket: joint-bucket, ots_endpoint: 'http://127.0.0.1:9', instance: jointinst, table: joint}\n",
    )
    .unwrap();
    let def = dir.path().join("w.yaml");
    std::fs::write(
        &def,
        "workflow: w\nfunctions:\n  - {name: a, cloud: local-a, handler: inc, next: [{to: b}]}\n  - {name: b, cloud: aws, failover: [aliyun], handler: inc}\n",
    )
    .unwrap();
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "AwsSecretValue0123456789"),
        ("AWS_SESSION_TOKEN", "AwsSessionToken0123456789"),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "AliyunSecretValue0123456789",
        ),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "AliyunStsToken0123456789"),
    ];
    let key_hex = "5ec2e75ec2e75ec2e75ec2e75ec2e75e";
    let mut cmd = joint();
    cmd.env("JOINT_LOG", "trace")
        .env("JOINT_KEYS", format!("k1:{key_hex}"))
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIEXAMPLE");
    for (k, v) in secrets {
        cmd.env(k, v);
    }
    let o = cmd
        .args(["run"])
        .arg(&def)
        .args(["--input", "1", "--timeout", "3", "--clouds"])
        .arg(&deploy)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "the clouds are unreachable: {}",
        text(&o)
    );
    let all = text(&o);
    assert!(
        all.contains("127.0.0.1:9") && all.contains("did not finish within 3.0 s"),
        "the run really tried the unreachable clouds: {all}"
    );
    for (k, v) in secrets {
        assert!(!all.contains(v), "{k} leaked:\n{all}");
    }
    assert!(!all.contains(key_hex), "the signing key leaked:\n{all}");
}

#[test]
fn a_run_that_lost_events_is_resumed_by_the_runner_or_by_joint_resume() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // By default the runner resumes a stalled run itself.
    let (v, o) = run_json(
        &ex("demo.yaml"),
        r#"{"n": 8}"#,
        // A fixed run id: chaos decisions hash the events, which carry the run id.
        &["--chaos", "seed=3,lose=0.3", "--run-id", "lossy"],
        state,
    );
    assert_eq!(v["status"], "succeeded", "{}", text(&o));
    assert_eq!(v["output"], 141, "{}", text(&o));
    assert!(
        v["queue"]["lost"].as_u64().unwrap() > 0 && v["resumes"].as_u64().unwrap() > 0,
        "{v}"
    );

    // `joint ARGS… --state-dir STATE`.
    let in_state = |args: &[&str]| {
        let mut c = joint();
        c.args(args).arg("--state-dir").arg(state);
        c
    };
    let stalled_run = |run_id: &str| {
        let mut c = in_state(&["run", &ex("demo.yaml"), "--input", r#"{"n": 8}"#]);
        c.args([
            "--run-id",
            run_id,
            "--chaos",
            "seed=3,lose=0.3",
            "--no-resume",
        ]);
        c
    };

    // With --no-resume the run stalls and says so; its state stays for `joint resume`.
    let o = stalled_run("stuck").output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("stalled"), "{}", text(&o));
    let resume = |extra: &[&str]| in_state(&["resume", "stuck"]).args(extra).output().unwrap();
    // Its invocations are within their one-hour deadlines: nothing is done without --force.
    let o = resume(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("in progress"), "{}", text(&o));
    let o = resume(&["--force", "--keep"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("re-invoked (") && out.contains("succeeded") && out.contains("141"),
        "{out}"
    );

    // Kept state: re-run from the Map's target; same result, the branches ran again.
    let o = resume(&["--from", "square", "--json"]);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["run"]["output"], 141, "{v}");
    assert_eq!(v["resume"]["state"], "resumed", "{v}");
    assert!(v["resume"]["deleted"].as_array().unwrap().len() >= 8, "{v}");

    // Collected now (no --keep): resuming says it finished; a bad function name is an error.
    let o = resume(&[]);
    assert!(text(&o).contains("already finished"), "{}", text(&o));
    let o = in_state(&["resume", "nope"]).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("no run 'nope'"),
        "{}",
        text(&o)
    );

    // With a zero deadline the lost events are overdue at once: status names them and a plain
    // `joint resume` (no --force) re-drives them.
    let o = stalled_run("late")
        .env("JOINT_INVOKE_DEADLINE_SECS", "0")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let o = in_state(&["status", "late"]).output().unwrap();
    assert!(text(&o).contains("lost events:"), "{}", text(&o));
    let o = in_state(&["resume", "late"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("re-invoked (") && text(&o).contains("141"),
        "{}",
        text(&o)
    );

    // One sweeper pass over the state directory finds nothing left to do.
    let o = in_state(&["sweep", "--definition", &ex("demo.yaml")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 unfinished runs"), "{}", text(&o));
}

#[test]
fn the_randomized_fault_run_loses_nothing_and_commits_once() {
    let o = joint()
        .args([
            "bench", "faults", "--runs", "14", "--kills", "0", "--seed", "5",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // store | runs | completed (the violation columns are checked by tests/fault_bench.rs)
    assert!(out.contains("| sqlite | 14 | 14 |"), "{out}");
    for kind in [
        "crash",
        "dup",
        "concurrent",
        "late",
        "drop",
        "throttle",
        "lose",
        "hang",
    ] {
        assert!(out.contains(&format!("| {kind} |")), "{out}");
    }
}
