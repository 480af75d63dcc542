//! The per-function sub-graph: the paper's intermediate representation ("MetaConfig").
//!
//! Every function is deployed with its own [`SubGraph`]: itself and its immediate successors. The
//! field names are the paper's (`Name`, `Ds`, `TransferByDs`, `Start`, `Next` entries with `Name`,
//! `FaaS`, `InvokeMode`, `Choice`, `Failover`, `ModifyEvent`), so sub-graphs written for Jointλ load
//! unchanged. joint adds a few optional fields (`FaaS` and `Failover` at the top level, `Checkpoint`,
//! `Handler`, `Command`, `Env`, `Timeout`, `MaxIterations`, …); they all have defaults, so a paper
//! sub-graph needs none.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::expr::Expr;

/// Where checkpoints and transferred data go (the paper's `Ds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DsKind {
    /// Table/KV store (DynamoDB, Tablestore, SQLite locally).
    #[default]
    NosqlKVDs,
    /// Object store (S3, OSS, a folder locally).
    ObjectStore,
}

/// When the output checkpoint is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointPolicy {
    /// Read the checkpoint first and skip the user function when an output exists (the paper's
    /// behaviour): one consistent read per instance, and the user function never runs twice for one
    /// instance unless a crash hits between running it and committing.
    #[default]
    Eager,
    /// Run the user function, then create-if-absent; a loser adopts the winner's output. No read.
    Lazy,
}

/// How often the runtime retries a failing user function before the run fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt, doubled for each further one.
    pub backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff_ms: 100,
        }
    }
}

/// An event modification applied when invoking a successor (the paper's `ModifyEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModifyOp {
    /// `PopAndMerge`: pop the branch level pushed by the matching fork (implied on fan-in edges).
    PopAndMerge,
    /// `var+=n`, `var-=n` or `var=n` on an integer loop variable.
    Set {
        /// The loop variable.
        var: String,
        /// The operator.
        op: SetOp,
        /// The operand.
        value: i64,
    },
}

/// Operator of a [`ModifyOp::Set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `=`
    Assign,
}

impl ModifyOp {
    /// Apply to a loop-variable map. Overflow is an error naming the variable.
    pub fn apply(&self, vars: &mut BTreeMap<String, i64>) -> Result<(), String> {
        if let ModifyOp::Set { var, op, value } = self {
            let cur = vars.get(var).copied().unwrap_or(0);
            let next = match op {
                SetOp::Add => cur.checked_add(*value),
                SetOp::Sub => cur.checked_sub(*value),
                SetOp::Assign => Some(*value),
            }
            .ok_or_else(|| format!("loop variable '{var}' overflowed applying '{self}'"))?;
            vars.insert(var.clone(), next);
        }
        Ok(())
    }
}

impl fmt::Display for ModifyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModifyOp::PopAndMerge => f.write_str("PopAndMerge"),
            ModifyOp::Set { var, op, value } => {
                let op = match op {
                    SetOp::Add => "+=",
                    SetOp::Sub => "-=",
                    SetOp::Assign => "=",
                };
                write!(f, "{var}{op}{value}")
            }
        }
    }
}

impl std::str::FromStr for ModifyOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t == "PopAndMerge" {
            return Ok(ModifyOp::PopAndMerge);
        }
        let (var, op, rest) = if let Some((v, r)) = t.split_once("+=") {
            (v, SetOp::Add, r)
        } else if let Some((v, r)) = t.split_once("-=") {
            (v, SetOp::Sub, r)
        } else if let Some((v, r)) = t.split_once('=') {
            (v, SetOp::Assign, r)
        } else {
            return Err(format!(
                "unknown ModifyEvent '{s}': expected PopAndMerge, 'var+=n', 'var-=n' or 'var=n'"
            ));
        };
        let var = var.trim();
        let valid = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("ModifyEvent '{s}': '{var}' is not a variable name"));
        }
        let value: i64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("ModifyEvent '{s}': '{}' is not an integer", rest.trim()))?;
        Ok(ModifyOp::Set {
            var: var.to_string(),
            op,
            value,
        })
    }
}

impl Serialize for ModifyOp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModifyOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// How a successor is invoked (the paper's `InvokeMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeMode {
    /// One successor instance. Several unguarded `Sequence` entries form a Parallel fork (each
    /// pushes a branch level); guarded ones form a Choice (the first true guard wins, no push).
    Sequence,
    /// One successor instance per element of the output list. `max_concurrency` bounds how many
    /// branches run at once (a branch finishing starts the next one).
    Map {
        /// Bound on branches running at once; `None` = all at once.
        max_concurrency: Option<u32>,
    },
    /// Join of the branches of the matching fork; the last branch to arrive invokes the successor
    /// with the list of all branch outputs (in branch order), after PopAndMerge.
    FanIn {
        /// Paper-style branch instance names (`B_1-bindex-0`, optionally with a store prefix such
        /// as `s3-`); empty for a dynamic fan-in after a Map. Informational: the runtime joins on the
        /// branch level pushed by the fork.
        branch: Vec<String>,
    },
    /// Cross-run batching: the successor runs once per `batch_size` arrivals from different runs,
    /// with the list of their outputs, as a run of its own.
    ByBatch {
        /// Arrivals per batch.
        batch_size: u32,
        /// Paper-style names of the waiting instances (informational).
        workflow_wait: Vec<String>,
    },
    /// k-of-n join of redundant branches: the successor is invoked once `completion` branches of
    /// the fork have finished, with their outputs.
    ByRedundant {
        /// k.
        completion: u32,
        /// Paper-style names of the redundant instances (informational).
        workflow_wait: Vec<String>,
    },
}

impl InvokeMode {
    /// The mode's name as the paper spells it.
    pub fn name(&self) -> &'static str {
        match self {
            InvokeMode::Sequence => "Sequence",
            InvokeMode::Map { .. } => "Map",
            InvokeMode::FanIn { .. } => "FanIn",
            InvokeMode::ByBatch { .. } => "ByBatch",
            InvokeMode::ByRedundant { .. } => "ByRedundant",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum ModeRepr {
    Sequence,
    Map(#[serde(default)] MapRepr),
    FanIn(#[serde(default)] FanInRepr),
    ByBatch(BatchRepr),
    ByRedundant(RedundantRepr),
}
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MapRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
}
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FanInRepr {
    #[serde(default)]
    branch: Vec<String>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BatchRepr {
    batch_size: u32,
    #[serde(default)]
    workflow_wait: Vec<String>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RedundantRepr {
    completion: u32,
    #[serde(default)]
    workflow_wait: Vec<String>,
}

impl Serialize for InvokeMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InvokeMode::Sequence => s.serialize_str("Sequence"),
            InvokeMode::Map {
                max_concurrency: None,
            } => s.serialize_str("Map"),
            InvokeMode::Map { max_concurrency } => ModeRepr::Map(MapRepr {
                max_concurrency: *max_concurrency,
            })
            .serialize(s),
            InvokeMode::FanIn { branch } => ModeRepr::FanIn(FanInRepr {
                branch: branch.clone(),
            })
            .serialize(s),
            InvokeMode::ByBatch {
                batch_size,
                workflow_wait,
            } => ModeRepr::ByBatch(BatchRepr {
                batch_size: *batch_size,
                workflow_wait: workflow_wait.clone(),
            })
            .serialize(s),
            InvokeMode::ByRedundant {
                completion,
                workflow_wait,
            } => ModeRepr::ByRedundant(RedundantRepr {
                completion: *completion,
                workflow_wait: workflow_wait.clone(),
            })
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for InvokeMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if let serde_json::Value::String(s) = &v {
            return match s.as_str() {
                "Sequence" => Ok(InvokeMode::Sequence),
                "Map" => Ok(InvokeMode::Map {
                    max_concurrency: None,
                }),
                "FanIn" => Ok(InvokeMode::FanIn { branch: vec![] }),
                other => Err(D::Error::custom(format!(
                    "unknown InvokeMode '{other}': expected Sequence, Map, {{\"FanIn\":…}}, {{\"ByBatch\":…}} or {{\"ByRedundant\":…}}"
                ))),
            };
        }
        let repr: ModeRepr = serde_json::from_value(v).map_err(|e| {
            D::Error::custom(format!(
                "bad InvokeMode: {e} (expected \"Sequence\", \"Map\", {{\"Map\":{{\"MaxConcurrency\":n}}}}, {{\"FanIn\":{{\"Branch\":[…]}}}}, {{\"ByBatch\":{{\"BatchSize\":n}}}} or {{\"ByRedundant\":{{\"Completion\":k}}}})"
            ))
        })?;
        Ok(match repr {
            ModeRepr::Sequence => InvokeMode::Sequence,
            ModeRepr::Map(m) => InvokeMode::Map {
                max_concurrency: m.max_concurrency,
            },
            ModeRepr::FanIn(f) => InvokeMode::FanIn { branch: f.branch },
            ModeRepr::ByBatch(b) => InvokeMode::ByBatch {
                batch_size: b.batch_size,
                workflow_wait: b.workflow_wait,
            },
            ModeRepr::ByRedundant(r) => InvokeMode::ByRedundant {
                completion: r.completion,
                workflow_wait: r.workflow_wait,
            },
        })
    }
}

/// One successor of a function (an entry of the paper's `Next`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NextEntry {
    /// The successor function.
    pub name: String,
    /// The cloud the successor is placed on (the paper's `FaaS`: `lambda`, `alifc`, or any cloud name).
    #[serde(rename = "FaaS")]
    pub faas: String,
    /// How it is invoked.
    pub invoke_mode: InvokeMode,
    /// Guard (Choice and Cycle edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Expr>,
    /// Replica clouds to try, in order, when `faas` refuses the invocation. The paper has one name;
    /// a list is accepted too.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub failover: Vec<String>,
    /// Event modifications (`PopAndMerge`, `Iterator+=1`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modify_event: Vec<ModifyOp>,
    /// Cycle bound (joint extension): the edge may be taken at most this many times per run
    /// (counted by the loop variable it increments); exceeding it fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
}

impl NextEntry {
    /// The loop variable a cycle edge counts with: the first `var+=n` of its ModifyEvent.
    pub fn counter(&self) -> Option<&str> {
        self.modify_event.iter().find_map(|m| match m {
            ModifyOp::Set {
                var,
                op: SetOp::Add,
                ..
            } => Some(var.as_str()),
            _ => None,
        })
    }
}

/// One function's sub-graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubGraph {
    /// The function.
    pub name: String,
    /// Checkpoint/transfer store kind.
    #[serde(default)]
    pub ds: DsKind,
    /// Always transfer the output through the object store (indirect transfer).
    #[serde(default, skip_serializing_if = "is_false")]
    pub transfer_by_ds: bool,
    /// Entry function of the workflow.
    #[serde(default, skip_serializing_if = "is_false")]
    pub start: bool,
    /// Successors; an object or an array in the input.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub next: Vec<NextEntry>,
    /// joint: the cloud this function is placed on (its checkpoints live there). Paper sub-graphs
    /// leave it out; the importer fills it from the callers' `FaaS` fields.
    #[serde(default, rename = "FaaS", skip_serializing_if = "String::is_empty")]
    pub faas: String,
    /// joint: the clouds this function has replicas on, in failover order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
    /// joint: checkpoint policy.
    #[serde(default)]
    pub checkpoint: CheckpointPolicy,
    /// joint: memory of the function in MB (for the cost model).
    #[serde(default = "default_memory", rename = "MemoryMB")]
    pub memory_mb: u32,
    /// joint: name of a registered handler implementing the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// joint: argv of a local command implementing the function (JSON on stdin, JSON on stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// joint: argv of the long-lived worker process serving the function (JSON lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Vec<String>>,
    /// joint: extra environment variables of the command or worker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// joint: seconds one attempt of the user function may take; past it the attempt fails with
    /// `Timeout` (and `Retry` applies). `None`: no limit but the platform's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// joint: retries of the user function.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// joint: the workflow this sub-graph belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow: String,
    /// joint: every cloud of the workflow (where GC deletes the run's prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clouds: Vec<String>,
    /// joint: per-cloud inline payload limit overrides in bytes (else the cloud's capability).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline_limit: BTreeMap<String, u64>,
}

fn default_memory() -> u32 {
    128
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(vec![]),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|i| serde_json::from_value(i).map_err(D::Error::custom))
            .collect(),
        one => Ok(vec![serde_json::from_value(one).map_err(D::Error::custom)?]),
    }
}

/// The shape of a function's successor set, as the runtime interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No successors: the instance ends the run (or its branch).
    End,
    /// One unguarded Sequence successor.
    Sequence,
    /// Two or more unguarded Sequence successors: a fork, each pushing a branch level.
    Parallel,
    /// Guarded successors (Choice and Cycle edges): the first true guard is taken.
    Choice,
    /// One Map successor.
    Map,
    /// One FanIn successor.
    FanIn,
    /// One ByBatch successor.
    ByBatch,
    /// One ByRedundant successor.
    ByRedundant,
}

impl SubGraph {
    /// Classify the successor set, or say why it cannot be interpreted.
    pub fn shape(&self) -> Result<Shape, String> {
        let n = self.next.len();
        if n == 0 {
            return Ok(Shape::End);
        }
        let guarded = self.next.iter().filter(|e| e.choice.is_some()).count();
        let seq = self
            .next
            .iter()
            .filter(|e| e.invoke_mode == InvokeMode::Sequence)
            .count();
        if guarded > 0 {
            if guarded != n || seq != n {
                return Err(format!(
                    "function '{}' mixes guarded (Choice) successors with other successors; a Choice must guard every entry (use \"Choice\": \"true\" for a default) and all entries must be Sequence",
                    self.name
                ));
            }
            return Ok(Shape::Choice);
        }
        if seq == n {
            return Ok(if n == 1 {
                Shape::Sequence
            } else {
                Shape::Parallel
            });
        }
        if n > 1 {
            let modes: Vec<_> = self.next.iter().map(|e| e.invoke_mode.name()).collect();
            return Err(format!(
                "function '{}' has {} successors with modes [{}]; Map, FanIn, ByBatch and ByRedundant must be the only successor",
                self.name,
                n,
                modes.join(", ")
            ));
        }
        Ok(match self.next[0].invoke_mode {
            InvokeMode::Sequence => Shape::Sequence,
            InvokeMode::Map { .. } => Shape::Map,
            InvokeMode::FanIn { .. } => Shape::FanIn,
            InvokeMode::ByBatch { .. } => Shape::ByBatch,
            InvokeMode::ByRedundant { .. } => Shape::ByRedundant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_examples_parse() {
        let chain: SubGraph = serde_json::from_str(
            r#"{"Name":"A","Ds":"NosqlKVDs","Start":true,
             "Next":{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence"}}"#,
        )
        .unwrap();
        assert_eq!(chain.next.len(), 1);
        assert_eq!(chain.shape().unwrap(), Shape::Sequence);
        let fanin: SubGraph = serde_json::from_str(
            r#"{"Name":"B","Ds":"ObjectStore","TransferByDs":true,
             "Next":{"Name":"D","FaaS":"lambda",
             "InvokeMode":{"FanIn":{"Branch":["s3-B_1-bindex-0","s3-C_1-bindex-1"]}},
             "ModifyEvent":["PopAndMerge"]}}"#,
        )
        .unwrap();
        assert_eq!(fanin.ds, DsKind::ObjectStore);
        assert!(matches!(&fanin.next[0].invoke_mode, InvokeMode::FanIn{branch} if branch.len()==2));
        assert_eq!(fanin.next[0].modify_event, vec![ModifyOp::PopAndMerge]);
        let cycle: SubGraph = serde_json::from_str(
            r#"{"Name":"B","Ds":"NosqlKVDs","TransferByDs":true,
             "Next":{"Name":"B","FaaS":"lambda","InvokeMode":"Sequence",
             "Choice":"Iterator < 8","ModifyEvent":["Iterator+=1"]}}"#,
        )
        .unwrap();
        assert_eq!(cycle.shape().unwrap(), Shape::Choice);
        assert_eq!(cycle.next[0].counter(), Some("Iterator"));
        let batch: SubGraph = serde_json::from_str(
            r#"{"Name":"B","Next":{"Name":"X","FaaS":"lambda",
             "InvokeMode":{"ByBatch":{"BatchSize":32,"WorkflowWait":["B_1","E_2"]}}}}"#,
        )
        .unwrap();
        assert_eq!(batch.shape().unwrap(), Shape::ByBatch);
        let fo: SubGraph = serde_json::from_str(
            r#"{"Name":"A","Next":{"Name":"B","FaaS":"lambda","Failover":"alifc","InvokeMode":"Sequence"}}"#,
        )
        .unwrap();
        assert_eq!(fo.next[0].failover, vec!["alifc".to_string()]);
    }

    #[test]
    fn modes_round_trip() {
        for m in [
            InvokeMode::Sequence,
            InvokeMode::Map {
                max_concurrency: None,
            },
            InvokeMode::Map {
                max_concurrency: Some(4),
            },
            InvokeMode::FanIn {
                branch: vec!["B_1-bindex-0".into()],
            },
            InvokeMode::ByBatch {
                batch_size: 3,
                workflow_wait: vec![],
            },
            InvokeMode::ByRedundant {
                completion: 1,
                workflow_wait: vec!["B_1".into()],
            },
        ] {
            let j = serde_json::to_string(&m).unwrap();
            let back: InvokeMode = serde_json::from_str(&j).unwrap();
            assert_eq!(back, m, "{j}");
        }
        let e = serde_json::from_str::<InvokeMode>("\"Mapp\"").unwrap_err();
        assert!(e.to_string().contains("unknown InvokeMode 'Mapp'"), "{e}");
    }

    #[test]
    fn modify_ops() {
        let mut vars = BTreeMap::new();
        "Iterator+=2"
            .parse::<ModifyOp>()
            .unwrap()
            .apply(&mut vars)
            .unwrap();
        "Iterator-=1"
            .parse::<ModifyOp>()
            .unwrap()
            .apply(&mut vars)
            .unwrap();
        assert_eq!(vars["Iterator"], 1);
        "x = 7"
            .parse::<ModifyOp>()
            .unwrap()
            .apply(&mut vars)
            .unwrap();
        assert_eq!(vars["x"], 7);
        assert!("1x+=1".parse::<ModifyOp>().is_err());
        assert!(
            "x+=y"
                .parse::<ModifyOp>()
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(
            "Pop"
                .parse::<ModifyOp>()
                .unwrap_err()
                .contains("unknown ModifyEvent")
        );
        let mut big = BTreeMap::from([("i".to_string(), i64::MAX)]);
        assert!("i+=1".parse::<ModifyOp>().unwrap().apply(&mut big).is_err());
    }

    #[test]
    fn shapes() {
        let mut g: SubGraph = serde_json::from_str(
            r#"{"Name":"A","Next":[{"Name":"B","FaaS":"x","InvokeMode":"Sequence"},
            {"Name":"C","FaaS":"x","InvokeMode":"Sequence"}]}"#,
        )
        .unwrap();
        assert_eq!(g.shape().unwrap(), Shape::Parallel);
        g.next[1].invoke_mode = InvokeMode::Map {
            max_concurrency: None,
        };
        assert!(
            g.shape()
                .unwrap_err()
                .contains("must be the only successor")
        );
        g.next[1].invoke_mode = InvokeMode::Sequence;
        g.next[0].choice = Some("true".parse().unwrap());
        assert!(g.shape().unwrap_err().contains("mixes guarded"));
    }
}
