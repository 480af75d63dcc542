//! `joint bench faults`, briefly, on every store that is available: SQLite with process kills,
//! Tablestore on an in-process `joint serve`, and DynamoDB on ministack
//! (`JOINT_TEST_MINISTACK_URL`, which scripts/test.sh starts; without it that case is skipped
//! with a message, or fails under `JOINT_TEST_STRICT=1`). What must hold: the command succeeds,
//! its table has a row for the store with every run completed and no lost run, wrong output,
//! double commit or orphan.

use std::process::{Command, Output};

fn joint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_joint"));
    c.env_remove("JOINT_MINISTACK_URL")
        .env_remove("JOINT_TEST_MINISTACK_URL");
    c
}

fn strict() -> bool {
    std::env::var("JOINT_TEST_STRICT").is_ok_and(|v| v == "1")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The cells of the table row whose first cell is `store`.
fn row(out: &str, store: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.starts_with(&format!("| {store} |")))
        .unwrap_or_else(|| panic!("no row for {store} in:\n{out}"))
        .split('|')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The header of the main table, to find columns by name.
fn column(out: &str, name: &str) -> usize {
    let header: Vec<String> = out
        .lines()
        .find(|l| l.starts_with("| store | runs |"))
        .unwrap_or_else(|| panic!("no table in:\n{out}"))
        .split('|')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column '{name}' in {header:?}"))
}

fn check(out: &str, store: &str, at_least: u64) {
    let r = row(out, store);
    let n = |c: &str| -> u64 {
        r[column(out, c)]
            .parse()
            .unwrap_or_else(|_| panic!("{store}: column {c} is not a number: {r:?}"))
    };
    assert!(n("runs") >= at_least, "{store}: {r:?}");
    assert_eq!(n("completed"), n("runs"), "{store}: {r:?}");
    for c in [
        "lost runs",
        "wrong outputs",
        "double commits",
        "orphans after retention/GC",
    ] {
        assert_eq!(n(c), 0, "{store}: {c}: {r:?}");
    }
}

#[test]
fn the_fault_bench_passes_on_sqlite_with_kills_and_on_tablestore() {
    let o = joint()
        .args([
            "bench",
            "faults",
            "--runs",
            "24",
            "--cloud-runs",
            "24",
            "--kills",
            "3",
            "--store",
            "sqlite,tablestore",
            "--seed",
            "7",
        ])
        .output()
        .expect("run joint");
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    let out = String::from_utf8_lossy(&o.stdout);
    check(&out, "sqlite", 24);
    check(&out, "sqlite (process kills)", 3);
    check(&out, "tablestore", 24);
    // The kills happened: the child processes were SIGKILLed and restarted.
    let kills = row(&out, "sqlite (process kills)");
    let k: u64 = kills[column(&out, "kill")].parse().expect("kills");
    assert!(k > 0, "no process was killed: {kills:?}\n{all}");
}

#[test]
fn the_fault_bench_passes_on_dynamodb() {
    let url = match std::env::var("JOINT_TEST_MINISTACK_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => {
            assert!(
                !strict(),
                "JOINT_TEST_MINISTACK_URL is not set, but JOINT_TEST_STRICT=1"
            );
            eprintln!(
                "skipped the DynamoDB fault bench: set JOINT_TEST_MINISTACK_URL (scripts/test.sh starts ministack)"
            );
            return;
        }
    };
    let o = joint()
        .args([
            "bench",
            "faults",
            "--cloud-runs",
            "24",
            "--kills",
            "0",
            "--store",
            "dynamodb",
            "--dynamodb",
            &url,
            "--seed",
            "7",
        ])
        .output()
        .expect("run joint");
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    check(&String::from_utf8_lossy(&o.stdout), "dynamodb", 24);
}
