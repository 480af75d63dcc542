//! The four workflows of the Jointλ paper's evaluation (§8.3, Fig. 11), with real function code.
//!
//! | workflow | definition | structure | placement |
//! |---|---|---|---|
//! | [`video_analytics`] | `examples/paper/video-analytics.yaml` | `video_split` → Map(`video_extract` → `image_process`) → FanIn → `classify` | classify on `aliyun`, the rest on `aws` |
//! | [`question_answering`] | `examples/paper/question-answering.yaml` | `document_sort` → Map(`answer`) → FanIn → `qa_collect` | document_sort on `aws`, answer and collect on `aliyun` |
//! | [`iot_chain`] | `examples/paper/iot-pipeline.yaml` (length 10) | `record_1` → … → `record_n` | alternating `aws`, `aliyun`, `aws`, … |
//! | [`monte_carlo`] | `examples/paper/monte-carlo-pi.yaml` | `data_map` → Map(`data_process`) → FanIn → `data_aggregation` | data_process on `aliyun`, the rest on `aws` |
//!
//! Every function is deterministic: the synthetic video, the document corpus, the IoT payload and
//! the random numbers are generated from seeds in the input, and the video classifier's
//! parameters ship in `data/video_classifier.bin` (see [`video::train_classifier`]). Nothing is
//! downloaded at run time. The handlers are registered by [`crate::builtin_handlers`]; see
//! `docs/paper-workflows.md` for inputs, outputs and payload sizes.

pub mod iot;
pub mod montecarlo;
pub mod qa;
pub mod rng;
pub mod video;

use joint_core::machine::FnError;
use joint_core::workflow::Workflow;
use joint_shim::{Handlers, fn_error};
use serde_json::{Value, json};

pub use iot::{iot_chain, iot_chain_definition, iot_input};
pub use montecarlo::{monte_carlo, monte_carlo_input};
pub use qa::{qa_input, question_answering};
pub use video::{video_analytics, video_input};

/// Register the paper workflows' handlers: `video_split`, `video_extract`, `image_process`,
/// `classify`, `document_sort`, `answer`, `qa_collect`, `record`, `data_map`, `data_process`,
/// `data_aggregation`.
pub fn register(h: &mut Handlers) {
    video::register(h);
    qa::register(h);
    iot::register(h);
    montecarlo::register(h);
}

/// The paper's workflows with their default (paper-sized) inputs, for `joint bench`:
/// `video-analytics` (fan-out 8), `question-answering` (4 questions), `iot-pipeline-10` and
/// `monte-carlo-pi` (32 branches of 10^6 samples).
pub fn paper_workflows() -> Vec<(&'static str, Workflow, Value)> {
    vec![
        ("video-analytics", video_analytics(), video_input(8, 240, 1)),
        ("question-answering", question_answering(), qa_input(4, 1)),
        ("iot-pipeline-10", iot_chain(10), iot_input(1024, 1)),
        (
            "monte-carlo-pi",
            monte_carlo(),
            monte_carlo_input(32, 1_000_000, 1),
        ),
    ]
}

/// Compile a definition shipped with the crate; they are checked by the tests, so a failure is a
/// bug in this crate.
pub(crate) fn load_shipped(name: &str, src: &str) -> Workflow {
    joint_core::compile::load(name, src)
        .unwrap_or_else(|d| panic!("shipped definition {name} does not compile:\n{d}"))
}

/// Run CPU-bound work off the async threads.
pub(crate) async fn cpu<T, F>(what: &'static str, f: F) -> Result<T, FnError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, FnError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fn_error(format!("{what}: worker failed: {e}")))?
}

/// An unsigned integer field of an input object: `default` when absent, an error when it is not
/// an integer in `min..=max`.
pub(crate) fn field_u64(
    input: &Value,
    what: &str,
    key: &str,
    default: Option<u64>,
    min: u64,
    max: u64,
) -> Result<u64, FnError> {
    let v = match input.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| {
            fn_error(format!(
                "{what}: input needs \"{key}\" (got {})",
                short(input)
            ))
        })?,
        Some(v) => v.as_u64().ok_or_else(|| {
            fn_error(format!(
                "{what}: \"{key}\" must be a non-negative integer, got {v}"
            ))
        })?,
    };
    if v < min || v > max {
        return Err(fn_error(format!(
            "{what}: \"{key}\" = {v} is outside {min}..={max}"
        )));
    }
    Ok(v)
}

/// A start function's input: `null` (what `joint run` passes without `--input`) means every
/// field takes its default.
pub(crate) fn or_defaults(input: &Value) -> std::borrow::Cow<'_, Value> {
    match input {
        Value::Null => std::borrow::Cow::Owned(json!({})),
        v => std::borrow::Cow::Borrowed(v),
    }
}

/// The input must be an object.
pub(crate) fn object<'a>(
    input: &'a Value,
    what: &str,
    shape: &str,
) -> Result<&'a serde_json::Map<String, Value>, FnError> {
    input
        .as_object()
        .ok_or_else(|| fn_error(format!("{what}: expected {shape}, got {}", short(input))))
}

/// The input must be a list (a fan-in aggregator's input).
pub(crate) fn list<'a>(input: &'a Value, what: &str) -> Result<&'a Vec<Value>, FnError> {
    input.as_array().ok_or_else(|| {
        fn_error(format!(
            "{what}: expected the list of branch outputs, got {}",
            short(input)
        ))
    })
}

/// At most 200 characters of a value, for error messages.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 200 {
        s
    } else {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Round to `digits` decimals (keeps JSON payloads compact and outputs stable).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// A JSON number from an f64 rounded to `digits` decimals.
pub(crate) fn jround(x: f64, digits: i32) -> Value {
    json!(round(x, digits))
}
