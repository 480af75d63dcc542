//! The recovery planner: every decision `joint resume`, `--from` and the sweeper make, from
//! stored items and a clock alone.

use std::collections::{BTreeMap, BTreeSet};

use joint_core::envelope::{
    ENVELOPE_VERSION, Envelope, Failure, Input, ItemRecord, OutputRecord, Payload, RunRecord,
};
use joint_core::naming::{self, Frame};
use joint_core::recovery::{Committed, Options, Plan, RecoveryError, handoff, overdue, plan};
use joint_core::workflow::Workflow;
use serde_json::json;

const CHAIN: &str = "workflow: chain
functions:
  - {name: a, cloud: one, handler: inc, next: [{to: b}]}
  - {name: b, cloud: two, handler: inc, next: [{to: c}]}
  - {name: c, cloud: one, handler: inc}
";

const FANIN: &str = "workflow: fan
functions:
  - {name: s, cloud: one, handler: echo, next: [{to: x}, {to: y}]}
  - {name: x, cloud: one, handler: inc, next: [{to: j, mode: fan_in}]}
  - {name: y, cloud: two, handler: inc, next: [{to: j, mode: fan_in}]}
  - {name: j, cloud: one, handler: sum}
";

fn wf(src: &str) -> Workflow {
    joint_core::compile::load("w.yaml", src).expect("definition")
}

/// A stored item: the instance of `function` at `step` under `branch`, invoked set `invoked`.
struct Stored {
    key: String,
    invoked: BTreeSet<String>,
    record: ItemRecord,
}

fn stored(
    w: &Workflow,
    run: &str,
    function: &str,
    step: u32,
    branch: Vec<Frame>,
    invoked: &[&str],
    at_ms: u64,
) -> Stored {
    let env = Envelope {
        v: ENVELOPE_VERSION,
        workflow: w.name.clone(),
        workflow_id: run.into(),
        function: function.into(),
        step,
        branch,
        vars: BTreeMap::new(),
        input: Input::Inline(json!(null)),
        home: w.functions[&w.start].faas.clone(),
        def_hash: w.hash.clone(),
        trace: None,
        tag: None,
    };
    Stored {
        key: env.instance_id(),
        invoked: invoked.iter().map(|s| s.to_string()).collect(),
        record: ItemRecord::new(
            OutputRecord::Ok(Payload::Inline(json!(1))),
            &env,
            Some(at_ms),
        ),
    }
}

fn committed(items: &[Stored]) -> Vec<Committed<'_>> {
    items
        .iter()
        .map(|s| Committed {
            key: &s.key,
            invoked: &s.invoked,
            record: &s.record,
        })
        .collect()
}

fn opts(force: bool, from: Option<&str>) -> Options {
    Options {
        force,
        from: from.map(str::to_string),
        grace_ms: 1_000,
    }
}

fn record(run: &str, ok: bool) -> RunRecord {
    RunRecord {
        workflow: "chain".into(),
        workflow_id: run.into(),
        result: if ok {
            OutputRecord::Ok(Payload::Inline(json!(3)))
        } else {
            OutputRecord::Err(Failure {
                function: "c".into(),
                instance: format!("{run}/c_2"),
                kind: "HandlerError".into(),
                message: "boom".into(),
            })
        },
        finished_by: format!("{run}/c_2"),
        batched_into: None,
        finished_ms: Some(5_000),
    }
}

fn redrive(p: Plan) -> joint_core::recovery::Redrive {
    match p {
        Plan::Redrive(r) => r,
        other => panic!("expected a re-drive, got {other:?}"),
    }
}

#[test]
fn a_finished_run_or_an_unknown_one_needs_nothing() {
    let w = wf(CHAIN);
    for ok in [true, false] {
        let rec = record("r", ok);
        let p = plan(&w, "r", Some(&rec), &[], 10, &opts(false, None)).unwrap();
        assert_eq!(p, Plan::Finished { ok });
    }
    let p = plan(&w, "r", None, &[], 10, &opts(true, None)).unwrap();
    assert_eq!(p, Plan::NotStarted);
}

#[test]
fn a_missing_successor_is_lost_only_after_its_deadline() {
    let w = wf(CHAIN);
    let items = [stored(&w, "r", "a", 0, vec![], &["b_1@2000"], 100)];
    let c = committed(&items);
    // Before the deadline: in progress until 2000.
    let p = plan(&w, "r", None, &c, 1_500, &opts(false, None)).unwrap();
    assert_eq!(p, Plan::InProgress { wait_ms: 500 });
    // After it: a is driven again with b re-invoked, on the replica first.
    let r = redrive(plan(&w, "r", None, &c, 2_000, &opts(false, None)).unwrap());
    assert_eq!(r.drive["r/a_0"], BTreeSet::from(["b_1".to_string()]));
    assert_eq!(r.lost, BTreeSet::from(["r/b_1".to_string()]));
    assert!(r.delete.is_empty() && !r.delete_record);
    // Forced: at once.
    let r = redrive(plan(&w, "r", None, &c, 1_500, &opts(true, None)).unwrap());
    assert_eq!(r.lost, BTreeSet::from(["r/b_1".to_string()]));
}

#[test]
fn a_committed_item_without_invocations_is_in_progress_for_the_grace_then_driven() {
    let w = wf(CHAIN);
    // a committed at 100 and crashed before invoking: nothing overdue, but a's own grace
    // (100 + 1000) says the run may still be busy.
    let items = [stored(&w, "r", "a", 0, vec![], &[], 100)];
    let c = committed(&items);
    assert_eq!(
        plan(&w, "r", None, &c, 600, &opts(false, None)).unwrap(),
        Plan::InProgress { wait_ms: 500 }
    );
    let r = redrive(plan(&w, "r", None, &c, 1_100, &opts(false, None)).unwrap());
    assert_eq!(
        r.drive.len(),
        1,
        "a is driven: it invokes b, which it never did"
    );
    assert!(r.drive["r/a_0"].is_empty() && r.lost.is_empty());
}

#[test]
fn present_successors_are_not_lost_and_batch_entries_are_not_instances() {
    let w = wf(CHAIN);
    let items = [
        stored(&w, "r", "a", 0, vec![], &["b_1@10"], 1),
        stored(&w, "r", "b", 1, vec![], &["c_2@10", "batch:x:0@10"], 2),
    ];
    let r = redrive(plan(&w, "r", None, &committed(&items), 5_000, &opts(false, None)).unwrap());
    assert_eq!(r.lost, BTreeSet::from(["r/c_2".to_string()]));
    assert!(r.drive["r/a_0"].is_empty());
    assert_eq!(r.drive["r/b_1"], BTreeSet::from(["c_2".to_string()]));
    let present = BTreeSet::from(["r/b_1".to_string()]);
    assert_eq!(overdue("r", "b_1@10", &present, 99, false), None);
    assert_eq!(overdue("r", "batch:x:0@10", &present, 99, true), None);
    assert_eq!(
        overdue("r", "c_2", &present, 99, false),
        None,
        "no deadline"
    );
    assert_eq!(overdue("r", "c_2", &present, 99, true), Some("c_2"));
}

fn branch(index: u32) -> Vec<Frame> {
    vec![Frame {
        index,
        size: 2,
        fork_step: 0,
        window: None,
    }]
}

#[test]
fn settled_fan_in_branches_are_left_alone() {
    let w = wf(FANIN);
    let mut items = vec![
        stored(
            &w,
            "r",
            "s",
            0,
            vec![],
            &["x_1-bindex-0@10", "y_1-bindex-1@10"],
            1,
        ),
        stored(&w, "r", "x", 1, branch(0), &[], 2),
        stored(&w, "r", "y", 1, branch(1), &["j_2@10"], 3),
    ];
    // The aggregator is missing: both branches are driven (they re-join; one re-invokes j).
    let r = redrive(plan(&w, "r", None, &committed(&items), 5_000, &opts(false, None)).unwrap());
    assert!(r.drive.contains_key("r/x_1-bindex-0") && r.drive.contains_key("r/y_1-bindex-1"));
    assert_eq!(r.lost, BTreeSet::from(["r/j_2".to_string()]));
    // Once it committed, the branches have nothing left to do.
    items.push(stored(&w, "r", "j", 2, vec![], &[], 4));
    let r = redrive(plan(&w, "r", None, &committed(&items), 5_000, &opts(true, None)).unwrap());
    assert!(!r.drive.contains_key("r/x_1-bindex-0") && !r.drive.contains_key("r/y_1-bindex-1"));
    assert!(r.drive.contains_key("r/s_0") && r.drive.contains_key("r/j_2"));
}

#[test]
fn from_a_function_deletes_it_and_what_follows_and_reinvokes_it_from_its_predecessor() {
    let w = wf(CHAIN);
    let items = [
        stored(&w, "r", "a", 0, vec![], &["b_1@10"], 1),
        stored(&w, "r", "b", 1, vec![], &["c_2@10"], 2),
        stored(&w, "r", "c", 2, vec![], &[], 3),
    ];
    let rec = record("r", false);
    let r = redrive(
        plan(
            &w,
            "r",
            Some(&rec),
            &committed(&items),
            5_000,
            &opts(false, Some("b")),
        )
        .unwrap(),
    );
    assert_eq!(
        r.delete,
        [
            ("two".to_string(), "r/b_1".to_string()),
            ("one".to_string(), "r/c_2".to_string())
        ]
    );
    assert!(r.delete_record, "the failed run's record goes too");
    assert_eq!(r.drive.keys().collect::<Vec<_>>(), ["r/a_0"]);
    assert_eq!(r.drive["r/a_0"], BTreeSet::from(["b_1".to_string()]));
    assert!(r.lost.is_empty(), "a re-run goes to the primary");
}

#[test]
fn from_a_fan_in_branch_restarts_its_join() {
    let w = wf(FANIN);
    let items = [
        stored(
            &w,
            "r",
            "s",
            0,
            vec![],
            &["x_1-bindex-0@10", "y_1-bindex-1@10"],
            1,
        ),
        stored(&w, "r", "x", 1, branch(0), &[], 2),
        stored(&w, "r", "y", 1, branch(1), &["j_2@10"], 3),
        stored(&w, "r", "j", 2, vec![], &[], 4),
    ];
    let r = redrive(
        plan(
            &w,
            "r",
            None,
            &committed(&items),
            5_000,
            &opts(false, Some("x")),
        )
        .unwrap(),
    );
    let join = naming::join_key("r", "j", 0, &[]);
    assert!(
        r.delete.contains(&("one".to_string(), join)),
        "{:?}",
        r.delete
    );
    assert!(
        r.delete
            .contains(&("one".to_string(), "r/x_1-bindex-0".to_string()))
    );
    assert!(r.delete.contains(&("one".to_string(), "r/j_2".to_string())));
    // The surviving branch re-joins, s invokes x again.
    assert!(r.drive.contains_key("r/y_1-bindex-1"));
    assert_eq!(
        r.drive["r/s_0"],
        BTreeSet::from(["x_1-bindex-0".to_string()])
    );
}

#[test]
fn from_refuses_what_it_cannot_do() {
    let w = wf(CHAIN);
    let items = [stored(&w, "r", "a", 0, vec![], &[], 1)];
    let c = committed(&items);
    let err = |from: &str, c: &[Committed<'_>], finished: bool| {
        let rec = record("r", true);
        plan(
            &w,
            "r",
            finished.then_some(&rec),
            c,
            5,
            &opts(false, Some(from)),
        )
        .unwrap_err()
    };
    assert_eq!(
        err("a", &c, false),
        RecoveryError::FromStart {
            function: "a".into()
        }
    );
    assert!(matches!(
        err("zz", &c, false),
        RecoveryError::NoSuchFunction { .. }
    ));
    assert_eq!(
        err("c", &c, false),
        RecoveryError::NotReached {
            function: "c".into()
        }
    );
    assert_eq!(
        err("b", &[], true),
        RecoveryError::Collected { finished: true }
    );
    assert!(err("b", &[], true).to_string().contains("--keep"));
}

#[test]
fn a_batch_handoff_is_rebuilt_from_the_record() {
    let w = wf("workflow: batch
functions:
  - {name: p, cloud: one, handler: inc, next: [{to: t, mode: by_batch, batch_size: 4}]}
  - {name: t, cloud: two, handler: sum}
");
    let mut rec = record("c0", true);
    rec.workflow = "batch".into();
    rec.finished_by = "c0/p_0".into();
    assert_eq!(handoff(&w, "c0", &rec, 100), None, "no batch, no hand-off");
    rec.batched_into = Some("batch.batch.t.0".into());
    let h = handoff(&w, "c0", &rec, 100).expect("hand-off");
    assert_eq!(h.function, "p");
    assert_eq!(h.envelope.instance_id(), "c0/p_0");
    assert_eq!(
        h.start,
        ("two".to_string(), "batch.batch.t.0/t_0".to_string())
    );
    assert_eq!(h.due_ms, 5_100);
    let item = ItemRecord::decode(&h.item.value).unwrap();
    assert_eq!(item.out, rec.result);
    // A failed run hands nothing over.
    let mut failed = record("c0", false);
    failed.batched_into = Some("batch.batch.t.0".into());
    failed.finished_by = "c0/p_0".into();
    assert_eq!(handoff(&w, "c0", &failed, 100), None);
}
