//! `joint graph <definition>`: the workflow DAG as DOT, Mermaid or a self-laid-out SVG.
//!
//! Nodes are functions (name, handler or command, memory; cloud as colour and text, failover
//! clouds listed), edges carry the invoke mode (`sequence`, `parallel [i]`, `when: …`,
//! `map (≤ n)`, `fan_in`, `cycle ≤ n`, `by_batch n`, `by_redundant k`), the start node is marked.
//! The SVG layout is a small layered layout (longest path from the start, back edges ignored for
//! layering, barycentre ordering within layers) so no Graphviz is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use joint_core::subgraph::{InvokeMode, Shape, SubGraph};
use joint_core::workflow::Workflow;

use crate::timeline::{CLOUD_COLOURS, cap, esc};

/// One edge of the DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Caller.
    pub from: String,
    /// Successor.
    pub to: String,
    /// Invoke mode label.
    pub label: String,
    /// A guarded loop edge.
    pub cycle: bool,
    /// A Map edge (the successor runs once per element).
    pub map: bool,
}

/// Text of the node (without the name): handler or command and memory.
fn what(s: &SubGraph) -> String {
    let body = match (&s.handler, &s.command) {
        (Some(h), _) => format!("handler: {h}"),
        (None, Some(c)) => format!("command: {}", cap(&c.join(" "), 30)),
        (None, None) => "no handler".to_string(),
    };
    format!("{body} · {} MB", s.memory_mb)
}

/// The clouds a function may run on, besides its own: its failover list and its callers'.
fn failovers(w: &Workflow, name: &str) -> Vec<String> {
    let mut v: Vec<String> = w
        .functions
        .get(name)
        .map(|s| s.failover.clone())
        .unwrap_or_default();
    for s in w.functions.values() {
        for n in &s.next {
            if n.name == name {
                for f in &n.failover {
                    if !v.contains(f) {
                        v.push(f.clone());
                    }
                }
            }
        }
    }
    v
}

fn cloud_of(w: &Workflow, name: &str) -> String {
    let own = w
        .functions
        .get(name)
        .map(|s| s.faas.clone())
        .unwrap_or_default();
    if !own.is_empty() {
        return own;
    }
    w.functions
        .values()
        .flat_map(|s| &s.next)
        .find(|n| n.name == name)
        .map(|n| n.faas.clone())
        .unwrap_or_default()
}

fn colour(w: &Workflow, cloud: &str) -> &'static str {
    let i = w.clouds.iter().position(|c| c == cloud).unwrap_or(0);
    CLOUD_COLOURS[i % CLOUD_COLOURS.len()]
}

/// Every edge with its label, in function order then successor order.
pub fn edges(w: &Workflow) -> Vec<Edge> {
    let back = back_edges(w);
    let mut out = vec![];
    for s in w.functions.values() {
        let shape = s.shape().ok();
        for (i, n) in s.next.iter().enumerate() {
            let is_back = back.contains(&(s.name.clone(), i));
            let cycle = n.choice.is_some()
                && (n.max_iterations.is_some() || n.counter().is_some() || is_back);
            let label = match &n.invoke_mode {
                InvokeMode::Sequence => {
                    let guard = n.choice.as_ref().map(|g| format!("when: {g}"));
                    if cycle {
                        let bound = n
                            .max_iterations
                            .map(|m| format!("cycle ≤ {m}"))
                            .unwrap_or_else(|| "cycle".to_string());
                        match guard {
                            Some(g) => format!("{bound} · {g}"),
                            None => bound,
                        }
                    } else if let Some(g) = guard {
                        g
                    } else if shape == Some(Shape::Parallel) {
                        format!("parallel [{i}]")
                    } else {
                        "sequence".to_string()
                    }
                }
                InvokeMode::Map { max_concurrency } => match max_concurrency {
                    Some(c) => format!("map (≤ {c})"),
                    None => "map".to_string(),
                },
                InvokeMode::FanIn { .. } => "fan_in".to_string(),
                InvokeMode::ByBatch { batch_size, .. } => format!("by_batch {batch_size}"),
                InvokeMode::ByRedundant { completion, .. } => {
                    format!("by_redundant {completion}")
                }
            };
            out.push(Edge {
                from: s.name.clone(),
                to: n.name.clone(),
                label,
                cycle: cycle || is_back,
                map: matches!(n.invoke_mode, InvokeMode::Map { .. }),
            });
        }
    }
    out
}

/// Function names in DFS order from the start, then any unreachable ones.
fn dfs_order(w: &Workflow) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut order = vec![];
    let mut roots = vec![w.start.clone()];
    roots.extend(w.functions.keys().cloned());
    for r in roots {
        let mut stack = vec![r];
        while let Some(v) = stack.pop() {
            if !w.functions.contains_key(&v) || !seen.insert(v.clone()) {
                continue;
            }
            order.push(v.clone());
            if let Some(s) = w.functions.get(&v) {
                for n in s.next.iter().rev() {
                    stack.push(n.name.clone());
                }
            }
        }
    }
    order
}

/// Edges (caller, successor index) that close a cycle in a DFS from the start.
fn back_edges(w: &Workflow) -> BTreeSet<(String, usize)> {
    fn visit(
        w: &Workflow,
        v: &str,
        state: &mut BTreeMap<String, u8>,
        back: &mut BTreeSet<(String, usize)>,
    ) {
        state.insert(v.to_string(), 1);
        if let Some(s) = w.functions.get(v) {
            for (i, n) in s.next.iter().enumerate() {
                match state.get(&n.name).copied().unwrap_or(0) {
                    0 if w.functions.contains_key(&n.name) => visit(w, &n.name, state, back),
                    1 => {
                        back.insert((v.to_string(), i));
                    }
                    _ => {}
                }
            }
        }
        state.insert(v.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut back = BTreeSet::new();
    for r in std::iter::once(w.start.clone()).chain(w.functions.keys().cloned()) {
        if state.get(&r).copied().unwrap_or(0) == 0 && w.functions.contains_key(&r) {
            visit(w, &r, &mut state, &mut back);
        }
    }
    back
}

fn dot_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT.
pub fn to_dot(w: &Workflow) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "digraph \"{}\" {{", dot_str(&w.name));
    let _ = writeln!(
        o,
        "  rankdir=TB;\n  labelloc=t;\n  label=\"workflow {} · version {}\";\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];",
        dot_str(&w.name),
        &w.hash[..12.min(w.hash.len())]
    );
    let _ = writeln!(
        o,
        "  \"__start\" [shape=circle, style=filled, fillcolor=black, label=\"\", width=0.2];"
    );
    for (name, s) in &w.functions {
        let cloud = cloud_of(w, name);
        let fo = failovers(w, name);
        let mut label = format!("{name}\\n{}\\ncloud: {cloud}", dot_str(&what(s)));
        if !fo.is_empty() {
            let _ = write!(label, "\\nfailover: {}", fo.join(", "));
        }
        let _ = writeln!(
            o,
            "  \"{}\" [label=\"{}\", fillcolor=\"{}55\", color=\"{}\", penwidth={}];",
            dot_str(name),
            label,
            colour(w, &cloud),
            colour(w, &cloud),
            if *name == w.start { 3 } else { 1 }
        );
    }
    let _ = writeln!(
        o,
        "  \"__start\" -> \"{}\" [label=\"start\"];",
        dot_str(&w.start)
    );
    for e in edges(w) {
        let _ = writeln!(
            o,
            "  \"{}\" -> \"{}\" [label=\"{}\"{}];",
            dot_str(&e.from),
            dot_str(&e.to),
            dot_str(&e.label),
            if e.cycle {
                ", style=dashed, constraint=false"
            } else if e.map {
                ", penwidth=2.5"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(o, "  subgraph cluster_legend {{\n    label=\"clouds\";");
    for c in &w.clouds {
        let _ = writeln!(
            o,
            "    \"cloud:{}\" [label=\"{}\", fillcolor=\"{}55\", color=\"{}\"];",
            dot_str(c),
            dot_str(c),
            colour(w, c),
            colour(w, c)
        );
    }
    o.push_str("  }\n}\n");
    o
}

/// Escape text inside a quoted Mermaid label.
pub fn mermaid_str(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Mermaid flowchart.
pub fn to_mermaid(w: &Workflow) -> String {
    let ids: BTreeMap<&String, String> = w
        .functions
        .keys()
        .enumerate()
        .map(|(i, k)| (k, format!("f{i}")))
        .collect();
    let mut o = String::from("flowchart TD\n");
    let _ = writeln!(o, "  start_(( )) -->|start| {}", ids[&w.start]);
    for (name, s) in &w.functions {
        let cloud = cloud_of(w, name);
        let fo = failovers(w, name);
        let mut label = format!(
            "<b>{}</b><br/>{}<br/>cloud: {}",
            mermaid_str(name),
            mermaid_str(&what(s)),
            mermaid_str(&cloud)
        );
        if !fo.is_empty() {
            let _ = write!(label, "<br/>failover: {}", mermaid_str(&fo.join(", ")));
        }
        let _ = writeln!(o, "  {}[\"{}\"]", ids[name], label);
    }
    for e in edges(w) {
        let arrow = if e.cycle {
            "-.->"
        } else if e.map {
            "==>"
        } else {
            "-->"
        };
        let (Some(a), Some(b)) = (ids.get(&e.from), ids.get(&e.to)) else {
            continue;
        };
        let _ = writeln!(o, "  {a} {arrow}|\"{}\"| {b}", mermaid_str(&e.label));
    }
    for (i, c) in w.clouds.iter().enumerate() {
        let col = colour(w, c);
        let _ = writeln!(
            o,
            "  classDef cloud{i} fill:{col}55,stroke:{col},stroke-width:2px"
        );
        let members: Vec<&str> = w
            .functions
            .keys()
            .filter(|n| cloud_of(w, n) == *c)
            .map(|n| ids[n].as_str())
            .collect();
        if !members.is_empty() {
            let _ = writeln!(o, "  class {} cloud{i}", members.join(","));
        }
    }
    let _ = writeln!(o, "  style start_ fill:#000,stroke:#000");
    o
}

/// Node geometry in the SVG.
struct Placed {
    x: f64,
    y: f64,
}

/// Layers (longest path from the start over forward edges) and the order within each layer.
fn layout(w: &Workflow, es: &[Edge]) -> Vec<Vec<String>> {
    let order = dfs_order(w);
    let fwd: Vec<&Edge> = es
        .iter()
        .filter(|e| !e.cycle && e.from != e.to && w.functions.contains_key(&e.to))
        .collect();
    // Kahn's algorithm over forward edges, then longest path.
    let mut indeg: BTreeMap<&str, usize> = order.iter().map(|n| (n.as_str(), 0)).collect();
    for e in &fwd {
        *indeg.entry(e.to.as_str()).or_default() += 1;
    }
    let mut layer: BTreeMap<&str, usize> = order.iter().map(|n| (n.as_str(), 0)).collect();
    let mut queue: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|n| indeg[n] == 0)
        .collect();
    let mut done = 0;
    while let Some(v) = (!queue.is_empty()).then(|| queue.remove(0)) {
        done += 1;
        for e in fwd.iter().filter(|e| e.from == v) {
            let l = layer[v] + 1;
            let t = e.to.as_str();
            if layer[t] < l {
                layer.insert(t, l);
            }
            let d = indeg.get_mut(t).expect("known node");
            *d -= 1;
            if *d == 0 {
                queue.push(t);
            }
        }
    }
    let _ = done; // A cycle missed by the DFS leaves nodes at layer 0; still drawable.
    let depth = layer.values().copied().max().unwrap_or(0);
    let mut layers: Vec<Vec<String>> = vec![vec![]; depth + 1];
    for n in &order {
        layers[layer[n.as_str()]].push(n.clone());
    }
    // Barycentre sweeps to reduce crossings a little.
    let pos = |layers: &Vec<Vec<String>>| -> BTreeMap<String, f64> {
        let mut p = BTreeMap::new();
        for l in layers {
            for (i, n) in l.iter().enumerate() {
                p.insert(n.clone(), i as f64 - (l.len() as f64 - 1.0) / 2.0);
            }
        }
        p
    };
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        let p = pos(&layers);
        let range: Vec<usize> = if down {
            (1..layers.len()).collect()
        } else {
            (0..layers.len().saturating_sub(1)).rev().collect()
        };
        for li in range {
            let mut keyed: Vec<(f64, usize, String)> = layers[li]
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let nb: Vec<f64> = fwd
                        .iter()
                        .filter_map(|e| {
                            if down && e.to == *n {
                                p.get(&e.from).copied()
                            } else if !down && e.from == *n {
                                p.get(&e.to).copied()
                            } else {
                                None
                            }
                        })
                        .collect();
                    let b = if nb.is_empty() {
                        p[n]
                    } else {
                        nb.iter().sum::<f64>() / nb.len() as f64
                    };
                    (b, i, n.clone())
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            layers[li] = keyed.into_iter().map(|k| k.2).collect();
        }
    }
    layers
}

/// SVG drawing with its own layered layout.
pub fn to_svg(w: &Workflow) -> String {
    let es = edges(w);
    let layers = layout(w, &es);
    let map_targets: BTreeSet<&str> = es.iter().filter(|e| e.map).map(|e| e.to.as_str()).collect();
    let lines_of = |name: &str| -> Vec<String> {
        let s = &w.functions[name];
        let mut v = vec![
            name.to_string(),
            what(s),
            format!("cloud: {}", cloud_of(w, name)),
        ];
        let fo = failovers(w, name);
        if !fo.is_empty() {
            v.push(format!("failover: {}", fo.join(", ")));
        }
        v
    };
    let max_chars = w
        .functions
        .keys()
        .flat_map(|n| lines_of(n))
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(10);
    let node_w = (max_chars as f64 * 6.6 + 24.0).max(150.0);
    let max_lines = w
        .functions
        .keys()
        .map(|n| lines_of(n).len())
        .max()
        .unwrap_or(3);
    let node_h = 14.0 * max_lines as f64 + 14.0;
    let hgap = 60.0;
    let vgap = 90.0;
    let widest = layers.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let has_back = es.iter().any(|e| e.cycle);
    let legend_w = 200.0;
    let content_w = widest * node_w + (widest - 1.0) * hgap;
    let loop_room = if has_back { 200.0 } else { 40.0 };
    let width = (40.0 + content_w + loop_room + legend_w).max(640.0);
    let top = 120.0;
    let height = top + layers.len() as f64 * (node_h + vgap) - vgap + 30.0;
    let cx0 = 40.0 + content_w / 2.0;
    let mut at: BTreeMap<&str, Placed> = BTreeMap::new();
    for (li, l) in layers.iter().enumerate() {
        for (i, n) in l.iter().enumerate() {
            let x = cx0 + (i as f64 - (l.len() as f64 - 1.0) / 2.0) * (node_w + hgap);
            at.insert(
                n.as_str(),
                Placed {
                    x,
                    y: top + li as f64 * (node_h + vgap),
                },
            );
        }
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#333"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="20" y="28" font-size="18" font-weight="bold">workflow {}</text>
<text x="20" y="48" font-size="12" fill="#444">{} functions · start: {} · version {}</text>
<text x="20" y="64" font-size="12" fill="#444">edges: invoke mode · thick = map (stacked node: one instance per element) · dashed = cycle</text>"##,
        esc(&w.name),
        w.functions.len(),
        esc(&w.start),
        &w.hash[..12.min(w.hash.len())]
    );
    // Legend.
    let lx = width - legend_w + 10.0;
    let _ = writeln!(
        o,
        r#"<text x="{lx}" y="80" font-size="12" font-weight="bold">clouds</text>"#
    );
    for (i, c) in w.clouds.iter().enumerate() {
        let col = colour(w, c);
        let y = 90.0 + i as f64 * 20.0;
        let _ = writeln!(
            o,
            r#"<g class="legend-cloud"><rect x="{lx}" y="{y}" width="24" height="14" rx="3" fill="{col}" fill-opacity="0.33" stroke="{col}" stroke-width="2"/><text x="{}" y="{}" font-size="12">{}</text></g>"#,
            lx + 30.0,
            y + 11.0,
            esc(c)
        );
    }
    // Edges first (under the nodes).
    let mut labels = String::new();
    let mut out_count: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut in_count: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let fwd = |e: &Edge| !e.cycle && e.from != e.to;
    for e in es.iter().filter(|e| fwd(e)) {
        out_count.entry(e.from.as_str()).or_default().1 += 1;
        in_count.entry(e.to.as_str()).or_default().1 += 1;
    }
    // Sort so that exit/entry slots follow the horizontal order of the other end.
    let mut fwd_edges: Vec<&Edge> = es.iter().filter(|e| fwd(e)).collect();
    fwd_edges.sort_by(|a, b| {
        let ax = at.get(a.to.as_str()).map(|p| p.x).unwrap_or(0.0);
        let bx = at.get(b.to.as_str()).map(|p| p.x).unwrap_or(0.0);
        ax.total_cmp(&bx)
    });
    let mut out_slot: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for e in &fwd_edges {
        let c = out_count.get_mut(e.from.as_str()).expect("counted");
        out_slot.insert((&e.from, &e.to, &e.label), c.0);
        c.0 += 1;
    }
    fwd_edges.sort_by(|a, b| {
        let ax = at.get(a.from.as_str()).map(|p| p.x).unwrap_or(0.0);
        let bx = at.get(b.from.as_str()).map(|p| p.x).unwrap_or(0.0);
        ax.total_cmp(&bx)
    });
    let mut in_slot: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for e in &fwd_edges {
        let c = in_count.get_mut(e.to.as_str()).expect("counted");
        in_slot.insert((&e.from, &e.to, &e.label), c.0);
        c.0 += 1;
    }
    let label_box = |o: &mut String, x: f64, y: f64, text: &str, colour: &str| {
        let tw = text.chars().count() as f64 * 6.2 + 10.0;
        let _ = writeln!(
            o,
            r##"<g class="edge-label"><rect x="{:.1}" y="{:.1}" width="{tw:.1}" height="17" rx="4" fill="#ffffff" fill-opacity="0.92" stroke="{colour}" stroke-width="0.8"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{colour}">{}</text></g>"##,
            x - tw / 2.0,
            y - 12.0,
            y,
            esc(text)
        );
    };
    for e in es.iter() {
        let (Some(a), Some(b)) = (at.get(e.from.as_str()), at.get(e.to.as_str())) else {
            continue;
        };
        if fwd(e) {
            let key = (e.from.as_str(), e.to.as_str(), e.label.as_str());
            let (_, no) = out_count[e.from.as_str()];
            let (_, ni) = in_count[e.to.as_str()];
            let spread = |slot: usize, n: usize| {
                if n <= 1 {
                    0.0
                } else {
                    (slot as f64 / (n as f64 - 1.0) - 0.5) * node_w * 0.6
                }
            };
            let x1 = a.x + spread(out_slot[&key], no);
            let y1 = a.y + node_h;
            let x2 = b.x + spread(in_slot[&key], ni);
            let y2 = b.y - 2.0;
            let dy = (y2 - y1) * 0.5;
            let _ = writeln!(
                o,
                r##"<path class="edge" d="M{x1:.1} {y1:.1} C{x1:.1} {:.1} {x2:.1} {:.1} {x2:.1} {y2:.1}" fill="none" stroke="#333" stroke-width="{}" marker-end="url(#arrow)"/>"##,
                y1 + dy,
                y2 - dy,
                if e.map { 3.0 } else { 1.4 }
            );
            // Label on the curve, nearer the source when the edge skips layers.
            let t = if (b.y - a.y) > node_h + vgap + 1.0 {
                0.25
            } else {
                0.5
            };
            let bez = |p0: f64, p1: f64, p2: f64, p3: f64| {
                let u = 1.0 - t;
                u * u * u * p0 + 3.0 * u * u * t * p1 + 3.0 * u * t * t * p2 + t * t * t * p3
            };
            let lx = bez(x1, x1, x2, x2);
            let ly = bez(y1, y1 + dy, y2 - dy, y2) + 4.0;
            label_box(&mut labels, lx, ly, &e.label, "#222");
        } else if e.from == e.to {
            // Self loop on the right side.
            let x1 = a.x + node_w / 2.0;
            let y1 = a.y + node_h * 0.3;
            let y2 = a.y + node_h * 0.7;
            let _ = writeln!(
                o,
                r##"<path class="edge cycle" d="M{x1:.1} {y1:.1} C{:.1} {:.1} {:.1} {:.1} {:.1} {y2:.1}" fill="none" stroke="#7b1fa2" stroke-width="1.6" stroke-dasharray="6 3" marker-end="url(#arrow)"/>"##,
                x1 + 70.0,
                y1 - 30.0,
                x1 + 70.0,
                y2 + 30.0,
                x1 + 1.0
            );
            let text = &e.label;
            let tw = text.chars().count() as f64 * 6.2 + 10.0;
            label_box(
                &mut labels,
                x1 + 60.0 + tw / 2.0,
                a.y + node_h / 2.0 + 4.0,
                text,
                "#7b1fa2",
            );
        } else {
            // Back (or sideways) edge: out of the right side, around, into the right side.
            let x1 = a.x + node_w / 2.0;
            let y1 = a.y + node_h / 2.0;
            let x2 = b.x + node_w / 2.0 + 2.0;
            let y2 = b.y + node_h / 2.0;
            let rx = x1.max(x2) + 90.0;
            let _ = writeln!(
                o,
                r##"<path class="edge cycle" d="M{x1:.1} {y1:.1} C{rx:.1} {y1:.1} {rx:.1} {y2:.1} {x2:.1} {y2:.1}" fill="none" stroke="#7b1fa2" stroke-width="1.6" stroke-dasharray="6 3" marker-end="url(#arrow)"/>"##
            );
            let text = &e.label;
            let tw = text.chars().count() as f64 * 6.2 + 10.0;
            label_box(
                &mut labels,
                rx - 20.0 + tw / 2.0,
                (y1 + y2) / 2.0 + 4.0,
                text,
                "#7b1fa2",
            );
        }
    }
    // Start marker.
    if let Some(p) = at.get(w.start.as_str()) {
        let _ = writeln!(
            o,
            r##"<g class="start"><circle cx="{:.1}" cy="{:.1}" r="7" fill="#000"/><text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold">start</text><path d="M{:.1} {:.1} V{:.1}" stroke="#000" stroke-width="1.6" marker-end="url(#arrow)"/></g>"##,
            p.x,
            p.y - 40.0,
            p.x + 12.0,
            p.y - 36.0,
            p.x,
            p.y - 33.0,
            p.y - 2.0
        );
    }
    // Nodes.
    for (name, p) in &at {
        let cloud = cloud_of(w, name);
        let col = colour(w, &cloud);
        let x0 = p.x - node_w / 2.0;
        let start = *name == w.start;
        let _ = writeln!(
            o,
            r#"<g class="node" data-function="{}" data-cloud="{}">"#,
            esc(name),
            esc(&cloud)
        );
        if map_targets.contains(name) {
            // A stack: the function runs once per element of the mapped list.
            for k in [2.0, 1.0] {
                let _ = writeln!(
                    o,
                    r##"<rect x="{:.1}" y="{:.1}" width="{node_w:.1}" height="{node_h:.1}" rx="8" fill="#ffffff" stroke="{col}" stroke-width="1.2"/>"##,
                    x0 + 5.0 * k,
                    p.y - 5.0 * k
                );
            }
        }
        let _ = writeln!(
            o,
            r##"<rect x="{x0:.1}" y="{:.1}" width="{node_w:.1}" height="{node_h:.1}" rx="8" fill="#ffffff"/><rect x="{x0:.1}" y="{:.1}" width="{node_w:.1}" height="{node_h:.1}" rx="8" fill="{col}" fill-opacity="0.3" stroke="{col}" stroke-width="{}"/>"##,
            p.y,
            p.y,
            if start { 3.5 } else { 2.0 }
        );
        for (i, line) in lines_of(name).iter().enumerate() {
            let (size, weight, fill) = if i == 0 {
                (13.5, "bold", "#000")
            } else {
                (11.0, "normal", "#333")
            };
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" font-size="{size}" font-weight="{weight}" text-anchor="middle" fill="{fill}">{}</text>"#,
                p.x,
                p.y + 18.0 + 14.0 * i as f64,
                esc(line)
            );
        }
        o.push_str("</g>\n");
    }
    o.push_str(&labels);
    o.push_str("</svg>\n");
    o
}

/// Output format of `joint graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// SVG with joint's own layout (no Graphviz needed).
    Svg,
}

/// `joint graph`: load, draw, print or write.
pub fn command(
    definition: &std::path::Path,
    format: Format,
    out: Option<&std::path::Path>,
) -> std::process::ExitCode {
    let w = match crate::load::load_workflow(definition) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    let text = match format {
        Format::Dot => to_dot(&w),
        Format::Mermaid => to_mermaid(&w),
        Format::Svg => to_svg(&w),
    };
    match out {
        None => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Some(p) => match std::fs::write(p, text) {
            Ok(()) => {
                eprintln!("graph of '{}': {}", w.name, p.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", p.display());
                std::process::ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(src: &str) -> Workflow {
        joint_core::compile::load("t.yaml", src).expect("valid workflow")
    }

    const DEMO: &str = r#"
workflow: demo
functions:
  - name: split
    cloud: local-a
    handler: split
    output: list
    next: [{ to: square, mode: map, concurrency: 4 }]
  - name: square
    cloud: local-b
    failover: [local-c]
    handler: square
    next: [{ to: total, mode: fan_in }]
  - name: total
    cloud: local-c
    handler: sum
    next:
      - { to: celebrate, when: "output > 100" }
      - { to: report, when: "true" }
  - name: celebrate
    cloud: local-a
    handler: inc
  - name: report
    cloud: local-a
    handler: echo
"#;

    const CYCLE: &str = r#"
workflow: cycle
functions:
  - name: init
    handler: echo
    next: [{ to: a }, { to: b }]
  - name: a
    handler: count
    next:
      - { to: a, mode: cycle, when: "output.i < 5", counter: Iterator, max_iterations: 10 }
      - { to: j, when: "true" }
  - name: j
    handler: echo
    next: [{ to: done, mode: fan_in }]
  - name: b
    handler: inc
    next: [{ to: done, mode: fan_in }]
  - name: done
    handler: sum
"#;

    #[test]
    fn labels() {
        let w = wf(DEMO);
        let l: Vec<String> = edges(&w).into_iter().map(|e| e.label).collect();
        assert!(l.contains(&"map (≤ 4)".to_string()), "{l:?}");
        assert!(l.contains(&"fan_in".to_string()));
        assert!(l.contains(&"when: output > 100".to_string()));
        assert!(l.contains(&"when: true".to_string()));
        let w = wf(CYCLE);
        let l: Vec<String> = edges(&w).into_iter().map(|e| e.label).collect();
        assert!(
            l.contains(&"cycle ≤ 10 · when: output.i < 5".to_string()),
            "{l:?}"
        );
        assert!(l.contains(&"parallel [0]".to_string()));
        assert!(l.contains(&"parallel [1]".to_string()));
    }

    #[test]
    fn layering() {
        let w = wf(DEMO);
        let layers = layout(&w, &edges(&w));
        assert_eq!(layers[0], vec!["split"]);
        assert_eq!(layers[1], vec!["square"]);
        assert_eq!(layers[2], vec!["total"]);
        assert_eq!(layers[3].len(), 2);
        let w = wf(CYCLE);
        let layers = layout(&w, &edges(&w));
        assert_eq!(layers.len(), 4, "{layers:?}");
        assert_eq!(layers[1].len(), 2, "{layers:?}");
        assert_eq!(layers[3], vec!["done"]);
    }

    #[test]
    fn formats() {
        let w = wf(DEMO);
        let dot = to_dot(&w);
        assert!(dot.starts_with("digraph \"demo\""));
        assert!(dot.contains("\"split\" -> \"square\" [label=\"map (≤ 4)\""));
        assert!(dot.contains("failover: local-c"));
        let mm = to_mermaid(&w);
        assert!(mm.starts_with("flowchart TD"));
        assert!(mm.contains("when: output #gt; 100"));
        let svg = to_svg(&w);
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
        assert_eq!(svg.matches("class=\"node\"").count(), 5);
        assert!(svg.contains(">start</text>"));
        let svg = to_svg(&wf(CYCLE));
        assert!(svg.contains("edge cycle"));
    }
}
