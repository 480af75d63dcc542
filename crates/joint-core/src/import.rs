//! Import of paper-style sub-graphs (Jointλ's per-function JSON) into a [`Workflow`].
//!
//! A paper sub-graph says where each *successor* runs (`Next[].FaaS`) but not where the function
//! itself runs, and it has no implementation. The importer fills each function's `FaaS` from its
//! callers (conflicts are errors naming both callers; the start function takes its own `FaaS`, else
//! the cloud of most of its successors), its `Failover` from its callers' `Failover`, and its
//! `Handler` from its name when it has neither `Handler` nor `Command`. It then checks the same
//! structure as the definition validator (start, unknown names, shapes, cycles, forks and joins) and
//! the `FanIn.Branch` lists.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostic, Diagnostics, suggestion};
use crate::naming::valid_id;
use crate::subgraph::{InvokeMode, ModifyOp, SubGraph};
use crate::validate::{ForkKind, GEdge, GMode, Graph, env_problems, timeout_problem};
use crate::workflow::Workflow;

/// Parse sub-graphs: one JSON array of sub-graph objects, or one object. Errors carry the line and
/// column (code `parse`).
pub fn parse_subgraphs(src: &str) -> Result<Vec<SubGraph>, Diagnostics> {
    let to_diag = |e: serde_json::Error| {
        let pos = (e.line() > 0).then(|| (e.line(), e.column().max(1)));
        let msg = e.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        Diagnostics::one(
            Diagnostic::error("parse", format!("invalid sub-graph JSON: {msg}")).at(pos),
        )
    };
    if src.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<SubGraph>>(src).map_err(to_diag)
    } else {
        serde_json::from_str::<SubGraph>(src)
            .map(|s| vec![s])
            .map_err(to_diag)
    }
}

/// `Func` of a paper instance name `Func_step[-bindex-i+j…]`.
fn instance_function(s: &str) -> Option<&str> {
    let (base, levels) = match s.split_once("-bindex-") {
        Some((b, l)) => (b, Some(l)),
        None => (s, None),
    };
    if let Some(l) = levels
        && (l.is_empty()
            || !l
                .split('+')
                .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit())))
    {
        return None;
    }
    let (func, step) = base.rsplit_once('_')?;
    (!func.is_empty() && !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit()))
        .then_some(func)
}

/// The function a `FanIn.Branch` entry names: `B_1-bindex-0`, or with a store prefix
/// (`s3-B_1-bindex-0`) stripped up to the first '-' when the remainder names a known function.
/// `Err` carries the best guess for the message.
fn branch_function<'a>(entry: &'a str, known: &BTreeSet<&str>) -> Result<&'a str, Option<&'a str>> {
    let full = instance_function(entry);
    if let Some(f) = full
        && known.contains(f)
    {
        return Ok(f);
    }
    let stripped = entry
        .split_once('-')
        .and_then(|(_, rest)| instance_function(rest));
    if let Some(f) = stripped
        && known.contains(f)
    {
        return Ok(f);
    }
    Err(stripped.or(full))
}

/// Import paper-style sub-graphs as workflow `name`. See the module documentation.
pub fn import(name: &str, subs: Vec<SubGraph>) -> Result<Workflow, Diagnostics> {
    let mut out = Diagnostics::new();
    if !valid_id(name) {
        out.push(Diagnostic::error(
            "invalid-name",
            format!(
                "workflow name '{name}' is invalid: use 1-128 letters, digits, '_', '-' or '.'"
            ),
        ));
    }
    if subs.is_empty() {
        out.push(Diagnostic::error("no-start", "no sub-graphs were given"));
        return Err(out);
    }
    let mut functions: BTreeMap<String, SubGraph> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for s in subs {
        if !valid_id(&s.name) {
            out.push(
                Diagnostic::error(
                    "invalid-name",
                    format!(
                        "function name '{}' is invalid: use 1-128 letters, digits, '_', '-' or '.'",
                        s.name
                    ),
                )
                .with_function(&s.name),
            );
        }
        if let Some(t) = s.timeout
            && let Some(msg) = timeout_problem(t)
        {
            out.push(
                Diagnostic::error("bad-field", format!("Timeout: {msg}")).with_function(&s.name),
            );
        }
        if !s.env.is_empty() && s.command.is_none() && s.worker.is_none() {
            out.push(
                Diagnostic::error(
                    "bad-field",
                    "Env applies to sub-graphs with a Command or Worker only",
                )
                .with_function(&s.name),
            );
        }
        for (_, msg) in env_problems(&s.env) {
            out.push(Diagnostic::error("bad-field", format!("Env: {msg}")).with_function(&s.name));
        }
        if functions.contains_key(&s.name) {
            out.push(
                Diagnostic::error(
                    "duplicate-function",
                    format!("function '{}' has more than one sub-graph", s.name),
                )
                .with_function(&s.name),
            );
            continue;
        }
        order.push(s.name.clone());
        functions.insert(s.name.clone(), s);
    }
    let known: BTreeSet<&str> = order.iter().map(String::as_str).collect();
    let mut structural = false;
    for s in functions.values() {
        for e in &s.next {
            if !known.contains(e.name.as_str()) {
                structural = true;
                out.push(
                    Diagnostic::error(
                        "unknown-function",
                        format!(
                            "unknown function '{}'{}",
                            e.name,
                            suggestion(&e.name, known.iter().copied())
                        ),
                    )
                    .with_edge(&s.name, &e.name),
                );
            }
        }
        if let Err(msg) = s.shape() {
            structural = true;
            let prefix = format!("function '{}' ", s.name);
            out.push(
                Diagnostic::error(
                    "bad-mode-mix",
                    msg.strip_prefix(&prefix).unwrap_or(&msg).to_string(),
                )
                .with_function(&s.name),
            );
        }
    }

    // The graph, in input order.
    let node: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut graph = Graph {
        names: order.clone(),
        ..Graph::default()
    };
    for (i, n) in order.iter().enumerate() {
        let s = &functions[n];
        let edges = s
            .next
            .iter()
            .filter_map(|e| {
                let to = *node.get(e.name.as_str())?;
                let mode = match &e.invoke_mode {
                    InvokeMode::Sequence => GMode::Seq,
                    InvokeMode::Map { .. } => GMode::Map,
                    InvokeMode::FanIn { .. } => GMode::FanIn,
                    InvokeMode::ByBatch { .. } => GMode::ByBatch,
                    InvokeMode::ByRedundant { completion, .. } => GMode::ByRedundant {
                        completion: *completion,
                    },
                };
                let back = e.choice.is_some()
                    && e.modify_event
                        .iter()
                        .any(|m| matches!(m, ModifyOp::Set { .. }));
                Some(GEdge {
                    to,
                    mode,
                    back,
                    always: e
                        .choice
                        .as_ref()
                        .is_some_and(|c| c.source().trim() == "true"),
                })
            })
            .collect();
        graph.edges.push(edges);
        graph.shapes.push(s.shape().ok());
        graph.origin.push(i);
    }
    out.0.extend(graph.unguarded_cycles());
    let explicit: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, n)| functions[*n].start)
        .map(|(i, _)| i)
        .collect();
    let mut joins = BTreeMap::new();
    let start = match graph.find_start(&explicit) {
        Ok(s) => {
            out.0.extend(graph.unreachable(s));
            if !structural {
                let (j, d) = graph.forks(s);
                joins = j;
                out.0.extend(d);
            }
            Some(order[s].clone())
        }
        Err(d) => {
            out.push(*d);
            None
        }
    };

    // FanIn branch lists.
    let mut fan_in_sources: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in functions.values() {
        for e in &s.next {
            if matches!(e.invoke_mode, InvokeMode::FanIn { .. }) {
                fan_in_sources
                    .entry(e.name.as_str())
                    .or_default()
                    .insert(s.name.as_str());
            }
        }
    }
    for s in functions.values() {
        for e in &s.next {
            let InvokeMode::FanIn { branch } = &e.invoke_mode else {
                continue;
            };
            if branch.is_empty() {
                continue;
            }
            let sources = fan_in_sources
                .get(e.name.as_str())
                .cloned()
                .unwrap_or_default();
            for entry in branch {
                let err = |msg: String| {
                    Diagnostic::error("fan-in-mismatch", msg).with_edge(&s.name, &e.name)
                };
                match branch_function(entry, &known) {
                    Ok(f) if sources.contains(f) => {}
                    Ok(f) => out.push(err(format!(
                        "Branch entry '{entry}' names '{f}', which has no FanIn edge to '{}'",
                        e.name
                    ))),
                    Err(Some(f)) => out.push(err(format!(
                        "Branch entry '{entry}' names unknown function '{f}'{}",
                        suggestion(f, known.iter().copied())
                    ))),
                    Err(None) => out.push(err(format!(
                        "Branch entry '{entry}' is not an instance name like 'B_1-bindex-0' (optionally with a store prefix such as 's3-')"
                    ))),
                }
            }
            if let Some(j) = joins.get(&e.name)
                && j.kind == ForkKind::Parallel
                && let Some(n) = j.branches
                && branch.len() != n as usize
            {
                out.push(
                    Diagnostic::error(
                        "fan-in-mismatch",
                        format!(
                            "FanIn to '{}' lists {} branches, but the Parallel fork started by '{}' has {n}",
                            e.name,
                            branch.len(),
                            j.fork
                        ),
                    )
                    .with_edge(&s.name, &e.name),
                );
            }
        }
    }

    // Placement: each function's FaaS and Failover from its callers.
    let mut placed_by: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut failover_from: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &order {
        for e in &functions[n].next {
            if !e.faas.is_empty() {
                placed_by
                    .entry(e.name.clone())
                    .or_default()
                    .push((e.faas.clone(), n.clone()));
            }
            if !e.failover.is_empty() {
                failover_from
                    .entry(e.name.clone())
                    .or_insert_with(|| e.failover.clone());
            }
        }
    }
    let mut clouds: BTreeMap<String, String> = BTreeMap::new();
    for n in &order {
        let s = &functions[n];
        let mut chosen: Option<(String, String)> =
            (!s.faas.is_empty()).then(|| (s.faas.clone(), "its own FaaS field".to_string()));
        for (c, caller) in placed_by.get(n).into_iter().flatten() {
            match &chosen {
                None => chosen = Some((c.clone(), format!("'{caller}'"))),
                Some((c0, by0)) if c0 != c => {
                    out.push(
                        Diagnostic::error(
                            "cloud-conflict",
                            format!("function '{n}' is placed on '{c0}' by {by0} but on '{c}' by '{caller}'"),
                        )
                        .with_function(n),
                    );
                    break;
                }
                Some(_) => {}
            }
        }
        let cloud = match chosen {
            Some((c, _)) => c,
            None => {
                let mut count: BTreeMap<&str, usize> = BTreeMap::new();
                for e in &s.next {
                    if !e.faas.is_empty() {
                        *count.entry(e.faas.as_str()).or_default() += 1;
                    }
                }
                // Most successors; ties go to the first name in sorted order.
                match count.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
                    Some((c, _)) => c.to_string(),
                    None => {
                        out.push(
                            Diagnostic::error(
                                "no-cloud",
                                "no caller gives this function a FaaS and it has no successors to take the majority cloud from; set \"FaaS\" in its sub-graph",
                            )
                            .with_function(n),
                        );
                        continue;
                    }
                }
            }
        };
        clouds.insert(n.clone(), cloud);
    }

    out.sort_and_dedup();
    if out.has_errors() {
        return Err(out);
    }
    let Some(start) = start else {
        return Err(Diagnostics::one(Diagnostic::error(
            "no-start",
            "no start function",
        )));
    };
    for n in &order {
        let cloud = clouds.get(n).cloned().unwrap_or_default();
        let fo = failover_from.get(n).cloned();
        if let Some(s) = functions.get_mut(n) {
            s.faas = cloud;
            if s.failover.is_empty()
                && let Some(fo) = fo
            {
                s.failover = fo;
            }
            s.start = *n == start;
            if s.handler.is_none() && s.command.is_none() && s.worker.is_none() {
                s.handler = Some(n.clone());
            }
            for e in &mut s.next {
                if e.faas.is_empty() {
                    e.faas = clouds.get(&e.name).cloned().unwrap_or_default();
                }
            }
        }
    }
    Ok(Workflow::assemble(name.to_string(), start, functions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(src: &str) -> Result<Workflow, Diagnostics> {
        import("paper", parse_subgraphs(src)?)
    }

    #[test]
    fn paper_chain() {
        let w = imp(
            r#"[{"Name":"A","Ds":"NosqlKVDs","Start":true,"FaaS":"alifc",
             "Next":{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"}},
             {"Name":"B","Ds":"NosqlKVDs"}]"#,
        )
        .unwrap();
        assert_eq!(w.start, "A");
        assert_eq!(w.functions["B"].faas, "lambda");
        assert_eq!(w.functions["A"].faas, "alifc");
        assert_eq!(w.functions["B"].handler.as_deref(), Some("B"));
        assert_eq!(w.clouds, vec!["alifc".to_string(), "lambda".to_string()]);
        // Start without FaaS: the majority of its successors.
        let w = imp(r#"[{"Name":"A","Next":{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"}},{"Name":"B"}]"#).unwrap();
        assert_eq!(w.functions["A"].faas, "lambda");
        assert!(w.functions["A"].start);
    }

    #[test]
    fn paper_parallel_fan_in() {
        let src = r#"[
 {"Name":"A","Ds":"ObjectStore","TransferByDs":true,"Start":true,
  "Next":[{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"},
          {"Name":"C","FaaS":"alifc","InvokeMode":"Sequence","Failover":"lambda"}]},
 {"Name":"B","Ds":"ObjectStore","TransferByDs":true,
  "Next":{"Name":"D","FaaS":"lambda",
          "InvokeMode":{"FanIn":{"Branch":["s3-B_1-bindex-0","s3-C_1-bindex-1"]}},
          "ModifyEvent":["PopAndMerge"]}},
 {"Name":"C","Ds":"ObjectStore","TransferByDs":true,
  "Next":{"Name":"D","FaaS":"lambda",
          "InvokeMode":{"FanIn":{"Branch":["oss-B_1-bindex-0","oss-C_1-bindex-1"]}},
          "ModifyEvent":["PopAndMerge"]}},
 {"Name":"D","Ds":"ObjectStore"}]"#;
        let w = imp(src).unwrap();
        assert_eq!(w.functions["A"].faas, "alifc"); // tie lambda/alifc: first in sorted order
        assert_eq!(w.functions["C"].failover, vec!["lambda".to_string()]);
        assert_eq!(w.functions["D"].faas, "lambda");
        // Wrong count.
        let bad = src.replace(
            r#"["oss-B_1-bindex-0","oss-C_1-bindex-1"]"#,
            r#"["oss-B_1-bindex-0"]"#,
        );
        let e = imp(&bad).unwrap_err();
        let d = e.with_code("fan-in-mismatch").next().unwrap();
        assert!(
            d.message.contains("lists 1 branches") && d.message.contains("has 2"),
            "{d}"
        );
        assert_eq!(d.edge, Some(("C".into(), "D".into())));
        // Unknown branch function.
        let bad = src.replace("s3-C_1-bindex-1", "s3-X_1-bindex-1");
        let e = imp(&bad).unwrap_err();
        assert!(e.to_string().contains("names unknown function 'X'"), "{e}");
        // A branch naming a function that does not fan in.
        let bad = src.replace("s3-C_1-bindex-1", "s3-A_1-bindex-1");
        let e = imp(&bad).unwrap_err();
        assert!(
            e.to_string()
                .contains("names 'A', which has no FanIn edge to 'D'"),
            "{e}"
        );
        let bad = src.replace("s3-C_1-bindex-1", "garbage");
        assert!(
            imp(&bad)
                .unwrap_err()
                .to_string()
                .contains("is not an instance name")
        );
    }

    #[test]
    fn paper_map_cycle_choice_batch_redundant() {
        let map = r#"[{"Name":"A","Ds":"NosqlKVDs","FaaS":"lambda","Next":{"Name":"B","FaaS":"lambda","InvokeMode":"Map"}},
          {"Name":"B","Next":{"Name":"C","FaaS":"alifc","InvokeMode":"FanIn","ModifyEvent":["PopAndMerge"]}},
          {"Name":"C"}]"#;
        let w = imp(map).unwrap();
        assert_eq!(w.functions["C"].faas, "alifc");
        let cycle = r#"[{"Name":"A","FaaS":"lambda","Next":{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"}},
          {"Name":"B","Ds":"NosqlKVDs","TransferByDs":true,
           "Next":[{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence","Choice":"Iterator < 8","ModifyEvent":["Iterator+=1"]},
                   {"Name":"C","FaaS":"lambda","InvokeMode":"Sequence","Choice":"true"}]},
          {"Name":"C"}]"#;
        let w = imp(cycle).unwrap();
        assert_eq!(w.start, "A");
        let choice = r#"[{"Name":"A","FaaS":"lambda","Ds":"ObjectStore","TransferByDs":true,
          "Next":[{"Name":"B1","FaaS":"lambda","InvokeMode":"Sequence","Choice":"FaaS=='lambda'"},
                  {"Name":"B2","FaaS":"alifc","InvokeMode":"Sequence","Choice":"FaaS=='alifc'"}]},
          {"Name":"B1"},{"Name":"B2"}]"#;
        let w = imp(choice).unwrap();
        assert_eq!(w.functions["B2"].faas, "alifc");
        let batch = r#"[{"Name":"B","FaaS":"lambda","Ds":"NosqlKVDs","TransferByDs":true,
          "Next":{"Name":"X","FaaS":"lambda","InvokeMode":{"ByBatch":{"BatchSize":32,"WorkflowWait":["B_1","E_2"]}}}},
          {"Name":"X"}]"#;
        assert!(imp(batch).is_ok());
        let red = r#"[{"Name":"A","FaaS":"lambda","Next":[{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"},{"Name":"B1","FaaS":"alifc","InvokeMode":"Sequence"}]},
          {"Name":"B","Next":{"Name":"X","FaaS":"lambda","InvokeMode":{"ByRedundant":{"Completion":1,"WorkflowWait":["B_1","B1_1"]}}}},
          {"Name":"B1","Next":{"Name":"X","FaaS":"lambda","InvokeMode":{"ByRedundant":{"Completion":1,"WorkflowWait":["B_1","B1_1"]}}}},
          {"Name":"X"}]"#;
        let w = imp(red).unwrap();
        assert_eq!(w.functions["B1"].faas, "alifc");
        let fo = r#"[{"Name":"A","FaaS":"aws","Ds":"NosqlKVDs","Next":{"Name":"B","FaaS":"lambda","Failover":"alifc","InvokeMode":"Sequence"}},{"Name":"B"}]"#;
        let w = imp(fo).unwrap();
        assert_eq!(w.functions["B"].failover, vec!["alifc".to_string()]);
    }

    #[test]
    fn import_errors() {
        // Conflicting placements name both callers.
        let e = imp(r#"[{"Name":"A","FaaS":"x","Next":[{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"},{"Name":"C","FaaS":"x","InvokeMode":"Sequence"}]},
            {"Name":"B","Next":{"Name":"D","FaaS":"lambda","InvokeMode":"FanIn"}},
            {"Name":"C","Next":{"Name":"D","FaaS":"alifc","InvokeMode":"FanIn"}},
            {"Name":"D"}]"#)
        .unwrap_err();
        let d = e.with_code("cloud-conflict").next().unwrap();
        assert!(
            d.message
                .contains("'D' is placed on 'lambda' by 'B' but on 'alifc' by 'C'"),
            "{d}"
        );
        // Unknown successor, no cloud, multiple starts.
        let e = imp(r#"[{"Name":"A","Next":{"Name":"Bx","FaaS":"lambda","InvokeMode":"Sequence"}},{"Name":"B"}]"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown function 'Bx' (did you mean 'B'?)"),
            "{e}"
        );
        assert!(
            e.with_code("no-cloud")
                .any(|d| d.function.as_deref() == Some("B")),
            "{e}"
        );
        assert!(e.with_code("multiple-starts").next().is_some(), "{e}");
        let e =
            imp(r#"[{"Name":"A","Start":true,"FaaS":"l"},{"Name":"B","Start":true,"FaaS":"l"}]"#)
                .unwrap_err();
        assert!(e.with_code("multiple-starts").next().is_some());
        // Bad shape.
        let e = imp(r#"[{"Name":"A","FaaS":"l","Next":[{"Name":"B","FaaS":"l","InvokeMode":"Map"},{"Name":"B","FaaS":"l","InvokeMode":"Sequence"}]},{"Name":"B"}]"#).unwrap_err();
        assert!(e.with_code("bad-mode-mix").next().is_some(), "{e}");
        // Parse errors carry positions; choice expressions are parsed.
        let e = parse_subgraphs("[{\"Name\":\"A\",\n\"Next\":{\"Name\":\"B\",\"FaaS\":\"l\",\"InvokeMode\":\"Sequence\",\"Choice\":\"a &&\"}}]").unwrap_err();
        assert!(
            e.0[0].line == Some(2) && e.to_string().contains("invalid guard"),
            "{e}"
        );
        assert!(import("w", vec![]).is_err());
        // joint's Timeout and Env are checked as in a definition.
        let e = imp(r#"[{"Name":"A","FaaS":"l","Timeout":0,"Next":{"Name":"B","FaaS":"l","InvokeMode":"Sequence"}},
            {"Name":"B","Command":["cat"],"Env":{"JOINT_CLOUD":"x"}}]"#)
        .unwrap_err();
        let bf: Vec<_> = e.with_code("bad-field").collect();
        assert_eq!(bf.len(), 2, "{e}");
        assert!(
            bf.iter().any(|d| d.function.as_deref() == Some("A")
                && d.message.starts_with("Timeout: timeout must be at least")),
            "{e}"
        );
        assert!(
            bf.iter().any(|d| d.function.as_deref() == Some("B")
                && d.message.contains("'JOINT_CLOUD' is reserved")),
            "{e}"
        );
        let w =
            imp(r#"[{"Name":"A","FaaS":"l","Command":["cat"],"Timeout":0.25,"Env":{"K":"v"}}]"#)
                .unwrap();
        assert_eq!(w.functions["A"].timeout, Some(0.25));
    }

    #[test]
    fn branch_names() {
        let known: BTreeSet<&str> = ["B", "my-func", "s3-B"].into_iter().collect();
        assert_eq!(branch_function("B_1-bindex-0", &known), Ok("B"));
        assert_eq!(branch_function("s3-B_1-bindex-0", &known), Ok("s3-B"));
        assert_eq!(branch_function("dynamodb-B_12-bindex-0+3", &known), Ok("B"));
        assert_eq!(branch_function("my-func_2", &known), Ok("my-func"));
        assert_eq!(branch_function("kv-my-func_2", &known), Ok("my-func"));
        assert_eq!(branch_function("s3-Q_1", &known), Err(Some("Q")));
        assert_eq!(branch_function("B_x", &known), Err(None));
        assert_eq!(branch_function("B_1-bindex-", &known), Err(None));
    }
}
