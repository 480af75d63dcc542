//! What a join costs on DynamoDB, billed from the requests the store sends and the items the
//! emulator answers with: write units are DynamoDB's documented rule (1 per started KB of the
//! larger of an item's before and after images, twice that in a transaction), read units 1 per
//! started 4 KB read consistently, item sizes counted as DynamoDB counts them (attribute names
//! plus values; numbers at one byte per two digits plus one; lists and maps 3 bytes plus one
//! per element). ministack also reports the capacity it charges (`ReturnConsumedCapacity`, which
//! the recorder adds to each request); both are printed.
//!
//! `cargo test -p joint-store --test dynamo_bill -- --nocapture` prints the table in ADR 0101.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use base64::Engine;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use joint_shim::CoordStore;
use joint_shim::JoinSize;
use joint_store::dynamo::create_table;
use joint_store::{AwsConnection, DynamoCoordStore, DynamoStoreBuilder};
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request and its answer.
#[derive(Debug, Clone)]
struct Exchange {
    op: String,
    request: Value,
    response: Value,
    request_bytes: usize,
}

#[derive(Debug, Clone)]
struct Pending {
    op: String,
    request: Value,
    bytes: usize,
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

/// Records every DynamoDB request and response, asking for `ConsumedCapacity` on the way.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Exchange>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "bill-recorder"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request_mut();
        let op = req
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string();
        let body = req.body().bytes().ok_or("a streaming request body")?;
        // The bytes the store sends, before the recorder's addition.
        let bytes = body.len();
        let mut json: Value = serde_json::from_slice(body)?;
        if let Value::Object(m) = &mut json {
            m.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
        }
        let new = serde_json::to_vec(&json)?;
        req.headers_mut()
            .insert("content-length", new.len().to_string());
        *req.body_mut() = SdkBody::from(new);
        cfg.interceptor_state().store_put(Pending {
            op,
            request: json,
            bytes,
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(p) = cfg.load::<Pending>().cloned() else {
            return Ok(());
        };
        let body = ctx.response().body().bytes().unwrap_or_default();
        let response = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.0.lock().map_err(|_| "poisoned")?.push(Exchange {
            op: p.op,
            request: p.request,
            response,
            request_bytes: p.bytes,
        });
        Ok(())
    }
}

/// DynamoDB's size of an attribute value in its JSON form.
fn value_size(v: &Value) -> u64 {
    let Value::Object(m) = v else { return 0 };
    let Some((ty, x)) = m.iter().next() else {
        return 0;
    };
    match (ty.as_str(), x) {
        ("S", Value::String(s)) => s.len() as u64,
        ("N", Value::String(n)) => {
            let digits = n
                .trim_start_matches('-')
                .replace('.', "")
                .trim_start_matches('0')
                .trim_end_matches('0')
                .len() as u64;
            digits.div_ceil(2) + 1
        }
        ("B", Value::String(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(|d| d.len() as u64)
            .unwrap_or(0),
        ("BOOL" | "NULL", _) => 1,
        ("SS", Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.len() as u64)
            .sum(),
        ("L", Value::Array(a)) => 3 + a.iter().map(|e| 1 + value_size(e)).sum::<u64>(),
        ("M", Value::Object(o)) => {
            3 + o
                .iter()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// DynamoDB's size of an item: attribute names plus values.
fn item_size(item: &Value) -> u64 {
    item.as_object()
        .map(|m| m.iter().map(|(k, v)| k.len() as u64 + value_size(v)).sum())
        .unwrap_or(0)
}

fn kb(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

fn four_kb(bytes: u64) -> u64 {
    bytes.div_ceil(4096).max(1)
}

/// What a join's requests were billed.
#[derive(Debug, Default, Clone, Copy)]
struct Bill {
    requests: u64,
    wcu: u64,
    rcu: u64,
    /// The most write units one member's add cost (a narrow UpdateItem, a wide transaction).
    max_add_wcu: u64,
    /// Read units of the completer's Query of the members.
    query_rcu: u64,
    /// Capacity ministack reports (write and read units together).
    reported: f64,
    request_bytes: u64,
}

/// The bill of one join's requests (in any order: members ran concurrently).
fn bill(calls: &[Exchange]) -> Bill {
    let mut b = Bill::default();
    // The head's largest image any consistent read saw: what its updates are billed on, at most.
    let head = calls
        .iter()
        .filter(|e| e.op == "GetItem")
        .map(|e| item_size(&e.response["Item"]))
        .max()
        .unwrap_or(0);
    // A Query's read units are charged on the items read, whatever it projects.
    let mut members = HashMap::new();
    for e in calls.iter().filter(|e| e.op == "TransactWriteItems") {
        for t in e.request["TransactItems"].as_array().into_iter().flatten() {
            if let Some(item) = t.get("Put").map(|p| &p["Item"])
                && let Some(sk) = item["sk"]["S"].as_str()
            {
                members.insert(sk.to_string(), item_size(item));
            }
        }
    }
    for e in calls {
        b.requests += 1;
        b.request_bytes += e.request_bytes as u64;
        // An object, or a list of them (one per table) for transactions.
        b.reported += match &e.response["ConsumedCapacity"] {
            Value::Array(a) => a.iter().filter_map(|c| c["CapacityUnits"].as_f64()).sum(),
            c => c["CapacityUnits"].as_f64().unwrap_or(0.0),
        };
        match e.op.as_str() {
            "TransactWriteItems" => {
                let mut w = 0;
                for t in e.request["TransactItems"].as_array().into_iter().flatten() {
                    if let Some(item) = t.get("Put").map(|p| &p["Item"]) {
                        w += 2 * kb(item_size(item));
                    } else if t.get("Update").is_some() {
                        w += 2 * kb(head);
                    }
                }
                b.wcu += w;
                b.max_add_wcu = b.max_add_wcu.max(w);
            }
            // A narrow join returns its item (ALL_NEW); a wide join's claim writes the head.
            "UpdateItem" => match e.response.get("Attributes") {
                Some(a) => {
                    let w = kb(item_size(a));
                    b.wcu += w;
                    b.max_add_wcu = b.max_add_wcu.max(w);
                }
                None => b.wcu += kb(head + 4 + 8),
            },
            "GetItem" => b.rcu += four_kb(item_size(&e.response["Item"])),
            "Query" => {
                let read: u64 = e.response["Items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["sk"]["S"].as_str())
                    .map(|sk| members.get(sk).copied().unwrap_or(0))
                    .sum();
                b.rcu += four_kb(read);
                b.query_rcu += four_kb(read);
            }
            other => panic!("a join sent {other}"),
        }
    }
    b
}

async fn store(
    url: &str,
    table: &str,
    rec: &Recorder,
    settings: &[(&str, &str)],
) -> DynamoCoordStore {
    let mut conn = AwsConnection::new();
    for (k, v) in [
        ("region", "us-east-1"),
        ("endpoint_url", url),
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
    ] {
        conn.with_config(k, v);
    }
    let sdk = conn.load("dynamodb").await.expect("sdk config");
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(rec.clone())
            .build(),
    );
    let mut b = DynamoStoreBuilder::new()
        .with_client(client)
        .with_table(table);
    for (k, v) in settings {
        b = b.with_config(k, *v);
    }
    b.build().await.expect("store")
}

/// One `n`-way join, 64 members in flight at once, and the bill of its requests. Member values
/// are a branch output inline as the runtime's member record carries it, padded to `pad` bytes.
async fn run(s: &DynamoCoordStore, rec: &Recorder, n: u32, pad: usize) -> Bill {
    let layout = if s.is_wide_join(n) { "w" } else { "n" };
    let key = format!("3f2504e0-4f89-11d3-9a0c-0305e82c3301-{layout}{n}-{pad}/total-join@1");
    let before = rec.0.lock().expect("lock").len();
    let completed: usize = stream::iter(0..n)
        .map(|i| {
            let key = key.clone();
            async move {
                let out = format!("{}", i * 7);
                let v = Bytes::from(format!(
                    r#"{{"step":2,"out":{{"inline":"{out:0>w$}"}}}}"#,
                    w = pad.saturating_sub(27).max(out.len())
                ));
                let st = s
                    .join(&key, &i.to_string(), v, JoinSize::all(n))
                    .await
                    .expect("join");
                if st.completed {
                    assert_eq!(st.members.len(), n as usize);
                }
                usize::from(st.completed)
            }
        })
        .buffer_unordered(64)
        .fold(0, |a, c| async move { a + c })
        .await;
    assert_eq!(completed, 1, "one completer");
    let calls = rec.0.lock().expect("lock")[before..].to_vec();
    bill(&calls)
}

struct Row {
    layout: &'static str,
    n: u32,
    value: usize,
    b: Bill,
}

/// Write units per member stay constant as a wide join grows from 10 to 10,000 members, where
/// one item per join (the narrow layout, kept for small joins) costs more per member the wider
/// the join gets.
#[tokio::test]
async fn join_bill_per_member_is_constant() {
    let Some((_, url)) = common::emulators()
        .into_iter()
        .find(|(n, _)| *n == "ministack")
    else {
        return;
    };
    let rec = Recorder::default();
    let table = format!("joint-bill-{}", common::uniq());
    let wide = store(&url, &table, &rec, &[("wide_join_above", "0")]).await;
    create_table(wide.client(), wide.table())
        .await
        .expect("table");
    let narrow = store(&url, &table, &rec, &[("wide_join_above", "1000")]).await;
    let mut rows = Vec::new();
    for (n, value) in [(10u32, 35), (16, 35), (64, 35), (16, 1024)] {
        assert!(!narrow.is_wide_join(n));
        let b = run(&narrow, &rec, n, value).await;
        rows.push(Row {
            layout: "narrow (one item)",
            n,
            value,
            b,
        });
    }
    for (n, value) in [(16u32, 1024), (10, 35), (1_000, 35), (10_000, 35)] {
        let t = std::time::Instant::now();
        let b = run(&wide, &rec, n, value).await;
        eprintln!("{n}-way wide join: {:.1} s", t.elapsed().as_secs_f64());
        rows.push(Row {
            layout: "wide (item per member)",
            n,
            value,
            b,
        });
    }
    println!(
        "| layout | members | value bytes | WCU / member | most WCU of one add | RCU / member | completer's Query RCU | ministack's units / member | request bytes / member | requests / member |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let (b, f) = (&r.b, f64::from(r.n));
        println!(
            "| {} | {} | {} | {:.2} | {} | {:.2} | {} | {:.2} | {:.0} | {:.2} |",
            r.layout,
            r.n,
            r.value,
            b.wcu as f64 / f,
            b.max_add_wcu,
            b.rcu as f64 / f,
            b.query_rcu,
            b.reported / f,
            b.request_bytes as f64 / f,
            b.requests as f64 / f
        );
    }
    let per = |r: &Row| {
        (
            r.b.wcu as f64 / f64::from(r.n),
            r.b.request_bytes as f64 / f64::from(r.n),
        )
    };
    let w: Vec<&Row> = rows
        .iter()
        .filter(|r| r.layout.starts_with("wide") && r.value == 35)
        .collect();
    for r in &w {
        assert_eq!(
            r.b.max_add_wcu, w[0].b.max_add_wcu,
            "a member's add costs the same write units however wide the join: {} at {} members, {} at {}",
            r.b.max_add_wcu, r.n, w[0].b.max_add_wcu, w[0].n
        );
        assert!(
            per(r).0 <= per(w[0]).0 && per(r).1 <= per(w[0]).1 + 16.0,
            "write units and request bytes per member stay flat: {:?} at {} members, {:?} at {}",
            per(r),
            r.n,
            per(w[0]),
            w[0].n
        );
    }
    let nw: Vec<&Row> = rows
        .iter()
        .filter(|r| r.layout.starts_with("narrow") && r.value == 35)
        .collect();
    assert!(
        nw[2].b.max_add_wcu > nw[0].b.max_add_wcu,
        "one item per join: a member's add costs more the wider the join ({} at 64, {} at 10)",
        nw[2].b.max_add_wcu,
        nw[0].b.max_add_wcu
    );
}
