//! Monte Carlo π (paper §8.3, from xAFCL): `data_map` → Map(`data_process`) → FanIn →
//! `data_aggregation`.
//!
//! * `data_map` turns `{"branches", "samples", "seed"}` into one work item per branch.
//! * `data_process` draws `samples` points uniformly in the unit square from its own
//!   xoshiro256++ stream (seeded from the run's seed and the branch number) and counts those
//!   inside the quarter circle.
//! * `data_aggregation` sums the counts: π ≈ 4 · inside / samples.

use joint_core::machine::FnError;
use joint_core::workflow::Workflow;
use joint_shim::{Handlers, fn_error, handler_fn};
use serde_json::{Value, json};

use super::rng::Rng;
use super::{cpu, field_u64, list, load_shipped, object, or_defaults};

/// The definition (`examples/paper/monte-carlo-pi.yaml`).
pub const DEFINITION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/paper/monte-carlo-pi.yaml"
));

/// Default points per branch (the paper's "1M random numbers").
pub const DEFAULT_SAMPLES: u64 = 1_000_000;
/// Largest accepted number of branches.
pub const MAX_BRANCHES: u64 = 1_000_000;
/// Largest accepted number of points per branch.
pub const MAX_SAMPLES: u64 = 1_000_000_000;

const STREAM_TAG: u64 = 0x314;

/// The Monte Carlo π workflow: `data_map` and `data_aggregation` on `aws`, `data_process` on
/// `aliyun`. One definition serves every width: the Map's width is the input's `branches`.
pub fn monte_carlo() -> Workflow {
    load_shipped("monte-carlo-pi.yaml", DEFINITION)
}

/// The input of [`monte_carlo`]: `branches` branches of `samples` points each, from `seed`.
pub fn monte_carlo_input(branches: u32, samples: u64, seed: u64) -> Value {
    json!({"branches": branches, "samples": samples, "seed": seed})
}

/// Points of branch `branch` of run seed `seed` that fall inside the quarter circle, out of
/// `samples`.
pub fn count_inside(seed: u64, branch: u64, samples: u64) -> u64 {
    let mut rng = Rng::for_stream(&[seed, branch, STREAM_TAG]);
    let mut inside = 0;
    for _ in 0..samples {
        let x = rng.f64();
        let y = rng.f64();
        inside += u64::from(x * x + y * y <= 1.0);
    }
    inside
}

fn data_map(input: &Value) -> Result<Value, FnError> {
    let input = &*or_defaults(input);
    const W: &str = "data_map";
    object(input, W, "{\"branches\": n, \"samples\": n, \"seed\": s}")?;
    let branches = field_u64(input, W, "branches", Some(2), 1, MAX_BRANCHES)?;
    let samples = field_u64(input, W, "samples", Some(DEFAULT_SAMPLES), 1, MAX_SAMPLES)?;
    let seed = field_u64(input, W, "seed", Some(1), 0, u64::MAX)?;
    Ok(Value::Array(
        (0..branches)
            .map(|b| json!({"branch": b, "samples": samples, "seed": seed}))
            .collect(),
    ))
}

fn data_process(input: &Value) -> Result<Value, FnError> {
    const W: &str = "data_process";
    object(input, W, "one item of data_map's output")?;
    let branch = field_u64(input, W, "branch", None, 0, u64::MAX)?;
    let samples = field_u64(input, W, "samples", None, 1, MAX_SAMPLES)?;
    let seed = field_u64(input, W, "seed", None, 0, u64::MAX)?;
    let inside = count_inside(seed, branch, samples);
    Ok(json!({"branch": branch, "samples": samples, "inside": inside}))
}

fn data_aggregation(input: &Value) -> Result<Value, FnError> {
    const W: &str = "data_aggregation";
    let parts = list(input, W)?;
    let (mut inside, mut samples) = (0u64, 0u64);
    for p in parts {
        let i = field_u64(p, W, "inside", None, 0, u64::MAX)?;
        let n = field_u64(p, W, "samples", None, 1, u64::MAX)?;
        if i > n {
            return Err(fn_error(format!("{W}: a branch counts {i} of {n} inside")));
        }
        inside += i;
        samples += n;
    }
    if samples == 0 {
        return Err(fn_error(format!("{W}: no samples")));
    }
    let pi = 4.0 * inside as f64 / samples as f64;
    Ok(json!({
        "pi": pi,
        "error": (pi - std::f64::consts::PI).abs(),
        "inside": inside,
        "samples": samples,
        "branches": parts.len(),
    }))
}

/// Register `data_map`, `data_process` and `data_aggregation`.
pub fn register(h: &mut Handlers) {
    h.register(
        "data_map",
        handler_fn(|v: Value, _| async move { data_map(&v) }),
    );
    h.register(
        "data_process",
        handler_fn(
            |v: Value, _| async move { cpu("data_process", move || data_process(&v)).await },
        ),
    );
    h.register(
        "data_aggregation",
        handler_fn(|v: Value, _| async move { data_aggregation(&v) }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_pi_from_independent_streams() {
        let items = data_map(&monte_carlo_input(4, 20_000, 9)).unwrap();
        let parts: Vec<Value> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| data_process(i).unwrap())
            .collect();
        assert_ne!(parts[0]["inside"], parts[1]["inside"]);
        let out = data_aggregation(&Value::Array(parts)).unwrap();
        assert_eq!(out["samples"], 80_000);
        assert!(out["error"].as_f64().unwrap() < 0.03, "{out}");
        assert!(data_aggregation(&json!([{"inside": 5, "samples": 4}])).is_err());
    }
}
