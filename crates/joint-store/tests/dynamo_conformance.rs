//! The coordination-store conformance suite on DynamoDB, against every configured emulator
//! (ministack and moto server), plus GC-path and table checks.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use joint_shim::JoinSize;
use joint_shim::conformance::JoinScale;
use joint_shim::{CoordStore, ErrorKind};
use joint_store::dynamo::{TableStatus, create_table};

/// The joins the suite runs on an emulator. ministack serialises requests and runs the full
/// suite. moto cannot: its TransactWriteItems deep-copies every table it touches (to roll back
/// on cancellation) without a lock, so concurrent transactions fail with a 500 ("dictionary
/// changed size during iteration") or a cancelled one restores a copy over the writes others
/// made meanwhile, and each copy costs the table's size (5.6 ms per transaction at 100 items,
/// 42 ms at 3,300 measured). On moto the wide joins run one at a time and 500 wide.
fn scale(emulator: &str) -> JoinScale {
    match emulator {
        "moto" => JoinScale {
            width: 500,
            concurrency: 1,
        },
        _ => JoinScale::FULL,
    }
}

#[tokio::test]
async fn conformance_on_emulators() {
    for (name, url) in common::emulators() {
        eprintln!("conformance on {name}");
        let store = common::fresh_store(&url).await;
        let t = std::time::Instant::now();
        joint_shim::conformance::coord_store_with(
            Arc::new(store.clone()),
            &format!("conf-{}/", common::uniq()),
            scale(name),
        )
        .await;
        eprintln!(
            "{name}: {:?} in {:.1} s",
            scale(name),
            t.elapsed().as_secs_f64()
        );
        // Creating the table again is idempotent.
        assert_eq!(
            create_table(store.client(), store.table())
                .await
                .expect("again"),
            TableStatus::Existed,
            "{name}"
        );
    }
}

#[tokio::test]
async fn run_records_and_wide_gc_are_exact() {
    for (name, url) in common::emulators() {
        let store = common::fresh_store(&url).await;
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        // A run with more items than one BatchWriteItem and its run record.
        for i in 0..60 {
            store
                .create(&format!("r1/F_{i}"), b("x"))
                .await
                .expect("create");
        }
        store
            .create("_runs/r1/record", b("rec"))
            .await
            .expect("rec");
        store
            .create("_runs/r10/record", b("rec10"))
            .await
            .expect("rec10");
        store
            .join("r1/J-join@0", "0", b("m"), JoinSize::all(2))
            .await
            .expect("join");
        assert_eq!(store.list("r1/").await.expect("list").len(), 60, "{name}");
        assert_eq!(store.delete_prefix("r1/").await.expect("gc"), 61, "{name}");
        assert_eq!(
            store.delete_prefix("_runs/r1/").await.expect("gc record"),
            1,
            "{name}: only r1's record"
        );
        assert!(store.get("_runs/r10/record").await.expect("get").is_some());
        // A prefix spanning partitions still works (Scan fallback) and is exact.
        store.create("r2/A_0", b("a")).await.expect("create");
        store.create("r20/A_0", b("a")).await.expect("create");
        let listed = store.list("r2").await.expect("list across partitions");
        assert_eq!(listed.len(), 2, "{name}");
        assert_eq!(store.delete_prefix("_runs/").await.expect("all records"), 1);
    }
}

/// Every item of the table in partition `pk`, as the emulator stores it.
async fn raw_items(
    store: &joint_store::DynamoCoordStore,
    pk: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let out = store
        .client()
        .query()
        .table_name(store.table())
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
        .send()
        .await
        .expect("raw query");
    assert!(out.last_evaluated_key.is_none(), "one page");
    out.items.unwrap_or_default()
}

fn s_attr<'a>(a: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    match a.get(name) {
        Some(AttributeValue::S(s)) => s,
        other => panic!("attribute {name} is {other:?}"),
    }
}

/// A wide join keeps one item per member in the run's partition, each with the TTL attribute;
/// `list` does not show them and GC deletes them. A narrow join never outgrows DynamoDB's 400 KB:
/// the largest narrow join with every member at the limit fits, and a member limit that would
/// not fit makes the join wide. A join started in one layout is not continued in the other.
#[tokio::test]
async fn join_layouts_on_emulators() {
    for (name, url) in common::emulators() {
        let store = common::fresh_store(&url).await;
        let v = |i: u32| Bytes::from(format!("value {i}"));
        // 40 members: wide at the default threshold.
        assert!(store.is_wide_join(17) && !store.is_wide_join(16), "{name}");
        let mut completers = 0;
        for i in 0..40 {
            let st = store
                .join("lay/W-join@0", &i.to_string(), v(i), JoinSize::all(40))
                .await
                .expect("wide join");
            assert!(st.added && st.count == i + 1, "{name}: member {i}: {st:?}");
            completers += u32::from(st.completed);
        }
        assert_eq!(completers, 1, "{name}");
        let items = raw_items(&store, "lay").await;
        assert_eq!(items.len(), 41, "{name}: a head and 40 member items");
        for a in &items {
            assert!(
                matches!(a.get("expires"), Some(AttributeValue::N(_))),
                "{name}: every item has the TTL attribute: {a:?}"
            );
            let sk = s_attr(a, "sk");
            if sk == "lay/W-join@0" {
                assert_eq!(s_attr(a, "kind"), "join");
                assert_eq!(a.get("cnt"), Some(&AttributeValue::N("40".into())));
                assert_eq!(s_attr(a, "done"), "39", "{name}: the completer claimed");
            } else {
                assert_eq!(s_attr(a, "kind"), "jm", "{name}: {sk:?}");
                let m: u32 = sk
                    .strip_prefix("lay/W-join@0\u{1}")
                    .and_then(|m| m.parse().ok())
                    .expect("a member item's key is the join's, U+0001 and the member");
                assert_eq!(
                    a.get("val"),
                    Some(&AttributeValue::B(Blob::new(v(m).to_vec()))),
                    "{name}"
                );
            }
        }
        store.create("lay/A_0", b("a")).await.expect("create");
        let listed = store.list("lay/").await.expect("list");
        assert_eq!(listed.len(), 1, "{name}: list shows the output item only");
        assert_eq!(
            store.delete_prefix("lay/").await.expect("gc"),
            2,
            "{name}: one join and one output item"
        );
        assert!(
            raw_items(&store, "lay").await.is_empty(),
            "{name}: nothing left"
        );
        // A key with the member separator is refused.
        let e = store
            .get("lay/x\u{1}0")
            .await
            .expect_err("separator in a key");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");

        // The largest narrow join, every member at the member limit and with a long name,
        // fits one item (the width threshold raised, so the item size bound decides).
        let table = store.table().to_string();
        let tall = common::store_on(&url, &table, &[("wide_join_above", "100000")]).await;
        let limit = tall.capabilities().join_value_limit as usize;
        let cap = (1..=1000u32)
            .take_while(|c| !tall.is_wide_join(*c))
            .last()
            .expect("some narrow width");
        assert!(cap > 16, "{name}: {cap}");
        let big = |i: u32| {
            let mut b = vec![b'.'; limit];
            b[..4].copy_from_slice(&i.to_le_bytes());
            Bytes::from(b)
        };
        let mut done = None;
        for i in 0..cap {
            let st = tall
                .join(
                    "big/N-join@0",
                    &format!("m{i:0>250}"),
                    big(i),
                    JoinSize::all(cap),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: narrow member {i} of {cap} at the limit: {e}"));
            if st.completed {
                done = Some(st);
            }
        }
        let done = done.expect("a completer");
        assert_eq!(done.members.len(), cap as usize, "{name}");
        let items = raw_items(&store, "big").await;
        assert_eq!(
            items.len(),
            1,
            "{name}: a {cap}-way narrow join is one item"
        );

        // With 64 KiB members, 16 of them would not fit one item: the join is wide.
        let wide64 = common::store_on(&url, &table, &[("join_value_limit", "65536")]).await;
        assert!(wide64.is_wide_join(16), "{name}");
        let fat = |i: u32| Bytes::from(vec![b'a' + i as u8; 65536]);
        let mut done = None;
        for i in 0..16 {
            let st = wide64
                .join("big/F-join@0", &i.to_string(), fat(i), JoinSize::all(16))
                .await
                .unwrap_or_else(|e| panic!("{name}: 64 KiB member {i}: {e}"));
            if st.completed {
                done = Some(st);
            }
        }
        let done = done.expect("a completer");
        for i in 0..16 {
            assert_eq!(done.members[&i.to_string()], fat(i).to_vec(), "{name}");
        }

        // A join begun narrow is not continued wide, nor the other way round.
        let all_wide = common::store_on(&url, &table, &[("wide_join_above", "0")]).await;
        store
            .join("mix/A-join@0", "0", b("x"), JoinSize::all(10))
            .await
            .expect("narrow");
        let e = all_wide
            .join("mix/A-join@0", "1", b("x"), JoinSize::all(10))
            .await
            .expect_err("wide on a narrow join");
        assert!(
            e.kind() == ErrorKind::InvalidInput && e.message().contains("narrow"),
            "{name}: {e}"
        );
        all_wide
            .join("mix/B-join@0", "0", b("x"), JoinSize::all(10))
            .await
            .expect("wide");
        let e = store
            .join("mix/B-join@0", "1", b("x"), JoinSize::all(10))
            .await
            .expect_err("narrow on a wide join");
        assert!(
            e.kind() == ErrorKind::InvalidInput && e.message().contains("wide"),
            "{name}: {e}"
        );
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
