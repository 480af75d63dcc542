//! Instance naming, storage keys and PopAndMerge.
//!
//! An instance is named `{Func}_{step}-bindex-{top}+{next}+…` as in the paper (the newest branch
//! level first); an instance outside any fork is just `{Func}_{step}`. Its id prefixes the name with
//! the run: `{workflow_id}/{name}`. Every key a run writes starts with `{workflow_id}/`, which is what
//! GC deletes; the run's result record lives outside that prefix (`_runs/{workflow_id}/record`) so a finished
//! run can still be looked up after GC.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::envelope::Input;

/// One level of the branch stack, pushed by a fork (Parallel or Map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// This branch's index at the fork.
    pub index: u32,
    /// Number of branches of the fork.
    pub size: u32,
    /// Step of the instance that forked (keeps joins of different loop iterations apart).
    pub fork_step: u32,
    /// Present when a Map bounds its concurrency: how the branch starts its successor sibling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

/// Bounded-concurrency Map bookkeeping carried by each branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Branches running at once.
    pub concurrency: u32,
    /// The Map's target function (the first function of every branch).
    pub function: String,
    /// Its cloud.
    pub cloud: String,
    /// Its replica clouds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
    /// The mapped list (a reference to the initiator's committed output, without `select`).
    pub source: Input,
}

/// Characters allowed in workflow ids and function names (they become parts of storage keys).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
}

fn push_stack(out: &mut String, stack: &[Frame]) {
    if stack.is_empty() {
        return;
    }
    out.push_str("-bindex-");
    for (i, f) in stack.iter().rev().enumerate() {
        if i > 0 {
            out.push('+');
        }
        let _ = write!(out, "{}", f.index);
    }
}

/// `{Func}_{step}-bindex-{top}+…` (no `-bindex-` part outside any fork).
pub fn instance_name(function: &str, step: u32, stack: &[Frame]) -> String {
    let mut s = format!("{function}_{step}");
    push_stack(&mut s, stack);
    s
}

/// `{workflow_id}/{instance_name}`: the key of the instance's coordination item.
pub fn instance_id(workflow_id: &str, function: &str, step: u32, stack: &[Frame]) -> String {
    format!("{workflow_id}/{}", instance_name(function, step, stack))
}

/// Split an instance name back into its function and step (`E_3-bindex-1+0` → `("E", 3)`).
/// `None` for keys that are not instance names (joins, spills, batch records).
pub fn parse_instance_name(name: &str) -> Option<(&str, u32)> {
    let head = name.split_once("-bindex-").map_or(name, |(h, _)| h);
    let (function, step) = head.rsplit_once('_')?;
    if function.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((function, step.parse().ok()?))
}

/// An entry of an item's invoked set: the successor's instance name and the deadline (Unix
/// milliseconds) by which its output should exist, `{name}@{deadline}`. A successor whose
/// output is missing after its deadline is re-driven by `joint resume` and the sweeper.
pub fn invocation_entry(name: &str, deadline_ms: u64) -> String {
    format!("{name}@{deadline_ms}")
}

/// Split an invoked-set entry into the successor's name and its deadline (entries written
/// without a deadline have none).
pub fn split_invocation_entry(entry: &str) -> (&str, Option<u64>) {
    match entry.rsplit_once('@') {
        Some((name, d)) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => {
            (name, d.parse().ok())
        }
        _ => (entry, None),
    }
}

/// The prefix GC deletes: `{workflow_id}/`.
pub fn run_prefix(workflow_id: &str) -> String {
    format!("{workflow_id}/")
}

/// The run record (result or failure), kept outside the run prefix:
/// `_runs/{workflow_id}/record`.
pub fn run_key(workflow_id: &str) -> String {
    format!("_runs/{workflow_id}/record")
}

/// The start record (workflow version and input hash), kept outside the run prefix:
/// `_runs/{workflow_id}/start`.
pub fn run_start_key(workflow_id: &str) -> String {
    format!("_runs/{workflow_id}/start")
}

/// Everything kept for a finished run after GC (its record and result blob):
/// `_runs/{workflow_id}/`.
pub fn run_record_prefix(workflow_id: &str) -> String {
    format!("_runs/{workflow_id}/")
}

/// Key of the join item of a fan-in (or k-of-n) at `aggregator` for the fork at `fork_step` whose
/// enclosing stack (after popping the fork's level) is `parent`.
pub fn join_key(workflow_id: &str, aggregator: &str, fork_step: u32, parent: &[Frame]) -> String {
    let mut s = format!("{workflow_id}/{aggregator}-join@{fork_step}");
    push_stack(&mut s, parent);
    s
}

/// Key of batch `n` of the ByBatch coordination at `target` for workflow `workflow`.
pub fn batch_key(workflow: &str, target: &str, n: u64) -> String {
    format!("_batch/{workflow}/{target}/{n}")
}

/// Workflow id of the run a completed batch starts.
pub fn batch_run_id(workflow: &str, target: &str, n: u64) -> String {
    format!("{workflow}.batch.{target}.{n}")
}

/// Blob key of a spilled output: content-addressed under the instance, so duplicates of one
/// instance that produce the same bytes share the blob and different bytes never collide.
pub fn spill_key(instance_id: &str, sha256_hex: &str) -> String {
    format!(
        "{instance_id}.out.{}",
        &sha256_hex[..16.min(sha256_hex.len())]
    )
}

/// Blob key of a run's final output when it is too large for the run record (outside the prefix
/// GC deletes).
pub fn result_blob_key(workflow_id: &str, sha256_hex: &str) -> String {
    format!(
        "_runs/{workflow_id}/out.{}",
        &sha256_hex[..16.min(sha256_hex.len())]
    )
}

/// PopAndMerge, as the paper describes it: pop one level from every incoming branch stack, then
/// keep the stack with the highest level (longest) and, among those, the highest indices.
///
/// In joint's runtime every branch arriving at one join was pushed by the same fork, so all popped
/// stacks are equal and the merge returns that common stack; the general rule is kept for
/// sub-graphs written for Jointλ (see ADR 0002).
pub fn pop_and_merge(stacks: &[Vec<Frame>]) -> Result<Vec<Frame>, String> {
    if stacks.is_empty() {
        return Err("PopAndMerge needs at least one branch".into());
    }
    let mut best: Option<&[Frame]> = None;
    for s in stacks {
        if s.is_empty() {
            return Err(
                "PopAndMerge on an instance outside any fork: its branch stack is empty".into(),
            );
        }
        let popped = &s[..s.len() - 1];
        best = match best {
            None => Some(popped),
            Some(b) => {
                let key = |st: &[Frame]| {
                    (
                        st.len(),
                        st.iter().rev().map(|f| f.index).collect::<Vec<_>>(),
                    )
                };
                if key(popped) > key(b) {
                    Some(popped)
                } else {
                    Some(b)
                }
            }
        };
    }
    Ok(best.map(|b| b.to_vec()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(index: u32, size: u32) -> Frame {
        Frame {
            index,
            size,
            fork_step: 0,
            window: None,
        }
    }

    #[test]
    fn names_follow_the_paper() {
        assert_eq!(instance_name("A", 0, &[]), "A_0");
        assert_eq!(instance_name("C", 2, &[fr(0, 2)]), "C_2-bindex-0");
        // A Map inside branch 0: newest level first.
        assert_eq!(
            instance_name("E", 3, &[fr(0, 2), fr(1, 2)]),
            "E_3-bindex-1+0"
        );
        assert_eq!(
            instance_id("wf1", "E", 3, &[fr(0, 2), fr(0, 2)]),
            "wf1/E_3-bindex-0+0"
        );
        assert_eq!(join_key("wf", "D", 1, &[]), "wf/D-join@1");
        assert_eq!(join_key("wf", "D", 4, &[fr(3, 5)]), "wf/D-join@4-bindex-3");
        assert!(instance_id("w", "F", 1, &[]).starts_with(&run_prefix("w")));
        assert!(!run_key("w").starts_with(&run_prefix("w")));
    }

    #[test]
    fn pop_and_merge_paper_example() {
        // E_3-bindex-0+0, E_3-bindex-1+0 and F_3-bindex-1 → A_4-bindex-0 (Fig. 10).
        let e0 = vec![fr(0, 2), fr(0, 2)];
        let e1 = vec![fr(0, 2), fr(1, 2)];
        let f1 = vec![fr(1, 2)];
        let merged = pop_and_merge(&[e0, e1, f1]).unwrap();
        assert_eq!(instance_name("A", 4, &merged), "A_4-bindex-0");
        // Equal stacks (joint's case) merge to the common parent.
        let p = vec![fr(2, 3)];
        let a = [p.clone(), vec![fr(0, 4)]].concat();
        let b = [p.clone(), vec![fr(3, 4)]].concat();
        assert_eq!(pop_and_merge(&[a, b]).unwrap(), p);
        assert!(
            pop_and_merge(&[vec![]])
                .unwrap_err()
                .contains("outside any fork")
        );
        assert!(pop_and_merge(&[]).is_err());
    }

    #[test]
    fn instance_names_parse_back() {
        assert_eq!(parse_instance_name("E_3-bindex-1+0"), Some(("E", 3)));
        assert_eq!(parse_instance_name("my_fn_12"), Some(("my_fn", 12)));
        assert_eq!(parse_instance_name("A_0"), Some(("A", 0)));
        assert_eq!(parse_instance_name("D-join@1"), None);
        assert_eq!(parse_instance_name("_x"), None);
        assert_eq!(parse_instance_name("A_"), None);
        assert_eq!(parse_instance_name("A_0.out.0123"), None);
        for (f, step, stack) in [("A", 0, vec![]), ("b_c", 7, vec![fr(1, 3), fr(0, 2)])] {
            let n = instance_name(f, step, &stack);
            assert_eq!(parse_instance_name(&n), Some((f, step)), "{n}");
        }
    }

    #[test]
    fn invocation_entries_carry_deadlines() {
        let e = invocation_entry("B_1-bindex-0", 1_700_000_000_123);
        assert_eq!(e, "B_1-bindex-0@1700000000123");
        assert_eq!(
            split_invocation_entry(&e),
            ("B_1-bindex-0", Some(1_700_000_000_123))
        );
        assert_eq!(split_invocation_entry("B_1"), ("B_1", None));
        assert_eq!(split_invocation_entry("batch:X:3"), ("batch:X:3", None));
        assert_eq!(split_invocation_entry("odd@"), ("odd@", None));
        assert_eq!(split_invocation_entry("odd@x1"), ("odd@x1", None));
    }

    #[test]
    fn ids() {
        assert!(valid_id("run-1_a.b"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id(&"x".repeat(129)));
        assert_eq!(
            spill_key("w/A_0", "0123456789abcdef0123"),
            "w/A_0.out.0123456789abcdef"
        );
    }
}
