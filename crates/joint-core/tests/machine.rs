//! The protocol state machine, driven by hand and by an in-memory simulator.
//!
//! The hand-driven tests pin the exact action sequence (and so the datastore round trips) of
//! every path. The simulator runs whole workflows with an in-memory world — coordination items,
//! joins, blobs and an event queue — delivering events in random order, duplicating them and
//! crashing executions at every action, and checks the invariants of the protocol.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use joint_core::envelope::{ENVELOPE_VERSION, Envelope, Input, OutputRecord, Payload, RunRecord};
use joint_core::machine::{Action, Answer, Config, FnError, JoinState, Machine, StoredItem};
use joint_core::subgraph::SubGraph;
use joint_core::workflow::Workflow;
use serde_json::{Value, json};

fn sub(j: Value) -> SubGraph {
    serde_json::from_value(j).unwrap()
}

fn env(function: &str, input: Value) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        workflow: "wf".into(),
        workflow_id: "run".into(),
        function: function.into(),
        step: 0,
        branch: vec![],
        vars: BTreeMap::new(),
        input: Input::Inline(input),
        home: "a".into(),
        def_hash: "h".into(),
        trace: None,
        tag: None,
    }
}

fn kind(a: &Action) -> &'static str {
    a.kind()
}

/// Drive one machine with fixed answers: the function returns `output`; nothing exists yet.
fn trace(
    s: &SubGraph,
    e: Envelope,
    output: Value,
    cfg: Config,
) -> (Vec<&'static str>, Vec<Action>) {
    let mut m = Machine::new(s, e, cfg).unwrap();
    let mut a = m.start();
    let mut kinds = vec![];
    let mut actions = vec![];
    loop {
        kinds.push(kind(&a));
        actions.push(a.clone());
        let ans = match &a {
            Action::ReadCheckpoint { .. } => Answer::Checkpoint(None),
            Action::Fetch { refs } => {
                Answer::Fetched(refs.iter().map(|_| b"null".to_vec()).collect())
            }
            Action::Run { .. } => Answer::Ran(Ok(output.clone())),
            Action::Spill { .. } => Answer::Spilled,
            Action::Commit { .. } => Answer::Committed(None),
            Action::Join { capacity, .. } => Answer::Joined(JoinState {
                added: true,
                completed: true,
                count: *capacity,
                members: (0..*capacity)
                    .map(|i| {
                        (
                            i.to_string(),
                            serde_json::to_vec(&json!({"step": 1, "out": {"inline": i}})).unwrap(),
                        )
                    })
                    .collect(),
            }),
            Action::Invoke { calls } => {
                Answer::Invoked(calls.iter().map(|c| Ok(c.cloud.clone())).collect())
            }
            Action::Record { .. } => Answer::Recorded,
            Action::Finish { .. } => Answer::Finished,
            Action::Gc { .. } => Answer::GcDone,
            Action::Done(_) => break,
        };
        a = m.on(ans).unwrap();
    }
    (kinds, actions)
}

#[test]
fn sequence_step_costs_two_writes_and_one_read_eager() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}),
    );
    let (k, acts) = trace(&s, env("A", json!(1)), json!(2), Config::default());
    assert_eq!(
        k,
        [
            "read_checkpoint",
            "run",
            "commit",
            "invoke",
            "record",
            "done"
        ]
    );
    let Action::Invoke { calls } = &acts[3] else {
        panic!()
    };
    assert_eq!(calls[0].envelope.instance_id(), "run/B_1");
    assert_eq!(calls[0].envelope.input, Input::Inline(json!(2)));
    assert_eq!(calls[0].record_as, "B_1");
}

#[test]
fn sequence_step_costs_two_writes_lazy() {
    let s = sub(json!({"Name": "A", "FaaS": "a", "Checkpoint": "lazy",
        "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}));
    let (k, _) = trace(&s, env("A", json!(1)), json!(2), Config::default());
    assert_eq!(k, ["run", "commit", "invoke", "record", "done"]);
}

#[test]
fn end_of_run_writes_the_record_then_collects() {
    let s = sub(json!({"Name": "A", "FaaS": "a"}));
    let (k, acts) = trace(&s, env("A", json!(1)), json!({"r": 1}), Config::default());
    assert_eq!(
        k,
        ["read_checkpoint", "run", "commit", "finish", "gc", "done"]
    );
    let Action::Finish {
        key, record, ok, ..
    } = &acts[3]
    else {
        panic!()
    };
    assert!(*ok);
    assert_eq!(key, "_runs/run/record");
    let rec: RunRecord = serde_json::from_slice(record).unwrap();
    assert_eq!(
        rec.result,
        OutputRecord::Ok(Payload::Inline(json!({"r": 1})))
    );
    let Action::Gc { prefix, .. } = &acts[4] else {
        panic!()
    };
    assert_eq!(prefix, "run/");
}

#[test]
fn parallel_pushes_a_branch_level_per_successor() {
    let s = sub(json!({"Name": "A", "FaaS": "a", "Next": [
        {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"},
        {"Name": "C", "FaaS": "c", "InvokeMode": "Sequence"}]}));
    let (_, acts) = trace(&s, env("A", json!(1)), json!(2), Config::default());
    let Action::Invoke { calls } = &acts[3] else {
        panic!()
    };
    let ids: Vec<_> = calls.iter().map(|c| c.envelope.instance_id()).collect();
    assert_eq!(ids, ["run/B_1-bindex-0", "run/C_1-bindex-1"]);
    assert_eq!(calls[1].envelope.branch[0].size, 2);
}

#[test]
fn map_invokes_one_per_element_and_records_in_groups() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Map"}}),
    );
    let cfg = Config {
        group_size: 10,
        ..Config::default()
    };
    let list: Vec<Value> = (0..32).map(|i| json!(i)).collect();
    let (k, acts) = trace(&s, env("A", json!(1)), Value::Array(list), cfg);
    // 32 successors in groups of 10: 4 invokes, 4 records (the paper: 5W1R + 1W1R).
    assert_eq!(k.iter().filter(|x| **x == "invoke").count(), 4);
    assert_eq!(k.iter().filter(|x| **x == "record").count(), 4);
    assert_eq!(k.iter().filter(|x| **x == "read_checkpoint").count(), 1);
    let Action::Invoke { calls } = &acts[3] else {
        panic!()
    };
    assert_eq!(calls[3].envelope.input, Input::Inline(json!(3)));
    assert_eq!(calls[3].envelope.instance_id(), "run/B_1-bindex-3");
    // With the default group (64) the whole map is one invoke and one record: 2W+1R.
    let list: Vec<Value> = (0..32).map(|i| json!(i)).collect();
    let (k, _) = trace(
        &s,
        env("A", json!(1)),
        Value::Array(list),
        Config::default(),
    );
    assert_eq!(
        k,
        [
            "read_checkpoint",
            "run",
            "commit",
            "invoke",
            "record",
            "done"
        ]
    );
}

#[test]
fn bounded_map_starts_only_the_window() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b",
        "InvokeMode": {"Map": {"MaxConcurrency": 2}}}}),
    );
    let (_, acts) = trace(
        &s,
        env("A", json!(1)),
        json!([10, 11, 12, 13, 14]),
        Config::default(),
    );
    let Action::Invoke { calls } = &acts[3] else {
        panic!()
    };
    assert_eq!(calls.len(), 2);
    let w = calls[0].envelope.branch[0].window.clone().unwrap();
    assert_eq!(w.concurrency, 2);
    assert_eq!(w.function, "B");
}

#[test]
fn map_over_a_non_list_fails_the_run_with_a_clear_error() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Map"}}),
    );
    let (k, acts) = trace(
        &s,
        env("A", json!(1)),
        json!({"not": "a list"}),
        Config::default(),
    );
    assert_eq!(k, ["read_checkpoint", "run", "commit", "finish", "done"]);
    let Action::Finish { record, ok, .. } = &acts[3] else {
        panic!()
    };
    assert!(!ok);
    let rec: RunRecord = serde_json::from_slice(record).unwrap();
    let OutputRecord::Err(f) = rec.result else {
        panic!()
    };
    assert_eq!(f.kind, "MapOverNonList");
    assert!(
        f.message
            .contains("needs a list, but 'A' returned a object"),
        "{}",
        f.message
    );
}

#[test]
fn fan_in_branch_joins_once_and_the_completer_invokes() {
    let s = sub(
        json!({"Name": "B", "FaaS": "b", "Next": {"Name": "D", "FaaS": "d",
        "InvokeMode": {"FanIn": {"Branch": []}}, "ModifyEvent": ["PopAndMerge"]}}),
    );
    let mut e = env("B", json!(1));
    e.step = 1;
    e.branch = vec![joint_core::naming::Frame {
        index: 1,
        size: 3,
        fork_step: 0,
        window: None,
    }];
    let (k, acts) = trace(&s, e, json!(5), Config::default());
    // The paper's fan-in branch: 5W+4R. Here: 1R + create + join + record = 3W+1R (eager).
    assert_eq!(
        k,
        [
            "read_checkpoint",
            "run",
            "commit",
            "join",
            "invoke",
            "record",
            "done"
        ]
    );
    let Action::Join {
        key,
        member,
        capacity,
        ..
    } = &acts[3]
    else {
        panic!()
    };
    assert_eq!(key, "run/D-join@0");
    assert_eq!(member, "1");
    assert_eq!(*capacity, 3);
    let Action::Invoke { calls } = &acts[4] else {
        panic!()
    };
    assert_eq!(calls[0].envelope.instance_id(), "run/D_2");
    assert!(
        calls[0].envelope.branch.is_empty(),
        "PopAndMerge popped the fork's level"
    );
    assert_eq!(
        calls[0].envelope.input,
        Input::Gather(vec![
            Input::Inline(json!(0)),
            Input::Inline(json!(1)),
            Input::Inline(json!(2))
        ])
    );
}

fn drive_join(s: &SubGraph, e: Envelope, js: JoinState) -> Vec<&'static str> {
    let mut m = Machine::new(s, e, Config::default()).unwrap();
    let mut a = m.start();
    let mut kinds = vec![];
    loop {
        kinds.push(kind(&a));
        let ans = match &a {
            Action::ReadCheckpoint { .. } => Answer::Checkpoint(None),
            Action::Run { .. } => Answer::Ran(Ok(json!(1))),
            Action::Commit { .. } => Answer::Committed(None),
            Action::Join { .. } => Answer::Joined(js.clone()),
            Action::Invoke { calls } => {
                Answer::Invoked(calls.iter().map(|_| Ok("d".into())).collect())
            }
            Action::Record { .. } => Answer::Recorded,
            Action::Done(_) => break,
            other => panic!("unexpected {other:?}"),
        };
        a = m.on(ans).unwrap();
    }
    kinds
}

#[test]
fn fan_in_non_completer_records_nothing() {
    let s = sub(
        json!({"Name": "B", "FaaS": "b", "Next": {"Name": "D", "FaaS": "d", "InvokeMode": "FanIn"}}),
    );
    let mut e = env("B", json!(1));
    e.step = 1;
    e.branch = vec![joint_core::naming::Frame {
        index: 0,
        size: 2,
        fork_step: 0,
        window: None,
    }];
    let js = JoinState {
        added: true,
        completed: false,
        count: 1,
        members: BTreeMap::new(),
    };
    assert_eq!(
        drive_join(&s, e.clone(), js),
        ["read_checkpoint", "run", "commit", "join", "done"]
    );
    // A redelivered branch that finds the join complete re-invokes (the aggregator dedups).
    let members: BTreeMap<String, Vec<u8>> = (0..2)
        .map(|i| {
            (
                i.to_string(),
                serde_json::to_vec(&json!({"step": 1, "out": {"inline": i}})).unwrap(),
            )
        })
        .collect();
    let js = JoinState {
        added: false,
        completed: false,
        count: 2,
        members,
    };
    assert_eq!(
        drive_join(&s, e, js),
        [
            "read_checkpoint",
            "run",
            "commit",
            "join",
            "invoke",
            "record",
            "done"
        ]
    );
}

/// The completer is the call the store says `completed` the join, not the one that happens to
/// read `count == threshold`: a store that counts members in one request and reads the count in
/// another (DynamoDB's wide joins) returns a count that may already be past the threshold.
#[test]
fn fan_in_completer_is_the_completed_call() {
    let s = sub(
        json!({"Name": "B", "FaaS": "b", "Next": {"Name": "D", "FaaS": "d", "InvokeMode": "FanIn"}}),
    );
    let mut e = env("B", json!(1));
    e.step = 1;
    e.branch = vec![joint_core::naming::Frame {
        index: 0,
        size: 3,
        fork_step: 0,
        window: None,
    }];
    let members: BTreeMap<String, Vec<u8>> = (0..3)
        .map(|i| {
            (
                i.to_string(),
                serde_json::to_vec(&json!({"step": 1, "out": {"inline": i}})).unwrap(),
            )
        })
        .collect();
    let invokes = [
        "read_checkpoint",
        "run",
        "commit",
        "join",
        "invoke",
        "record",
        "done",
    ];
    let stops = ["read_checkpoint", "run", "commit", "join", "done"];
    // Completed, with every member in: invoke.
    let js = JoinState {
        added: true,
        completed: true,
        count: 3,
        members: members.clone(),
    };
    assert_eq!(drive_join(&s, e.clone(), js), invokes);
    // Added, the join complete, but another call completed it: stop, without the members.
    let js = JoinState {
        added: true,
        completed: false,
        count: 3,
        members: BTreeMap::new(),
    };
    assert_eq!(drive_join(&s, e.clone(), js), stops);
    // k of n: 2 of 3 complete it; the completer may read a count past 2. It invokes with the
    // first two branches.
    let k = sub(
        json!({"Name": "B", "FaaS": "b", "Next": {"Name": "D", "FaaS": "d",
        "InvokeMode": {"ByRedundant": {"Completion": 2}}}}),
    );
    let mut m = Machine::new(&k, e.clone(), Config::default()).unwrap();
    let mut a = m.start();
    let mut gathered = None;
    loop {
        let ans = match &a {
            Action::ReadCheckpoint { .. } => Answer::Checkpoint(None),
            Action::Run { .. } => Answer::Ran(Ok(json!(1))),
            Action::Commit { .. } => Answer::Committed(None),
            Action::Join { complete_at, .. } => {
                assert_eq!(*complete_at, 2);
                Answer::Joined(JoinState {
                    added: true,
                    completed: true,
                    count: 3,
                    members: members.clone(),
                })
            }
            Action::Invoke { calls } => {
                gathered = Some(calls[0].envelope.input.clone());
                Answer::Invoked(calls.iter().map(|_| Ok("d".into())).collect())
            }
            Action::Record { .. } => Answer::Recorded,
            Action::Done(_) => break,
            other => panic!("unexpected {other:?}"),
        };
        a = m.on(ans).unwrap();
    }
    assert_eq!(
        gathered,
        Some(Input::Gather(vec![
            Input::Inline(json!(0)),
            Input::Inline(json!(1))
        ]))
    );
    // The same k-of-n join, a later member: added, not the completer. Stop.
    let js = JoinState {
        added: true,
        completed: false,
        count: 3,
        members: BTreeMap::new(),
    };
    let mut m = Machine::new(&k, e, Config::default()).unwrap();
    let mut a = m.start();
    let mut kinds = vec![];
    loop {
        kinds.push(kind(&a));
        let ans = match &a {
            Action::ReadCheckpoint { .. } => Answer::Checkpoint(None),
            Action::Run { .. } => Answer::Ran(Ok(json!(1))),
            Action::Commit { .. } => Answer::Committed(None),
            Action::Join { .. } => Answer::Joined(js.clone()),
            Action::Done(_) => break,
            other => panic!("unexpected {other:?}"),
        };
        a = m.on(ans).unwrap();
    }
    assert_eq!(kinds, stops);
}

#[test]
fn adopted_checkpoint_skips_the_function_and_forwards_the_winner() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}),
    );
    let mut m = Machine::new(&s, env("A", json!(1)), Config::default()).unwrap();
    assert_eq!(kind(&m.start()), "read_checkpoint");
    let winner = serde_json::to_vec(&OutputRecord::Ok(Payload::Inline(json!("won")))).unwrap();
    let a = m
        .on(Answer::Checkpoint(Some(StoredItem {
            value: winner.clone(),
            invoked: BTreeSet::new(),
        })))
        .unwrap();
    let Action::Invoke { calls } = a else {
        panic!("{a:?}")
    };
    assert_eq!(calls[0].envelope.input, Input::Inline(json!("won")));
    // Already recorded: nothing to invoke, straight to done.
    let mut m = Machine::new(&s, env("A", json!(1)), Config::default()).unwrap();
    m.start();
    let a = m
        .on(Answer::Checkpoint(Some(StoredItem {
            value: winner,
            invoked: BTreeSet::from(["B_1".to_string()]),
        })))
        .unwrap();
    let Action::Done(o) = a else { panic!("{a:?}") };
    assert!(o.adopted && !o.ran_function && o.invoked == 0);
}

#[test]
fn losing_commit_adopts_the_winners_output() {
    let s = sub(json!({"Name": "A", "FaaS": "a", "Checkpoint": "lazy",
        "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}));
    let mut m = Machine::new(&s, env("A", json!(1)), Config::default()).unwrap();
    assert_eq!(kind(&m.start()), "run");
    assert_eq!(
        kind(&m.on(Answer::Ran(Ok(json!("mine")))).unwrap()),
        "commit"
    );
    let winner = serde_json::to_vec(&OutputRecord::Ok(Payload::Inline(json!("theirs")))).unwrap();
    let a = m
        .on(Answer::Committed(Some(StoredItem {
            value: winner,
            invoked: BTreeSet::new(),
        })))
        .unwrap();
    let Action::Invoke { calls } = a else {
        panic!()
    };
    assert_eq!(calls[0].envelope.input, Input::Inline(json!("theirs")));
}

#[test]
fn large_outputs_spill_to_the_majority_cloud() {
    let s = sub(json!({"Name": "A", "FaaS": "a", "Next": [
        {"Name": "B", "FaaS": "x", "InvokeMode": "Sequence"},
        {"Name": "C", "FaaS": "x", "InvokeMode": "Sequence"},
        {"Name": "D", "FaaS": "y", "InvokeMode": "Sequence"}]}));
    let mut cfg = Config::default();
    cfg.inline_limits.insert("x".into(), 4096);
    let big = json!("z".repeat(10_000));
    let (k, acts) = trace(&s, env("A", json!(1)), big, cfg);
    assert_eq!(
        k,
        [
            "read_checkpoint",
            "run",
            "spill",
            "commit",
            "invoke",
            "record",
            "done"
        ]
    );
    let Action::Spill { blob, .. } = &acts[2] else {
        panic!()
    };
    assert_eq!(blob.cloud, "x", "the cloud hosting most successors");
    assert!(blob.key.starts_with("run/A_0.out."));
    let Action::Invoke { calls } = &acts[4] else {
        panic!()
    };
    assert!(matches!(calls[0].envelope.input, Input::Blob { .. }));
}

#[test]
fn choice_takes_the_first_true_guard_and_cycles_are_bounded() {
    let s = sub(json!({"Name": "B", "FaaS": "a", "Next": [
        {"Name": "B", "FaaS": "a", "InvokeMode": "Sequence", "Choice": "i < 5",
         "ModifyEvent": ["i+=1"], "MaxIterations": 3},
        {"Name": "C", "FaaS": "a", "InvokeMode": "Sequence", "Choice": "true"}]}));
    let mut e = env("B", json!(0));
    e.vars.insert("i".into(), 1);
    let (_, acts) = trace(&s, e.clone(), json!(0), Config::default());
    let Action::Invoke { calls } = &acts[3] else {
        panic!()
    };
    assert_eq!(calls[0].function, "B");
    assert_eq!(calls[0].envelope.vars["i"], 2);
    e.vars.insert("i".into(), 3);
    let (k, acts) = trace(&s, e, json!(0), Config::default());
    assert_eq!(k, ["read_checkpoint", "run", "commit", "finish", "done"]);
    let Action::Finish { record, .. } = &acts[3] else {
        panic!()
    };
    let rec: RunRecord = serde_json::from_slice(record).unwrap();
    let OutputRecord::Err(f) = rec.result else {
        panic!()
    };
    assert_eq!(f.kind, "MaxIterationsExceeded");
}

#[test]
fn function_errors_are_committed_and_fail_the_run() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}),
    );
    let mut m = Machine::new(&s, env("A", json!(1)), Config::default()).unwrap();
    m.start();
    m.on(Answer::Checkpoint(None)).unwrap();
    let a = m
        .on(Answer::Ran(Err(FnError {
            kind: "HandlerError".into(),
            message: "boom".into(),
        })))
        .unwrap();
    let Action::Commit { record, .. } = a else {
        panic!()
    };
    assert!(matches!(
        joint_core::envelope::ItemRecord::decode(&record)
            .unwrap()
            .out,
        OutputRecord::Err(_)
    ));
    let a = m.on(Answer::Committed(None)).unwrap();
    let Action::Finish { ok, .. } = a else {
        panic!()
    };
    assert!(!ok);
}

#[test]
fn wrong_answers_are_protocol_errors_not_panics() {
    let s = sub(json!({"Name": "A", "FaaS": "a"}));
    let mut m = Machine::new(&s, env("A", json!(1)), Config::default()).unwrap();
    m.start();
    let e = m.on(Answer::Spilled).unwrap_err();
    assert!(e.to_string().contains("unexpected answer Spilled"), "{e}");
    assert!(
        Machine::new(&s, env("Z", json!(1)), Config::default())
            .unwrap_err()
            .to_string()
            .contains("'Z'")
    );
}

// ---------------------------------------------------------------- simulator

#[derive(Default)]
struct World {
    items: BTreeMap<String, StoredItem>,
    joins: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    blobs: BTreeMap<String, Vec<u8>>,
    queue: VecDeque<(Vec<u8>, u32)>,
    runs: BTreeMap<String, u32>,
    wins: BTreeMap<String, u32>,
}

fn apply(world: &mut World, a: &Action, output: &dyn Fn(&str, &Value) -> Value) -> Answer {
    match a {
        Action::ReadCheckpoint { key, .. } => Answer::Checkpoint(world.items.get(key).cloned()),
        Action::Fetch { refs } => Answer::Fetched(
            refs.iter()
                .map(|r| match r {
                    joint_core::machine::Ref::Blob(b) => world.blobs[&b.key].clone(),
                    joint_core::machine::Ref::Item { key, .. } => world.items[key].value.clone(),
                })
                .collect(),
        ),
        Action::Run { .. } => unreachable!(),
        Action::Spill { blob, bytes } => {
            world
                .blobs
                .entry(blob.key.clone())
                .or_insert_with(|| bytes.clone());
            Answer::Spilled
        }
        Action::Commit { key, record, .. } | Action::Finish { key, record, .. } => {
            if let Some(it) = world.items.get(key) {
                Answer::Committed(Some(it.clone())).into_finish(a)
            } else {
                world.items.insert(
                    key.clone(),
                    StoredItem {
                        value: record.clone(),
                        invoked: BTreeSet::new(),
                    },
                );
                *world.wins.entry(key.clone()).or_default() += 1;
                Answer::Committed(None).into_finish(a)
            }
        }
        Action::Join {
            key,
            member,
            value,
            capacity,
            complete_at,
            ..
        } => {
            let j = world.joins.entry(key.clone()).or_default();
            let added = !j.contains_key(member) && (j.len() as u32) < *capacity;
            if added {
                j.insert(member.clone(), value.clone());
            }
            Answer::Joined(JoinState {
                added,
                completed: added && j.len() as u32 == *complete_at,
                count: j.len() as u32,
                members: j.clone(),
            })
        }
        Action::Invoke { calls } => {
            for c in calls {
                world.queue.push_back((c.envelope.encode(), 0));
            }
            let _ = output;
            Answer::Invoked(calls.iter().map(|c| Ok(c.cloud.clone())).collect())
        }
        Action::Record { key, names, .. } => {
            if let Some(it) = world.items.get_mut(key) {
                it.invoked.extend(names.iter().cloned());
            }
            Answer::Recorded
        }
        Action::Gc { .. } => Answer::GcDone,
        Action::Done(_) => unreachable!(),
    }
}

trait IntoFinish {
    fn into_finish(self, a: &Action) -> Answer;
}
impl IntoFinish for Answer {
    fn into_finish(self, a: &Action) -> Answer {
        if matches!(a, Action::Finish { .. }) {
            Answer::Finished
        } else {
            self
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

fn user(function: &str, input: &Value) -> Value {
    match function {
        "split" => json!([1, 2, 3, 4, 5]),
        "sum" => json!(
            input
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).sum::<i64>())
                .unwrap_or(-1)
        ),
        "square" => json!(input.as_i64().unwrap_or(0) * input.as_i64().unwrap_or(0)),
        _ => json!({"f": function, "in": input}),
    }
}

/// Run the workflow to completion, crashing executions with probability `crash` before any
/// action and duplicating deliveries with probability `dup`, delivering in random order.
fn simulate(w: &Workflow, seed: u64, crash: f64, dup: f64) -> (Value, World) {
    let mut world = World::default();
    let mut rng = Rng(seed | 1);
    let mut start = env(&w.start, json!(3));
    start.workflow = w.name.clone();
    world.queue.push_back((start.encode(), 0));
    let mut steps = 0;
    while !world.queue.is_empty() {
        steps += 1;
        assert!(steps < 100_000, "no progress");
        let i = (rng.next() % world.queue.len() as u64) as usize;
        let (event, attempts) = world.queue.remove(i).unwrap();
        if rng.chance(dup) {
            world.queue.push_back((event.clone(), attempts));
        }
        let e = Envelope::decode(&event, 1 << 20).unwrap();
        let s = w.sub(&e.function).unwrap();
        let cfg = Config {
            group_size: 2,
            join_inline_limit: 8,
            ..Config::default()
        };
        let mut m = Machine::new(s, e, cfg).unwrap();
        let mut a = m.start();
        let mut crashed = false;
        loop {
            if let Action::Done(o) = &a {
                assert!(o.incomplete.is_none());
                break;
            }
            // Crash before this action (not more than 20 times for one event).
            if attempts < 20 && rng.chance(crash) {
                world.queue.push_back((event.clone(), attempts + 1));
                crashed = true;
                break;
            }
            let ans = match &a {
                Action::Run { input, .. } => {
                    *world.runs.entry(m.instance_id().to_string()).or_default() += 1;
                    Answer::Ran(Ok(user(&s.name, input)))
                }
                other => apply(&mut world, other, &user),
            };
            a = m.on(ans).unwrap();
        }
        let _ = crashed;
    }
    let rec: RunRecord = serde_json::from_slice(&world.items["_runs/run/record"].value).unwrap();
    let OutputRecord::Ok(p) = rec.result else {
        panic!("run failed: {:?}", rec.result)
    };
    let v = match p {
        Payload::Inline(v) => v,
        Payload::Blob(b) => serde_json::from_slice(&world.blobs[&b.key]).unwrap(),
    };
    (v, world)
}

fn workflow(src: &str) -> Workflow {
    joint_core::compile::load("t.yaml", src).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn simulated_runs_are_exactly_once_under_crashes_duplicates_and_reordering() {
    let defs = [
        // map + bounded map + fan-in
        "workflow: m\nfunctions:\n  - {name: split, cloud: a, handler: x, next: [{to: square, mode: map, concurrency: 2}]}\n  - {name: square, cloud: b, handler: x, checkpoint: lazy, next: [{to: sum, mode: fan_in}]}\n  - {name: sum, cloud: a, handler: x}\n",
        // parallel + fan-in + cycle + choice
        "workflow: p\nfunctions:\n  - {name: A, cloud: a, handler: x, next: [{to: B}, {to: C}]}\n  - {name: B, cloud: b, handler: x, next: [{to: D, mode: fan_in}]}\n  - {name: C, cloud: c, handler: x, next: [{to: C, mode: cycle, when: 'i < 3', counter: i, max_iterations: 5}, {to: E, when: 'true'}]}\n  - {name: E, cloud: a, handler: x, next: [{to: D, mode: fan_in}]}\n  - {name: D, cloud: b, handler: x, next: [{to: F, when: 'output.f == \"D\"'}, {to: G, when: 'true'}]}\n  - {name: F, cloud: a, handler: x}\n  - {name: G, cloud: a, handler: x}\n",
    ];
    for src in defs {
        let w = workflow(src);
        let (clean, _) = simulate(&w, 1, 0.0, 0.0);
        for seed in 1..150u64 {
            let (out, world) = simulate(&w, seed, 0.08, 0.15);
            assert_eq!(out, clean, "seed {seed}");
            for (k, n) in &world.wins {
                assert_eq!(*n, 1, "{k} committed {n} times");
            }
        }
        let (out, world) = simulate(&w, 7, 0.0, 0.0);
        assert_eq!(out, clean);
        assert!(
            world.runs.values().all(|n| *n == 1),
            "no crash, no duplicate: each function once"
        );
    }
}

#[test]
fn committed_items_keep_the_envelope_and_start_time_but_not_the_input() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}),
    );
    let cfg = Config {
        now_ms: Some(1234),
        ..Config::default()
    };
    let (_, acts) = trace(&s, env("A", json!({"secret": 7})), json!(2), cfg);
    let Action::Commit { record, .. } = &acts[2] else {
        panic!("{:?}", acts[2])
    };
    let rec = joint_core::envelope::ItemRecord::decode(record).unwrap();
    assert_eq!(rec.out, OutputRecord::Ok(Payload::Inline(json!(2))));
    assert_eq!(rec.at_ms, Some(1234));
    let head = rec.env.unwrap();
    assert_eq!(head.instance_id(), "run/A_0");
    assert_eq!(head.input, Input::Inline(Value::Null));
}

#[test]
fn deadlines_in_the_invoked_set_do_not_cause_reinvocation() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Next": {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence"}}),
    );
    let winner = serde_json::to_vec(&OutputRecord::Ok(Payload::Inline(json!("won")))).unwrap();
    let mut m = Machine::new(&s, env("A", json!(1)), Config::default()).unwrap();
    m.start();
    let a = m
        .on(Answer::Checkpoint(Some(StoredItem {
            value: winner,
            invoked: BTreeSet::from(["B_1@1700000000000".to_string()]),
        })))
        .unwrap();
    assert!(matches!(a, Action::Done(_)), "{a:?}");
}

/// A committed item as the store holds it.
fn committed(e: &Envelope, out: Value, invoked: &[&str]) -> StoredItem {
    StoredItem {
        value: joint_core::envelope::ItemRecord::new(
            OutputRecord::Ok(Payload::Inline(out)),
            e,
            Some(1),
        )
        .encode(),
        invoked: invoked.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn resume_reinvokes_only_the_lost_successors() {
    let s = sub(
        json!({"Name": "A", "FaaS": "a", "Failover": ["c"], "Next": [
        {"Name": "B", "FaaS": "b", "InvokeMode": "Sequence", "Failover": ["c"]},
        {"Name": "C", "FaaS": "b", "InvokeMode": "Sequence"}]}),
    );
    let e = env("A", json!(1));
    let item = committed(&e, json!(5), &["B_1-bindex-0@100", "C_1-bindex-1@100"]);
    // Nothing lost: nothing to do, no write.
    let mut m = Machine::new(&s, e.clone(), Config::default()).unwrap();
    let a = m.resume(item.clone(), &BTreeSet::new()).unwrap();
    assert!(matches!(a, Action::Done(_)), "{a:?}");
    // B's event was lost: exactly B is invoked again (with its output as input), then recorded.
    let mut m = Machine::new(&s, e, Config::default()).unwrap();
    let lost = BTreeSet::from(["B_1-bindex-0".to_string()]);
    let a = m.resume(item, &lost).unwrap();
    let Action::Invoke { calls } = a else {
        panic!("{a:?}")
    };
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].record_as, "B_1-bindex-0");
    assert_eq!(calls[0].failover, ["c"]);
    assert_eq!(calls[0].envelope.input, Input::Inline(json!(5)));
    let a = m.on(Answer::Invoked(vec![Ok("c".into())])).unwrap();
    let Action::Record { names, key, .. } = a else {
        panic!("{a:?}")
    };
    assert_eq!(
        (key.as_str(), names),
        ("run/A_0", vec!["B_1-bindex-0".to_string()])
    );
    let Action::Done(o) = m.on(Answer::Recorded).unwrap() else {
        panic!()
    };
    assert!(o.adopted && !o.ran_function && o.invoked == 1);
}

#[test]
fn resume_of_a_completing_branch_rejoins_and_reinvokes_the_aggregator() {
    let s = sub(json!({"Name": "B", "FaaS": "a",
        "Next": {"Name": "J", "FaaS": "a", "InvokeMode": "FanIn"}}));
    let mut e = env("B", json!(1));
    e.step = 1;
    e.branch = vec![joint_core::naming::Frame {
        index: 1,
        size: 2,
        fork_step: 0,
        window: None,
    }];
    let item = committed(&e, json!("b1"), &["J_2@100"]);
    let mut m = Machine::new(&s, e, Config::default()).unwrap();
    let a = m
        .resume(item, &BTreeSet::from(["J_2".to_string()]))
        .unwrap();
    let Action::Join { key, member, .. } = a else {
        panic!("{a:?}")
    };
    assert_eq!((key.as_str(), member.as_str()), ("run/J-join@0", "1"));
    let members = (0..2u32)
        .map(|i| {
            (
                i.to_string(),
                serde_json::to_vec(&json!({"step": 1, "out": {"inline": i}})).unwrap(),
            )
        })
        .collect();
    // The member is there already (added false), the join is complete: invoke J again.
    let a = m
        .on(Answer::Joined(JoinState {
            added: false,
            completed: false,
            count: 2,
            members,
        }))
        .unwrap();
    let Action::Invoke { calls } = a else {
        panic!("{a:?}")
    };
    assert_eq!(calls[0].record_as, "J_2");
    assert_eq!(
        calls[0].envelope.input,
        Input::Gather(vec![Input::Inline(json!(0)), Input::Inline(json!(1))])
    );
}
