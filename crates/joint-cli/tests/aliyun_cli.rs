//! `joint` with an `aliyun` cloud, end to end through the binary: `joint serve` hosts the
//! workflow behind its FC 3.0, OSS and Tablestore endpoints (checking every signature),
//! `joint aliyun create-table` creates the coordination table, and `joint run --clouds`
//! runs the chain with its middle function on `aliyun`; the output equals the all-local run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const AK: &str = "joint-cli-test-ak";
const SK: &str = "joint-cli-test-secret";

fn joint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joint"));
    c.env("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN");
    c
}

/// A `joint serve` child, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(definition: &Path, state: &Path) -> (Serve, serde_json::Map<String, Value>) {
    let mut child = joint()
        .arg("serve")
        .arg(definition)
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", "fc=127.0.0.1:0"])
        .args(["--listen", "oss=127.0.0.1:0"])
        .args(["--listen", "ots=127.0.0.1:0"])
        .args(["--set", &format!("aliyun.access_key_id={AK}")])
        .args(["--set", &format!("aliyun.access_key_secret={SK}")])
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
    let urls = v["listening"].as_object().expect("listening").clone();
    (guard, urls)
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run joint");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "joint failed ({}): stdout {stdout}\nstderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout:?}: {e}"))
}

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn chain_with_a_function_on_aliyun_matches_the_local_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = example("chain.yaml");
    let local_def = dir.path().join("chain.yaml");
    std::fs::write(&local_def, &src).expect("write");
    // `second` (and its cloud) moves to `aliyun`, without a failover (so the run cannot
    // succeed around FC); `first` and `third` stay on local-a.
    let split_src = src
        .replace("local-b", "aliyun")
        .replace("    failover: [local-a]\n", "");
    assert!(!split_src.contains("failover"), "{split_src}");
    assert_ne!(split_src, src);
    let split_def = dir.path().join("chain-aliyun.yaml");
    std::fs::write(&split_def, &split_src).expect("write");

    let want = run_json(
        joint()
            .arg("run")
            .arg(&local_def)
            .args(["--input", "3", "--json", "--timeout", "60"])
            .arg("--state-dir")
            .arg(dir.path().join("local-state")),
    );
    assert_eq!(want["status"], "succeeded", "{want}");

    // joint serve hosts the workflow: `second` runs there when FC is invoked, and so does
    // `third`, on the local-a cloud it shares (same state directory) with `joint run`.
    let state = dir.path().join("state");
    let (_serve, urls) = serve(&split_def, &state);
    let url = |n: &str| urls[n].as_str().expect("url").to_string();

    let created = run_json(
        joint()
            .args(["aliyun", "create-table", "--endpoint", &url("ots")])
            .args([
                "--instance",
                "joint",
                "--table",
                "joint",
                "--ttl-secs",
                "3600",
            ]),
    );
    assert_eq!(created["created"], true, "{created}");
    let again = run_json(
        joint()
            .args(["aliyun", "create-table", "--endpoint", &url("ots")])
            .args(["--instance", "joint", "--table", "joint"]),
    );
    assert_eq!(again["created"], false, "the table exists already: {again}");

    let deploy = dir.path().join("deploy.yaml");
    std::fs::write(
        &deploy,
        format!(
            "clouds:\n  aliyun:\n    backend: aliyun\n    region: cn-hangzhou\n    account_id: \"1234567890123456\"\n    fc_endpoint: {}\n    oss_endpoint: {}\n    bucket: joint\n    ots_endpoint: {}\n    instance: joint\n    table: joint\n",
            url("fc"),
            url("oss"),
            url("ots")
        ),
    )
    .expect("write deploy.yaml");
    let got = run_json(
        joint()
            .arg("run")
            .arg(&split_def)
            .args(["--input", "3", "--json", "--timeout", "60"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--clouds")
            .arg(&deploy),
    );
    assert_eq!(got["status"], "succeeded", "{got}");
    assert_eq!(
        got["output"], want["output"],
        "split run {got} differs from the all-local run {want}"
    );
}

#[test]
fn an_unknown_aliyun_setting_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let def = dir.path().join("chain.yaml");
    std::fs::write(&def, example("chain.yaml").replace("local-b", "aliyun")).expect("write");
    let deploy = dir.path().join("deploy.yaml");
    std::fs::write(
        &deploy,
        "clouds:\n  aliyun: {backend: aliyun, region: cn-hangzhou, bucket_name: joint}\n",
    )
    .expect("write");
    let out = joint()
        .arg("run")
        .arg(&def)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--clouds")
        .arg(&deploy)
        .output()
        .expect("run joint");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting 'bucket_name'"), "{err}");
}
