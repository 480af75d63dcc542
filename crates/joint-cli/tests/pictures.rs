//! Pictures through the binary: `joint run --timeline` and `joint graph`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

fn joint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_joint"))
        .args(args)
        .output()
        .expect("the joint binary runs")
}

/// A minimal XML well-formedness check: every element opened is closed in order, attributes are
/// quoted, and `&` only starts an entity. Returns the element names in document order.
fn check_xml(text: &str) -> Vec<String> {
    let body = text
        .strip_prefix("<?xml")
        .and_then(|t| t.split_once("?>"))
        .map(|(_, rest)| rest)
        .unwrap_or(text);
    let mut stack: Vec<String> = vec![];
    let mut names = vec![];
    let mut rest = body;
    while let Some(i) = rest.find(['<', '&']) {
        let (before, at) = rest.split_at(i);
        assert!(
            stack.is_empty() || !before.contains('>'),
            "stray '>' in text: {before:?}"
        );
        if at.starts_with('&') {
            let end = at.find(';').expect("entity ends with ';'");
            let ent = &at[1..end];
            assert!(
                ["amp", "lt", "gt", "quot", "apos"].contains(&ent) || ent.starts_with('#'),
                "unknown entity &{ent};"
            );
            rest = &at[end + 1..];
            continue;
        }
        let end = at.find('>').expect("tag ends with '>'");
        let tag = &at[1..end];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("a closing tag closes an open element");
            assert_eq!(open, name.trim(), "mismatched closing tag");
        } else {
            let self_closing = tag.ends_with('/');
            let inner = tag.trim_end_matches('/');
            let name = inner.split_whitespace().next().expect("element name");
            assert_eq!(
                inner.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{inner}>"
            );
            names.push(name.to_string());
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        rest = &at[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert_eq!(names.first().map(String::as_str), Some("svg"));
    names
}

#[test]
fn timeline_of_the_demo_run() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("run.svg");
    let out = joint(&[
        "run",
        example("demo.yaml").to_str().unwrap(),
        "--input",
        r#"{"n": 8}"#,
        "--latency",
        example("latency/paper.json").to_str().unwrap(),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "--timeline",
        svg_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let svg = std::fs::read_to_string(&svg_path).expect("the timeline was written");
    check_xml(&svg);
    let rows = svg.matches("<g class=\"row\"").count() as u64;
    assert_eq!(
        Some(rows),
        report["instances"].as_u64(),
        "one row per instance"
    );
    assert!(svg.contains(report["run_id"].as_str().unwrap()));
    for cloud in ["local-a", "local-b", "local-c"] {
        assert!(
            svg.contains(&format!(">{cloud}</text>")),
            "{cloud} in the legend"
        );
    }
    for kind in [
        "run",
        "read_checkpoint",
        "commit",
        "join",
        "invoke",
        "record",
    ] {
        assert!(svg.contains(&format!("class=\"seg seg-{kind}\"")), "{kind}");
        assert!(
            svg.contains(&format!(">{kind}</tspan>")),
            "{kind} in the legend"
        );
    }
    assert!(
        svg.contains(">square_1-bindex-3</text>"),
        "labels without the run"
    );
    assert!(svg.contains(">celebrate_3</text>"));
}

#[test]
fn timeline_of_a_chaos_run_shows_failed_executions() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("chaos.svg");
    let out = joint(&[
        "run",
        example("demo.yaml").to_str().unwrap(),
        "--input",
        r#"{"n": 8}"#,
        "--chaos",
        "seed=3,crash=0.1,dup=0.2",
        // Chaos hashes the events, which carry the run id: a fixed id makes the faults fixed.
        "--run-id",
        "chaos-timeline",
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
        "--timeline",
        svg_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    check_xml(&svg);
    let rows = svg.matches("<g class=\"row\"").count() as u64;
    // Under chaos a late duplicate may start after GC; every committed instance has its row.
    assert!(
        rows >= report["instances"].as_u64().unwrap(),
        "{rows} rows for {}",
        report["instances"]
    );
    let retries = report["queue"]["retries"].as_u64().unwrap_or(0);
    if retries > 0 {
        assert!(
            svg.contains("url(#p-err)\" stroke=\"#d62728\""),
            "hatched red"
        );
        assert!(svg.contains("✗ d"), "failed deliveries are labelled");
    }
}

#[test]
fn graph_formats_name_every_function_and_edge() {
    for (file, labels) in [
        (
            "demo.yaml",
            &["map (≤ 4)", "fan_in", "when: output > 100", "when: true"][..],
        ),
        (
            "parallel.yaml",
            &["parallel [0]", "parallel [1]", "fan_in"][..],
        ),
        (
            "cycle.yaml",
            &["sequence", "cycle ≤ 10 · when: output.i < 5", "when: true"][..],
        ),
        ("by_batch.yaml", &["by_batch 4"][..]),
        ("by_redundant.yaml", &["parallel [2]", "by_redundant 1"][..]),
    ] {
        let path = example(file);
        let compiled = joint(&["compile", path.to_str().unwrap()]);
        let subs: Value = serde_json::from_slice(&compiled.stdout).unwrap();
        let names: Vec<&str> = subs
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Name"].as_str().unwrap())
            .collect();
        let edge_count: usize = subs
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Next"].as_array().map_or(0, Vec::len))
            .sum();
        let dot = joint(&["graph", path.to_str().unwrap()]);
        assert!(dot.status.success(), "{dot:?}");
        let dot = String::from_utf8(dot.stdout).unwrap();
        let mm = joint(&["graph", path.to_str().unwrap(), "--format", "mermaid"]);
        assert!(mm.status.success());
        let mm = String::from_utf8(mm.stdout).unwrap();
        assert!(dot.starts_with("digraph"), "{dot}");
        assert!(mm.starts_with("flowchart TD"), "{mm}");
        for n in &names {
            assert!(
                dot.contains(&format!("\"{n}\" [label=\"{n}\\n")),
                "{file}: {n}"
            );
            assert!(mm.contains(&format!("<b>{n}</b>")), "{file}: {n}");
        }
        for l in labels {
            assert!(
                dot.contains(&format!("[label=\"{l}\"")),
                "{file}: {l}\n{dot}"
            );
            let ml = l.replace('<', "#lt;").replace('>', "#gt;");
            assert!(mm.contains(&format!("|\"{ml}\"|")), "{file}: {l}\n{mm}");
        }
        // Every successor entry is an edge (plus the start arrow).
        assert_eq!(dot.matches(" -> ").count(), edge_count + 1, "{file}");
        assert_eq!(
            mm.lines().filter(|l| l.contains("|\"")).count(),
            edge_count,
            "{file}"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("g.svg");
        let svg = joint(&[
            "graph",
            path.to_str().unwrap(),
            "--format",
            "svg",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(svg.status.success(), "{svg:?}");
        let svg = std::fs::read_to_string(&out).unwrap();
        check_xml(&svg);
        assert_eq!(svg.matches("class=\"node\"").count(), names.len(), "{file}");
        assert_eq!(
            svg.matches("<path class=\"edge").count(),
            edge_count,
            "{file}"
        );
    }
}

#[test]
fn graph_of_paper_subgraphs() {
    let out = joint(&[
        "graph",
        example("paper-subgraphs.json").to_str().unwrap(),
        "--format",
        "svg",
    ]);
    assert!(out.status.success(), "{out:?}");
    check_xml(&String::from_utf8(out.stdout).unwrap());
}

#[test]
fn bad_input_gives_a_clear_error() {
    let out = joint(&["graph", "/no/such/definition.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read /no/such/definition.yaml"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "workflow: w\nfunctions:\n  - {name: a, handler: echo, next: [{to: nowhere}]}\n",
    )
    .unwrap();
    let out = joint(&["graph", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nowhere"), "{err}");
    let out = joint(&[
        "graph",
        example("demo.yaml").to_str().unwrap(),
        "--format",
        "png",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dot, mermaid, svg"));
}
