//! The user-facing workflow definition format (YAML or JSON; JSON is canonical).
//!
//! One file describes the whole DAG: functions, their placement (`cloud`), memory, failover clouds,
//! implementation (`handler` or `command`) and edges with their invoke modes. See
//! `docs/definition-format.md` for the full reference. [`crate::validate`] checks a [`Definition`]
//! and [`crate::compile`] turns it into per-function sub-graphs.
//!
//! ```yaml
//! workflow: video
//! defaults: { cloud: local-a }
//! functions:
//!   - name: split
//!     handler: split
//!     next: [{ to: square, mode: map, concurrency: 8 }]
//!   - name: square
//!     handler: square
//!     next: [{ to: sum, mode: fan_in }]
//!   - { name: sum, handler: sum }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, Diagnostics};
use crate::subgraph::CheckpointPolicy;

/// The cloud a function runs on when neither the function nor `defaults` names one.
pub const DEFAULT_CLOUD: &str = "local";

/// The memory of a function when neither the function nor `defaults` sets it.
pub const DEFAULT_MEMORY_MB: u32 = 128;

/// The largest `timeout` of a function, in seconds (one day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// The default loop-counter variable of a `cycle` edge (the paper's `Iterator`).
pub const DEFAULT_COUNTER: &str = "Iterator";

/// Source syntax of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (a superset of JSON in practice, but parsed with a YAML parser).
    Yaml,
    /// JSON (canonical).
    Json,
}

impl Format {
    /// YAML for `.yaml`/`.yml`, JSON for `.json`, otherwise sniffed from the text: JSON when the
    /// first non-blank character is `{` or `[`, else YAML.
    pub fn detect(path_hint: &str, src: &str) -> Format {
        let lower = path_hint.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json")
            || matches!(src.trim_start().chars().next(), Some('{') | Some('['))
        {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// A whole workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Workflow name (letters, digits, `_`, `-`, `.`; 1–128 characters).
    pub workflow: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Settings applied to every function that does not set them itself.
    #[serde(default)]
    pub defaults: Defaults,
    /// Per-cloud settings. When present, every cloud a function or failover list names must be
    /// listed here; when absent, any cloud name is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clouds: Option<BTreeMap<String, CloudSettings>>,
    /// Data-transfer settings for the whole workflow.
    #[serde(default)]
    pub transfer: Transfer,
    /// The functions, in any order.
    pub functions: Vec<FunctionDef>,
    /// The source text this definition was parsed from (used to give diagnostics a line and
    /// column). Not part of the format.
    #[serde(skip)]
    pub source: Option<String>,
}

/// Workflow-wide defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Cloud of functions without `cloud` (else [`DEFAULT_CLOUD`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Memory of functions without `memory_mb` (else [`DEFAULT_MEMORY_MB`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Checkpoint policy of functions without `checkpoint` (else `eager`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointPolicy>,
    /// Failover clouds of functions without `failover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<String>>,
    /// Retry policy of functions without `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
}

/// Settings of one cloud.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSettings {
    /// Payloads up to this many bytes travel inline in the invocation; larger ones go through the
    /// object store. Default: the cloud's own async limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_limit: Option<u64>,
}

/// Workflow-wide data-transfer settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Force indirect transfer (through the object store) for every function.
    #[serde(default)]
    pub by_store: bool,
}

/// Retry policy of a user function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt, doubled for each further one (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

/// The declared type of a function's output (checked against `map` edges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    /// Unknown / anything (default).
    #[default]
    Any,
    /// A JSON array.
    List,
    /// A JSON object.
    Object,
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
}

/// One function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    /// Function name (letters, digits, `_`, `-`, `.`; 1–128 characters), unique in the workflow.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The cloud it runs on (else `defaults.cloud`, else [`DEFAULT_CLOUD`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Memory in MB (else `defaults.memory_mb`, else [`DEFAULT_MEMORY_MB`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Replica clouds tried in order when `cloud` refuses an invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<String>>,
    /// Checkpoint policy (`eager` or `lazy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointPolicy>,
    /// Name of a registered handler implementing the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// argv of a local command implementing the function (JSON input on stdin, JSON output on
    /// stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// argv of a long-lived worker process serving the function (and others naming the same
    /// worker) over JSON lines on stdin/stdout: see docs/workers.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Vec<String>>,
    /// Extra environment variables of a `command` or `worker` (names: letters, digits and `_`,
    /// not starting with a digit or with `JOINT_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Seconds one attempt of the function may take (fractions allowed, > 0, at most
    /// [`MAX_TIMEOUT_SECS`]); past it the attempt fails with `Timeout` and `retry` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Retries of the user function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Always pass this function's output through the object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_by_store: Option<bool>,
    /// Entry function (else: the only function without an incoming non-cycle edge).
    #[serde(default, skip_serializing_if = "is_false")]
    pub start: bool,
    /// Declared output type (default `any`); a `map` edge needs `list` or `any`.
    #[serde(default, skip_serializing_if = "is_any")]
    pub output: OutputType,
    /// Outgoing edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<EdgeDef>,
}

/// How an edge invokes its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeMode {
    /// One target instance. Several unguarded sequence edges form a Parallel fork; guarded ones
    /// (`when`) form a Choice.
    #[default]
    Sequence,
    /// One target instance per element of the output list.
    Map,
    /// Join of the branches of the enclosing fork (Parallel or Map).
    FanIn,
    /// A guarded back edge with a loop counter and a bound.
    Cycle,
    /// Cross-run batching: the target runs once per `batch_size` arrivals.
    ByBatch,
    /// k-of-n join of the branches of the enclosing fork.
    ByRedundant,
}

impl EdgeMode {
    /// The mode as written in the format.
    pub fn as_str(&self) -> &'static str {
        match self {
            EdgeMode::Sequence => "sequence",
            EdgeMode::Map => "map",
            EdgeMode::FanIn => "fan_in",
            EdgeMode::Cycle => "cycle",
            EdgeMode::ByBatch => "by_batch",
            EdgeMode::ByRedundant => "by_redundant",
        }
    }
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeDef {
    /// Target function.
    pub to: String,
    /// Invoke mode (default `sequence`).
    #[serde(default, skip_serializing_if = "is_sequence")]
    pub mode: EdgeMode,
    /// Guard expression (Choice; required on `cycle` edges). A YAML/JSON boolean is accepted
    /// as the expression `true`/`false`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "guard_text"
    )]
    pub when: Option<String>,
    /// `map` only: branches running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// `cycle` only: the loop variable incremented when the edge is taken (default `Iterator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    /// `cycle` only (required): the edge may be taken at most this many times per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// `by_batch` only (required): arrivals per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// `by_redundant` only (required): k, the number of branches to wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<u32>,
    /// Overrides the target's failover clouds for this edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<String>>,
}

fn guard_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Guard {
        Text(String),
        Bool(bool),
    }
    Ok(match Option::<Guard>::deserialize(d)? {
        None => None,
        Some(Guard::Text(s)) => Some(s),
        Some(Guard::Bool(b)) => Some(b.to_string()),
    })
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_any(o: &OutputType) -> bool {
    *o == OutputType::Any
}
fn is_sequence(m: &EdgeMode) -> bool {
    *m == EdgeMode::Sequence
}

/// Strip serde's trailing " at line L column C" (the position is reported separately).
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

impl Definition {
    /// Parse a definition from text in the given format. Syntax errors, type errors and unknown
    /// fields are reported with their line and column (code `parse`).
    pub fn parse(src: &str, format: Format) -> Result<Definition, Diagnostics> {
        let parsed = match format {
            Format::Json => serde_json::from_str::<Definition>(src).map_err(|e| {
                let pos = (e.line() > 0).then(|| (e.line(), e.column().max(1)));
                Diagnostic::error(
                    "parse",
                    format!(
                        "invalid JSON definition: {}",
                        strip_position(&e.to_string())
                    ),
                )
                .at(pos)
            }),
            Format::Yaml => serde_yaml_ng::from_str::<Definition>(src).map_err(|e| {
                let pos = e.location().map(|l| (l.line(), l.column()));
                Diagnostic::error(
                    "parse",
                    format!(
                        "invalid YAML definition: {}",
                        strip_position(&e.to_string())
                    ),
                )
                .at(pos)
            }),
        };
        let mut def = parsed.map_err(Diagnostics::one)?;
        def.source = Some(src.to_string());
        Ok(def)
    }

    /// Parse, choosing the format from the file name (`.yaml`/`.yml`, `.json`) or, failing that,
    /// from the text (see [`Format::detect`]).
    pub fn from_path_text(path_hint: &str, src: &str) -> Result<Definition, Diagnostics> {
        Definition::parse(src, Format::detect(path_hint, src))
    }

    /// The definition as canonical JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The function called `name` (the first, if duplicated).
    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The cloud `f` runs on, after defaults.
    pub fn cloud_of(&self, f: &FunctionDef) -> String {
        f.cloud
            .clone()
            .or_else(|| self.defaults.cloud.clone())
            .unwrap_or_else(|| DEFAULT_CLOUD.to_string())
    }

    /// The failover clouds of `f`, after defaults.
    pub fn failover_of(&self, f: &FunctionDef) -> Vec<String> {
        f.failover
            .clone()
            .or_else(|| self.defaults.failover.clone())
            .unwrap_or_default()
    }

    /// The memory of `f` in MB, after defaults.
    pub fn memory_of(&self, f: &FunctionDef) -> u32 {
        f.memory_mb
            .or(self.defaults.memory_mb)
            .unwrap_or(DEFAULT_MEMORY_MB)
    }

    /// Whether `f` passes its output through the object store, after the global setting.
    pub fn by_store(&self, f: &FunctionDef) -> bool {
        f.transfer_by_store.unwrap_or(self.transfer.by_store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
workflow: video
description: test
defaults: { cloud: local-a, memory_mb: 256, checkpoint: eager }
clouds:
  local-a: { inline_limit: 262144 }
  local-b: {}
transfer: { by_store: false }
functions:
  - name: split
    cloud: local-a
    memory_mb: 512
    failover: [local-b]
    checkpoint: lazy
    handler: split
    retry: { max_attempts: 3, backoff_ms: 100 }
    transfer_by_store: false
    start: true
    output: list
    next:
      - to: square
        mode: map
        concurrency: 8
  - name: square
    handler: square
    next: [{ to: sum, mode: fan_in }]
  - { name: sum, handler: sum }
"#;

    const JSON: &str = r#"{
  "workflow": "video", "description": "test",
  "defaults": {"cloud": "local-a", "memory_mb": 256, "checkpoint": "eager"},
  "clouds": {"local-a": {"inline_limit": 262144}, "local-b": {}},
  "transfer": {"by_store": false},
  "functions": [
    {"name": "split", "cloud": "local-a", "memory_mb": 512, "failover": ["local-b"],
     "checkpoint": "lazy", "handler": "split", "retry": {"max_attempts": 3, "backoff_ms": 100},
     "transfer_by_store": false, "start": true, "output": "list",
     "next": [{"to": "square", "mode": "map", "concurrency": 8}]},
    {"name": "square", "handler": "square", "next": [{"to": "sum", "mode": "fan_in"}]},
    {"name": "sum", "handler": "sum"}
  ]
}"#;

    #[test]
    fn yaml_and_json_are_equivalent() {
        let y = Definition::parse(YAML, Format::Yaml).unwrap();
        let j = Definition::parse(JSON, Format::Json).unwrap();
        assert_eq!(y.to_json(), j.to_json());
        assert_eq!(y.functions[0].next[0].mode, EdgeMode::Map);
        assert_eq!(y.functions[0].checkpoint, Some(CheckpointPolicy::Lazy));
        assert_eq!(y.memory_of(&y.functions[1]), 256);
        assert_eq!(y.cloud_of(&y.functions[2]), "local-a");
        // Canonical JSON re-parses to the same definition.
        let again = Definition::parse(&y.to_json().to_string(), Format::Json).unwrap();
        assert_eq!(again.to_json(), y.to_json());
    }

    #[test]
    fn format_detection() {
        assert_eq!(Format::detect("a.YML", "{"), Format::Yaml);
        assert_eq!(Format::detect("a.json", "x: 1"), Format::Json);
        assert_eq!(Format::detect("-", "  \n {\"a\":1}"), Format::Json);
        assert_eq!(Format::detect("-", "workflow: x"), Format::Yaml);
        assert!(Definition::from_path_text("x", JSON).is_ok());
        assert!(Definition::from_path_text("x", YAML).is_ok());
    }

    #[test]
    fn unknown_fields_are_errors_with_position() {
        let src = "workflow: w\nfunctions:\n  - name: a\n    handler: echo\n    clod: x\n";
        let e = Definition::parse(src, Format::Yaml).unwrap_err();
        let d = &e.0[0];
        assert_eq!(d.code, "parse");
        assert!(d.message.contains("clod"), "{d}");
        assert_eq!(d.line, Some(5), "{d}");
        assert!(d.column.is_some());
        let src = "workflow: w\nfunctions:\n  - name: a\n    next: [{ to: b, mode: mapp }]\n";
        let e = Definition::parse(src, Format::Yaml).unwrap_err();
        assert!(e.to_string().contains("mapp"), "{e}");
        assert_eq!(e.0[0].line, Some(4));
        let src = "{\"workflow\": \"w\",\n \"functions\": [{\"name\": \"a\", \"bogus\": 1}]}";
        let e = Definition::parse(src, Format::Json).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert_eq!(e.0[0].line, Some(2));
        assert!(!e.0[0].message.contains("at line"), "{e}");
        let ok = "workflow: w\nfunctions:\n  - { name: a, next: [{ to: b, when: true }] }\n";
        let d = Definition::parse(ok, Format::Yaml).unwrap();
        assert_eq!(d.functions[0].next[0].when.as_deref(), Some("true"));
        let e = Definition::parse("workflow: [", Format::Yaml).unwrap_err();
        assert!(e.0[0].line.is_some());
        let e = Definition::parse("{", Format::Json).unwrap_err();
        assert!(e.0[0].line.is_some());
    }
}
