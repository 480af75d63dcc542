//! `joint serve`'s Tablestore endpoint under hostile and unusual requests: bounded filters (a
//! deeply nested condition is refused, the server survives), filters, time ranges and
//! versions on reads, explicit timestamps, and what is not implemented refused as such.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use joint_serve::{ServeState, spawn};
use joint_shim_aliyun::Credential;
use joint_shim_aliyun::ots::proto::{self, ComparatorType, LogicalOperator};
use joint_shim_aliyun::ots::{Cell, CellOp, OtsClient, OtsError, Row, Value};
use joint_shim_aliyun::ots::{composite_filter, single_column_filter};
use joint_shim_local::LocalCloudsBuilder;
use prost::Message;

const AK: &str = "joint-test-ak";
const SK: &str = "joint-test-secret";

struct Ots {
    client: OtsClient,
    _served: joint_serve::Served,
}

async fn start() -> Ots {
    let local = LocalCloudsBuilder::new()
        .clouds(["aliyun"])
        .build()
        .expect("local clouds");
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local,
        settings: BTreeMap::from([
            ("aliyun.access_key_id".to_string(), AK.to_string()),
            ("aliyun.access_key_secret".to_string(), SK.to_string()),
        ]),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let served = spawn(state, vec![("ots".into(), any)])
        .await
        .expect("serve");
    let client = OtsClient::builder()
        .endpoint(served.url("ots").expect("url"))
        .instance("joint-test")
        .credential(Credential::new(AK, SK))
        .build()
        .expect("client");
    let ots = Ots {
        client,
        _served: served,
    };
    ots.create("t", None).await.expect("create table");
    ots
}

fn pk(k: &str) -> Row {
    Row::with_pk(vec![("k", Value::String(k.into()))])
}

fn cond(filter: Option<proto::Filter>) -> proto::Condition {
    proto::Condition {
        row_existence: 0,
        column_condition: filter.map(|f| f.encode_to_vec()),
    }
}

fn eq(col: &str, v: i64) -> proto::Filter {
    single_column_filter(col, ComparatorType::CtEqual, &Value::Integer(v), false)
}

impl Ots {
    async fn create(&self, name: &str, opts: Option<proto::TableOptions>) -> Result<(), OtsError> {
        let req = proto::CreateTableRequest {
            table_meta: proto::TableMeta {
                table_name: name.into(),
                primary_key: vec![proto::PrimaryKeySchema {
                    name: "k".into(),
                    r#type: proto::PrimaryKeyType::String as i32,
                    option: None,
                }],
            },
            reserved_throughput: proto::ReservedThroughput {
                capacity_unit: proto::CapacityUnit {
                    read: Some(0),
                    write: Some(0),
                },
            },
            table_options: opts,
        };
        self.client
            .call::<_, proto::CreateTableResponse>("CreateTable", &req)
            .await
            .map(|_| ())
    }

    async fn put(&self, row: Row) -> Result<(), OtsError> {
        let req = proto::PutRowRequest {
            table_name: "t".into(),
            row: row.encode(),
            condition: cond(None),
            return_content: None,
            transaction_id: None,
        };
        self.client
            .call::<_, proto::PutRowResponse>("PutRow", &req)
            .await
            .map(|_| ())
    }

    async fn update(&self, row: Row, c: proto::Condition) -> Result<(), OtsError> {
        let req = proto::UpdateRowRequest {
            table_name: "t".into(),
            row_change: row.encode(),
            condition: c,
            return_content: None,
            transaction_id: None,
        };
        self.client
            .call::<_, proto::UpdateRowResponse>("UpdateRow", &req)
            .await
            .map(|_| ())
    }

    async fn get(&self, mut req: proto::GetRowRequest) -> Result<Option<Row>, OtsError> {
        req.table_name = "t".into();
        let r: proto::GetRowResponse = self.client.call("GetRow", &req).await?;
        Ok(Row::decode(&r.row).expect("row"))
    }
}

fn get_req(k: &str) -> proto::GetRowRequest {
    proto::GetRowRequest {
        table_name: "t".into(),
        primary_key: pk(k).encode(),
        max_versions: Some(1),
        ..proto::GetRowRequest::default()
    }
}

#[tokio::test]
async fn a_deeply_nested_condition_is_refused_and_the_server_survives() {
    let ots = start().await;
    ots.put(pk("r").cell(Cell::put("n", Value::Integer(1))))
        .await
        .expect("put");
    let mut f = eq("n", 1);
    for _ in 0..1000 {
        f = composite_filter(LogicalOperator::LoNot, vec![f]);
    }
    let e = ots
        .update(
            pk("r").cell(Cell::put("m", Value::Integer(2))),
            cond(Some(f.clone())),
        )
        .await
        .expect_err("a 1000-deep condition is refused");
    assert_eq!(
        (e.status, e.code.as_str()),
        (400, "OTSParameterInvalid"),
        "{e:?}"
    );
    // The same filter on a read.
    let mut req = get_req("r");
    req.filter = Some(f.encode_to_vec());
    let e = ots
        .get(req)
        .await
        .expect_err("a 1000-deep filter is refused");
    assert_eq!(e.code, "OTSParameterInvalid", "{e:?}");
    // More than 10 conditions, however flat.
    let wide = composite_filter(
        LogicalOperator::LoAnd,
        (0..11).map(|i| eq("n", i)).collect(),
    );
    let e = ots
        .update(
            pk("r").cell(Cell::put("m", Value::Integer(2))),
            cond(Some(wide)),
        )
        .await
        .expect_err("11 conditions are refused");
    assert_eq!(e.code, "OTSParameterInvalid", "{e:?}");
    // The server is alive and the row unchanged.
    let row = ots.get(get_req("r")).await.expect("get").expect("row");
    assert_eq!(row.get("n"), Some(&Value::Integer(1)));
    assert_eq!(row.get("m"), None);
    // A condition within the bounds still works.
    let ok = composite_filter(LogicalOperator::LoNot, vec![eq("n", 2)]);
    ots.update(
        pk("r").cell(Cell::put("m", Value::Integer(2))),
        cond(Some(ok)),
    )
    .await
    .expect("a shallow condition passes");
}

#[tokio::test]
async fn reads_apply_filters_time_ranges_and_versions() {
    let ots = start().await;
    for (k, n) in [("a", 1), ("b", 2), ("c", 3)] {
        ots.put(
            pk(k)
                .cell(Cell::put("n", Value::Integer(n)))
                .cell(Cell::put("s", Value::String(format!("v{n}")))),
        )
        .await
        .expect("put");
    }
    // GetRow: a row the filter drops is not returned.
    let mut req = get_req("b");
    req.filter = Some(eq("n", 1).encode_to_vec());
    assert!(ots.get(req.clone()).await.expect("get").is_none());
    req.filter = Some(eq("n", 2).encode_to_vec());
    assert!(ots.get(req.clone()).await.expect("get").is_some());
    // The filter sees the columns read: `n` left out is missing to it.
    req.columns_to_get = vec!["s".into()];
    assert!(
        ots.get(req).await.expect("get").is_none(),
        "filter_if_missing"
    );
    // GetRange: only the rows that pass.
    let range = proto::GetRangeRequest {
        table_name: "t".into(),
        direction: proto::Direction::Forward as i32,
        max_versions: Some(1),
        inclusive_start_primary_key: Row::with_pk(vec![("k", Value::InfMin)]).encode(),
        exclusive_end_primary_key: Row::with_pk(vec![("k", Value::InfMax)]).encode(),
        filter: Some(
            single_column_filter(
                "n",
                ComparatorType::CtGreaterEqual,
                &Value::Integer(2),
                false,
            )
            .encode_to_vec(),
        ),
        ..proto::GetRangeRequest::default()
    };
    let r: proto::GetRangeResponse = ots.client.call("GetRange", &range).await.expect("range");
    let rows = joint_shim_aliyun::ots::plainbuffer::decode_rows(&r.rows).expect("rows");
    let keys: Vec<_> = rows.iter().map(|r| r.pk_value("k").cloned()).collect();
    assert_eq!(
        keys,
        [
            Some(Value::String("b".into())),
            Some(Value::String("c".into()))
        ]
    );

    // Explicit timestamps: one version is kept, the newest; time ranges select by timestamp.
    let now = joint_shim_aliyun::Timestamp::now().unix_millis();
    let at = |v: i64, ts: i64| Cell {
        timestamp: Some(ts),
        ..Cell::put("v", Value::Integer(v))
    };
    ots.put(pk("ts").cell(at(1, now - 2000)))
        .await
        .expect("put");
    ots.update(pk("ts").cell(at(0, now - 5000)), cond(None))
        .await
        .expect("an older version");
    let row = ots.get(get_req("ts")).await.expect("get").expect("row");
    assert_eq!(
        row.get("v"),
        Some(&Value::Integer(1)),
        "the newest version wins"
    );
    let mut req = get_req("ts");
    req.max_versions = None;
    req.time_range = Some(proto::TimeRange {
        start_time: Some(now - 1000),
        end_time: Some(now + 1000),
        specific_time: None,
    });
    let row = ots.get(req.clone()).await.expect("get").expect("row");
    assert_eq!(row.get("v"), None, "outside the time range");
    req.time_range = Some(proto::TimeRange {
        specific_time: Some(now - 2000),
        ..proto::TimeRange::default()
    });
    let row = ots.get(req).await.expect("get").expect("row");
    assert_eq!(row.get("v"), Some(&Value::Integer(1)));
    // Deleting one version deletes that version only.
    let del = |ts| Cell {
        op: Some(CellOp::DeleteOne),
        timestamp: Some(ts),
        ..Cell::delete_all("v")
    };
    ots.update(pk("ts").cell(del(now - 9999)), cond(None))
        .await
        .expect("delete another version");
    assert!(
        ots.get(get_req("ts"))
            .await
            .expect("get")
            .expect("row")
            .get("v")
            .is_some()
    );
    ots.update(pk("ts").cell(del(now - 2000)), cond(None))
        .await
        .expect("delete this version");
    assert!(
        ots.get(get_req("ts"))
            .await
            .expect("get")
            .expect("row")
            .get("v")
            .is_none()
    );
    // A timestamp too far from now (the default deviation is a day).
    let e = ots
        .put(pk("old").cell(at(1, now - 3 * 86_400_000)))
        .await
        .expect_err("deviating timestamp");
    assert_eq!(e.code, "OTSParameterInvalid", "{e:?}");
    // Neither max_versions nor time_range.
    let mut req = get_req("a");
    req.max_versions = None;
    assert_eq!(
        ots.get(req).await.expect_err("no versions").code,
        "OTSParameterInvalid"
    );
}

#[tokio::test]
async fn sign_v4_requests_are_verified_and_answered_with_the_v4_key() {
    let ots = start().await;
    let url = ots.client.endpoint().to_string();
    let client = |secret: &str, region: &str| {
        OtsClient::builder()
            .endpoint(url.clone())
            .instance("joint-test")
            .credential(Credential::new(AK, secret))
            .sign_version(joint_shim_aliyun::sign::ots::SignVersion::V4 {
                region: region.into(),
            })
            .build()
            .expect("client")
    };
    // The client checks the response Authorization: it must be signed with the V4 key.
    let tables: proto::ListTableResponse = client(SK, "cn-hangzhou")
        .call("ListTable", &proto::ListTableRequest {})
        .await
        .expect("a SignV4 request passes");
    assert_eq!(tables.table_names, ["t"]);
    let e = client("tampered", "cn-hangzhou")
        .call::<_, proto::ListTableResponse>("ListTable", &proto::ListTableRequest {})
        .await
        .expect_err("wrong secret");
    assert_eq!((e.status, e.code.as_str()), (403, "OTSAuthFailed"), "{e:?}");
}

#[tokio::test]
async fn a_v4_request_for_another_region_is_refused() {
    let local = LocalCloudsBuilder::new()
        .clouds(["aliyun"])
        .build()
        .expect("local clouds");
    let state = Arc::new(ServeState {
        runtime: None,
        clouds: local,
        settings: BTreeMap::from([
            ("aliyun.access_key_id".to_string(), AK.to_string()),
            ("aliyun.access_key_secret".to_string(), SK.to_string()),
            ("ots.region".to_string(), "cn-hangzhou".to_string()),
        ]),
    });
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let served = spawn(state, vec![("ots".into(), any)])
        .await
        .expect("serve");
    for (region, ok) in [("cn-hangzhou", true), ("cn-beijing", false)] {
        let r = OtsClient::builder()
            .endpoint(served.url("ots").expect("url"))
            .instance("joint-test")
            .credential(Credential::new(AK, SK))
            .sign_version(joint_shim_aliyun::sign::ots::SignVersion::V4 {
                region: region.into(),
            })
            .build()
            .expect("client")
            .call::<_, proto::ListTableResponse>("ListTable", &proto::ListTableRequest {})
            .await;
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => assert_eq!(e.code, "OTSAuthFailed", "{e:?}"),
            (r, _) => panic!("{region}: {r:?}"),
        }
    }
}

#[tokio::test]
async fn expired_cells_are_not_read() {
    let ots = start().await;
    ots.create(
        "ttl",
        Some(proto::TableOptions {
            time_to_live: Some(60),
            max_versions: Some(1),
            ..proto::TableOptions::default()
        }),
    )
    .await
    .expect("create");
    let now = joint_shim_aliyun::Timestamp::now().unix_millis();
    let row = pk("r")
        .cell(Cell {
            timestamp: Some(now - 120_000),
            ..Cell::put("old", Value::Integer(1))
        })
        .cell(Cell::put("new", Value::Integer(2)));
    let req = proto::PutRowRequest {
        table_name: "ttl".into(),
        row: row.encode(),
        condition: cond(None),
        return_content: None,
        transaction_id: None,
    };
    ots.client
        .call::<_, proto::PutRowResponse>("PutRow", &req)
        .await
        .expect("put");
    let mut get = get_req("r");
    get.table_name = "ttl".into();
    let r: proto::GetRowResponse = ots.client.call("GetRow", &get).await.expect("get");
    let row = Row::decode(&r.row).expect("row").expect("the row exists");
    assert_eq!(row.get("old"), None, "past its TTL");
    assert_eq!(row.get("new"), Some(&Value::Integer(2)));
}

#[tokio::test]
async fn what_is_not_implemented_is_refused() {
    let ots = start().await;
    let e = ots
        .create(
            "versions",
            Some(proto::TableOptions {
                max_versions: Some(3),
                time_to_live: Some(-1),
                ..proto::TableOptions::default()
            }),
        )
        .await
        .expect_err("more than one version");
    assert_eq!(e.code, "OTSUnsupportOperation", "{e:?}");
    let req = proto::PutRowRequest {
        table_name: "t".into(),
        row: pk("x").cell(Cell::put("v", Value::Integer(1))).encode(),
        condition: cond(None),
        return_content: None,
        transaction_id: Some("tx-1".into()),
    };
    let e = ots
        .client
        .call::<_, proto::PutRowResponse>("PutRow", &req)
        .await
        .expect_err("no transactions");
    assert_eq!(e.code, "OTSParameterInvalid", "{e:?}");
    assert!(
        ots.get(get_req("x")).await.expect("get").is_none(),
        "nothing written"
    );
    let backward = proto::GetRangeRequest {
        table_name: "t".into(),
        direction: proto::Direction::Backward as i32,
        max_versions: Some(1),
        inclusive_start_primary_key: Row::with_pk(vec![("k", Value::InfMax)]).encode(),
        exclusive_end_primary_key: Row::with_pk(vec![("k", Value::InfMin)]).encode(),
        ..proto::GetRangeRequest::default()
    };
    let e = ots
        .client
        .call::<_, proto::GetRangeResponse>("GetRange", &backward)
        .await
        .expect_err("backward");
    assert_eq!(e.code, "OTSUnsupportOperation", "{e:?}");
}
