//! The paper's four workflows run to completion on local clouds, and compute what they should.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use joint_core::workflow::Workflow;
use joint_examples::builtin_handlers;
use joint_examples::paper::{self, iot, montecarlo, qa, video};
use joint_shim::layers::Chaos;
use joint_shim_local::runner::{RunOptions, RunReport, run_local};
use serde_json::{Value, json};

fn chaos(seed: u64) -> Chaos {
    Chaos {
        seed,
        crash: 0.05,
        dup: 0.1,
        concurrent: 0.05,
        late: 0.05,
        drop: 0.05,
        throttle: 0.05,
        lose: 0.05,
        kill: 0.0,
    }
}

async fn run_with(w: &Workflow, input: Value, chaos: Chaos) -> RunReport {
    let r = run_local(
        Arc::new(w.clone()),
        builtin_handlers(),
        RunOptions {
            input,
            chaos,
            timeout: Some(Duration::from_secs(120)),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, "succeeded", "{} failed: {:?}", w.name, r.error);
    r
}

async fn run(w: &Workflow, input: Value) -> RunReport {
    run_with(w, input, Chaos::default()).await
}

fn placement(w: &Workflow) -> Vec<(String, String)> {
    w.functions
        .iter()
        .map(|(n, s)| (n.clone(), s.faas.clone()))
        .collect()
}

#[test]
fn definitions_place_functions_as_the_paper_does() {
    let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        placement(&paper::video_analytics()),
        p(&[
            ("classify", "aliyun"),
            ("image_process", "aws"),
            ("video_extract", "aws"),
            ("video_split", "aws"),
        ])
    );
    assert_eq!(
        placement(&paper::question_answering()),
        p(&[
            ("answer", "aliyun"),
            ("document_sort", "aws"),
            ("qa_collect", "aliyun"),
        ])
    );
    assert_eq!(
        placement(&paper::monte_carlo()),
        p(&[
            ("data_aggregation", "aws"),
            ("data_map", "aws"),
            ("data_process", "aliyun"),
        ])
    );
    let chain = paper::iot_chain(10);
    for (name, sub) in &chain.functions {
        let i: u32 = name.trim_start_matches("record_").parse().unwrap();
        assert_eq!(sub.faas, if i % 2 == 1 { "aws" } else { "aliyun" });
        assert_eq!(sub.handler.as_deref(), Some("record"));
    }
    let all = paper::paper_workflows();
    assert_eq!(all.len(), 4);
    for (name, w, _) in &all {
        assert_eq!(*name, w.name);
        assert_eq!(w.clouds, vec!["aliyun".to_string(), "aws".to_string()]);
    }
}

#[tokio::test]
async fn video_analytics_labels_the_shapes_and_is_deterministic() {
    let (fanout, frames, seed) = (4, 48, 7);
    let w = paper::video_analytics();
    let a = run(&w, paper::video_input(fanout, frames, seed)).await;
    let out = a.output.clone().unwrap();
    let labels = out["labels"].as_array().unwrap();
    assert_eq!(out["summary"]["chunks"], fanout);
    assert_eq!(out["summary"]["keyframes"], labels.len());
    // Key frames in order, one per chunk start at least, all inside the video.
    let key: Vec<u64> = labels
        .iter()
        .map(|l| l["frame"].as_u64().unwrap())
        .collect();
    assert!(key.windows(2).all(|p| p[0] < p[1]), "{key:?}");
    assert!(key.len() >= fanout as usize && *key.last().unwrap() < frames as u64);
    for c in 0..fanout as u64 {
        assert!(key.contains(&(c * frames as u64 / fanout as u64)));
    }
    let right = labels
        .iter()
        .filter(|l| {
            let f = l["frame"].as_u64().unwrap();
            l["label"] == video::CLASSES[video::ground_truth(seed, f)]
        })
        .count();
    let acc = right as f64 / labels.len() as f64;
    assert!(
        acc >= 0.75,
        "accuracy {acc} over {} key frames (chance is 0.25)",
        labels.len()
    );
    // Payloads are realistically sized: kilobytes of pixels per branch travel between stages.
    assert!(a.ops.bytes_invoked > 40_000, "{:?}", a.ops);
    let b = run(&w, paper::video_input(fanout, frames, seed)).await;
    assert_eq!(b.output, a.output);
}

#[tokio::test]
async fn question_answering_retrieves_the_gold_documents_and_answers() {
    let seed = 3;
    let w = paper::question_answering();
    let r = run(&w, paper::qa_input(4, seed)).await;
    let out = r.output.unwrap();
    let c = qa::corpus(seed, qa::DEFAULT_DOCS as usize);
    let qs = qa::questions(&c, seed, 4);
    let answers = out["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 4);
    for (a, q) in answers.iter().zip(&qs) {
        assert_eq!(a["qid"], q.id);
        assert_eq!(a["question"], q.text);
        let top: Vec<u64> = a["retrieved"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(top.len(), qa::DEFAULT_TOP_K as usize);
        assert!(
            top.contains(&(q.gold_doc as u64)),
            "{}: gold {} not in {top:?}",
            q.text,
            q.gold_doc
        );
        assert_eq!(a["answer"], q.answer, "{}", q.text);
        assert_eq!(a["doc"], q.gold_doc);
    }
    // The paper's QA moves about 40 KB per run.
    let moved = r.ops.bytes_invoked;
    assert!((25_000..80_000).contains(&moved), "{moved} bytes invoked");
}

async fn iot_run(length: u32, chaos: Chaos) -> Value {
    let w = paper::iot_chain(length);
    let r = run_with(&w, paper::iot_input(1024, 5), chaos).await;
    assert_eq!(r.instances, u64::from(length));
    r.output.unwrap()
}

#[tokio::test]
async fn iot_chain_preserves_the_payload_along_the_chain() {
    let payload = iot::payload(1024, 5);
    for length in [1, 10] {
        let out = iot_run(length, Chaos::default()).await;
        assert_eq!(out["payload"], payload);
        assert_eq!(out["checksum"], iot::checksum(&payload));
        assert_eq!(out["bytes"], 1024);
        assert_eq!(out["hops"], length);
        let trail: Vec<&str> = out["trail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let expect: Vec<&str> = (1..=length)
            .map(|i| if i % 2 == 1 { "aws" } else { "aliyun" })
            .collect();
        assert_eq!(trail, expect);
    }
}

#[tokio::test]
async fn monte_carlo_estimates_pi_deterministically() {
    let w = paper::monte_carlo();
    let a = run(&w, paper::monte_carlo_input(4, 1_000_000, 11)).await;
    let out = a.output.unwrap();
    assert_eq!(out["samples"], 4_000_000);
    assert_eq!(out["branches"], 4);
    let pi = out["pi"].as_f64().unwrap();
    assert!((pi - std::f64::consts::PI).abs() < 0.01, "pi = {pi}");
    let expect: u64 = (0..4)
        .map(|b| montecarlo::count_inside(11, b, 1_000_000))
        .sum();
    assert_eq!(out["inside"], expect);

    // Small runs are looser but just as deterministic; another seed draws other numbers.
    let small = paper::monte_carlo_input(8, 20_000, 12);
    let x = run(&w, small.clone()).await.output.unwrap();
    let y = run(&w, small).await.output.unwrap();
    assert_eq!(x, y);
    assert!(x["error"].as_f64().unwrap() < 0.05, "{x}");
    let z = run(&w, paper::monte_carlo_input(8, 20_000, 13))
        .await
        .output
        .unwrap();
    assert_ne!(x["inside"], z["inside"]);
}

#[tokio::test]
async fn paper_workflows_give_the_same_output_under_chaos() {
    // Crashes, duplicate and lost deliveries and throttling change nothing a user sees.
    let mut faults = 0;
    let mut count = |r: &RunReport| {
        faults += r.queue.duplicated + r.queue.dropped + r.queue.retries;
    };
    let mc = paper::monte_carlo();
    let input = paper::monte_carlo_input(16, 10_000, 21);
    let calm = run(&mc, input.clone()).await.output;
    for seed in [1, 2] {
        let r = run_with(&mc, input.clone(), chaos(seed)).await;
        count(&r);
        assert_eq!(r.output, calm);
    }

    let v = paper::video_analytics();
    let input = paper::video_input(4, 24, 3);
    let calm = run(&v, input.clone()).await.output;
    let r = run_with(&v, input, chaos(3)).await;
    count(&r);
    assert_eq!(r.output, calm);

    let w = paper::iot_chain(10);
    let input = paper::iot_input(1024, 5);
    let calm = run(&w, input.clone()).await.output;
    let r = run_with(&w, input, chaos(4)).await;
    count(&r);
    assert_eq!(r.output, calm);
    assert!(faults > 0, "no fault was injected");
}

#[tokio::test]
async fn bad_inputs_fail_the_run_with_a_message() {
    let w = paper::video_analytics();
    let r = run_local(
        Arc::new(w),
        builtin_handlers(),
        RunOptions {
            input: json!({"fanout": 9, "frames": 4}),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.status, "failed");
    let e = r.error.unwrap();
    assert!(
        format!("{e:?}").contains("cannot cut 4 frames into 9 chunks"),
        "{e:?}"
    );
    // Every handler the definitions name is registered.
    let h = builtin_handlers();
    let names: BTreeSet<String> = paper::paper_workflows()
        .iter()
        .flat_map(|(_, w, _)| w.functions.values().cloned().collect::<Vec<_>>())
        .map(|s| {
            assert!(h.resolve(&s).is_ok(), "{} has no handler", s.name);
            s.name
        })
        .collect();
    assert!(names.contains("classify") && names.contains("record_10"));
}
