//! The conformance suite: free async test functions every backend must pass.
//!
//! A backend's test file calls [`coord_store`], [`blob_store`] and [`faas`] with a fresh
//! instance (a unique key prefix keeps runs apart on shared emulators). Each function panics with
//! a message naming the violated **Behavior** bullet, which is what a test wants.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;

use crate::error::ErrorKind;
use crate::traits::{BlobStore, CoordStore, Created, Faas};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Every coordination-store behavior. `p` is a unique prefix such as `conf-1234/`.
pub async fn coord_store(store: Arc<dyn CoordStore>, p: &str) {
    let caps = store.capabilities();
    assert!(caps.item_limit >= 64 * 1024, "item limit below 64 KiB");

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
    let s1 = store.join(&j, "0", b("m0"), 3, 3).await.expect("join 0");
    assert!(s1.added && s1.count == 1);
    let again = store
        .join(&j, "0", b("other"), 3, 3)
        .await
        .expect("join 0 again");
    assert!(
        !again.added && again.count == 1,
        "re-adding a member is not an add"
    );
    let s2 = store.join(&j, "1", b("m1"), 3, 3).await.expect("join 1");
    assert!(s2.added && s2.count == 2);
    let s3 = store.join(&j, "2", b("m2"), 3, 3).await.expect("join 2");
    assert!(s3.added && s3.count == 3);
    assert_eq!(s3.members.len(), 3, "complete state carries all members");
    assert_eq!(
        s3.members["0"],
        b"m0".to_vec(),
        "a member keeps its first value"
    );
    let full = store
        .join(&j, "3", b("m3"), 3, 3)
        .await
        .expect("join over capacity");
    assert!(
        !full.added && full.count == 3,
        "a full join accepts no new member"
    );
    assert!(!full.members.contains_key("3"));
    let late = store
        .join(&j, "1", b("x"), 3, 3)
        .await
        .expect("late duplicate");
    assert!(!late.added && late.count == 3 && late.members.len() == 3);

    // concurrent joins: exactly one completes
    let jc = format!("{p}run1/E-join@0");
    let n = 16u32;
    let rs = join_all((0..n).map(|i| {
        let s = store.clone();
        let jc = jc.clone();
        async move {
            s.join(&jc, &i.to_string(), Bytes::from(format!("v{i}")), n, n)
                .await
        }
    }))
    .await;
    let completers = rs
        .iter()
        .filter(|r| matches!(r, Ok(js) if js.added && js.count == n))
        .count();
    assert_eq!(
        completers, 1,
        "exactly one concurrent join completes: {rs:?}"
    );
    assert!(rs.iter().all(|r| r.is_ok()), "joins succeed: {rs:?}");

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
        let st = store.join(&dj, m, b(m), 3, 3).await.expect("join");
        assert!(st.added);
    }
    assert!(
        store
            .join(&dj_next, "0", b("x"), 3, 3)
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
    let st = store.join(&dj, "1", b("new"), 3, 3).await.expect("join");
    assert!(
        st.added && st.count == 1,
        "a deleted join starts again from count 1: {st:?}"
    );
    let st = store.join(&dj_next, "1", b("y"), 3, 3).await.expect("join");
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
        .join(&j, "0", b("n"), 3, 3)
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
