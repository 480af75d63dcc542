//! The compiler: a validated [`Definition`] becomes a [`Workflow`] of per-function sub-graphs (the
//! paper's IR), and [`load`] accepts either a definition or paper-style sub-graphs.

use std::collections::{BTreeMap, BTreeSet};

use crate::def::{DEFAULT_COUNTER, Definition, EdgeMode};
use crate::diag::{Diagnostic, Diagnostics};
use crate::expr::Expr;
use crate::import::{import, parse_subgraphs};
use crate::subgraph::{DsKind, InvokeMode, ModifyOp, NextEntry, RetryPolicy, SetOp};
use crate::validate::{Analysis, ForkKind, analyze, blank_subgraph, invoke_mode_of};
use crate::workflow::Workflow;

/// Validate `def` and compile it to sub-graphs. Warnings are dropped; use
/// [`compile_with_warnings`] to see them.
pub fn compile(def: &Definition) -> Result<Workflow, Diagnostics> {
    compile_with_warnings(def).map(|(w, _)| w)
}

/// Validate `def` and compile it; on success also return the warnings.
pub fn compile_with_warnings(def: &Definition) -> Result<(Workflow, Diagnostics), Diagnostics> {
    let (analysis, diags) = analyze(def);
    if diags.has_errors() {
        return Err(diags);
    }
    let Some(start) = analysis.start.clone() else {
        return Err(Diagnostics::one(Diagnostic::error(
            "no-start",
            "the start function could not be determined",
        )));
    };
    let steps = static_steps(def, &start);
    let inline_limit: BTreeMap<String, u64> = def
        .clouds
        .iter()
        .flatten()
        .filter_map(|(c, s)| s.inline_limit.map(|l| (c.clone(), l)))
        .collect();
    let mut functions = BTreeMap::new();
    let mut errors = Diagnostics::new();
    for f in &def.functions {
        let mut s = blank_subgraph(&f.name);
        s.faas = def.cloud_of(f);
        s.failover = def.failover_of(f);
        s.start = f.name == start;
        s.checkpoint = f.checkpoint.or(def.defaults.checkpoint).unwrap_or_default();
        s.memory_mb = def.memory_of(f);
        s.handler = f.handler.clone();
        s.command = f.command.clone();
        s.worker = f.worker.clone();
        s.env = f.env.clone().unwrap_or_default();
        s.timeout = f.timeout;
        s.retry = f
            .retry
            .or(def.defaults.retry)
            .map(|r| RetryPolicy {
                max_attempts: r.max_attempts,
                backoff_ms: r.backoff_ms.unwrap_or(RetryPolicy::default().backoff_ms),
            })
            .unwrap_or_default();
        let by_store = def.by_store(f);
        s.ds = if by_store {
            DsKind::ObjectStore
        } else {
            DsKind::NosqlKVDs
        };
        s.transfer_by_ds = by_store;
        s.inline_limit = inline_limit.clone();
        for e in &f.next {
            let Some(target) = def.function(&e.to) else {
                continue;
            };
            let choice = match &e.when {
                None => None,
                Some(w) => match Expr::parse(w) {
                    Ok(x) => Some(x),
                    Err(pe) => {
                        errors.push(
                            Diagnostic::error("bad-choice", format!("invalid guard \"{w}\": {pe}"))
                                .with_edge(&f.name, &e.to),
                        );
                        None
                    }
                },
            };
            let mut invoke_mode = invoke_mode_of(e);
            let mut modify_event = Vec::new();
            match &mut invoke_mode {
                InvokeMode::FanIn { branch } => {
                    *branch = branch_names(&analysis, &e.to, &steps);
                    modify_event.push(ModifyOp::PopAndMerge);
                }
                InvokeMode::ByRedundant { workflow_wait, .. } => {
                    *workflow_wait = join_sources(&analysis, &e.to);
                    modify_event.push(ModifyOp::PopAndMerge);
                }
                InvokeMode::ByBatch { workflow_wait, .. } => {
                    *workflow_wait = vec![f.name.clone()];
                }
                _ => {}
            }
            if e.mode == EdgeMode::Cycle {
                modify_event.push(ModifyOp::Set {
                    var: e
                        .counter
                        .clone()
                        .unwrap_or_else(|| DEFAULT_COUNTER.to_string()),
                    op: SetOp::Add,
                    value: 1,
                });
            }
            s.next.push(NextEntry {
                name: e.to.clone(),
                faas: def.cloud_of(target),
                invoke_mode,
                choice,
                failover: e
                    .failover
                    .clone()
                    .unwrap_or_else(|| def.failover_of(target)),
                modify_event,
                max_iterations: if e.mode == EdgeMode::Cycle {
                    e.max_iterations
                } else {
                    None
                },
            });
        }
        functions.insert(f.name.clone(), s);
    }
    if errors.has_errors() {
        return Err(errors);
    }
    Ok((
        Workflow::assemble(def.workflow.clone(), start, functions),
        diags,
    ))
}

/// Functions whose join edges close the branches of the fork joined at `agg`, in branch order.
fn join_sources(analysis: &Analysis, agg: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(j) = analysis.joins.get(agg) {
        for (_, s) in &j.sources {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// Paper-style branch instance names of a Parallel join (`B_2-bindex-0`, …) when every branch
/// is closed by one function at a statically known step; otherwise (and for Maps) empty.
fn branch_names(analysis: &Analysis, agg: &str, steps: &BTreeMap<String, u32>) -> Vec<String> {
    let Some(j) = analysis.joins.get(agg) else {
        return vec![];
    };
    if j.kind != ForkKind::Parallel || j.nested {
        return vec![];
    }
    let n = j.branches.unwrap_or(0);
    let mut names = Vec::new();
    for b in 0..n {
        let srcs: Vec<&String> = j
            .sources
            .iter()
            .filter(|(x, _)| *x == b)
            .map(|(_, s)| s)
            .collect();
        let [one] = srcs.as_slice() else {
            return vec![];
        };
        let Some(step) = steps.get(one.as_str()) else {
            return vec![];
        };
        names.push(format!("{one}_{step}-bindex-{b}"));
    }
    names
}

/// Steps of functions whose step is the same on every path from the start (ignoring functions
/// after a loop or a by_batch edge, whose steps vary).
fn static_steps(def: &Definition, start: &str) -> BTreeMap<String, u32> {
    const CAP: usize = 8;
    let mut steps: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    steps.entry(start).or_default().insert(0);
    let forward = |e: &&crate::def::EdgeDef| !matches!(e.mode, EdgeMode::Cycle | EdgeMode::ByBatch);
    for _ in 0..=def.functions.len() {
        let mut changed = false;
        for f in &def.functions {
            let Some(cur) = steps.get(f.name.as_str()).cloned() else {
                continue;
            };
            for e in f.next.iter().filter(forward) {
                let set = steps.entry(e.to.as_str()).or_default();
                for s in &cur {
                    if set.len() < CAP && set.insert(s.saturating_add(1)) {
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Everything reachable from a loop target or a batch target has a dynamic step.
    let mut dynamic: BTreeSet<&str> = BTreeSet::new();
    let mut work: Vec<&str> = def
        .functions
        .iter()
        .flat_map(|f| f.next.iter())
        .filter(|e| matches!(e.mode, EdgeMode::Cycle | EdgeMode::ByBatch))
        .map(|e| e.to.as_str())
        .collect();
    while let Some(n) = work.pop() {
        if !dynamic.insert(n) {
            continue;
        }
        if let Some(f) = def.function(n) {
            work.extend(f.next.iter().map(|e| e.to.as_str()));
        }
    }
    steps
        .into_iter()
        .filter(|(n, s)| s.len() == 1 && !dynamic.contains(n))
        .filter_map(|(n, s)| s.first().map(|x| (n.to_string(), *x)))
        .collect()
}

/// Whether `src` holds paper-style sub-graphs: a JSON array, or a JSON object with a `Name` key.
pub fn is_subgraphs(src: &str) -> bool {
    let t = src.trim_start();
    if t.starts_with('[') {
        return true;
    }
    if t.starts_with('{') {
        return serde_json::from_str::<serde_json::Value>(t)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.contains_key("Name")))
            .unwrap_or(false);
    }
    false
}

/// A workflow name from a file path: the file name up to its first '.', with characters that are
/// not allowed in names replaced by '_' (`workflow` if nothing is left).
pub fn name_from_path(path_hint: &str) -> String {
    let file = path_hint.rsplit(['/', '\\']).next().unwrap_or("");
    let stem = file.split('.').next().unwrap_or("");
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if name.is_empty() {
        "workflow".to_string()
    } else {
        name
    }
}

/// Load a workflow from text: a definition (YAML or JSON, see [`Definition::from_path_text`]) or
/// paper-style sub-graphs (a JSON array of sub-graph objects, or one object with a `Name` key).
/// Sub-graphs take the workflow name from their `Workflow` field, else from the file name.
pub fn load(path_hint: &str, src: &str) -> Result<Workflow, Diagnostics> {
    if is_subgraphs(src) {
        let subs = parse_subgraphs(src)?;
        let name = subs
            .iter()
            .map(|s| s.workflow.as_str())
            .find(|w| !w.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| name_from_path(path_hint));
        import(&name, subs)
    } else {
        compile(&Definition::from_path_text(path_hint, src)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::Format;
    use serde_json::{Value, json};

    fn wf(src: &str) -> Workflow {
        let def = Definition::parse(src, Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
        compile(&def).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sub(w: &Workflow, f: &str) -> Value {
        serde_json::to_value(&w.functions[f]).unwrap()
    }

    #[test]
    fn sequence_and_settings() {
        let w = wf("workflow: chain
defaults: { cloud: local-a, memory_mb: 256, checkpoint: lazy, retry: { max_attempts: 2 } }
clouds:
  local-a: { inline_limit: 1000 }
  local-b: {}
transfer: { by_store: true }
functions:
  - { name: a, handler: inc, next: [{ to: b }] }
  - { name: b, handler: inc, cloud: local-b, failover: [local-a], transfer_by_store: false, next: [{ to: c }] }
  - { name: c, command: [sh, -c, cat], memory_mb: 64, retry: { max_attempts: 3, backoff_ms: 5 } }
");
        assert_eq!(w.start, "a");
        assert_eq!(w.clouds, vec!["local-a".to_string(), "local-b".to_string()]);
        let a = sub(&w, "a");
        assert_eq!(a["Start"], json!(true));
        assert_eq!(a["FaaS"], json!("local-a"));
        assert_eq!(a["Ds"], json!("ObjectStore"));
        assert_eq!(a["TransferByDs"], json!(true));
        assert_eq!(a["Checkpoint"], json!("lazy"));
        assert_eq!(a["MemoryMB"], json!(256));
        assert_eq!(a["Handler"], json!("inc"));
        assert_eq!(a["Retry"], json!({"MaxAttempts": 2, "BackoffMs": 100}));
        assert_eq!(a["InlineLimit"], json!({"local-a": 1000}));
        assert_eq!(a["Workflow"], json!("chain"));
        assert_eq!(
            a["Next"],
            json!([{"Name": "b", "FaaS": "local-b", "InvokeMode": "Sequence", "Failover": ["local-a"]}])
        );
        let b = sub(&w, "b");
        assert_eq!(b["Ds"], json!("NosqlKVDs"));
        assert!(b.get("TransferByDs").is_none());
        assert_eq!(b["Failover"], json!(["local-a"]));
        let c = sub(&w, "c");
        assert_eq!(c["Command"], json!(["sh", "-c", "cat"]));
        assert_eq!(c["MemoryMB"], json!(64));
        assert_eq!(c["Retry"], json!({"MaxAttempts": 3, "BackoffMs": 5}));
        assert!(c.get("Next").is_none());
        assert!(!w.hash.is_empty());
    }

    #[test]
    fn timeout_and_env_reach_the_subgraph_and_load_back() {
        let w = wf("workflow: cmd
functions:
  - { name: a, command: [./a.sh], timeout: 2.5, env: { MODE: fast, LEVEL: '3' }, next: [{ to: b }] }
  - { name: b, handler: echo, timeout: 1, next: [{ to: c }] }
  - { name: c, handler: echo }
");
        let a = sub(&w, "a");
        assert_eq!(a["Timeout"], json!(2.5));
        assert_eq!(a["Env"], json!({"LEVEL": "3", "MODE": "fast"}));
        assert_eq!(sub(&w, "b")["Timeout"], json!(1.0));
        // Functions without them compile as before (their sub-graphs and the hash unchanged).
        let c = sub(&w, "c");
        assert!(c.get("Timeout").is_none() && c.get("Env").is_none(), "{c}");
        let back = load("compiled.json", &w.to_json().to_string()).unwrap();
        assert_eq!(back, w);
        assert_eq!(back.functions["a"].timeout, Some(2.5));
    }

    #[test]
    fn parallel_and_fan_in() {
        let w = wf("workflow: par
functions:
  - { name: A, handler: echo, next: [{ to: B }, { to: C, failover: [x] }] }
  - { name: B, handler: inc, next: [{ to: D, mode: fan_in }] }
  - { name: C, handler: square, next: [{ to: D, mode: fan_in }] }
  - { name: D, handler: sum }
");
        let a = sub(&w, "A");
        assert_eq!(
            a["Next"][1],
            json!({"Name": "C", "FaaS": "local", "InvokeMode": "Sequence", "Failover": ["x"]})
        );
        let b = sub(&w, "B");
        assert_eq!(
            b["Next"],
            json!([{"Name": "D", "FaaS": "local",
                    "InvokeMode": {"FanIn": {"Branch": ["B_1-bindex-0", "C_1-bindex-1"]}},
                    "ModifyEvent": ["PopAndMerge"]}])
        );
        assert_eq!(sub(&w, "C")["Next"], b["Next"]);
    }

    #[test]
    fn choice() {
        let w = wf("workflow: ch
functions:
  - name: a
    handler: echo
    next:
      - { to: b, when: \"output.score < 0.5\" }
      - { to: c, when: \"true\" }
  - { name: b, handler: echo }
  - { name: c, handler: echo }
");
        assert_eq!(
            sub(&w, "a")["Next"],
            json!([
                {"Name": "b", "FaaS": "local", "InvokeMode": "Sequence", "Choice": "output.score < 0.5"},
                {"Name": "c", "FaaS": "local", "InvokeMode": "Sequence", "Choice": "true"}
            ])
        );
    }

    #[test]
    fn map_with_concurrency() {
        let w = wf("workflow: m
functions:
  - { name: a, handler: split, output: list, next: [{ to: b, mode: map, concurrency: 2 }] }
  - { name: b, handler: square, next: [{ to: c, mode: fan_in }] }
  - { name: c, handler: sum }
");
        assert_eq!(
            sub(&w, "a")["Next"][0]["InvokeMode"],
            json!({"Map": {"MaxConcurrency": 2}})
        );
        assert_eq!(
            sub(&w, "b")["Next"][0],
            json!({"Name": "c", "FaaS": "local", "InvokeMode": {"FanIn": {"Branch": []}}, "ModifyEvent": ["PopAndMerge"]})
        );
        let w = wf("workflow: m
functions:
  - { name: a, handler: split, next: [{ to: b, mode: map }] }
  - { name: b, handler: square, next: [{ to: c, mode: fan_in }] }
  - { name: c, handler: sum }
");
        assert_eq!(sub(&w, "a")["Next"][0]["InvokeMode"], json!("Map"));
    }

    #[test]
    fn cycle() {
        let w = wf("workflow: cy
functions:
  - { name: a, handler: echo, next: [{ to: body }] }
  - name: body
    handler: count
    next:
      - { to: body, mode: cycle, when: 'i < 8', counter: i, max_iterations: 100 }
      - { to: after, when: 'true' }
  - { name: after, handler: echo }
  - name: loop2
    handler: echo
    next: [{ to: loop2, mode: cycle, when: 'Iterator < 3', max_iterations: 5 }, { to: a, when: 'true' }]
    start: true
");
        assert_eq!(w.start, "loop2");
        assert_eq!(
            sub(&w, "body")["Next"],
            json!([
                {"Name": "body", "FaaS": "local", "InvokeMode": "Sequence", "Choice": "i < 8",
                 "ModifyEvent": ["i+=1"], "MaxIterations": 100},
                {"Name": "after", "FaaS": "local", "InvokeMode": "Sequence", "Choice": "true"}
            ])
        );
        assert_eq!(
            sub(&w, "loop2")["Next"][0]["ModifyEvent"],
            json!(["Iterator+=1"])
        );
    }

    #[test]
    fn by_batch_and_by_redundant() {
        let w = wf("workflow: bb
functions:
  - { name: b, handler: echo, next: [{ to: x, mode: by_batch, batch_size: 32 }] }
  - { name: x, handler: sum }
");
        assert_eq!(
            sub(&w, "b")["Next"][0]["InvokeMode"],
            json!({"ByBatch": {"BatchSize": 32, "WorkflowWait": ["b"]}})
        );
        let w = wf("workflow: br
functions:
  - { name: a, handler: echo, next: [{ to: r1 }, { to: r2 }, { to: r3 }] }
  - { name: r1, handler: inc, next: [{ to: x, mode: by_redundant, completion: 1 }] }
  - { name: r2, handler: inc, next: [{ to: x, mode: by_redundant, completion: 1 }] }
  - { name: r3, handler: inc, next: [{ to: x, mode: by_redundant, completion: 1 }] }
  - { name: x, handler: echo }
");
        assert_eq!(
            sub(&w, "r2")["Next"][0],
            json!({"Name": "x", "FaaS": "local",
                   "InvokeMode": {"ByRedundant": {"Completion": 1, "WorkflowWait": ["r1", "r2", "r3"]}},
                   "ModifyEvent": ["PopAndMerge"]})
        );
    }

    #[test]
    fn compile_reports_validation_errors() {
        let def = Definition::parse(
            "workflow: w\nfunctions:\n  - { name: a, next: [{ to: b }] }\n",
            Format::Yaml,
        )
        .unwrap();
        let e = compile(&def).unwrap_err();
        assert!(e.with_code("no-implementation").next().is_some());
        assert!(e.with_code("unknown-function").next().is_some());
    }

    #[test]
    fn yaml_and_json_compile_identically() {
        let y = "workflow: w\nfunctions:\n  - { name: a, handler: echo, next: [{ to: b, when: 'true' }] }\n  - { name: b, handler: echo }\n";
        let j = r#"{"workflow":"w","functions":[{"name":"a","handler":"echo","next":[{"to":"b","when":"true"}]},{"name":"b","handler":"echo"}]}"#;
        let a = load("w.yaml", y).unwrap();
        let b = load("w.json", j).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.hash, b.hash);
    }

    #[test]
    fn load_sniffs_subgraphs() {
        let arr = r#"[{"Name":"A","Start":true,"FaaS":"lambda","Next":{"Name":"B","FaaS":"alifc","InvokeMode":"Sequence"}},{"Name":"B"}]"#;
        let w = load("dir/my.flow.json", arr).unwrap();
        assert_eq!(w.name, "my");
        assert_eq!(w.functions["B"].faas, "alifc");
        let one = r#"{"Name":"A","FaaS":"lambda","Workflow":"solo"}"#;
        let w = load("x.json", one).unwrap();
        assert_eq!(w.name, "solo");
        assert_eq!(w.start, "A");
        assert_eq!(w.functions["A"].handler.as_deref(), Some("A"));
        let def = r#"{"workflow":"d","functions":[{"name":"a","handler":"echo"}]}"#;
        assert!(!is_subgraphs(def));
        assert_eq!(load("x.json", def).unwrap().name, "d");
        assert_eq!(
            load("x", "workflow: y\nfunctions: [{ name: a, handler: echo }]")
                .unwrap()
                .name,
            "y"
        );
        assert_eq!(name_from_path(""), "workflow");
        assert_eq!(name_from_path("C:\\a b\\x y.json"), "x_y");
        // Errors carry positions in both cases.
        let e = load("x.json", "[{\"Name\": 3}]").unwrap_err();
        assert!(e.0[0].line.is_some(), "{e}");
        let e = load("x.yaml", "workflow: w\nfunctions: 3\n").unwrap_err();
        assert_eq!(e.0[0].line, Some(2), "{e}");
    }

    #[test]
    fn examples_parse_validate_and_compile() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        entries.sort();
        for p in entries {
            let src = std::fs::read_to_string(&p).unwrap();
            let hint = p.display().to_string();
            if !is_subgraphs(&src) {
                let def = Definition::from_path_text(&hint, &src)
                    .unwrap_or_else(|e| panic!("{hint}:\n{e}"));
                let ds = crate::validate::validate(&def);
                assert!(ds.is_empty(), "{hint}:\n{ds}");
            }
            let w = load(&hint, &src).unwrap_or_else(|e| panic!("{hint}:\n{e}"));
            assert!(!w.functions.is_empty());
            // Compiled sub-graphs load back unchanged.
            let back = load("compiled.json", &w.to_json().to_string())
                .unwrap_or_else(|e| panic!("{hint} (compiled):\n{e}"));
            assert_eq!(back, w, "{hint}");
            seen += 1;
        }
        assert!(seen >= 9, "only {seen} examples found in {}", dir.display());
    }
}
