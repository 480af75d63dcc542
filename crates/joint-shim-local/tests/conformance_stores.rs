//! Conformance and specific tests of the SQLite coordination store and the filesystem blob store.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use joint_shim::JoinSize;
use joint_shim::{BlobStore, CoordStore, Created, ErrorKind};
use joint_shim_local::{FsBlobStore, SqliteCoordStore};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteCoordStore::open(dir.path().join("nested/dir/coord.db"), "local-a").unwrap();
    joint_shim::conformance::coord_store(Arc::new(store.clone()), "conf-file/").await;
    // Twice on the same file: prefixes keep runs apart and cleanup leaves nothing behind.
    joint_shim::conformance::coord_store(Arc::new(store), "conf-file-2/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_memory_conformance() {
    let store = SqliteCoordStore::in_memory("local-a").unwrap();
    joint_shim::conformance::coord_store(Arc::new(store), "conf-mem/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::new(dir.path().join("blobs"), "local-a").unwrap();
    joint_shim::conformance::blob_store(Arc::new(store.clone()), "conf-fs/").await;
    // Keys at the root level and an empty prefix.
    joint_shim::conformance::blob_store(Arc::new(store), "").await;
}

#[test]
fn debug_shows_path_and_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let s = SqliteCoordStore::open(&path, "cloudy").unwrap();
    let d = format!("{s:?}");
    assert!(d.contains("c.db") && d.contains("sqlite(cloudy)"), "{d}");
    let m = SqliteCoordStore::in_memory("m").unwrap();
    assert!(format!("{m:?}").contains(":memory:"));
    assert_eq!(s.path(), Some(path.as_path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_item_limit_is_configurable() {
    let s = SqliteCoordStore::in_memory("x")
        .unwrap()
        .with_item_limit(100_000);
    assert_eq!(s.capabilities().item_limit, 100_000);
    assert_eq!(s.capabilities().join_value_limit, 4096);
    assert_eq!(s.capabilities().max_join_width, None);
    assert!(s.capabilities().atomic_join && s.capabilities().consistent_read);
    let err = s
        .create("k", Bytes::from(vec![0u8; 100_001]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert!(err.to_string().contains("sqlite(x)"), "{err}");
    assert_eq!(s.get("k").await.unwrap(), None, "nothing written");
    assert_eq!(
        s.create("k", Bytes::from(vec![0u8; 100_000]))
            .await
            .unwrap(),
        Created::New
    );
}

/// Two stores on one file stand for two processes: each has its own connection, so only
/// SQLite's file locking and the IMMEDIATE transactions keep them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_connections_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteCoordStore::open(&path, "local-a").unwrap();
    let c = SqliteCoordStore::open(&path, "local-a").unwrap();
    let stores: Vec<Arc<dyn CoordStore>> = vec![Arc::new(a.clone()), Arc::new(c.clone())];

    for round in 0..20 {
        let key = format!("run/{round}/A_0");
        let rs = join_all((0..8).map(|i| {
            let s = stores[i % 2].clone();
            let key = key.clone();
            async move { s.create(&key, Bytes::from(format!("w{i}"))).await }
        }))
        .await;
        let news = rs.iter().filter(|r| matches!(r, Ok(Created::New))).count();
        assert_eq!(news, 1, "round {round}: {rs:?}");
        let winner = c.get(&key).await.unwrap().unwrap().value;
        for r in &rs {
            match r {
                Ok(Created::Existing(it)) => assert_eq!(it.value, winner),
                Ok(Created::New) => {}
                Err(e) => panic!("create failed: {e}"),
            }
        }
    }

    let n = 64u32;
    let jk = "run/join@0";
    let rs = join_all((0..n).map(|i| {
        let s = stores[i as usize % 2].clone();
        async move {
            s.join(
                jk,
                &format!("m{i}"),
                Bytes::from(format!("v{i}")),
                JoinSize::all(n),
            )
            .await
        }
    }))
    .await;
    let rs: Vec<_> = rs.into_iter().map(|r| r.unwrap()).collect();
    let completers: Vec<_> = rs.iter().filter(|s| s.completed).collect();
    assert_eq!(completers.len(), 1);
    assert_eq!(completers[0].count, n);
    assert_eq!(completers[0].members.len(), n as usize);
    assert!(
        rs.iter().all(|s| s.added),
        "every distinct member is added once"
    );
    let mut counts: Vec<u32> = rs.iter().map(|s| s.count).collect();
    counts.sort();
    assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "counts are serialised");

    // Writes through one connection are visible to the other.
    a.add_invoked("run/0/A_0", &["B_1".into()]).await.unwrap();
    let got = c.get("run/0/A_0").await.unwrap().unwrap();
    assert!(got.invoked.contains("B_1"));
    assert_eq!(c.list("run/").await.unwrap().len(), 20);
    assert_eq!(c.delete_prefix("run/").await.unwrap(), 21);
    assert!(a.list("run/").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_ten_thousand_way_join() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SqliteCoordStore::open(dir.path().join("c.db"), "local-a").unwrap());
    let n = 10_000u32;
    let key = "run/agg-join@0";
    let rs = join_all((0..n).map(|i| {
        let s = s.clone();
        async move {
            s.join(
                key,
                &i.to_string(),
                Bytes::from(i.to_string()),
                JoinSize::all(n),
            )
            .await
        }
    }))
    .await;
    let mut completers = 0;
    for r in rs {
        let st = r.unwrap();
        assert!(st.added);
        assert_eq!(
            st.completed,
            st.count == n,
            "one insert takes the count to n"
        );
        if st.completed {
            completers += 1;
            assert_eq!(st.members.len(), n as usize);
            assert_eq!(st.members["42"], b"42".to_vec());
        } else {
            assert!(st.members.is_empty(), "members only once complete");
        }
    }
    assert_eq!(completers, 1);
    let dup = s.join(key, "7", b("x"), JoinSize::all(n)).await.unwrap();
    assert!(!dup.added && dup.count == n && dup.members["7"] == b"7".to_vec());
    assert!(!dup.completed || dup.members.len() == n as usize);
    assert_eq!(s.delete_prefix("run/").await.unwrap(), 1, "one join key");
}

#[tokio::test]
async fn sqlite_prefix_is_exact() {
    let s = SqliteCoordStore::in_memory("x").unwrap();
    for k in ["a_b/1", "aXb/1", "a%b/1", "a_b0", "a_c", "a_b/2"] {
        s.create(k, b(k)).await.unwrap();
    }
    let keys: Vec<String> = s
        .list("a_b/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["a_b/1", "a_b/2"]);
    let keys: Vec<String> = s
        .list("a%")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["a%b/1"]);
    assert_eq!(s.list("").await.unwrap().len(), 6);
    assert_eq!(s.delete_prefix("a_b").await.unwrap(), 3);
    assert_eq!(s.list("").await.unwrap().len(), 3);
}

/// The members are read for the completer and for calls that did not add theirs, not for a
/// later member of a complete k-of-n join (an n-way join reads its members O(1) times).
#[tokio::test]
async fn sqlite_join_members_only_for_the_completer_and_redeliveries() {
    let s = SqliteCoordStore::in_memory("x").unwrap();
    let j1 = s
        .join(
            "j",
            "a",
            b("1"),
            JoinSize {
                capacity: 3,
                complete_at: 2,
            },
        )
        .await
        .unwrap();
    assert!(j1.added && j1.count == 1 && j1.members.is_empty() && !j1.completed);
    let j2 = s
        .join(
            "j",
            "b",
            b("2"),
            JoinSize {
                capacity: 3,
                complete_at: 2,
            },
        )
        .await
        .unwrap();
    assert!(j2.added && j2.count == 2 && j2.members.len() == 2 && j2.completed);
    let j3 = s
        .join(
            "j",
            "c",
            b("3"),
            JoinSize {
                capacity: 3,
                complete_at: 2,
            },
        )
        .await
        .unwrap();
    assert!(j3.added && j3.count == 3 && j3.members.is_empty() && !j3.completed);
    // The completer redelivered is told it completed the join again; another member is not.
    let b2 = s
        .join(
            "j",
            "b",
            b("x"),
            JoinSize {
                capacity: 3,
                complete_at: 2,
            },
        )
        .await
        .unwrap();
    assert!(!b2.added && b2.completed && b2.members.len() == 3, "{b2:?}");
    let a2 = s
        .join(
            "j",
            "a",
            b("x"),
            JoinSize {
                capacity: 3,
                complete_at: 2,
            },
        )
        .await
        .unwrap();
    assert!(
        !a2.added && !a2.completed && a2.members.len() == 3,
        "{a2:?}"
    );
    // Joins are not items.
    assert!(s.list("").await.unwrap().is_empty());
    assert_eq!(s.get("j").await.unwrap(), None);
}

#[tokio::test]
async fn fs_refuses_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let s = FsBlobStore::new(&root, "local-a").unwrap();
    std::fs::write(dir.path().join("secret"), "s").unwrap();
    for bad in [
        "../secret",
        "a/../../secret",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\\..\\secret",
        "a\0b",
        "",
        "trailing/",
        "x/.joint-tmp-1",
    ] {
        let e = s.put_new(bad, b("x")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "put {bad:?}: {e}");
        assert!(e.to_string().contains("fs(local-a)"), "{e}");
        assert_eq!(e.target(), bad, "the error names the key");
        let e = s.get(bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "get {bad:?}: {e}");
    }
    for bad in ["../", "/", "a/../"] {
        let e = s.delete_prefix(bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "delete {bad:?}: {e}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret")).unwrap(),
        "s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(FsBlobStore::new(dir.path(), "local-a").unwrap());
    s.put_new("run/A_0.out.1", b("first")).await.unwrap();
    let rs = join_all((0..16).map(|i| {
        let s = s.clone();
        async move {
            s.put_new("run/A_0.out.1", Bytes::from(vec![b'z'; 10_000 + i]))
                .await
        }
    }))
    .await;
    for r in rs {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::AlreadyExists);
    }
    assert_eq!(s.get("run/A_0.out.1").await.unwrap(), b("first"));
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["A_0.out.1"]);
}

#[tokio::test]
async fn fs_prefix_delete_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsBlobStore::new(dir.path(), "local-a").unwrap();
    for k in [
        "_runs/abc.out.123",
        "_runs/abc.out.124",
        "_runs/abc.outx",
        "_runs/abd.out.1",
        "run1/x",
        "run1/deep/y/z",
        "run10/x",
        "run1.txt",
    ] {
        s.put_new(k, b(k)).await.unwrap();
    }
    // A stray temp file of a crashed writer is not a blob.
    std::fs::write(dir.path().join("_runs/.joint-tmp-1-2-3"), "t").unwrap();
    assert_eq!(s.delete_prefix("_runs/abc.out.").await.unwrap(), 2);
    assert!(s.get("_runs/abc.outx").await.is_ok());
    assert_eq!(s.delete_prefix("run1/").await.unwrap(), 2);
    assert!(s.get("run10/x").await.is_ok());
    assert!(s.get("run1.txt").await.is_ok());
    assert!(!dir.path().join("run1").exists(), "emptied dirs removed");
    assert_eq!(
        s.delete_prefix("run1").await.unwrap(),
        2,
        "run1.txt and run10/x"
    );
    assert_eq!(
        s.get("run1.txt").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.delete_prefix("").await.unwrap(), 2);
    assert_eq!(s.delete_prefix("nothing/here/").await.unwrap(), 0);
}

#[tokio::test]
async fn fs_blob_dir_conflicts_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsBlobStore::new(dir.path(), "local-a").unwrap();
    s.put_new("a/b", b("1")).await.unwrap();
    let e = s.put_new("a/b/c", b("2")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        s.get("a/b/c").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    s.put_new("x/y/z", b("3")).await.unwrap();
    let e = s.put_new("x/y", b("4")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(s.get("x/y").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.capabilities().max_object, 5 * 1024 * 1024 * 1024);
    assert!(s.capabilities().create_only);
}

#[tokio::test]
async fn exact_key_delete_is_counted_as_a_write() {
    use joint_shim::layers::{Counted, OpCounts};
    let counts = OpCounts::new();
    let store = Counted::new(
        SqliteCoordStore::in_memory("c").expect("memory"),
        counts.clone(),
    );
    store.create("r/A_0", b("v")).await.expect("create");
    assert!(store.delete("r/A_0").await.expect("delete"));
    assert!(!store.delete("r/A_0").await.expect("delete again"));
    store.delete_prefix("r/").await.expect("gc");
    let s = counts.snapshot();
    assert_eq!(s.coord_delete_key, 2, "{s:?}");
    assert_eq!(s.coord_delete, 1, "prefix deletes are counted apart: {s:?}");
    assert_eq!(s.writes(), 3, "one create and two deletes: {s:?}");
}
