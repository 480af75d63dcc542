//! The managed-orchestrator baseline for real: the same workflow as an Amazon States Language
//! state machine on ministack's Step Functions (Task states invoking plain Lambdas that run only
//! the user handler) and as joint Lambdas driving each other on the same ministack — equal
//! outputs. parallel.yaml (Parallel state), map.yaml (Map state with MaxConcurrency) and
//! choice.yaml (Choice state).

// The AWS backend's emulator helpers, shared rather than copied.
#[path = "../../joint-shim-aws/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use joint_cli::sfn::{Emulator, deploy_joint, zip_bootstrap};
use serde_json::json;

#[tokio::test]
async fn step_functions_and_joint_agree_on_ministack() {
    let Some(url) = common::emulator("sfn_ministack", "JOINT_TEST_MINISTACK_URL") else {
        return;
    };
    let Some(exe) = common::bootstrap_exe() else {
        return;
    };
    let zip = zip_bootstrap(&exe);
    let em = Emulator::new(&url).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let poll = Duration::from_millis(50);
    for (file, input, expected) in [
        ("parallel.yaml", json!(3), json!(13)),
        ("map.yaml", json!({"n": 4}), json!(14)),
        ("choice.yaml", json!(50), json!(2500)),
    ] {
        let src = std::fs::read_to_string(dir.join(file)).expect("example");
        let w = joint_core::compile::load(file, &src).unwrap_or_else(|d| panic!("{d}"));
        let id = format!("s{}", common::uniq());
        let arn = em
            .deploy_state_machine(&w, &format!("{id}-plain-"), &format!("{id}-sm"), &zip)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let s = em
            .run_execution(&arn, &input, poll)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.output, expected, "{file}: Step Functions output");
        assert!(s.transitions > 0, "{file}: no state transitions counted");

        let j = deploy_joint(
            &em,
            file,
            &src,
            &format!("{id}-j"),
            &zip,
            joint_examples::builtin_handlers(),
        )
        .await
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let (out, ms) = j
            .run(&format!("r{}", common::uniq()), input.clone(), poll)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(out, s.output, "{file}: joint and Step Functions disagree");
        eprintln!(
            "{file}: Step Functions {:.0} ms ({} transitions, {} events), joint {ms:.0} ms, output {out}",
            s.makespan_ms, s.transitions, s.events
        );
    }
}
