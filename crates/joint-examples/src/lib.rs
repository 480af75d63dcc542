//! Example Rust handlers for joint workflows, registered by name.
//!
//! | name | input | output |
//! |---|---|---|
//! | `echo` | anything | the input |
//! | `inc` | a number, or `{value: n}` | n + 1 (same shape) |
//! | `split` | `{n}` or a number n | the list `[0, 1, …, n-1]` |
//! | `square` | a number | its square |
//! | `sum` | a list of numbers (nested lists are flattened) | their sum |
//! | `count` | `{i}` (or anything) | `{i: i + 1}` |
//! | `noop` | anything | `null` |
//! | `fail` | anything | always fails with `HandlerError` |
//!
//! and the handlers of the paper's four workflows (module [`paper`]): `video_split`,
//! `video_extract`, `image_process`, `classify`, `document_sort`, `answer`, `qa_collect`,
//! `record`, `data_map`, `data_process`, `data_aggregation`.
#![deny(missing_docs)]

pub mod baseline;
pub mod embed;
pub mod paper;

use joint_core::machine::FnError;
use joint_shim::{Handlers, fn_error, handler_fn};
use serde_json::{Value, json};

fn num(v: &Value, what: &str) -> Result<f64, FnError> {
    v.as_f64()
        .ok_or_else(|| fn_error(format!("{what}: expected a number, got {v}")))
}

fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn flatten_sum(v: &Value) -> Result<f64, FnError> {
    match v {
        Value::Array(items) => items.iter().map(flatten_sum).sum(),
        other => num(other, "sum"),
    }
}

/// Every example handler.
pub fn builtin_handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register("echo", handler_fn(|v, _| async move { Ok(v) }));
    h.register("noop", handler_fn(|_, _| async move { Ok(Value::Null) }));
    h.register(
        "inc",
        handler_fn(|v, _| async move {
            match &v {
                Value::Object(m) if m.contains_key("value") => {
                    let mut m = m.clone();
                    let n = num(&m["value"], "inc")?;
                    m.insert("value".into(), number(n + 1.0));
                    Ok(Value::Object(m))
                }
                other => Ok(number(num(other, "inc")? + 1.0)),
            }
        }),
    );
    h.register(
        "split",
        handler_fn(|v, _| async move {
            let n = match &v {
                Value::Object(m) => m.get("n").and_then(Value::as_u64),
                other => other.as_u64(),
            }
            .ok_or_else(|| {
                fn_error(format!(
                    "split: expected {{\"n\": count}} or a count, got {v}"
                ))
            })?;
            if n > 1_000_000 {
                return Err(fn_error(format!("split: n = {n} is over 1000000")));
            }
            Ok(Value::Array((0..n).map(|i| json!(i)).collect()))
        }),
    );
    h.register(
        "square",
        handler_fn(|v, _| async move {
            let x = num(&v, "square")?;
            Ok(number(x * x))
        }),
    );
    h.register(
        "sum",
        handler_fn(|v, _| async move { Ok(number(flatten_sum(&v)?)) }),
    );
    h.register(
        "count",
        handler_fn(|v, _| async move {
            let i = v.get("i").and_then(Value::as_i64).unwrap_or(0);
            Ok(json!({"i": i + 1}))
        }),
    );
    h.register(
        "fail",
        handler_fn(|v, _| async move { Err(fn_error(format!("fail was asked to fail on {v}"))) }),
    );
    paper::register(&mut h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use joint_shim::Context;

    fn ctx() -> Context {
        Context {
            workflow_id: "w".into(),
            instance: "w/A_0".into(),
            function: "A".into(),
            cloud: "local".into(),
            attempt: 1,
            vars: Default::default(),
        }
    }

    async fn call(name: &str, v: Value) -> Result<Value, FnError> {
        let h = builtin_handlers();
        let sub: joint_core::SubGraph =
            serde_json::from_value(json!({"Name": "f", "Handler": name})).unwrap();
        h.resolve(&sub).unwrap().call(v, &ctx()).await
    }

    #[tokio::test]
    async fn handlers_compute() {
        assert_eq!(call("inc", json!(1)).await.unwrap(), json!(2));
        assert_eq!(
            call("inc", json!({"value": 2, "k": 1})).await.unwrap(),
            json!({"value": 3, "k": 1})
        );
        assert_eq!(
            call("split", json!({"n": 3})).await.unwrap(),
            json!([0, 1, 2])
        );
        assert_eq!(call("square", json!(3)).await.unwrap(), json!(9));
        assert_eq!(call("sum", json!([1, [2, 3]])).await.unwrap(), json!(6));
        assert_eq!(
            call("count", json!({"i": 4})).await.unwrap(),
            json!({"i": 5})
        );
        assert!(
            call("fail", json!(1))
                .await
                .unwrap_err()
                .message
                .contains("fail")
        );
        assert!(
            call("square", json!("x"))
                .await
                .unwrap_err()
                .message
                .contains("expected a number")
        );
    }
}
