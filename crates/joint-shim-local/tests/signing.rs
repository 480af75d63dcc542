//! Signed envelopes: a signed deployment runs; unsigned, forged and replayed events are refused
//! and commit nothing; keys rotate.

use std::sync::Arc;

use joint_core::envelope::Input;
use joint_core::sign::Keyring;
use joint_shim::RuntimeConfig;
use joint_shim_local::runner::{RunOptions, deploy, run_local};
use serde_json::json;

const DEF: &str = "workflow: s
functions:
  - {name: a, cloud: one, handler: inc, next: [{to: b}]}
  - {name: b, cloud: two, handler: inc}
";

fn handlers() -> joint_shim::Handlers {
    let mut h = joint_shim::Handlers::new();
    h.register(
        "inc",
        joint_shim::handler_fn(|v, _| async move { Ok(json!(v.as_i64().unwrap_or(0) + 1)) }),
    );
    h
}

fn opts(keys: &str) -> RunOptions {
    RunOptions {
        input: json!(1),
        runtime: Some(RuntimeConfig {
            keyring: Some(Keyring::parse(keys).unwrap()),
            ..RuntimeConfig::default()
        }),
        ..RunOptions::default()
    }
}

const K1: &str = "k1:000102030405060708090a0b0c0d0e0f";
const K2: &str = "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

#[tokio::test]
async fn a_signed_deployment_runs() {
    let w = Arc::new(joint_core::compile::load("s.yaml", DEF).unwrap());
    let r = run_local(w, handlers(), opts(K1)).await.unwrap();
    assert_eq!(r.output, Some(json!(3)));
}

#[tokio::test]
async fn unsigned_forged_and_replayed_events_are_refused_and_commit_nothing() {
    let w = Arc::new(joint_core::compile::load("s.yaml", DEF).unwrap());
    let dep = deploy(w, handlers(), &opts(K1), None).unwrap();
    let rt = &dep.runtime;
    // Unsigned.
    let mut env = rt.start_envelope("r1", Input::Inline(json!(1))).unwrap();
    env.tag = None;
    let e = rt.handle("one", &env.encode(), 1).await.unwrap_err();
    assert!(e.to_string().contains("not signed"), "{e}");
    // Forged with another key.
    let mut forged = env.clone();
    Keyring::parse(K2).unwrap().sign(&mut forged);
    let e = rt.handle("one", &forged.encode(), 1).await.unwrap_err();
    assert!(e.to_string().contains("key 'k2'"), "{e}");
    assert!(
        !e.to_string().contains("f0f1f2"),
        "no secret in errors: {e}"
    );
    // A valid event of run r1 replayed as run r2.
    let good = rt.start_envelope("r1", Input::Inline(json!(1))).unwrap();
    let mut replay = good.clone();
    replay.workflow_id = "r2".into();
    let e = rt.handle("one", &replay.encode(), 1).await.unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    // Oversized.
    let big = vec![b' '; joint_core::envelope::DEFAULT_MAX_ENVELOPE + 1];
    let e = rt.handle("one", &big, 1).await.unwrap_err();
    assert!(e.to_string().contains("over the"), "{e}");
    // Nothing was committed for any of them.
    for run in ["r1", "r2"] {
        assert!(rt.status(run).await.unwrap().instances.is_empty());
    }
    // The genuine event still works.
    rt.handle("one", &good.encode(), 1).await.unwrap();
    dep.clouds.idle().await;
    let rec = rt.run_record("r1").await.unwrap().unwrap();
    assert_eq!(rt.resolve_output(&rec).await.unwrap().unwrap(), json!(3));
}

#[tokio::test]
async fn rotation_accepts_the_old_key_while_signing_with_the_new() {
    let w = Arc::new(joint_core::compile::load("s.yaml", DEF).unwrap());
    let old = deploy(w.clone(), handlers(), &opts(K1), None).unwrap();
    let event = old
        .runtime
        .start_envelope("rot", Input::Inline(json!(1)))
        .unwrap();
    assert!(event.tag.as_deref().unwrap().starts_with("k1:"));
    let rotated = deploy(w, handlers(), &opts(&format!("{K2},{K1}")), None).unwrap();
    rotated
        .runtime
        .handle("one", &event.encode(), 1)
        .await
        .unwrap();
    rotated.clouds.idle().await;
    let rec = rotated.runtime.run_record("rot").await.unwrap().unwrap();
    assert_eq!(
        rotated.runtime.resolve_output(&rec).await.unwrap().unwrap(),
        json!(3)
    );
    let fresh = rotated
        .runtime
        .start_envelope("rot2", Input::Inline(json!(1)))
        .unwrap();
    assert!(fresh.tag.as_deref().unwrap().starts_with("k2:"));
}
