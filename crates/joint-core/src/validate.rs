//! Validation of a [`Definition`]: every error names its function or edge (and its line and column
//! when the definition was parsed from text), and all errors are reported, not just the first.
//!
//! Besides per-field checks, a graph walk follows every path from the start function while keeping
//! the stack of open forks (Parallel and Map), exactly as the runtime's branch stack evolves: a
//! Parallel or Map pushes a level, a `fan_in`/`by_redundant` edge pops it, a `by_batch` edge ends the
//! thread (its target starts a new run). The walk visits each function once per distinct stack, so
//! loops terminate. It checks that no thread can end inside an open fork, that every branch of a fork
//! joins, that all branches of a fork join at the same aggregator and that an aggregator joins
//! exactly one fork.
//!
//! Error codes: `invalid-name`, `duplicate-function`, `unknown-function`, `unknown-cloud`,
//! `no-implementation`, `two-implementations`, `no-start`, `multiple-starts`, `unreachable`,
//! `unguarded-cycle`, `cycle-without-bound`, `bad-choice`, `bad-mode-mix`, `fan-in-mismatch`,
//! `bad-field`, `map-over-non-list`; warning: `unknown-variable`.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use crate::def::{DEFAULT_COUNTER, Definition, EdgeDef, EdgeMode, FunctionDef, OutputType};
use crate::diag::{Diagnostic, Diagnostics, line_col, locate_from, suggestion};
use crate::expr::Expr;
use crate::naming::valid_id;
use crate::subgraph::{
    CheckpointPolicy, DsKind, InvokeMode, ModifyOp, NextEntry, RetryPolicy, Shape, SubGraph,
};

/// Roots a guard may read besides loop counters.
pub const GUARD_ROOTS: [&str; 6] = ["output", "input", "FaaS", "cloud", "step", "branch"];

/// Upper bound on (function, fork stack) states the fork walk explores.
const MAX_STATES: usize = 200_000;

/// The kind of a fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkKind {
    /// Two or more unguarded sequence edges.
    Parallel,
    /// A map edge.
    Map,
}

impl ForkKind {
    fn describe(self) -> &'static str {
        match self {
            ForkKind::Parallel => "Parallel fork",
            ForkKind::Map => "Map",
        }
    }
}

/// What the fork analysis learned about one aggregator (the target of `fan_in`/`by_redundant`
/// edges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The function whose fork this aggregator joins.
    pub fork: String,
    /// Parallel or Map.
    pub kind: ForkKind,
    /// Number of branches of a Parallel fork (`None` for a Map: decided at run time).
    pub branches: Option<u32>,
    /// (branch index at the fork, function whose join edge closes that branch), sorted.
    pub sources: BTreeSet<(u32, String)>,
    /// The fork itself runs inside another fork (its instances carry outer branch levels).
    pub nested: bool,
}

/// Static facts about a valid definition, used by the compiler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The start function, when it could be determined.
    pub start: Option<String>,
    /// Joins by aggregator name.
    pub joins: BTreeMap<String, Join>,
    /// Loop counters declared by cycle edges.
    pub counters: BTreeSet<String>,
}

/// Validate a definition; returns every error and warning (empty when all is well).
pub fn validate(def: &Definition) -> Diagnostics {
    analyze(def).1
}

/// Validate and return the static facts the compiler needs alongside the diagnostics.
pub fn analyze(def: &Definition) -> (Analysis, Diagnostics) {
    let loc = Locator::new(def);
    let mut out = Diagnostics::new();
    let mut analysis = Analysis::default();

    if !valid_id(&def.workflow) {
        out.push(
            Diagnostic::error(
                "invalid-name",
                format!(
                    "workflow name '{}' is invalid: use 1-128 letters, digits, '_', '-' or '.' (not starting with '.')",
                    def.workflow
                ),
            )
            .at(loc.pos(locate_from(loc.src, 0, "workflow", Some(&def.workflow)))),
        );
    }
    if def.functions.is_empty() {
        out.push(Diagnostic::error(
            "no-start",
            "the workflow has no functions",
        ));
        return (analysis, out);
    }
    if def.defaults.memory_mb == Some(0) {
        out.push(
            Diagnostic::error("bad-field", "defaults.memory_mb must be at least 1")
                .at(loc.pos(locate_from(loc.src, 0, "memory_mb", None))),
        );
    }
    if let Some(r) = def.defaults.retry
        && r.max_attempts == 0
    {
        out.push(
            Diagnostic::error(
                "bad-field",
                "defaults.retry.max_attempts must be at least 1",
            )
            .at(loc.pos(locate_from(loc.src, 0, "max_attempts", None))),
        );
    }

    // Names.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut structural = false; // errors that make the graph walk meaningless
    for (i, f) in def.functions.iter().enumerate() {
        if !valid_id(&f.name) {
            out.push(
                Diagnostic::error(
                    "invalid-name",
                    format!(
                        "function name '{}' is invalid: use 1-128 letters, digits, '_', '-' or '.' (not starting with '.')",
                        f.name
                    ),
                )
                .with_function(&f.name)
                .at(loc.func(i)),
            );
        }
        if let Some(&first) = index.get(f.name.as_str()) {
            let where_first = loc
                .func(first)
                .map(|(l, _)| format!(" (first defined at line {l})"))
                .unwrap_or_default();
            out.push(
                Diagnostic::error(
                    "duplicate-function",
                    format!(
                        "function '{}' is defined more than once{where_first}",
                        f.name
                    ),
                )
                .with_function(&f.name)
                .at(loc.func(i)),
            );
            structural = true;
        } else {
            index.insert(&f.name, i);
        }
    }

    // Loop counters declared anywhere (guards may read them).
    for f in &def.functions {
        for e in &f.next {
            if e.mode == EdgeMode::Cycle {
                analysis.counters.insert(
                    e.counter
                        .clone()
                        .unwrap_or_else(|| DEFAULT_COUNTER.to_string()),
                );
            }
        }
    }

    // Per-function checks.
    for (i, f) in def.functions.iter().enumerate() {
        check_function(def, i, f, &loc, &index, &analysis.counters, &mut out);
        for (j, e) in f.next.iter().enumerate() {
            if !index.contains_key(e.to.as_str()) {
                structural = true;
            }
            check_edge(def, i, j, f, e, &loc, &index, &analysis.counters, &mut out);
        }
        let sub = shape_probe(f);
        if let Err(msg) = sub.shape() {
            let prefix = format!("function '{}' ", f.name);
            let msg = msg.strip_prefix(&prefix).unwrap_or(&msg).to_string();
            let hint = if f.next.iter().any(|e| e.mode == EdgeMode::Cycle) {
                " (a cycle edge is a guarded edge: give the function's other edges a `when` too, e.g. when: \"true\")"
            } else {
                ""
            };
            out.push(
                Diagnostic::error("bad-mode-mix", format!("{msg}{hint}"))
                    .with_function(&f.name)
                    .at(loc.func(i)),
            );
            structural = true;
        }
    }

    // Graph-level checks on the functions with unique names and edges with known targets.
    let graph = Graph::from_definition(def, &index);
    out.0.extend(graph.unguarded_cycles());
    let explicit: Vec<usize> = def
        .functions
        .iter()
        .enumerate()
        .filter(|(i, f)| f.start && index.get(f.name.as_str()) == Some(i))
        .map(|(i, _)| graph.node_of_function(i))
        .collect();
    match graph.find_start(&explicit) {
        Ok(s) => {
            analysis.start = Some(graph.names[s].clone());
            out.0.extend(graph.unreachable(s));
            if !structural {
                let (joins, diags) = graph.forks(s);
                analysis.joins = joins;
                out.0.extend(diags);
            }
        }
        Err(d) => out.push(*d),
    }

    // Positions for graph-level diagnostics.
    for d in &mut out.0 {
        if d.line.is_none() {
            let pos = if let Some((a, b)) = &d.edge {
                index.get(a.as_str()).and_then(|&i| {
                    def.functions[i]
                        .next
                        .iter()
                        .position(|e| &e.to == b)
                        .and_then(|j| loc.edge(i, j))
                })
            } else if let Some(f) = &d.function {
                index.get(f.as_str()).and_then(|&i| loc.func(i))
            } else {
                None
            };
            *d = d.clone().at(pos);
        }
    }
    out.sort_and_dedup();
    (analysis, out)
}

fn check_function(
    def: &Definition,
    i: usize,
    f: &FunctionDef,
    loc: &Locator<'_>,
    _index: &BTreeMap<&str, usize>,
    _counters: &BTreeSet<String>,
    out: &mut Diagnostics,
) {
    let err = |code: &'static str, msg: String| Diagnostic::error(code, msg).with_function(&f.name);
    let kinds: Vec<&str> = [
        f.handler.as_ref().map(|_| "handler"),
        f.command.as_ref().map(|_| "command"),
        f.worker.as_ref().map(|_| "worker"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match kinds.as_slice() {
        [] => out.push(
            err(
                "no-implementation",
                "has neither `handler`, `command` nor `worker`; set exactly one".into(),
            )
            .at(loc.func(i)),
        ),
        [_] => {}
        [_, second, ..] => out.push(
            err(
                "two-implementations",
                format!(
                    "has {}; set exactly one of `handler`, `command` and `worker`",
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )
            .at(loc.field(i, second).or(loc.func(i))),
        ),
    }
    if let Some(h) = &f.handler
        && h.trim().is_empty()
    {
        out.push(err("bad-field", "`handler` is empty".into()).at(loc.field(i, "handler")))
    }
    for (field, argv) in [("command", &f.command), ("worker", &f.worker)] {
        if let Some(c) = argv
            && (c.is_empty() || c[0].trim().is_empty())
        {
            out.push(
                err(
                    "bad-field",
                    format!("`{field}` must name a program, e.g. [\"python3\", \"step.py\"]"),
                )
                .at(loc.field(i, field)),
            );
        }
    }
    if f.memory_mb == Some(0) {
        out.push(
            err("bad-field", "memory_mb must be at least 1".into()).at(loc.field(i, "memory_mb")),
        );
    }
    if let Some(r) = f.retry
        && r.max_attempts == 0
    {
        out.push(
            err(
                "bad-field",
                "retry.max_attempts must be at least 1 (1 = no retry)".into(),
            )
            .at(loc.field(i, "max_attempts")),
        );
    }
    if let Some(t) = f.timeout
        && let Some(msg) = timeout_problem(t)
    {
        out.push(err("bad-field", msg).at(loc.field(i, "timeout")));
    }
    if let Some(env) = &f.env {
        if f.command.is_none() && f.worker.is_none() {
            out.push(
                err(
                    "bad-field",
                    "`env` applies to `command` and `worker` functions only".into(),
                )
                .at(loc.field(i, "env")),
            );
        }
        for (name, msg) in env_problems(env) {
            let at = loc
                .field(i, name)
                .filter(|_| !name.is_empty())
                .or(loc.field(i, "env"));
            out.push(err("bad-field", msg).at(at));
        }
    }
    if let Some(clouds) = &def.clouds {
        let known = || clouds.keys().map(String::as_str);
        let cloud = def.cloud_of(f);
        if !clouds.contains_key(&cloud) {
            let how = if f.cloud.is_some() {
                String::new()
            } else if def.defaults.cloud.is_some() {
                " (from defaults.cloud)".to_string()
            } else {
                " (the default cloud; set `cloud`)".to_string()
            };
            out.push(
                err(
                    "unknown-cloud",
                    format!(
                        "runs on cloud '{cloud}'{how}, which `clouds` does not list{}",
                        suggestion(&cloud, known())
                    ),
                )
                .at(loc.field(i, "cloud").or(loc.func(i))),
            );
        }
        for c in def.failover_of(f) {
            if !clouds.contains_key(&c) {
                out.push(
                    err(
                        "unknown-cloud",
                        format!(
                            "fails over to cloud '{c}', which `clouds` does not list{}",
                            suggestion(&c, known())
                        ),
                    )
                    .at(loc.field(i, "failover").or(loc.func(i))),
                );
            }
        }
    }
    if f.output != OutputType::Any && f.output != OutputType::List {
        for (j, e) in f.next.iter().enumerate() {
            if e.mode == EdgeMode::Map {
                out.push(
                    Diagnostic::error(
                        "map-over-non-list",
                        format!(
                            "a map edge needs a list output, but function '{}' declares `output: {}`",
                            f.name,
                            serde_json::to_value(f.output)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default()
                        ),
                    )
                    .with_edge(&f.name, &e.to)
                    .at(loc.edge(i, j)),
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_edge(
    def: &Definition,
    i: usize,
    j: usize,
    f: &FunctionDef,
    e: &EdgeDef,
    loc: &Locator<'_>,
    index: &BTreeMap<&str, usize>,
    counters: &BTreeSet<String>,
    out: &mut Diagnostics,
) {
    let at = loc.edge(i, j);
    let err =
        |code: &'static str, msg: String| Diagnostic::error(code, msg).with_edge(&f.name, &e.to);
    let field_at = |key: &str| loc.edge_field(i, j, key).or(at);
    if !index.contains_key(e.to.as_str()) {
        out.push(
            err(
                "unknown-function",
                format!(
                    "unknown function '{}'{}",
                    e.to,
                    suggestion(&e.to, index.keys().copied())
                ),
            )
            .at(at),
        );
    }
    let mode = e.mode.as_str();
    let only = |field: &str, allowed: &str| {
        format!("`{field}` only applies to {allowed} edges, not to a {mode} edge")
    };
    if let Some(c) = e.concurrency {
        if e.mode != EdgeMode::Map {
            out.push(err("bad-field", only("concurrency", "map")).at(field_at("concurrency")));
        } else if c == 0 {
            out.push(
                err("bad-field", "concurrency must be at least 1".into())
                    .at(field_at("concurrency")),
            );
        }
    }
    if e.counter.is_some() && e.mode != EdgeMode::Cycle {
        out.push(err("bad-field", only("counter", "cycle")).at(field_at("counter")));
    }
    if e.max_iterations.is_some() && e.mode != EdgeMode::Cycle {
        out.push(err("bad-field", only("max_iterations", "cycle")).at(field_at("max_iterations")));
    }
    match (e.mode, e.batch_size) {
        (EdgeMode::ByBatch, None) => {
            out.push(err("bad-field", "a by_batch edge needs `batch_size`".into()).at(at))
        }
        (EdgeMode::ByBatch, Some(0)) => out.push(
            err("bad-field", "batch_size must be at least 1".into()).at(field_at("batch_size")),
        ),
        (EdgeMode::ByBatch, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            out.push(err("bad-field", only("batch_size", "by_batch")).at(field_at("batch_size")))
        }
    }
    match (e.mode, e.completion) {
        (EdgeMode::ByRedundant, None) => out.push(
            err(
                "bad-field",
                "a by_redundant edge needs `completion` (k of n)".into(),
            )
            .at(at),
        ),
        (EdgeMode::ByRedundant, Some(0)) => out.push(
            err("bad-field", "completion must be at least 1".into()).at(field_at("completion")),
        ),
        (EdgeMode::ByRedundant, Some(_)) | (_, None) => {}
        (_, Some(_)) => out
            .push(err("bad-field", only("completion", "by_redundant")).at(field_at("completion"))),
    }
    if e.when.is_some() && !matches!(e.mode, EdgeMode::Sequence | EdgeMode::Cycle) {
        out.push(err("bad-field", only("when", "sequence and cycle")).at(field_at("when")));
    }
    if e.mode == EdgeMode::Cycle {
        if e.when.is_none() {
            out.push(
                err(
                    "unguarded-cycle",
                    "a cycle edge needs a `when` guard (the loop continues while it is true)"
                        .into(),
                )
                .at(at),
            );
        }
        match e.max_iterations {
            None => out.push(err(
                "cycle-without-bound",
                "a cycle edge needs `max_iterations` (the run fails when the loop is taken more often)".into(),
            )
            .at(at)),
            Some(0) => out.push(err("bad-field", "max_iterations must be at least 1".into()).at(field_at("max_iterations"))),
            Some(_) => {}
        }
        let counter = e.counter.as_deref().unwrap_or(DEFAULT_COUNTER);
        let ok = format!("{counter}+=1").parse::<ModifyOp>().is_ok()
            && !counter.contains(['+', '-', '=', ' ']);
        if !ok || counter.is_empty() {
            out.push(
                err(
                    "bad-field",
                    format!("counter '{counter}' is not a variable name (letters, digits, '_')"),
                )
                .at(field_at("counter")),
            );
        } else if GUARD_ROOTS.contains(&counter) {
            out.push(
                err(
                    "bad-field",
                    format!(
                        "counter '{counter}' clashes with the built-in guard variable of that name"
                    ),
                )
                .at(field_at("counter")),
            );
        }
    }
    if let Some(w) = &e.when {
        match Expr::parse(w) {
            Err(pe) => {
                let pos = loc
                    .expr_column(i, w, pe.column)
                    .or_else(|| field_at("when"));
                out.push(
                    err(
                        "bad-choice",
                        format!(
                            "invalid guard \"{w}\": column {}: {}",
                            pe.column, pe.message
                        ),
                    )
                    .at(pos),
                );
            }
            Ok(expr) => {
                for root in expr.roots() {
                    if !GUARD_ROOTS.contains(&root.as_str()) && !counters.contains(&root) {
                        let known: Vec<&str> = GUARD_ROOTS
                            .iter()
                            .copied()
                            .chain(counters.iter().map(String::as_str))
                            .collect();
                        out.push(
                            Diagnostic::warning(
                                "unknown-variable",
                                format!(
                                    "guard \"{w}\" reads '{root}', which is neither a built-in variable ({}) nor a loop counter declared by a cycle edge{}",
                                    GUARD_ROOTS.join(", "),
                                    suggestion(&root, known.iter().copied())
                                ),
                            )
                            .with_edge(&f.name, &e.to)
                            .at(field_at("when")),
                        );
                    }
                }
            }
        }
    }
    if let (Some(clouds), Some(fo)) = (&def.clouds, &e.failover) {
        for c in fo {
            if !clouds.contains_key(c) {
                out.push(
                    err(
                        "unknown-cloud",
                        format!(
                            "fails over to cloud '{c}', which `clouds` does not list{}",
                            suggestion(c, clouds.keys().map(String::as_str))
                        ),
                    )
                    .at(field_at("failover")),
                );
            }
        }
    }
}

/// The invoke mode of an edge in the sub-graph IR (cycle edges are guarded sequences).
pub(crate) fn invoke_mode_of(e: &EdgeDef) -> InvokeMode {
    match e.mode {
        EdgeMode::Sequence | EdgeMode::Cycle => InvokeMode::Sequence,
        EdgeMode::Map => InvokeMode::Map {
            max_concurrency: e.concurrency,
        },
        EdgeMode::FanIn => InvokeMode::FanIn { branch: vec![] },
        EdgeMode::ByBatch => InvokeMode::ByBatch {
            batch_size: e.batch_size.unwrap_or(1),
            workflow_wait: vec![],
        },
        EdgeMode::ByRedundant => InvokeMode::ByRedundant {
            completion: e.completion.unwrap_or(1),
            workflow_wait: vec![],
        },
    }
}

/// Why `secs` is not a valid `timeout`, if it is not.
pub(crate) fn timeout_problem(secs: f64) -> Option<String> {
    use crate::def::MAX_TIMEOUT_SECS;
    if !secs.is_finite() {
        Some(format!("timeout must be a number of seconds, not {secs}"))
    } else if secs < 0.001 {
        Some(format!(
            "timeout must be at least 0.001 seconds (it is the time one attempt may take); got {secs}"
        ))
    } else if secs > MAX_TIMEOUT_SECS {
        Some(format!(
            "timeout must be at most {MAX_TIMEOUT_SECS} seconds (one day); got {secs}"
        ))
    } else {
        None
    }
}

/// The problems of a command's `env`: (variable name, message) for each bad entry.
pub(crate) fn env_problems(env: &BTreeMap<String, String>) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    for (name, value) in env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push((
                name.as_str(),
                format!(
                    "env variable name '{name}' is invalid: use letters, digits and '_', not starting with a digit"
                ),
            ));
        } else if name.to_ascii_uppercase().starts_with("JOINT_") {
            out.push((
                name.as_str(),
                format!(
                    "env variable '{name}' is reserved: the runtime sets the JOINT_* variables itself"
                ),
            ));
        }
        if value.contains('\0') {
            out.push((
                name.as_str(),
                format!("env variable '{name}' contains a NUL character"),
            ));
        }
    }
    out
}

/// A sub-graph with default fields and the given name.
pub(crate) fn blank_subgraph(name: &str) -> SubGraph {
    SubGraph {
        name: name.to_string(),
        ds: DsKind::NosqlKVDs,
        transfer_by_ds: false,
        start: false,
        next: vec![],
        faas: String::new(),
        failover: vec![],
        checkpoint: CheckpointPolicy::Eager,
        memory_mb: crate::def::DEFAULT_MEMORY_MB,
        handler: None,
        command: None,
        worker: None,
        env: BTreeMap::new(),
        timeout: None,
        retry: RetryPolicy::default(),
        workflow: String::new(),
        clouds: vec![],
        inline_limit: BTreeMap::new(),
    }
}

/// A sub-graph carrying only the successor set, to ask [`SubGraph::shape`] about it.
fn shape_probe(f: &FunctionDef) -> SubGraph {
    let placeholder = Expr::parse("true").ok();
    let mut s = blank_subgraph(&f.name);
    s.next = f
        .next
        .iter()
        .map(|e| NextEntry {
            name: e.to.clone(),
            faas: String::new(),
            invoke_mode: invoke_mode_of(e),
            choice: if e.when.is_some() || e.mode == EdgeMode::Cycle {
                placeholder.clone()
            } else {
                None
            },
            failover: vec![],
            modify_event: vec![],
            max_iterations: None,
        })
        .collect();
    s
}

// ---------------------------------------------------------------------------------------------
// Source positions
// ---------------------------------------------------------------------------------------------

struct Locator<'a> {
    src: &'a str,
    funcs: Vec<Option<usize>>,
    edges: Vec<Vec<Option<usize>>>,
}

impl<'a> Locator<'a> {
    fn new(def: &'a Definition) -> Locator<'a> {
        let src = def.source.as_deref().unwrap_or("");
        let mut funcs = Vec::new();
        let mut edges = Vec::new();
        let mut from = locate_from(src, 0, "functions", None).unwrap_or(0);
        for f in &def.functions {
            let off = locate_from(src, from, "name", Some(&f.name));
            if let Some(o) = off {
                from = o + 1;
            }
            funcs.push(off);
            let mut efrom = off.unwrap_or(from);
            let mut es = Vec::new();
            for e in &f.next {
                let eo = locate_from(src, efrom, "to", Some(&e.to));
                if let Some(o) = eo {
                    efrom = o + 1;
                }
                es.push(eo);
            }
            edges.push(es);
        }
        Locator { src, funcs, edges }
    }

    fn pos(&self, off: Option<usize>) -> Option<(usize, usize)> {
        off.map(|o| line_col(self.src, o))
    }

    fn func(&self, i: usize) -> Option<(usize, usize)> {
        self.pos(self.funcs.get(i).copied().flatten())
    }

    fn edge(&self, i: usize, j: usize) -> Option<(usize, usize)> {
        self.pos(self.edges.get(i).and_then(|e| e.get(j)).copied().flatten())
    }

    /// The next occurrence of `key` after the function's name, before the next function.
    fn field(&self, i: usize, key: &str) -> Option<(usize, usize)> {
        let start = self.funcs.get(i).copied().flatten()?;
        let end = self
            .funcs
            .get(i + 1)
            .copied()
            .flatten()
            .unwrap_or(self.src.len());
        // Also look a little before the name (the key may precede `name` in the mapping).
        let prev = i
            .checked_sub(1)
            .and_then(|p| self.funcs.get(p).copied().flatten())
            .map_or(0, |p| p + 1);
        let open = self
            .src
            .get(..start)?
            .rfind(['{', '-'])
            .filter(|&o| o >= prev)
            .unwrap_or(start);
        let off = locate_from(self.src, open, key, None).filter(|&o| o < end)?;
        Some(line_col(self.src, off))
    }

    /// `key` after the edge's `to`, before the function's next edge.
    fn edge_field(&self, i: usize, j: usize, key: &str) -> Option<(usize, usize)> {
        let es = self.edges.get(i)?;
        let start = es.get(j).copied().flatten()?;
        let end = es
            .get(j + 1)
            .copied()
            .flatten()
            .or_else(|| self.funcs.get(i + 1).copied().flatten())
            .unwrap_or(self.src.len());
        // The key may also come before `to` on the same edge (`{ when: x, to: y }`).
        let edge_start = self.src.get(..start)?.rfind(['{', '-']).unwrap_or(start);
        let off = locate_from(self.src, edge_start, key, None).filter(|&o| o < end)?;
        Some(line_col(self.src, off))
    }

    /// Map a 1-based character column inside guard `w` of function `i` to a file position.
    fn expr_column(&self, i: usize, w: &str, column: usize) -> Option<(usize, usize)> {
        let from = self.funcs.get(i).copied().flatten()?;
        let vstart = locate_from(self.src, from, "when", Some(w))?;
        let quoted = matches!(self.src.as_bytes().get(vstart), Some(b'"') | Some(b'\''));
        let (line, col) = line_col(self.src, vstart);
        Some((line, col + usize::from(quoted) + column.saturating_sub(1)))
    }
}

// ---------------------------------------------------------------------------------------------
// The graph and its analyses (shared with the importer)
// ---------------------------------------------------------------------------------------------

/// Edge kinds as the fork walk sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GMode {
    Seq,
    Map,
    FanIn,
    ByBatch,
    ByRedundant { completion: u32 },
}

#[derive(Debug, Clone)]
pub(crate) struct GEdge {
    pub to: usize,
    pub mode: GMode,
    /// A cycle (back) edge: excluded from start detection and from the unguarded-cycle check.
    pub back: bool,
    /// Guard is literally `true` (a Choice with this edge cannot fall through).
    pub always: bool,
}

/// A workflow graph: nodes are functions, with their shapes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    pub names: Vec<String>,
    pub edges: Vec<Vec<GEdge>>,
    /// `None` when the successor set has no valid shape.
    pub shapes: Vec<Option<Shape>>,
    /// Definition index of each node (identity for the importer).
    pub origin: Vec<usize>,
}

impl Graph {
    fn from_definition(def: &Definition, index: &BTreeMap<&str, usize>) -> Graph {
        let mut g = Graph::default();
        let mut node_of: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, f) in def.functions.iter().enumerate() {
            if index.get(f.name.as_str()) == Some(&i) {
                node_of.insert(&f.name, g.names.len());
                g.names.push(f.name.clone());
                g.origin.push(i);
            }
        }
        for &i in &g.origin.clone() {
            let f = &def.functions[i];
            let edges = f
                .next
                .iter()
                .filter_map(|e| {
                    let to = *node_of.get(e.to.as_str())?;
                    let mode = match e.mode {
                        EdgeMode::Sequence | EdgeMode::Cycle => GMode::Seq,
                        EdgeMode::Map => GMode::Map,
                        EdgeMode::FanIn => GMode::FanIn,
                        EdgeMode::ByBatch => GMode::ByBatch,
                        EdgeMode::ByRedundant => GMode::ByRedundant {
                            completion: e.completion.unwrap_or(1),
                        },
                    };
                    Some(GEdge {
                        to,
                        mode,
                        back: e.mode == EdgeMode::Cycle,
                        always: e.when.as_deref().map(str::trim) == Some("true"),
                    })
                })
                .collect();
            g.edges.push(edges);
            g.shapes.push(shape_probe(f).shape().ok());
        }
        g
    }

    fn node_of_function(&self, def_index: usize) -> usize {
        self.origin
            .iter()
            .position(|&o| o == def_index)
            .unwrap_or(0)
    }

    /// The explicit start if there is exactly one, else the only node without incoming non-back
    /// edges.
    pub(crate) fn find_start(&self, explicit: &[usize]) -> Result<usize, Box<Diagnostic>> {
        let list = |ns: &[usize]| {
            ns.iter()
                .map(|&n| format!("'{}'", self.names[n]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match explicit {
            [one] => return Ok(*one),
            [] => {}
            many => {
                return Err(Box::new(
                    Diagnostic::error(
                        "multiple-starts",
                        format!(
                            "functions {} are all marked as the start; exactly one may be",
                            list(many)
                        ),
                    )
                    .with_function(&self.names[many[1]]),
                ));
            }
        }
        let mut has_caller = vec![false; self.names.len()];
        for es in &self.edges {
            for e in es {
                if !e.back {
                    has_caller[e.to] = true;
                }
            }
        }
        let roots: Vec<usize> = (0..self.names.len()).filter(|&n| !has_caller[n]).collect();
        match roots.as_slice() {
            [one] => Ok(*one),
            [] => Err(Box::new(Diagnostic::error(
                "no-start",
                "every function has an incoming edge, so there is no entry function; mark it with `start: true`",
            ))),
            many => Err(Box::new(Diagnostic::error(
                "multiple-starts",
                format!(
                    "functions {} have no incoming edge; mark the entry function with `start: true` (the others would be unreachable)",
                    list(many)
                ),
            )
            .with_function(&self.names[many[1]]))),
        }
    }

    fn reach(&self, from: usize, skip_back: bool) -> Vec<bool> {
        let mut seen = vec![false; self.names.len()];
        let mut q = VecDeque::from([from]);
        seen[from] = true;
        while let Some(n) = q.pop_front() {
            for e in &self.edges[n] {
                if (skip_back && e.back) || seen[e.to] {
                    continue;
                }
                seen[e.to] = true;
                q.push_back(e.to);
            }
        }
        seen
    }

    pub(crate) fn unreachable(&self, start: usize) -> Vec<Diagnostic> {
        let seen = self.reach(start, false);
        (0..self.names.len())
            .filter(|&n| !seen[n])
            .map(|n| {
                Diagnostic::error(
                    "unreachable",
                    format!(
                        "function '{}' is unreachable from the start function '{}'",
                        self.names[n], self.names[start]
                    ),
                )
                .with_function(&self.names[n])
            })
            .collect()
    }

    /// Cycles made of non-back edges (a loop must be closed by a guarded `cycle` edge).
    pub(crate) fn unguarded_cycles(&self) -> Vec<Diagnostic> {
        let n = self.names.len();
        let reach: Vec<Vec<bool>> = (0..n)
            .map(|i| {
                // Nodes reachable from i through at least one edge.
                let mut seen = vec![false; n];
                let mut q: VecDeque<usize> = self.edges[i]
                    .iter()
                    .filter(|e| !e.back)
                    .map(|e| e.to)
                    .collect();
                for &t in &q {
                    seen[t] = true;
                }
                while let Some(x) = q.pop_front() {
                    for e in &self.edges[x] {
                        if !e.back && !seen[e.to] {
                            seen[e.to] = true;
                            q.push_back(e.to);
                        }
                    }
                }
                seen
            })
            .collect();
        let mut done = vec![false; n];
        let mut out = Vec::new();
        for i in 0..n {
            if done[i] || !reach[i][i] {
                continue;
            }
            let members: Vec<usize> = (0..n).filter(|&j| reach[i][j] && reach[j][i]).collect();
            for &m in &members {
                done[m] = true;
            }
            let names: Vec<String> = members
                .iter()
                .map(|&m| format!("'{}'", self.names[m]))
                .collect();
            out.push(
                Diagnostic::error(
                    "unguarded-cycle",
                    format!(
                        "functions {} form a cycle without a guarded `cycle` edge; make the back edge `mode: cycle` with `when`, `counter` and `max_iterations`",
                        names.join(" -> ")
                    ),
                )
                .with_function(&self.names[i]),
            );
        }
        out
    }

    /// The fork walk: see the module documentation.
    pub(crate) fn forks(&self, start: usize) -> (BTreeMap<String, Join>, Vec<Diagnostic>) {
        #[derive(Clone, PartialEq, Eq, Hash)]
        struct Frame {
            fork: usize,
            branch: u32,
        }
        let mut diags = Vec::new();
        let kind_of = |n: usize| match self.shapes[n] {
            Some(Shape::Map) => ForkKind::Map,
            _ => ForkKind::Parallel,
        };
        let fork_desc = |fork: usize| {
            format!(
                "{} started by '{}'",
                kind_of(fork).describe(),
                self.names[fork]
            )
        };
        let mut visited: HashSet<(usize, Vec<Frame>)> = HashSet::new();
        let mut work: Vec<(usize, Vec<Frame>)> = vec![(start, vec![])];
        let mut opened: BTreeSet<usize> = BTreeSet::new();
        // fork -> branch -> {(aggregator, source, redundant)}
        type Arrivals = BTreeMap<u32, BTreeSet<(usize, usize, bool)>>;
        let mut arrivals: BTreeMap<usize, Arrivals> = BTreeMap::new();
        let mut agg_forks: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut broken: BTreeSet<usize> = BTreeSet::new();
        let mut nested: BTreeSet<usize> = BTreeSet::new();
        while let Some((n, st)) = work.pop() {
            if visited.len() >= MAX_STATES {
                diags.push(Diagnostic::warning(
                    "fan-in-mismatch",
                    format!("the fork analysis stopped after {MAX_STATES} states; the graph is too large to check fully"),
                ));
                break;
            }
            if !visited.insert((n, st.clone())) {
                continue;
            }
            let top = st.last().cloned();
            let edges = &self.edges[n];
            let Some(shape) = self.shapes[n] else {
                for e in edges {
                    work.push((e.to, st.clone()));
                }
                continue;
            };
            match shape {
                Shape::End => {
                    if let Some(t) = top {
                        broken.insert(t.fork);
                        diags.push(
                            Diagnostic::error(
                                "fan-in-mismatch",
                                format!(
                                    "function '{}' can end the run inside the {}; add a fan_in edge from it to the fork's aggregator",
                                    self.names[n],
                                    fork_desc(t.fork)
                                ),
                            )
                            .with_function(&self.names[n]),
                        );
                    }
                }
                Shape::Choice => {
                    if let Some(t) = &top
                        && !edges.iter().any(|e| e.always)
                    {
                        broken.insert(t.fork);
                        diags.push(
                            Diagnostic::error(
                                "fan-in-mismatch",
                                format!(
                                    "function '{}' can end the run inside the {} when none of its guards is true; add a default edge with when: \"true\" that leads to the fork's aggregator",
                                    self.names[n],
                                    fork_desc(t.fork)
                                ),
                            )
                            .with_function(&self.names[n]),
                        );
                    }
                    for e in edges {
                        work.push((e.to, st.clone()));
                    }
                }
                Shape::Sequence => {
                    for e in edges {
                        work.push((e.to, st.clone()));
                    }
                }
                Shape::Parallel | Shape::Map => {
                    if st.iter().any(|f| f.fork == n) {
                        broken.insert(n);
                        diags.push(
                            Diagnostic::error(
                                "fan-in-mismatch",
                                format!(
                                    "the {} is entered again by one of its own branches before they are joined; join the branches (fan_in) before looping back",
                                    fork_desc(n)
                                ),
                            )
                            .with_function(&self.names[n]),
                        );
                        continue;
                    }
                    opened.insert(n);
                    if !st.is_empty() {
                        nested.insert(n);
                    }
                    for (b, e) in edges.iter().enumerate() {
                        let mut s2 = st.clone();
                        s2.push(Frame {
                            fork: n,
                            branch: b as u32,
                        });
                        work.push((e.to, s2));
                    }
                }
                Shape::FanIn | Shape::ByRedundant => {
                    let Some(e) = edges.first() else { continue };
                    let Some(t) = top else {
                        diags.push(
                            Diagnostic::error(
                                "fan-in-mismatch",
                                format!(
                                    "a {} edge must close a fork, but '{}' is not inside a Parallel or Map branch here",
                                    if shape == Shape::FanIn { "fan_in" } else { "by_redundant" },
                                    self.names[n]
                                ),
                            )
                            .with_edge(&self.names[n], &self.names[e.to]),
                        );
                        continue;
                    };
                    arrivals
                        .entry(t.fork)
                        .or_default()
                        .entry(t.branch)
                        .or_default()
                        .insert((e.to, n, shape == Shape::ByRedundant));
                    agg_forks.entry(e.to).or_default().insert(t.fork);
                    let mut s2 = st.clone();
                    s2.pop();
                    work.push((e.to, s2));
                }
                Shape::ByBatch => {
                    let Some(e) = edges.first() else { continue };
                    if let Some(t) = top {
                        broken.insert(t.fork);
                        diags.push(
                            Diagnostic::error(
                                "fan-in-mismatch",
                                format!(
                                    "a by_batch edge ends the run's thread at '{}', which is inside the {}; join the fork first",
                                    self.names[n],
                                    fork_desc(t.fork)
                                ),
                            )
                            .with_edge(&self.names[n], &self.names[e.to]),
                        );
                    }
                    // The batch target runs as a run of its own.
                    work.push((e.to, vec![]));
                }
            }
        }

        let mut joins = BTreeMap::new();
        for &fork in &opened {
            let kind = kind_of(fork);
            let n_branches = match kind {
                ForkKind::Parallel => self.edges[fork].len() as u32,
                ForkKind::Map => 1,
            };
            let arr = arrivals.get(&fork).cloned().unwrap_or_default();
            let aggs: BTreeSet<usize> = arr.values().flatten().map(|(a, _, _)| *a).collect();
            if aggs.len() > 1 {
                let detail: Vec<String> = aggs
                    .iter()
                    .map(|a| {
                        let from: BTreeSet<&str> = arr
                            .values()
                            .flatten()
                            .filter(|(x, _, _)| x == a)
                            .map(|(_, s, _)| self.names[*s].as_str())
                            .collect();
                        format!(
                            "'{}' (from {})",
                            self.names[*a],
                            from.iter()
                                .map(|s| format!("'{s}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect();
                diags.push(
                    Diagnostic::error(
                        "fan-in-mismatch",
                        format!(
                            "the branches of the {} join at different functions: {}; all branches of one fork must fan in to the same function",
                            fork_desc(fork),
                            detail.join(", ")
                        ),
                    )
                    .with_function(&self.names[fork]),
                );
                continue;
            }
            if !broken.contains(&fork) {
                for b in 0..n_branches {
                    if !arr.contains_key(&b) {
                        let target = self.edges[fork]
                            .get(b as usize)
                            .map(|e| e.to)
                            .unwrap_or(fork);
                        diags.push(
                            Diagnostic::error(
                                "fan-in-mismatch",
                                format!(
                                    "the branch starting at '{}' of the {} never reaches a fan_in edge",
                                    self.names[target],
                                    fork_desc(fork)
                                ),
                            )
                            .with_edge(&self.names[fork], &self.names[target]),
                        );
                    }
                }
            }
            let Some(&agg) = aggs.iter().next() else {
                continue;
            };
            let kinds: BTreeSet<bool> = arr.values().flatten().map(|(_, _, r)| *r).collect();
            if kinds.len() > 1 {
                diags.push(
                    Diagnostic::error(
                        "fan-in-mismatch",
                        format!(
                            "the branches of the {} join '{}' with a mix of fan_in and by_redundant edges; use one kind",
                            fork_desc(fork),
                            self.names[agg]
                        ),
                    )
                    .with_function(&self.names[agg]),
                );
            }
            if kind == ForkKind::Parallel {
                for (_, src, _) in arr.values().flatten() {
                    if let Some(GEdge {
                        mode: GMode::ByRedundant { completion },
                        ..
                    }) = self.edges[*src].first()
                        && *completion > n_branches
                    {
                        diags.push(
                            Diagnostic::error(
                                "bad-field",
                                format!(
                                    "completion {completion} is more than the {n_branches} branches of the {}",
                                    fork_desc(fork)
                                ),
                            )
                            .with_edge(&self.names[*src], &self.names[agg]),
                        );
                    }
                }
            }
            joins.insert(
                self.names[agg].clone(),
                Join {
                    fork: self.names[fork].clone(),
                    kind,
                    branches: (kind == ForkKind::Parallel).then_some(n_branches),
                    sources: arr
                        .iter()
                        .flat_map(|(b, set)| {
                            set.iter()
                                .map(move |(_, s, _)| (*b, self.names[*s].clone()))
                        })
                        .collect(),
                    nested: nested.contains(&fork),
                },
            );
        }
        for (agg, forks) in &agg_forks {
            if forks.len() > 1 {
                let list: Vec<String> = forks
                    .iter()
                    .map(|&f| format!("the {}", fork_desc(f)))
                    .collect();
                diags.push(
                    Diagnostic::error(
                        "fan-in-mismatch",
                        format!(
                            "'{}' joins more than one fork ({}); an aggregator joins exactly one fork",
                            self.names[*agg],
                            list.join(" and ")
                        ),
                    )
                    .with_function(&self.names[*agg]),
                );
                joins.remove(&self.names[*agg]);
            }
        }
        (joins, diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::def::Format;

    fn diags(src: &str) -> Diagnostics {
        let def = Definition::parse(src, Format::Yaml).unwrap_or_else(|e| panic!("{e}"));
        validate(&def)
    }

    /// The single diagnostic with `code`, asserting it exists.
    fn one<'a>(ds: &'a Diagnostics, code: &'a str) -> &'a Diagnostic {
        let found: Vec<_> = ds.with_code(code).collect();
        assert!(!found.is_empty(), "no {code} in:\n{ds}");
        found[0]
    }

    const OK: &str = "workflow: w
functions:
  - name: a
    handler: echo
    next: [{ to: b }]
  - name: b
    handler: echo
";

    #[test]
    fn valid_chain() {
        let ds = diags(OK);
        assert!(ds.is_empty(), "{ds}");
    }

    #[test]
    fn unknown_function_with_suggestion_and_position() {
        let src = "workflow: w
functions:
  - name: split
    handler: split
    next:
      - to: extrct
  - name: extract
    handler: echo
";
        let ds = diags(src);
        let d = one(&ds, "unknown-function");
        assert_eq!(
            d.to_string(),
            "error[unknown-function] at 6:13: edge 'split' -> 'extrct': unknown function 'extrct' (did you mean 'extract'?)"
        );
        // 'extract' is also unreachable now; both are reported.
        assert!(
            ds.with_code("unreachable").next().is_some()
                || ds.with_code("multiple-starts").next().is_some(),
            "{ds}"
        );
    }

    #[test]
    fn duplicate_and_invalid_names() {
        let src = "workflow: 'bad name'
functions:
  - name: a
    handler: echo
    next: [{ to: a.b }]
  - name: a
    handler: echo
  - name: 'x y'
    handler: echo
";
        let ds = diags(src);
        let d = one(&ds, "duplicate-function");
        assert_eq!(d.function.as_deref(), Some("a"));
        assert_eq!((d.line, d.column), (Some(6), Some(11)));
        assert!(d.message.contains("line 3"), "{d}");
        let inv: Vec<_> = ds.with_code("invalid-name").collect();
        assert_eq!(inv.len(), 2, "{ds}");
        assert!(
            inv.iter()
                .any(|d| d.function.as_deref() == Some("x y") && d.line == Some(8))
        );
        assert!(
            inv.iter()
                .any(|d| d.message.contains("workflow name") && d.line == Some(1))
        );
    }

    #[test]
    fn implementations() {
        let src = "workflow: w
functions:
  - name: a
    next: [{ to: b }]
  - name: b
    handler: echo
    command: [sh, -c, cat]
";
        let ds = diags(src);
        let d = one(&ds, "no-implementation");
        assert_eq!((d.function.as_deref(), d.line), (Some("a"), Some(3)));
        let d = one(&ds, "two-implementations");
        assert_eq!(
            (d.function.as_deref(), d.line, d.column),
            (Some("b"), Some(7), Some(5))
        );
    }

    #[test]
    fn unknown_cloud() {
        let src = "workflow: w
clouds:
  local-a: {}
functions:
  - name: a
    cloud: local-b
    failover: [lokal-a, aws]
    handler: echo
";
        let ds = diags(src);
        let cs: Vec<_> = ds.with_code("unknown-cloud").collect();
        assert_eq!(cs.len(), 3, "{ds}");
        assert!(
            cs[0].message.contains("'local-b'") && cs[0].line == Some(6),
            "{}",
            cs[0]
        );
        assert!(
            cs.iter()
                .any(|d| d.message.contains("did you mean 'local-a'"))
        );
        // Without a `clouds:` section any cloud is fine.
        let ds =
            diags("workflow: w\nfunctions:\n  - { name: a, cloud: anything, handler: echo }\n");
        assert!(ds.is_empty(), "{ds}");
    }

    #[test]
    fn starts() {
        let src = "workflow: w
functions:
  - { name: a, handler: echo, start: true }
  - { name: b, handler: echo, start: true }
";
        let ds = diags(src);
        let d = one(&ds, "multiple-starts");
        assert!(d.message.contains("'a', 'b'"), "{d}");
        assert_eq!(d.line, Some(4));
        let src = "workflow: w
functions:
  - { name: a, handler: echo }
  - { name: b, handler: echo }
";
        let d = diags(src);
        assert!(
            one(&d, "multiple-starts")
                .message
                .contains("no incoming edge")
        );
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }] }
  - { name: b, handler: echo, next: [{ to: a }] }
";
        let ds = diags(src);
        one(&ds, "no-start");
        let d = one(&ds, "unguarded-cycle");
        assert!(d.message.contains("'a' -> 'b'"), "{d}");
        assert_eq!(d.line, Some(3));
    }

    #[test]
    fn unreachable_functions_are_named() {
        let src = "workflow: w
functions:
  - { name: a, handler: echo, start: true }
  - { name: b, handler: echo, next: [{ to: c }] }
  - { name: c, handler: echo }
";
        let ds = diags(src);
        let un: Vec<_> = ds.with_code("unreachable").collect();
        assert_eq!(un.len(), 2, "{ds}");
        assert_eq!(un[0].function.as_deref(), Some("b"));
        assert_eq!(un[0].line, Some(4));
        assert!(un[1].message.contains("'c'"));
    }

    #[test]
    fn cycles() {
        let good = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: body }] }
  - name: body
    handler: count
    next:
      - { to: body, mode: cycle, when: 'i < 8', counter: i, max_iterations: 100 }
      - { to: after, when: 'true' }
  - { name: after, handler: echo }
";
        let ds = diags(good);
        assert!(ds.is_empty(), "{ds}");
        let unbounded = good.replace(", max_iterations: 100", "");
        let ds = diags(&unbounded);
        let d = one(&ds, "cycle-without-bound");
        assert_eq!(d.edge, Some(("body".into(), "body".into())));
        assert_eq!((d.line, d.column), (Some(7), Some(15)));
        let unguarded = good.replace("mode: cycle, when: 'i < 8', ", "");
        let ds = diags(&unguarded);
        assert!(one(&ds, "unguarded-cycle").message.contains("'body'"));
        let no_when = good.replace("when: 'i < 8', ", "");
        let ds = diags(&no_when);
        assert!(
            one(&ds, "unguarded-cycle")
                .message
                .contains("needs a `when`")
        );
        // A cycle edge mixed with an unguarded edge.
        let mixed = good.replace("{ to: after, when: 'true' }", "{ to: after }");
        let ds = diags(&mixed);
        assert!(
            one(&ds, "bad-mode-mix")
                .message
                .contains("cycle edge is a guarded edge")
        );
    }

    #[test]
    fn bad_choice_column_maps_into_file() {
        let src = "workflow: w
functions:
  - name: a
    handler: echo
    next:
      - to: b
        when: \"output.score < 0.5 &&\"
      - to: c
        when: \"true\"
  - { name: b, handler: echo }
  - { name: c, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "bad-choice");
        assert_eq!(d.edge, Some(("a".into(), "b".into())));
        // The expression starts at column 16 (after the quote); the error is at expression column 22.
        assert_eq!((d.line, d.column), (Some(7), Some(16 + 21)), "{d}");
        assert!(d.message.contains("expected an operand"), "{d}");
    }

    #[test]
    fn unknown_variable_is_a_warning() {
        let src = "workflow: w
functions:
  - name: a
    handler: echo
    next:
      - { to: b, when: 'outptu.x == 1' }
      - { to: c, when: 'FaaS == \"lambda\" || output.y' }
  - { name: b, handler: echo }
  - { name: c, handler: echo }
";
        let ds = diags(src);
        assert!(!ds.has_errors(), "{ds}");
        let d = one(&ds, "unknown-variable");
        assert!(
            d.message.contains("'outptu'") && d.message.contains("did you mean 'output'"),
            "{d}"
        );
        assert_eq!(d.line, Some(6));
    }

    #[test]
    fn mode_mix() {
        let src = "workflow: w
functions:
  - name: a
    handler: split
    next: [{ to: b, mode: map }, { to: c }]
  - { name: b, handler: echo }
  - { name: c, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "bad-mode-mix");
        assert_eq!(d.function.as_deref(), Some("a"));
        assert!(d.message.contains("must be the only successor"), "{d}");
        assert!(
            d.to_string()
                .starts_with("error[bad-mode-mix] at 3:11: function 'a': has 2 successors"),
            "{d}"
        );
    }

    #[test]
    fn bad_fields() {
        let src = "workflow: w
functions:
  - name: a
    handler: echo
    memory_mb: 0
    next: [{ to: b, concurrency: 3 }]
  - name: b
    handler: echo
    next: [{ to: c, mode: by_batch, batch_size: 0 }]
  - name: c
    handler: echo
    retry: { max_attempts: 0 }
";
        let ds = diags(src);
        let bf: Vec<_> = ds.with_code("bad-field").collect();
        assert_eq!(bf.len(), 4, "{ds}");
        assert!(bf[0].message.contains("memory_mb") && bf[0].line == Some(5));
        assert!(
            bf[1]
                .message
                .contains("`concurrency` only applies to map edges")
                && bf[1].line == Some(6)
                && bf[1].column == Some(21),
            "{}",
            bf[1]
        );
        assert!(bf[2].message.contains("batch_size") && bf[2].line == Some(9));
        assert!(bf[3].message.contains("max_attempts") && bf[3].function.as_deref() == Some("c"));
    }

    #[test]
    fn timeouts_and_env_are_checked_with_function_and_line() {
        let src = "workflow: w
functions:
  - name: a
    command: [cat]
    timeout: 0
    next: [{ to: b }]
  - name: b
    command: [cat]
    timeout: -1.5
    next: [{ to: c }]
  - name: c
    command: [cat]
    timeout: 100000
    next: [{ to: d }]
  - name: d
    command: [cat]
    timeout: .inf
    next: [{ to: e }]
  - name: e
    command: [cat]
    env:
      GOOD_1: x
      1BAD: y
      JOINT_RUN: z
    next: [{ to: f }]
  - name: f
    handler: echo
    timeout: 2.5
    env: { A: b }
";
        let ds = diags(src);
        let bf: Vec<_> = ds.with_code("bad-field").collect();
        let at = |f: &str| -> Vec<(Option<usize>, &str)> {
            bf.iter()
                .filter(|d| d.function.as_deref() == Some(f))
                .map(|d| (d.line, d.message.as_str()))
                .collect()
        };
        assert_eq!(bf.len(), 7, "{ds}");
        for (f, line) in [("a", 5), ("b", 9), ("c", 13), ("d", 17)] {
            let got = at(f);
            assert_eq!(got.len(), 1, "{f}: {ds}");
            assert_eq!(got[0].0, Some(line), "{f}: {ds}");
            assert!(got[0].1.starts_with("timeout must be"), "{f}: {ds}");
        }
        assert!(at("c")[0].1.contains("at most 86400 seconds"), "{ds}");
        assert!(at("d")[0].1.contains("not inf"), "{ds}");
        let e = at("e");
        assert_eq!(e.len(), 2, "{ds}");
        assert!(
            e.contains(&(Some(23), "env variable name '1BAD' is invalid: use letters, digits and '_', not starting with a digit")),
            "{ds}"
        );
        assert!(
            e.contains(&(Some(24), "env variable 'JOINT_RUN' is reserved: the runtime sets the JOINT_* variables itself")),
            "{ds}"
        );
        assert_eq!(
            at("f"),
            vec![(
                Some(29),
                "`env` applies to `command` and `worker` functions only"
            )],
            "a timeout on a handler is fine: {ds}"
        );
        let shown = ds.to_string();
        assert!(
            shown.contains(
                "error[bad-field] at 5:5: function 'a': timeout must be at least 0.001 seconds"
            ),
            "{shown}"
        );
    }

    #[test]
    fn completion_bounds() {
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }, { to: c }] }
  - { name: b, handler: echo, next: [{ to: x, mode: by_redundant, completion: 3 }] }
  - { name: c, handler: echo, next: [{ to: x, mode: by_redundant, completion: 3 }] }
  - { name: x, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "bad-field");
        assert!(
            d.message
                .contains("completion 3 is more than the 2 branches"),
            "{d}"
        );
        assert_eq!(d.line, Some(4));
        let ds = diags(&src.replace("completion: 3", "completion: 0"));
        assert!(one(&ds, "bad-field").message.contains("at least 1"));
        let ds = diags(&src.replace("completion: 3", "completion: 1"));
        assert!(ds.is_empty(), "{ds}");
    }

    #[test]
    fn map_over_non_list() {
        let src = "workflow: w
functions:
  - { name: a, handler: echo, output: number, next: [{ to: b, mode: map }] }
  - { name: b, handler: echo, next: [{ to: c, mode: fan_in }] }
  - { name: c, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "map-over-non-list");
        assert!(d.message.contains("output: number"), "{d}");
        assert_eq!(d.edge, Some(("a".into(), "b".into())));
        assert_eq!(d.line, Some(3));
        assert!(diags(&src.replace("number", "list")).is_empty());
    }

    #[test]
    fn end_inside_fork() {
        let src = "workflow: w
functions:
  - { name: a, handler: split, next: [{ to: b, mode: map }] }
  - { name: b, handler: echo, next: [{ to: c }] }
  - { name: c, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "fan-in-mismatch");
        assert_eq!(
            d.message,
            "function 'c' can end the run inside the Map started by 'a'; add a fan_in edge from it to the fork's aggregator"
        );
        assert_eq!(d.line, Some(5));
        // Choice without default inside a Parallel fork.
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }, { to: c }] }
  - { name: b, handler: echo, next: [{ to: d, mode: fan_in }] }
  - { name: c, handler: echo, next: [{ to: e, when: 'output > 1' }] }
  - { name: e, handler: echo, next: [{ to: d, mode: fan_in }] }
  - { name: d, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "fan-in-mismatch");
        assert!(
            d.message.contains(
                "function 'c' can end the run inside the Parallel fork started by 'a' when none"
            ),
            "{d}"
        );
        assert!(diags(&src.replace("'output > 1'", "'true'")).is_empty());
    }

    #[test]
    fn fan_in_mismatches() {
        // Different aggregators.
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }, { to: c }] }
  - { name: b, handler: echo, next: [{ to: d, mode: fan_in }] }
  - { name: c, handler: echo, next: [{ to: e, mode: fan_in }] }
  - { name: d, handler: echo }
  - { name: e, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "fan-in-mismatch");
        assert!(
            d.message
                .contains("join at different functions: 'd' (from 'b'), 'e' (from 'c')"),
            "{d}"
        );
        assert_eq!(d.function.as_deref(), Some("a"));
        // fan_in with no open fork.
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b, mode: fan_in }] }
  - { name: b, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "fan-in-mismatch");
        assert!(
            d.message.contains("not inside a Parallel or Map branch"),
            "{d}"
        );
        assert_eq!(d.edge, Some(("a".into(), "b".into())));
        assert_eq!(d.line, Some(3));
        // A branch that never joins (loops forever through a bounded cycle without a way out).
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }, { to: c }] }
  - { name: b, handler: echo, next: [{ to: d, mode: fan_in }] }
  - name: c
    handler: echo
    next: [{ to: c, mode: cycle, when: 'true', max_iterations: 3 }]
  - { name: d, handler: echo }
";
        let ds = diags(src);
        let d = one(&ds, "fan-in-mismatch");
        assert!(
            d.message.contains("branch starting at 'c'")
                && d.message.contains("never reaches a fan_in"),
            "{d}"
        );
        // One aggregator joining two forks.
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }, { to: c }] }
  - { name: b, handler: split, next: [{ to: m, mode: map }] }
  - { name: m, handler: echo, next: [{ to: d, mode: fan_in }] }
  - { name: c, handler: echo, next: [{ to: d, mode: fan_in }] }
  - { name: d, handler: echo }
";
        let ds = diags(src);
        assert!(
            ds.with_code("fan-in-mismatch")
                .any(|d| d.message.contains("'d' joins more than one fork")),
            "{ds}"
        );
        // Nested fork joined correctly: Parallel, Map inside branch b.
        let src = "workflow: w
functions:
  - { name: a, handler: echo, next: [{ to: b }, { to: c }] }
  - { name: b, handler: split, next: [{ to: m, mode: map }] }
  - { name: m, handler: echo, next: [{ to: j, mode: fan_in }] }
  - { name: j, handler: sum, next: [{ to: d, mode: fan_in }] }
  - { name: c, handler: echo, next: [{ to: d, mode: fan_in }] }
  - { name: d, handler: echo }
";
        let def = Definition::parse(src, Format::Yaml).unwrap();
        let (an, ds) = analyze(&def);
        assert!(ds.is_empty(), "{ds}");
        assert_eq!(an.start.as_deref(), Some("a"));
        assert_eq!(an.joins["j"].kind, ForkKind::Map);
        assert_eq!(an.joins["d"].branches, Some(2));
        assert_eq!(
            an.joins["d"].sources,
            BTreeSet::from([(0, "j".to_string()), (1, "c".to_string())])
        );
    }

    #[test]
    fn by_batch_inside_fork_and_reentry() {
        let src = "workflow: w
functions:
  - { name: a, handler: split, next: [{ to: b, mode: map }] }
  - { name: b, handler: echo, next: [{ to: x, mode: by_batch, batch_size: 2 }] }
  - { name: x, handler: echo }
";
        let ds = diags(src);
        assert!(
            one(&ds, "fan-in-mismatch")
                .message
                .contains("by_batch edge ends")
        );
        let src = "workflow: w
functions:
  - { name: a, handler: split, next: [{ to: b, mode: map }] }
  - name: b
    handler: echo
    next: [{ to: a, mode: cycle, when: 'true', max_iterations: 2 }]
";
        let ds = diags(src);
        assert!(
            one(&ds, "fan-in-mismatch")
                .message
                .contains("entered again"),
            "{ds}"
        );
    }

    #[test]
    fn all_errors_are_reported() {
        let src = "workflow: w
functions:
  - name: a
    next: [{ to: bb }, { to: c, mode: fan_in, concurrency: 2 }]
  - { name: b, handler: echo, memory_mb: 0 }
";
        let ds = diags(src);
        for code in [
            "no-implementation",
            "unknown-function",
            "bad-field",
            "bad-mode-mix",
        ] {
            one(&ds, code);
        }
        assert!(ds.errors().count() >= 5, "{ds}");
    }

    #[test]
    fn json_positions() {
        let src = "{\"workflow\": \"w\", \"functions\": [\n {\"name\": \"a\", \"handler\": \"echo\", \"next\": [{\"to\": \"zz\"}]}]}";
        let def = Definition::parse(src, Format::Json).unwrap();
        let ds = validate(&def);
        let d = one(&ds, "unknown-function");
        assert_eq!((d.line, d.column), (Some(2), Some(51)), "{d}");
    }
}
