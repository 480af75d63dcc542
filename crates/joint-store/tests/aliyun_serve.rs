//! The Aliyun backend against `joint serve`'s Aliyun-compatible endpoints, in process: the
//! conformance suite for `FcFaas`, `OssBlobStore` and `TablestoreCoordStore`; tampered
//! signatures refused; every invoke mode split between a local cloud and an `aliyun` cloud
//! with identical outputs to the all-local run; datastore operations per step on Tablestore.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use joint_core::workflow::Workflow;
use joint_serve::{ServeState, spawn};
use joint_shim::layers::{Counted, OpCounts};
use joint_shim::{
    BlobStore, Cloud, Clouds, CoordStore, Deliver, ErrorKind, Faas, GcPolicy, Runtime,
    RuntimeConfig, fn_error, handler_fn,
};
use joint_shim_aliyun::{Credential, FcFaas, OssBlobStore};
use joint_shim_local::runner::{RunOptions, deploy, run_local};
use joint_shim_local::{LocalClouds, LocalCloudsBuilder};
use joint_store::tablestore::{TablestoreCoordStore, create_table};
use serde_json::{Value, json};

const AK: &str = "joint-test-ak";
const SK: &str = "joint-test-secret";

struct Served {
    urls: BTreeMap<String, String>,
    local: LocalClouds,
    /// Stops serving when dropped.
    _served: joint_serve::Served,
    _dir: tempfile::TempDir,
}

/// `joint serve --listen fc=… --listen oss=… --listen ots=…` with one local cloud `aliyun`.
async fn start() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalCloudsBuilder::new()
        .state_dir(dir.path())
        .clouds(["aliyun"])
        .build()
        .expect("local clouds");
    let settings = BTreeMap::from([
        ("aliyun.access_key_id".to_string(), AK.to_string()),
        ("aliyun.access_key_secret".to_string(), SK.to_string()),
    ]);
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local.clone(),
        settings,
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let listen = ["fc", "oss", "ots"]
        .iter()
        .map(|n| (n.to_string(), any))
        .collect();
    let served = spawn(state, listen).await.expect("joint serve");
    Served {
        urls: served.urls().clone(),
        local,
        _served: served,
        _dir: dir,
    }
}

fn cred() -> Credential {
    Credential::new(AK, SK)
}

fn fc(s: &Served, c: Credential) -> FcFaas {
    FcFaas::builder()
        .credential(c)
        .endpoint(&s.urls["fc"])
        .build()
        .expect("fc")
}

fn oss(s: &Served, c: Credential) -> OssBlobStore {
    OssBlobStore::builder()
        .credential(c)
        .region("cn-hangzhou")
        .bucket("joint")
        .endpoint(&s.urls["oss"])
        .build()
        .expect("oss")
}

async fn tablestore(s: &Served, c: Credential) -> TablestoreCoordStore {
    let st = TablestoreCoordStore::builder()
        .credential(c)
        .endpoint(&s.urls["ots"])
        .instance("joint-test")
        .table("joint")
        .build()
        .expect("tablestore");
    let _ = create_table(st.client(), "joint", 86_400).await;
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_against_joint_serve() {
    let s = start().await;
    let f = &s.local.faas["aliyun"];
    f.add_raw("echo", handler_fn(|v, _| async move { Ok(v) }));
    f.add_raw(
        "fail",
        handler_fn(|_, _| async move { Err(fn_error("always fails")) }),
    );
    joint_shim::conformance::faas(Arc::new(fc(&s, cred())), "echo", "fail").await;
    joint_shim::conformance::blob_store(Arc::new(oss(&s, cred())), "conf-oss/").await;
    let ts = tablestore(&s, cred()).await;
    assert!(
        !create_table(ts.client(), "joint", 86_400)
            .await
            .expect("second create"),
        "the table exists already"
    );
    joint_shim::conformance::coord_store(Arc::new(ts.clone()), "conf-ots/").await;
    joint_shim::conformance::coord_store(Arc::new(ts), "conf-ots-2/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signatures_are_refused() {
    let s = start().await;
    s.local.faas["aliyun"].add_raw("echo", handler_fn(|v, _| async move { Ok(v) }));
    let wrong = Credential::new(AK, "not-the-secret");
    let e = fc(&s, wrong.clone())
        .invoke_sync("echo", bytes::Bytes::from_static(b"{}"))
        .await
        .expect_err("wrong FC signature");
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(e.provider_code(), Some("SignatureNotMatch"), "{e}");
    let e = oss(&s, wrong.clone())
        .put_new("x/y", bytes::Bytes::from_static(b"1"))
        .await
        .expect_err("wrong OSS signature");
    assert_eq!(e.provider_code(), Some("SignatureDoesNotMatch"), "{e}");
    let e = tablestore(&s, wrong)
        .await
        .get("r/k")
        .await
        .expect_err("wrong OTS signature");
    assert_eq!(e.provider_code(), Some("OTSAuthFailed"), "{e}");
    let other = Credential::new("someone-else", SK);
    let e = fc(&s, other)
        .invoke_sync("echo", bytes::Bytes::new())
        .await
        .expect_err("unknown key");
    assert_eq!(e.provider_code(), Some("InvalidAccessKeyID"), "{e}");
    // The right credential still works: the refusals were about the signatures.
    assert!(
        fc(&s, cred())
            .invoke_sync("echo", bytes::Bytes::from_static(b"1"))
            .await
            .is_ok()
    );
}

/// The Aliyun cloud as the shims reach it, with counters.
async fn aliyun_cloud(s: &Served, counts: &OpCounts) -> (Cloud, TablestoreCoordStore) {
    let ts = tablestore(s, cred()).await;
    let cloud = Cloud {
        name: "aliyun".into(),
        faas: Arc::new(Counted::new(fc(s, cred()), counts.clone())),
        coord: Arc::new(Counted::new(ts.clone(), counts.clone())),
        blob: Arc::new(Counted::new(oss(s, cred()), counts.clone())),
    };
    (cloud, ts)
}

/// Run `w` with its `aliyun` functions executed behind joint serve's FC endpoint and its
/// `aliyun` state in Tablestore/OSS; every other cloud is local.
async fn run_split(w: Workflow, input: Value, counts: &OpCounts) -> (Value, TablestoreCoordStore) {
    let s = start().await;
    let w = Arc::new(w);
    let (cloud, ts) = aliyun_cloud(&s, counts).await;
    let opts = RunOptions {
        remote: vec![cloud.clone()],
        keep: true,
        ..RunOptions::default()
    };
    let dep = deploy(w.clone(), joint_examples::builtin_handlers(), &opts, None).expect("deploy");
    let mut all = Clouds::new();
    for c in dep.clouds.clouds.iter() {
        all.insert(c.clone());
    }
    all.insert(cloud);
    let cfg = RuntimeConfig {
        gc: GcPolicy::Retain,
        ..RuntimeConfig::default()
    };
    let remote_rt = Runtime::new(
        w.clone(),
        all,
        joint_examples::builtin_handlers(),
        cfg,
        None,
    )
    .expect("runtime");
    s.local.attach(Arc::new(remote_rt) as Arc<dyn Deliver>);
    let run = format!("r{}", uuid_like());
    dep.runtime.start(&run, input).await.expect("start");
    let t0 = Instant::now();
    let rec = loop {
        // Poll the local clouds only, so the polling does not count as Tablestore reads.
        if let Some(r) = joint_shim::runtime::find_run_record(&dep.clouds.clouds, &run, None)
            .await
            .expect("record")
        {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{}: no result in 60 s",
            w.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = dep
        .runtime
        .resolve_output(&rec)
        .await
        .expect("resolve")
        .expect("succeeded");
    dep.clouds.idle().await;
    s.local.idle().await;
    (out, ts)
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

type Remap = Box<dyn Fn(&str) -> String>;

fn place(src: &str, function: &str) -> String {
    src.replace(
        &format!("  - name: {function}\n"),
        &format!("  - name: {function}\n    cloud: aliyun\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invoke_mode_split_between_local_and_aliyun() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let cases: Vec<(&str, Value, Remap)> = vec![
        (
            "chain.yaml",
            json!(3),
            Box::new(|s| s.replace("local-b", "aliyun")),
        ),
        (
            "parallel.yaml",
            json!(3),
            Box::new(|s| s.replace("local-b", "aliyun")),
        ),
        (
            "map.yaml",
            json!({"n": 6}),
            Box::new(|s| place(s, "square")),
        ),
        ("choice.yaml", json!(12), Box::new(|s| place(s, "big"))),
        ("choice.yaml", json!(4), Box::new(|s| place(s, "small"))),
        (
            "cycle.yaml",
            json!({"i": 0}),
            Box::new(|s| place(s, "body")),
        ),
    ];
    for (file, input, remap) in cases {
        let src = std::fs::read_to_string(dir.join(file)).expect("example");
        let local =
            joint_core::compile::load(file, &src).unwrap_or_else(|d| panic!("{file}: {d:?}"));
        let split_src = remap(&src);
        assert_ne!(split_src, src, "{file}: nothing placed on aliyun");
        let split =
            joint_core::compile::load(file, &split_src).unwrap_or_else(|d| panic!("{file}: {d:?}"));
        assert!(split.clouds.iter().any(|c| c == "aliyun"), "{file}");
        let want = run_local(
            Arc::new(local),
            joint_examples::builtin_handlers(),
            RunOptions {
                input: input.clone(),
                ..RunOptions::default()
            },
        )
        .await
        .expect("local run")
        .output
        .expect("local output");
        let counts = OpCounts::new();
        let (got, ts) = run_split(split, input.clone(), &counts).await;
        assert_eq!(
            got, want,
            "{file} with input {input}: split run differs from the all-local run"
        );
        let ops = counts.snapshot();
        assert!(
            ops.invoke_async >= 1,
            "{file}: something was invoked on FC: {ops:?}"
        );
        assert!(
            ops.coord_create >= 1,
            "{file}: something was checkpointed in Tablestore: {ops:?}"
        );
        println!(
            "{file} {input}: {got} — aliyun ops {ops:?}, Tablestore requests {:?}",
            ts.client().request_counts()
        );
    }
}

/// Datastore operations per step on Tablestore: the step under study runs alone on `aliyun`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn datastore_operations_per_step_on_tablestore() {
    let shapes = [
        (
            "Sequence step",
            "3W+2R",
            "workflow: seq\nfunctions:\n  - {name: first, cloud: local-a, handler: inc, next: [{to: mid}]}\n  - {name: mid, cloud: aliyun, handler: inc, next: [{to: last}]}\n  - {name: last, cloud: local-a, handler: inc}\n",
            json!(1),
        ),
        (
            "fan-in branch",
            "5W+4R",
            "workflow: fan\nfunctions:\n  - {name: A, cloud: local-a, handler: echo, next: [{to: B}, {to: C}]}\n  - {name: B, cloud: aliyun, handler: inc, next: [{to: D, mode: fan_in}]}\n  - {name: C, cloud: local-a, handler: square, next: [{to: D, mode: fan_in}]}\n  - {name: D, cloud: local-b, handler: sum}\n",
            json!(3),
        ),
        (
            "32-way Map initiator",
            "6W+2R",
            "workflow: map32\nfunctions:\n  - {name: head, cloud: local-a, handler: echo, next: [{to: split}]}\n  - {name: split, cloud: aliyun, handler: split, output: list, next: [{to: sq, mode: map}]}\n  - {name: sq, cloud: local-a, handler: square, next: [{to: total, mode: fan_in}]}\n  - {name: total, cloud: local-b, handler: sum}\n",
            json!({"n": 32}),
        ),
    ];
    println!(
        "\n| step | joint on Tablestore (trait ops) | Tablestore requests | paper |\n|---|---|---|---|"
    );
    for (what, paper, src, input) in shapes {
        let w = joint_core::compile::load("ops.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
        let counts = OpCounts::new();
        let (_out, ts) = run_split(w, input, &counts).await;
        let s = counts.snapshot();
        let reqs = ts.client().request_counts();
        let reads =
            reqs.get("GetRow").copied().unwrap_or(0) + reqs.get("GetRange").copied().unwrap_or(0);
        let writes: u64 = reqs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "GetRow" | "GetRange" | "CreateTable"))
            .map(|(_, v)| *v)
            .sum();
        println!(
            "| {what} | {}W+{}R (create {}, add_invoked {}, join {}, get {}) | {writes}W+{reads}R {reqs:?} | {paper} |",
            s.writes(),
            s.reads(),
            s.coord_create,
            s.coord_add_invoked,
            s.coord_join,
            s.coord_get
        );
        // The step's round trips, exactly (eager policy): one consistent read, one
        // create-if-absent, and at most one invoked-set update (a non-completing fan-in branch
        // records nothing). On Tablestore the invoked-set update is an UpdateRow plus a GetRow.
        assert_eq!(s.coord_get, 1, "{what}: {s:?}");
        assert_eq!(s.coord_create, 1, "{what}: {s:?}");
        assert!(s.coord_add_invoked <= 1, "{what}: {s:?}");
        assert_eq!(
            reqs.get("PutRow").copied().unwrap_or(0),
            1,
            "{what}: {reqs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tablestore_store_conforms_when_it_signs_with_sign_v4() {
    let s = start().await;
    let build = |version: &str| {
        TablestoreCoordStore::builder()
            .credential(cred())
            .with_config("ots_endpoint", &s.urls["ots"])
            .with_config("instance", "joint-test")
            .with_config("table", "joint")
            .with_config("region", "cn-hangzhou")
            .with_config("ots_sign_version", version)
            .build()
    };
    let ts = build("v4").expect("a SignV4 store");
    let _ = create_table(ts.client(), "joint", 86_400).await;
    joint_shim::conformance::coord_store(Arc::new(ts), "conf-ots-v4/").await;
    let e = build("v3").expect_err("an unknown version");
    assert!(e.contains("ots_sign_version") && e.contains("v3"), "{e}");
    let e = TablestoreCoordStore::builder()
        .credential(cred())
        .with_config("ots_endpoint", &s.urls["ots"])
        .with_config("instance", "joint-test")
        .with_config("ots_sign_version", "v4")
        .build()
        .expect_err("v4 without a region");
    assert!(e.contains("region"), "{e}");
}

/// `joint serve`'s Tablestore reads a wide row by pages as Tablestore does: `start_column` /
/// `end_column` bound the columns, a ColumnPaginationFilter skips `offset` of them and returns
/// at most `limit`. A value filter on a read keeps or drops the row, as Tablestore's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_rows_are_read_by_column_pages() {
    use joint_shim_aliyun::ots::proto;
    use joint_shim_aliyun::ots::{
        Cell, Row, Value as V, column_pagination_filter, single_column_filter,
    };
    use prost::Message;
    let s = start().await;
    let ts = tablestore(&s, cred()).await;
    let pk = || {
        vec![
            ("p", V::String("wide".into())),
            ("k", V::String("wide/row".into())),
        ]
    };
    let mut row = Row::with_pk(pk());
    for i in 0..20 {
        row = row.cell(Cell::put(&format!("m_{i:02}"), V::Integer(i)));
    }
    let row = row.cell(Cell::put("n", V::Integer(20)));
    let _: proto::PutRowResponse = ts
        .client()
        .call(
            "PutRow",
            &proto::PutRowRequest {
                table_name: "joint".into(),
                row: row.encode(),
                condition: proto::Condition {
                    row_existence: proto::RowExistenceExpectation::Ignore as i32,
                    column_condition: None,
                },
                return_content: None,
                transaction_id: None,
            },
        )
        .await
        .expect("put a wide row");
    let read = |start: Option<&str>, end: Option<&str>, filter: Option<proto::Filter>| {
        let req = proto::GetRowRequest {
            table_name: "joint".into(),
            primary_key: Row::with_pk(pk()).encode(),
            columns_to_get: vec![],
            time_range: None,
            max_versions: Some(1),
            filter: filter.map(|f| f.encode_to_vec()),
            start_column: start.map(str::to_string),
            end_column: end.map(str::to_string),
            token: None,
            transaction_id: None,
        };
        let client = ts.client().clone();
        async move {
            client
                .call::<_, proto::GetRowResponse>("GetRow", &req)
                .await
                .map(|r| {
                    Row::decode(&r.row)
                        .expect("a row")
                        .map(|r| r.cells.into_iter().map(|c| c.name).collect::<Vec<_>>())
                        .unwrap_or_default()
                })
        }
    };
    let names = |r: std::ops::Range<i32>| r.map(|i| format!("m_{i:02}")).collect::<Vec<_>>();
    assert_eq!(
        read(None, None, Some(column_pagination_filter(3, 4)))
            .await
            .expect("page"),
        names(3..7),
        "offset 3, limit 4"
    );
    assert_eq!(
        read(
            Some("m_10"),
            Some("m`"),
            Some(column_pagination_filter(0, 4))
        )
        .await
        .expect("page"),
        names(10..14),
        "a page from start_column"
    );
    assert_eq!(
        read(
            Some("m_18"),
            Some("m`"),
            Some(column_pagination_filter(0, 4))
        )
        .await
        .expect("page"),
        names(18..20),
        "the last page is short, end_column excludes n"
    );
    // A value filter is evaluated on the columns read: it keeps or drops the whole row.
    let filter = |v: i64| {
        Some(single_column_filter(
            "n",
            proto::ComparatorType::CtEqual,
            &V::Integer(v),
            true,
        ))
    };
    assert_eq!(read(None, None, filter(20)).await.expect("kept").len(), 21);
    assert!(
        read(None, None, filter(21))
            .await
            .expect("dropped")
            .is_empty()
    );
    let e = read(None, None, Some(column_pagination_filter(0, 0)))
        .await
        .expect_err("limit 0");
    assert_eq!(e.code, "OTSParameterInvalid", "{e}");
}

/// A 10,000-way Map whose fan-in joins in Tablestore (the aggregator runs on `aliyun`): every
/// branch adds its member through joint serve's OTS endpoint, one completes the join and reads
/// the 10,000 members in pages, and the aggregator runs once with all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_way_fan_in_joins_in_tablestore() {
    let n: u64 = 10_000;
    let src = "workflow: wide\nfunctions:\n  - {name: split, cloud: local-a, handler: split, next: [{to: work, mode: map}]}\n  - {name: work, cloud: local-b, handler: square, checkpoint: lazy, next: [{to: total, mode: fan_in}]}\n  - {name: total, cloud: aliyun, handler: sum}\n";
    let w = joint_core::compile::load("wide.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
    let counts = OpCounts::new();
    let (out, ts) = run_split(w, json!({ "n": n }), &counts).await;
    assert_eq!(
        out,
        json!((n - 1) * n * (2 * n - 1) / 6),
        "the sum of the squares below {n}"
    );
    let ops = counts.snapshot();
    assert_eq!(ops.coord_join, n, "one join per branch: {ops:?}");
    assert_eq!(
        ops.invoke_async, 1,
        "the aggregator is invoked once: {ops:?}"
    );
    let reqs = ts.client().request_counts();
    println!("{n}-way fan-in on Tablestore: aliyun ops {ops:?}, requests {reqs:?}");
    assert_eq!(
        reqs.get("UpdateRow").copied(),
        Some(n),
        "one UpdateRow per member: {reqs:?}"
    );
}
