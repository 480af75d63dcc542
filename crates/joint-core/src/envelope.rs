//! The envelope (the paper's JointλObject): the event one function sends to the next, and the
//! records the protocol stores.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::naming::{self, Frame};

/// Envelope format version this build writes and accepts.
pub const ENVELOPE_VERSION: u32 = 1;

/// Default largest envelope a runtime decodes (bytes).
pub const DEFAULT_MAX_ENVELOPE: usize = 8 * 1024 * 1024;

/// The event passed between functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Format version.
    pub v: u32,
    /// Workflow (definition) name.
    pub workflow: String,
    /// The run's id: made by the start or given by the caller for an idempotent start.
    pub workflow_id: String,
    /// The function this event is for.
    pub function: String,
    /// Hop counter: 0 at the start, +1 on every hop.
    pub step: u32,
    /// Branch stack, outermost first (the newest level is last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branch: Vec<Frame>,
    /// Loop variables (`Iterator`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, i64>,
    /// The input data.
    pub input: Input,
    /// Cloud that holds the run record.
    pub home: String,
    /// Hash of the compiled workflow the run started with.
    pub def_hash: String,
    /// W3C `traceparent` of the caller's span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// HMAC tag over the envelope (signed deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Where a function's input is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// In the envelope.
    Inline(Value),
    /// In a blob; `select` picks one element of a list.
    Blob {
        /// The blob.
        blob: BlobRef,
        /// Element index of a list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        select: Option<u32>,
    },
    /// The committed output of another instance, read from its cloud's coordination store.
    Item {
        /// Cloud of the coordination store.
        cloud: String,
        /// Instance id.
        key: String,
        /// Element index of a list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        select: Option<u32>,
    },
    /// A blob holding an encoded [`Input`] (a fan-in's list of references, when too large for
    /// the event).
    Indirect(BlobRef),
    /// A list assembled from several inputs (a fan-in's branch outputs, in branch order).
    Gather(Vec<Input>),
}

impl Input {
    /// This input with `select` set (for one element of a Map).
    pub fn select(&self, index: u32) -> Input {
        match self {
            Input::Blob { blob, .. } => Input::Blob {
                blob: blob.clone(),
                select: Some(index),
            },
            Input::Item { cloud, key, .. } => Input::Item {
                cloud: cloud.clone(),
                key: key.clone(),
                select: Some(index),
            },
            other => other.clone(),
        }
    }
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// Cloud of the blob store.
    pub cloud: String,
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

/// A committed output: the value (inline or spilled) or the function's failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// The value itself.
    Inline(Value),
    /// The value in a blob (JSON bytes).
    Blob(BlobRef),
}

/// The value of an instance's coordination item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputRecord {
    /// The function returned a value.
    Ok(Payload),
    /// The function failed after its retries.
    Err(Failure),
}

/// The value of an instance's coordination item as stored: the committed output and, for
/// re-driving lost events (`joint resume`, the sweeper), the event that made the instance
/// (without its input, which a committed instance never reads again) and when it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The output (stored flattened: `{"ok": …}` or `{"err": …}`).
    #[serde(flatten)]
    pub out: OutputRecord,
    /// The envelope that invoked the instance, its input replaced by `null` and unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Envelope>,
    /// When the committing execution started (Unix milliseconds), when the driver knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

impl ItemRecord {
    /// A record of `out` made by `env` (its input and tag are dropped).
    pub fn new(out: OutputRecord, env: &Envelope, at_ms: Option<u64>) -> ItemRecord {
        let mut head = env.clone();
        head.input = Input::Inline(Value::Null);
        head.tag = None;
        ItemRecord {
            out,
            env: Some(head),
            at_ms,
        }
    }

    /// Serialize (compact JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode an item value (also accepts a bare output record).
    pub fn decode(bytes: &[u8]) -> Result<ItemRecord, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A user function's failure, as committed and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The function.
    pub function: String,
    /// The instance id.
    pub instance: String,
    /// Stable error type (`HandlerError`, `CommandFailed`, `MapOverNonList`, …).
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "function '{}' ({}) failed: {}: {}",
            self.function, self.instance, self.kind, self.message
        )
    }
}

/// The run record at `_runs/{workflow_id}`: written once, by the instance that ends the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Workflow name.
    pub workflow: String,
    /// Run id.
    pub workflow_id: String,
    /// The result.
    pub result: OutputRecord,
    /// Instance that ended the run.
    pub finished_by: String,
    /// Set when the run ended by joining a batch: the id of the run the batch starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batched_into: Option<String>,
    /// When the run ended (Unix milliseconds, the finishing execution's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

/// The start record at `_runs/{workflow_id}/start`: written once (create-if-absent) by whoever
/// starts the run, so that a run id names exactly one run — one workflow version and one input.
/// Starting a run id again with the same workflow version and input is idempotent; anything
/// else is refused, like Step Functions' `ExecutionAlreadyExists`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    /// Workflow name.
    pub workflow: String,
    /// Workflow version (definition hash).
    pub def_hash: String,
    /// SHA-256 (hex) of the start input's canonical JSON.
    pub input_sha256: String,
    /// When the run was started (Unix milliseconds).
    pub started_ms: u64,
}

impl RunStart {
    /// The SHA-256 (hex) of `input` as it is hashed for a start record: its compact JSON with
    /// object keys sorted, so that the same value always gives the same hash.
    pub fn input_hash(input: &Value) -> String {
        use sha2::{Digest, Sha256};
        let canonical = canonical_json(input);
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Why starting run `run` of `workflow` version `def_hash` with an input hashing to
    /// `input_sha256` conflicts with this record, or `None` when it is the same run.
    pub fn conflict(
        &self,
        run: &str,
        workflow: &str,
        def_hash: &str,
        input_sha256: &str,
    ) -> Option<String> {
        let short = |h: &str| h[..12.min(h.len())].to_string();
        if self.workflow != workflow {
            return Some(format!(
                "run id '{run}' is already taken by a run of workflow '{}'; choose another run id",
                self.workflow
            ));
        }
        if self.def_hash != def_hash {
            return Some(format!(
                "run id '{run}' was started with version {} of workflow '{workflow}', not {}; choose another run id",
                short(&self.def_hash),
                short(def_hash)
            ));
        }
        if self.input_sha256 != input_sha256 {
            return Some(format!(
                "run id '{run}' was started with a different input (sha256 {} instead of {}); a run id names one input — choose another run id",
                short(&self.input_sha256),
                short(input_sha256)
            ));
        }
        None
    }
}

/// Compact JSON with object keys sorted at every level.
fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).unwrap_or_default()
}

/// The value a branch contributes to a join (stored as a join member).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinMember {
    /// The branch instance's step (the aggregator's step is the largest + 1).
    pub step: u32,
    /// The branch's output.
    pub out: Input,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Delivered to a function other than the one it is for.
    #[error(
        "invalid envelope: the event is for function '{event}' but was delivered to function '{invoked}'; refusing to run a function other than the one invoked"
    )]
    Misaddressed {
        /// The function the envelope names (at most 140 characters of it).
        event: String,
        /// The function the platform invoked.
        invoked: String,
    },
    /// Larger than the runtime accepts.
    #[error("invalid envelope: {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not an envelope's JSON.
    #[error("invalid envelope: {0}")]
    NotJson(String),
    /// Another envelope version.
    #[error(
        "invalid envelope: version {0} is not supported (this runtime speaks {ENVELOPE_VERSION})"
    )]
    Version(u32),
    /// A run id, function or workflow name that is not an id.
    #[error(
        "invalid envelope: {field} '{value}' must be 1-128 characters of A-Z a-z 0-9 - _ . (not starting with '.')"
    )]
    BadId {
        /// Which field.
        field: &'static str,
        /// Its value (at most 140 characters).
        value: String,
    },
    /// A branch level whose index is not below its size.
    #[error("invalid envelope: branch level {level}: index {index} is not below size {size}")]
    BadBranch {
        /// The level (0 = outermost).
        level: usize,
        /// Its index.
        index: u32,
        /// Its size.
        size: u32,
    },
}

/// The function a joint envelope in `event` is for: `Some(name)` when `event` is a JSON object
/// with a string `function` field (what every envelope has), `None` for any other event.
///
/// A platform adapter compares it with the function the platform invoked before it hands the
/// event to the runtime: the runtime runs the function the envelope names, so an envelope for
/// `B` delivered to the deployment of `A` must be refused, not run as `B` (see
/// [`check_addressed`]).
pub fn addressed_function(event: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Addressed {
        function: String,
    }
    serde_json::from_slice::<Addressed>(event)
        .ok()
        .map(|a| a.function)
}

/// Refuse an envelope delivered to a function other than the one it is for. `invoked` is the
/// joint function the platform invoked; events that are not envelopes pass (the runtime refuses
/// them with its own error).
pub fn check_addressed(event: &[u8], invoked: &str) -> Result<(), EnvelopeError> {
    match addressed_function(event) {
        Some(f) if f != invoked => Err(EnvelopeError::Misaddressed {
            event: f.chars().take(140).collect(),
            invoked: invoked.to_string(),
        }),
        _ => Ok(()),
    }
}

impl Envelope {
    /// The instance id this envelope addresses.
    pub fn instance_id(&self) -> String {
        naming::instance_id(&self.workflow_id, &self.function, self.step, &self.branch)
    }

    /// The instance name (without the run prefix).
    pub fn instance_name(&self) -> String {
        naming::instance_name(&self.function, self.step, &self.branch)
    }

    /// Serialize (compact JSON).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode and check an envelope: size, JSON shape, version and ids.
    pub fn decode(bytes: &[u8], max_size: usize) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > max_size {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: max_size,
            });
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| {
            EnvelopeError::NotJson(format!("{} (line {}, column {})", e, e.line(), e.column()))
        })?;
        env.check()?;
        Ok(env)
    }

    /// Structural checks shared by decode and tests.
    pub fn check(&self) -> Result<(), EnvelopeError> {
        if self.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(self.v));
        }
        for (what, v) in [
            ("workflow_id", &self.workflow_id),
            ("function", &self.function),
            ("workflow", &self.workflow),
        ] {
            if !naming::valid_id(v) {
                return Err(EnvelopeError::BadId {
                    field: what,
                    value: v.chars().take(140).collect(),
                });
            }
        }
        for (i, f) in self.branch.iter().enumerate() {
            if f.size == 0 || f.index >= f.size {
                return Err(EnvelopeError::BadBranch {
                    level: i,
                    index: f.index,
                    size: f.size,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            workflow: "wf".into(),
            workflow_id: "run1".into(),
            function: "B".into(),
            step: 2,
            branch: vec![Frame {
                index: 1,
                size: 2,
                fork_step: 1,
                window: None,
            }],
            vars: BTreeMap::from([("Iterator".into(), 3)]),
            input: Input::Inline(serde_json::json!({"x": 1})),
            home: "local-a".into(),
            def_hash: "abc".into(),
            trace: None,
            tag: None,
        }
    }

    #[test]
    fn addressed_function_is_read_from_envelopes_only() {
        let e = env();
        assert_eq!(addressed_function(&e.encode()).as_deref(), Some("B"));
        assert!(check_addressed(&e.encode(), "B").is_ok());
        let err = check_addressed(&e.encode(), "A").unwrap_err().to_string();
        assert!(
            err.contains("for function 'B'") && err.contains("delivered to function 'A'"),
            "{err}"
        );
        for other in [&b"{}"[..], b"not json", b"[1,2]", br#"{"function": 3}"#] {
            assert_eq!(addressed_function(other), None, "{other:?}");
            assert!(check_addressed(other, "A").is_ok());
        }
    }

    #[test]
    fn round_trip_and_ids() {
        let e = env();
        let back = Envelope::decode(&e.encode(), DEFAULT_MAX_ENVELOPE).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.instance_id(), "run1/B_2-bindex-1");
    }

    #[test]
    fn item_records_keep_the_envelope_without_its_input() {
        let mut e = env();
        e.tag = Some("k1:abc".into());
        let rec = ItemRecord::new(
            OutputRecord::Ok(Payload::Inline(serde_json::json!([1, 2]))),
            &e,
            Some(42),
        );
        let bytes = rec.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"ok\":"), "{text}");
        assert!(
            !text.contains("\"x\":1") && !text.contains("k1:abc"),
            "{text}"
        );
        let back = ItemRecord::decode(&bytes).unwrap();
        assert_eq!(back, rec);
        let head = back.env.unwrap();
        assert_eq!(head.instance_id(), e.instance_id());
        assert_eq!(head.vars, e.vars);
        // A bare output record (no envelope) still decodes.
        let bare = ItemRecord::decode(
            br#"{"err":{"function":"A","instance":"r/A_0","kind":"K","message":"m"}}"#,
        )
        .unwrap();
        assert!(matches!(bare.out, OutputRecord::Err(_)) && bare.env.is_none());
        assert!(ItemRecord::decode(b"{}").is_err());
    }

    #[test]
    fn refuses_bad_envelopes() {
        let e = env();
        let bytes = e.encode();
        let err = Envelope::decode(&bytes, 10).unwrap_err();
        assert!(err.to_string().contains("over the 10-byte limit"), "{err}");
        let err = Envelope::decode(b"{\"v\":1,", 1000).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let mut bad = e.clone();
        bad.workflow_id = "../etc".into();
        let err = Envelope::decode(&bad.encode(), 10_000).unwrap_err();
        assert!(err.to_string().contains("workflow_id '../etc'"), "{err}");
        let mut bad = e.clone();
        bad.v = 9;
        assert!(
            Envelope::decode(&bad.encode(), 10_000)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        let mut bad = e;
        bad.branch[0].index = 2;
        assert!(
            Envelope::decode(&bad.encode(), 10_000)
                .unwrap_err()
                .to_string()
                .contains("not below size")
        );
        let err = Envelope::decode(b"{\"v\":1,\"surprise\":1}", 1000).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }
}
