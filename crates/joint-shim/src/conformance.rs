//! The conformance suite: free async test functions every backend must pass.
//!
//! A backend's test file calls [`coord_store`], [`blob_store`] and [`faas`] with a fresh
//! instance (a unique key prefix keeps runs apart on shared emulators). Each function panics with
//! a message naming the violated **Behavior** bullet, which is what a test wants.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use joint_core::machine::JoinState;

use crate::error::ErrorKind;
use crate::traits::JoinSize;
use crate::traits::{BlobStore, CoordStore, Created, Faas};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// How hard the suite pushes joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinScale {
    /// Members of the widest join (every store must take at least [`JoinScale::FULL`]'s).
    pub width: u32,
    /// Joins in flight at once in the concurrent cases.
    pub concurrency: usize,
}

impl JoinScale {
    /// A 10,000-way join, 64 members in flight at once.
    pub const FULL: JoinScale = JoinScale {
        width: 10_000,
        concurrency: 64,
    };
}

/// Every coordination-store behavior at [`JoinScale::FULL`]. `p` is a unique prefix such as
/// `conf-1234/`.
pub async fn coord_store(store: Arc<dyn CoordStore>, p: &str) {
    coord_store_with(store, p, JoinScale::FULL).await
}

/// Every coordination-store behavior, with joins at `scale` (an emulator that cannot take the
/// full width says why where it passes a smaller one). `p` is a unique prefix.
pub async fn coord_store_with(store: Arc<dyn CoordStore>, p: &str, scale: JoinScale) {
    let caps = store.capabilities();
    assert!(caps.item_limit >= 64 * 1024, "item limit below 64 KiB");
    assert!(
        caps.join_value_limit >= 1024 && caps.join_value_limit <= caps.item_limit,
        "a join member limit of {} bytes is not within 1 KiB..item_limit",
        caps.join_value_limit
    );
    if let Some(w) = caps.max_join_width {
        assert!(
            w >= JoinScale::FULL.width,
            "a join width ceiling of {w} is below {}",
            JoinScale::FULL.width
        );
    }

    // create-if-absent
    let k = format!("{p}run1/A_0");
    assert_eq!(
        store.get(&k).await.expect("get missing"),
        None,
        "get of a missing key returns None"
    );
    assert_eq!(
        store.create(&k, b("v1")).await.expect("create"),
        Created::New
    );
    match store.create(&k, b("v2")).await.expect("second create") {
        Created::Existing(item) => {
            assert_eq!(
                item.value,
                b"v1".to_vec(),
                "create returns the existing value, unchanged"
            );
            assert!(item.invoked.is_empty());
        }
        Created::New => panic!("create on an existing key must return Existing"),
    }
    let got = store.get(&k).await.expect("get").expect("item exists");
    assert_eq!(got.value, b"v1".to_vec(), "the first create wins");

    // concurrent creates: exactly one New
    let kc = format!("{p}run1/C_1");
    let results = join_all((0..8).map(|i| {
        let s = store.clone();
        let kc = kc.clone();
        async move { s.create(&kc, Bytes::from(format!("w{i}"))).await }
    }))
    .await;
    let news = results
        .iter()
        .filter(|r| matches!(r, Ok(Created::New)))
        .count();
    assert_eq!(
        news, 1,
        "exactly one concurrent create returns New: {results:?}"
    );
    let winner = store.get(&kc).await.expect("get").expect("exists").value;
    for r in &results {
        if let Ok(Created::Existing(it)) = r {
            assert_eq!(it.value, winner, "losers see the winner's value");
        }
    }

    // invoked set
    let set = store
        .add_invoked(&k, &["B_1".into(), "C_1".into()])
        .await
        .expect("add_invoked");
    assert_eq!(set, BTreeSet::from(["B_1".to_string(), "C_1".to_string()]));
    let set = store
        .add_invoked(&k, &["C_1".into(), "D_1".into()])
        .await
        .expect("add_invoked again");
    assert_eq!(set.len(), 3, "adding a name twice keeps one copy");
    let got = store.get(&k).await.expect("get").expect("exists");
    assert_eq!(got.invoked.len(), 3, "get returns the invoked set");
    assert_eq!(
        got.value,
        b"v1".to_vec(),
        "add_invoked leaves the value alone"
    );
    match store.create(&k, b("v3")).await.expect("create") {
        Created::Existing(it) => assert_eq!(it.invoked.len(), 3, "create returns the invoked set"),
        Created::New => panic!("must exist"),
    }
    let err = store
        .add_invoked(&format!("{p}run1/missing"), &["x".into()])
        .await
        .expect_err("add_invoked on a missing item fails");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "missing item is NotFound: {err}"
    );

    // join
    let j = format!("{p}run1/D-join@0");
    let s1 = store
        .join(&j, "0", b("m0"), JoinSize::all(3))
        .await
        .expect("join 0");
    assert!(s1.added && s1.count == 1 && !s1.completed, "{s1:?}");
    let again = store
        .join(&j, "0", b("other"), JoinSize::all(3))
        .await
        .expect("join 0 again");
    assert!(
        !again.added && again.count == 1 && !again.completed,
        "re-adding a member is not an add: {again:?}"
    );
    let s2 = store
        .join(&j, "1", b("m1"), JoinSize::all(3))
        .await
        .expect("join 1");
    assert!(s2.added && s2.count == 2 && !s2.completed, "{s2:?}");
    let s3 = store
        .join(&j, "2", b("m2"), JoinSize::all(3))
        .await
        .expect("join 2");
    assert!(
        s3.added && s3.count == 3 && s3.completed,
        "the third of three completes the join: {s3:?}"
    );
    assert_eq!(s3.members.len(), 3, "complete state carries all members");
    assert_eq!(
        s3.members["0"],
        b"m0".to_vec(),
        "a member keeps its first value"
    );
    let full = store
        .join(&j, "3", b("m3"), JoinSize::all(3))
        .await
        .expect("join over capacity");
    assert!(
        !full.added && full.count == 3 && !full.completed,
        "a full join accepts no new member: {full:?}"
    );
    assert!(!full.members.contains_key("3"));
    let late = store
        .join(&j, "1", b("x"), JoinSize::all(3))
        .await
        .expect("late duplicate");
    assert!(
        !late.added && late.count == 3 && late.members.len() == 3 && !late.completed,
        "a late duplicate of a member that did not complete the join: {late:?}"
    );

    // concurrent joins: exactly one completes
    let jc = format!("{p}run1/E-join@0");
    let n = 16u32;
    let rs = join_all((0..n).map(|i| {
        let s = store.clone();
        let jc = jc.clone();
        async move {
            s.join(
                &jc,
                &i.to_string(),
                Bytes::from(format!("v{i}")),
                JoinSize::all(n),
            )
            .await
        }
    }))
    .await;
    let completers = rs
        .iter()
        .filter(|r| matches!(r, Ok(js) if js.completed))
        .count();
    assert_eq!(
        completers, 1,
        "exactly one concurrent join completes: {rs:?}"
    );
    assert!(rs.iter().all(|r| r.is_ok()), "joins succeed: {rs:?}");

    joins(&store, p, scale).await;

    // list excludes joins; prefix is exact
    let other = format!("{p}run10/A_0");
    store
        .create(&other, b("o"))
        .await
        .expect("create other run");
    let listed = store.list(&format!("{p}run1/")).await.expect("list");
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![k.as_str(), kc.as_str()],
        "list: output items of the prefix, sorted, no joins"
    );

    // too large
    let big = Bytes::from(vec![b'x'; caps.item_limit as usize + 1]);
    let err = store
        .create(&format!("{p}run1/big"), big)
        .await
        .expect_err("over the item limit");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");

    // delete one key: exact, idempotent, and a re-create starts fresh
    let d = |k: &str| format!("{p}run2/{k}");
    for (k, v) in [("A_1", "a1"), ("A_10", "a10"), ("A_1-bindex-0", "a1b0")] {
        assert_eq!(
            store.create(&d(k), b(v)).await.expect("create for delete"),
            Created::New
        );
    }
    store
        .add_invoked(&d("A_1"), &["B_1".into()])
        .await
        .expect("add_invoked before delete");
    let dj = d("J-join@0");
    let dj_next = d("J-join@01");
    for m in ["0", "1"] {
        let st = store
            .join(&dj, m, b(m), JoinSize::all(3))
            .await
            .expect("join");
        assert!(st.added);
    }
    assert!(
        store
            .join(&dj_next, "0", b("x"), JoinSize::all(3))
            .await
            .expect("join")
            .added
    );
    assert!(
        store.delete(&d("A_1")).await.expect("delete"),
        "delete of an existing output item returns true"
    );
    assert_eq!(
        store.get(&d("A_1")).await.expect("get deleted"),
        None,
        "a deleted item is gone"
    );
    for (k, v) in [("A_10", "a10"), ("A_1-bindex-0", "a1b0")] {
        let it = store.get(&d(k)).await.expect("get neighbour");
        assert_eq!(
            it.map(|i| i.value),
            Some(v.as_bytes().to_vec()),
            "deleting run2/A_1 leaves run2/{k} alone (exact key, not a prefix)"
        );
    }
    assert!(
        !store.delete(&d("A_1")).await.expect("delete again"),
        "deleting a missing key returns false"
    );
    assert!(
        !store.delete(&d("never")).await.expect("delete missing"),
        "deleting a key that never existed returns false"
    );
    assert!(
        !store.delete(&d("A_")).await.expect("delete a bare prefix"),
        "a key that is only a prefix of others matches nothing"
    );
    assert_eq!(
        store.list(&d("")).await.expect("list").len(),
        2,
        "a missed delete deletes nothing"
    );
    let err = store
        .add_invoked(&d("A_1"), &["x".into()])
        .await
        .expect_err("add_invoked on a deleted item fails");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        store
            .create(&d("A_1"), b("again"))
            .await
            .expect("re-create"),
        Created::New,
        "a create after delete is New"
    );
    let it = store
        .get(&d("A_1"))
        .await
        .expect("get")
        .expect("re-created");
    assert_eq!(it.value, b"again".to_vec(), "the re-created value");
    assert!(
        it.invoked.is_empty(),
        "a re-created item starts with an empty invoked set: {:?}",
        it.invoked
    );
    assert!(
        store.delete(&dj).await.expect("delete join"),
        "delete of an existing join returns true"
    );
    let st = store
        .join(&dj, "1", b("new"), JoinSize::all(3))
        .await
        .expect("join");
    assert!(
        st.added && st.count == 1,
        "a deleted join starts again from count 1: {st:?}"
    );
    let st = store
        .join(&dj_next, "1", b("y"), JoinSize::all(3))
        .await
        .expect("join");
    assert!(
        st.added && st.count == 2,
        "deleting run2/J-join@0 leaves run2/J-join@01 alone: {st:?}"
    );
    assert_eq!(
        store
            .list(&d(""))
            .await
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec![d("A_1"), d("A_1-bindex-0"), d("A_10")],
        "deleting joins leaves output items alone"
    );

    // A prefix spanning runs (the sweeper lists whole stores) returns every run's items.
    let spanning: Vec<String> = store
        .list(p)
        .await
        .expect("list across runs")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for want in [k.clone(), other.clone(), d("A_10")] {
        assert!(
            spanning.contains(&want),
            "list('{p}') spans runs and includes {want}: {spanning:?}"
        );
    }
    assert!(
        spanning.iter().all(|k| !k.contains("-join@")),
        "list across runs excludes joins: {spanning:?}"
    );

    // delete by prefix
    let deleted = store
        .delete_prefix(&format!("{p}run1/"))
        .await
        .expect("delete");
    assert!(deleted >= 4, "deletes items and joins: {deleted}");
    assert_eq!(store.get(&k).await.expect("get"), None);
    assert!(
        store
            .list(&format!("{p}run1/"))
            .await
            .expect("list")
            .is_empty()
    );
    let fresh = store
        .join(&j, "0", b("n"), JoinSize::all(3))
        .await
        .expect("join after delete");
    assert!(fresh.added && fresh.count == 1, "joins are deleted too");
    assert!(
        store.get(&other).await.expect("get").is_some(),
        "run10/ survives deleting run1/"
    );
    store.delete_prefix(p).await.expect("cleanup");
    assert_eq!(store.delete_prefix(p).await.expect("delete nothing"), 0);
}

/// `n` joins on `key`, at most `concurrency` in flight: member `members[i]` with `value(i)`.
async fn join_many(
    store: &Arc<dyn CoordStore>,
    key: &str,
    members: Vec<String>,
    value: impl Fn(&str) -> Bytes,
    capacity: u32,
    complete_at: u32,
    concurrency: usize,
) -> Vec<(String, JoinState)> {
    stream::iter(members)
        .map(|m| {
            let s = store.clone();
            let v = value(&m);
            async move {
                let r = s
                    .join(
                        key,
                        &m,
                        v,
                        JoinSize {
                            capacity,
                            complete_at,
                        },
                    )
                    .await;
                match r {
                    Ok(st) => (m, st),
                    Err(e) => panic!("join of member {m} on {key}: {e}"),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Check a completer's members: every one of `want` with its value.
fn assert_members(st: &JoinState, want: &[String], value: impl Fn(&str) -> Bytes, what: &str) {
    assert_eq!(
        st.members.len(),
        want.len(),
        "{what}: the completer gets every member ({} of {})",
        st.members.len(),
        want.len()
    );
    for m in want {
        match st.members.get(m) {
            Some(v) => assert_eq!(
                v.as_slice(),
                value(m).as_ref(),
                "{what}: member {m} keeps its value"
            ),
            None => panic!("{what}: member {m} is missing from the completer's state"),
        }
    }
}

/// Wide joins, duplicates delivered concurrently, capacity (k of n, full joins) and member
/// values at the store's limit.
async fn joins(store: &Arc<dyn CoordStore>, p: &str, scale: JoinScale) {
    let caps = store.capabilities();
    let val = |m: &str| Bytes::from(format!("value of {m}"));
    let names = |n: u32| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();

    // The widest join, members in flight concurrently: exactly one completes, with every
    // member and value; the others count between 1 and n.
    let n = scale.width;
    let wide = format!("{p}run3/W-join@0");
    let all = names(n);
    let rs = join_many(store, &wide, all.clone(), val, n, n, scale.concurrency).await;
    assert!(
        rs.iter().all(|(_, st)| st.added),
        "{n}-way join: every distinct member is added"
    );
    let completers: Vec<&(String, JoinState)> = rs.iter().filter(|(_, st)| st.completed).collect();
    assert_eq!(
        completers.len(),
        1,
        "{n}-way join: exactly one call completes it"
    );
    let (winner, done) = completers[0];
    assert_eq!(done.count, n, "{n}-way join: the completer counts {n}");
    assert_members(done, &all, val, &format!("{n}-way join"));
    for (m, st) in &rs {
        assert!(
            (1..=n).contains(&st.count),
            "{n}-way join: member {m} counted {}",
            st.count
        );
    }
    // Redeliveries after completion: not added, complete, and only the completer's may say
    // `completed`.
    let other = if winner == "0" { "1" } else { "0" };
    let dup = store
        .join(&wide, other, b("changed"), JoinSize::all(n))
        .await
        .expect("duplicate");
    assert!(
        !dup.added && !dup.completed && dup.count == n,
        "{n}-way join: a redelivered non-completer: added {}, completed {}, count {}",
        dup.added,
        dup.completed,
        dup.count
    );
    assert_members(&dup, &all, val, &format!("{n}-way join, redelivery"));
    let again = store
        .join(&wide, winner, b("changed"), JoinSize::all(n))
        .await
        .expect("duplicate of the completer");
    assert!(
        !again.added && again.count == n,
        "{n}-way join: the completer redelivered is not added"
    );
    assert_members(
        &again,
        &all,
        val,
        &format!("{n}-way join, completer redelivered"),
    );
    let extra = store
        .join(&wide, "extra", b("x"), JoinSize::all(n))
        .await
        .expect("over capacity");
    assert!(
        !extra.added
            && !extra.completed
            && extra.count == n
            && !extra.members.contains_key("extra"),
        "{n}-way join: a full join takes no new member"
    );
    // Deleting the join deletes all of it: the key starts again from one member.
    assert!(store.delete(&wide).await.expect("delete wide join"));
    let fresh = store
        .join(&wide, "0", b("fresh"), JoinSize::all(n))
        .await
        .expect("join after delete");
    assert!(
        fresh.added && fresh.count == 1 && !fresh.completed,
        "a deleted {n}-way join starts again from count 1: added {}, count {}",
        fresh.added,
        fresh.count
    );
    assert!(store.delete(&wide).await.expect("delete again"));

    // Every member delivered three times, concurrently: each counted once, one completer (its
    // own redeliveries aside).
    for width in [8u32, 64] {
        let key = format!("{p}run3/D{width}-join@0");
        let deliveries: Vec<String> = (0..3).flat_map(|_| names(width)).collect();
        let rs = join_many(
            store,
            &key,
            deliveries,
            val,
            width,
            width,
            scale.concurrency,
        )
        .await;
        let mut added: Vec<&str> = rs
            .iter()
            .filter(|(_, st)| st.added)
            .map(|(m, _)| m.as_str())
            .collect();
        added.sort();
        let mut want = names(width);
        want.sort();
        assert_eq!(
            added, want,
            "{width} members delivered 3 times: each is added exactly once"
        );
        let completed: Vec<&(String, JoinState)> =
            rs.iter().filter(|(_, st)| st.completed).collect();
        assert!(
            !completed.is_empty(),
            "{width} members delivered 3 times: some call completes the join"
        );
        assert!(
            completed.iter().all(|(m, _)| *m == completed[0].0),
            "{width} members delivered 3 times: only one member's calls complete the join: {:?}",
            completed.iter().map(|(m, _)| m).collect::<Vec<_>>()
        );
        for (_, st) in &completed {
            assert_eq!(st.count, width);
            assert_members(st, &names(width), val, &format!("{width} x 3 deliveries"));
        }
        for (m, st) in &rs {
            assert!(st.count <= width, "member {m} counted {}", st.count);
        }
    }

    // k of n: the k-th member completes the join; later members are added but do not
    // complete it; the n+1-th is refused.
    let kn = format!("{p}run3/K-join@0");
    for (i, m) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let st = store
            .join(
                &kn,
                m,
                val(m),
                JoinSize {
                    capacity: 5,
                    complete_at: 3,
                },
            )
            .await
            .expect("k of n");
        let i = i as u32 + 1;
        assert!(
            st.added && st.count == i && st.completed == (i == 3),
            "3 of 5, member {i}: added {}, count {}, completed {}",
            st.added,
            st.count,
            st.completed
        );
        if i == 3 {
            assert_members(&st, &names_of(&["a", "b", "c"]), val, "3 of 5");
        }
    }
    let refused = store
        .join(
            &kn,
            "f",
            val("f"),
            JoinSize {
                capacity: 5,
                complete_at: 3,
            },
        )
        .await
        .expect("sixth");
    assert!(
        !refused.added && !refused.completed && refused.count == 5,
        "3 of 5: a sixth member is refused"
    );
    // k of n, wide and concurrent: one completer, with at least k members.
    let (cap, k) = (120u32, 40u32);
    let kw = format!("{p}run3/KW-join@0");
    let rs = join_many(store, &kw, names(cap), val, cap, k, scale.concurrency).await;
    assert!(rs.iter().all(|(_, st)| st.added), "{k} of {cap}: all added");
    let completers: Vec<&JoinState> = rs
        .iter()
        .map(|(_, st)| st)
        .filter(|st| st.completed)
        .collect();
    assert_eq!(completers.len(), 1, "{k} of {cap}: exactly one completer");
    let c = completers[0];
    assert!(
        c.count >= k && c.members.len() >= k as usize,
        "{k} of {cap}: the completer counts {} and gets {} members",
        c.count,
        c.members.len()
    );
    for (m, v) in &c.members {
        assert_eq!(v.as_slice(), val(m).as_ref(), "{k} of {cap}: member {m}");
    }
    let refused = store
        .join(
            &kw,
            "over",
            b("x"),
            JoinSize {
                capacity: cap,
                complete_at: k,
            },
        )
        .await
        .expect("over capacity");
    assert!(
        !refused.added && !refused.completed && refused.count == cap,
        "{k} of {cap}: a full join refuses a new member"
    );

    // Member values at the limit, in a narrow and in a wide join; one byte more is refused.
    let limit = caps.join_value_limit as usize;
    let big = |m: &str| {
        let mut v = vec![b'0' + (m.len() % 10) as u8; limit];
        v[..m.len()].copy_from_slice(m.as_bytes());
        Bytes::from(v)
    };
    for (cap, at) in [(2u32, 2u32), (120, 2)] {
        let key = format!("{p}run3/V{cap}-join@0");
        let err = store
            .join(
                &key,
                "a",
                Bytes::from(vec![b'x'; limit + 1]),
                JoinSize {
                    capacity: cap,
                    complete_at: at,
                },
            )
            .await
            .expect_err("a member over the join value limit");
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
        let first = store
            .join(
                &key,
                "a",
                big("a"),
                JoinSize {
                    capacity: cap,
                    complete_at: at,
                },
            )
            .await
            .expect("at the limit");
        assert!(
            first.added && first.count == 1,
            "a member at the limit is added"
        );
        let second = store
            .join(
                &key,
                "bb",
                big("bb"),
                JoinSize {
                    capacity: cap,
                    complete_at: at,
                },
            )
            .await
            .expect("at the limit");
        assert!(
            second.added && second.completed,
            "capacity {cap}: completes"
        );
        assert_members(&second, &names_of(&["a", "bb"]), big, "values at the limit");
    }
    // A small join full of members at the limit still fits its store.
    let key = format!("{p}run3/F-join@0");
    let full: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
    let rs = join_many(store, &key, full.clone(), big, 16, 16, scale.concurrency).await;
    let done: Vec<&JoinState> = rs
        .iter()
        .map(|(_, st)| st)
        .filter(|st| st.completed)
        .collect();
    assert_eq!(done.len(), 1, "16 members at the limit: one completer");
    assert_members(done[0], &full, big, "16 members at the limit");

    // A declared width ceiling is enforced before anything is written.
    if let Some(w) = caps.max_join_width {
        let key = format!("{p}run3/X-join@0");
        let err = store
            .join(
                &key,
                "0",
                b("x"),
                JoinSize {
                    capacity: w.saturating_add(1),
                    complete_at: 1,
                },
            )
            .await
            .expect_err("a join over the store's width ceiling");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    store
        .delete_prefix(&format!("{p}run3/"))
        .await
        .expect("cleanup of run3/");
}

fn names_of(m: &[&str]) -> Vec<String> {
    m.iter().map(|s| s.to_string()).collect()
}

/// Every blob-store behavior. `p` is a unique prefix.
pub async fn blob_store(store: Arc<dyn BlobStore>, p: &str) {
    let k = format!("{p}run1/A_0.out.1");
    let err = store.get(&k).await.expect_err("missing blob");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    store.put_new(&k, b("hello")).await.expect("put_new");
    assert_eq!(store.get(&k).await.expect("get"), b("hello"));
    let err = store.put_new(&k, b("other")).await.expect_err("second put");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(
        store.get(&k).await.expect("get"),
        b("hello"),
        "existing blob unchanged"
    );

    let kc = format!("{p}run1/B_1.out.2");
    let rs = join_all((0..6).map(|i| {
        let s = store.clone();
        let kc = kc.clone();
        async move {
            s.put_new(&kc, Bytes::from(vec![b'a' + i as u8; 100_000]))
                .await
        }
    }))
    .await;
    assert_eq!(
        rs.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one concurrent put_new wins"
    );
    let v = store.get(&kc).await.expect("get");
    assert_eq!(v.len(), 100_000);
    assert!(
        v.iter().all(|x| *x == v[0]),
        "a blob is never mixed from two writers"
    );

    let empty = format!("{p}run1/empty");
    store
        .put_new(&empty, Bytes::new())
        .await
        .expect("empty blob");
    assert_eq!(store.get(&empty).await.expect("get").len(), 0);

    store
        .put_new(&format!("{p}run10/x"), b("x"))
        .await
        .expect("other run");
    let n = store
        .delete_prefix(&format!("{p}run1/"))
        .await
        .expect("delete");
    assert_eq!(n, 3, "deleted the three blobs of run1/");
    assert_eq!(
        store.get(&k).await.expect_err("gone").kind(),
        ErrorKind::NotFound
    );
    assert!(
        store.get(&format!("{p}run10/x")).await.is_ok(),
        "run10/ survives"
    );
    assert_eq!(
        store
            .delete_prefix(&format!("{p}run1/"))
            .await
            .expect("again"),
        0
    );
    store.delete_prefix(p).await.expect("cleanup");
}

/// FaaS behaviors. `echo` must be a deployed function that returns its input unchanged;
/// `failing` one that always returns an error.
pub async fn faas(faas: Arc<dyn Faas>, echo: &str, failing: &str) {
    let caps = faas.capabilities();
    assert!(caps.async_payload_limit >= 64 * 1024);
    let out = faas
        .invoke_sync(echo, b("{\"x\":1}"))
        .await
        .expect("sync invoke of echo");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("echo returns JSON");
    assert_eq!(v, serde_json::json!({"x": 1}), "echo returns its input");
    faas.invoke_async(echo, b("{\"x\":2}"))
        .await
        .expect("async invoke is accepted");
    let err = faas
        .invoke_async("no-such-function-xyz", b("{}"))
        .await
        .expect_err("unknown function");
    assert_eq!(err.kind(), ErrorKind::FunctionNotFound, "{err}");
    assert!(err.is_failover_worthy());
    let err = faas
        .invoke_sync("no-such-function-xyz", b("{}"))
        .await
        .expect_err("unknown function (sync)");
    assert_eq!(err.kind(), ErrorKind::FunctionNotFound, "{err}");
    let big = Bytes::from(vec![b' '; caps.async_payload_limit as usize + 1]);
    let err = faas
        .invoke_async(echo, big)
        .await
        .expect_err("payload over the async limit");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    let err = faas
        .invoke_sync(failing, b("{}"))
        .await
        .expect_err("failing function");
    assert_eq!(err.kind(), ErrorKind::FunctionError, "{err}");
    assert!(
        !err.message().is_empty(),
        "function errors carry the message"
    );
}
