//! Error mapping of the DynamoDB store with aws-smithy-mocks: responses as DynamoDB sends them
//! (status and `__type`), parsed by the real SDK deserializers.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use joint_shim::JoinSize;
use joint_shim::{CoordStore, Created, ErrorKind};
use joint_store::DynamoStoreBuilder;

fn response(status: u16, ty: &str, msg: &str) -> HttpResponse {
    let body = format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{ty}","message":"{msg}"}}"#);
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).expect("status"),
        SdkBody::from(body),
    );
    r.headers_mut().insert("x-amzn-RequestId", "REQ123");
    r
}

async fn store(client: Client) -> joint_store::DynamoCoordStore {
    DynamoStoreBuilder::new()
        .with_client(client)
        .with_table("joint")
        .build()
        .await
        .expect("store")
}

#[tokio::test]
async fn throttling_is_retryable_with_code_and_request_id() {
    let rule = mock!(Client::get_item).then_http_response(|| {
        response(400, "ProvisionedThroughputExceededException", "slow down")
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |b| b
        .retry_config(RetryConfig::disabled()));
    let err = store(client)
        .await
        .get("r/A_0")
        .await
        .expect_err("throttled");
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert!(err.is_retryable());
    assert_eq!(
        err.provider_code(),
        Some("ProvisionedThroughputExceededException")
    );
    let text = err.to_string();
    assert!(
        text.contains("dynamodb(aws) get 'r/A_0'") && text.contains("REQ123"),
        "{text}"
    );
}

#[tokio::test]
async fn missing_table_is_unavailable_and_not_retried() {
    let rule = mock!(Client::put_item).then_http_response(|| {
        response(
            400,
            "ResourceNotFoundException",
            "Requested resource not found",
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |b| b
        .retry_config(RetryConfig::disabled()));
    let err = store(client)
        .await
        .create("r/A_0", Bytes::from_static(b"v"))
        .await
        .expect_err("no table");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.is_retryable() && err.is_failover_worthy());
    assert!(err.message().contains("create-table"), "{err}");
}

#[tokio::test]
async fn condition_failures_become_semantic_results() {
    // create: the old item comes back with the failure.
    let put = mock!(Client::put_item).then_http_response(|| {
        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed","Item":{"pk":{"S":"r"},"sk":{"S":"r/A_0"},"kind":{"S":"out"},"val":{"B":"djE="},"inv":{"SS":["B_1"]}}}"#;
        HttpResponse::new(StatusCode::try_from(400).expect("status"), SdkBody::from(body))
    });
    // add_invoked on a missing item.
    let upd = mock!(Client::update_item).then_http_response(|| {
        response(
            400,
            "ConditionalCheckFailedException",
            "The conditional request failed",
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&put, &upd], |b| b
        .retry_config(RetryConfig::disabled()));
    let s = store(client).await;
    match s
        .create("r/A_0", Bytes::from_static(b"v2"))
        .await
        .expect("create")
    {
        Created::Existing(it) => {
            assert_eq!(it.value, b"v1".to_vec());
            assert!(it.invoked.contains("B_1"));
        }
        Created::New => panic!("a failed condition is not New"),
    }
    let err = s
        .add_invoked("r/missing", &["X".into()])
        .await
        .expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn server_errors_are_retryable_unavailable() {
    let rule =
        mock!(Client::query).then_http_response(|| response(500, "InternalServerError", "oops"));
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&rule], |b| b
        .retry_config(RetryConfig::disabled()));
    let err = store(client).await.list("r/").await.expect_err("500");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

fn canceled(reasons: &str) -> HttpResponse {
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{reasons}]}}"#
    );
    HttpResponse::new(
        StatusCode::try_from(400).expect("status"),
        SdkBody::from(body),
    )
}

fn head(cnt: u32, done: Option<&str>) -> HttpResponse {
    let done = done
        .map(|d| format!(r#","done":{{"S":"{d}"}}"#))
        .unwrap_or_default();
    let body = format!(
        r#"{{"Item":{{"pk":{{"S":"r"}},"sk":{{"S":"r/J-join@0"}},"kind":{{"S":"join"}},"wide":{{"N":"100"}},"cnt":{{"N":"{cnt}"}}{done}}}}}"#
    );
    HttpResponse::new(
        StatusCode::try_from(200).expect("status"),
        SdkBody::from(body),
    )
}

/// A wide join whose transaction DynamoDB cancels for a conflicting transaction on the head is
/// sent again (nothing was written); the cancellation reasons tell a duplicate from a full join.
#[tokio::test]
async fn wide_join_retries_conflicts_and_reads_cancellation_reasons() {
    let conflict = mock!(Client::transact_write_items).then_http_response(|| {
        canceled(r#"{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}"#)
    });
    let ok = mock!(Client::transact_write_items).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(200).expect("status"),
            SdkBody::from("{}"),
        )
    });
    let read = mock!(Client::get_item).then_http_response(|| head(7, None));
    let dup = mock!(Client::transact_write_items).then_http_response(|| {
        canceled(r#"{"Code":"ConditionalCheckFailed","Message":"The conditional request failed"},{"Code":"None"}"#)
    });
    let read2 = mock!(Client::get_item).then_http_response(|| head(8, None));
    let full = mock!(Client::transact_write_items).then_http_response(|| {
        canceled(r#"{"Code":"None"},{"Code":"ConditionalCheckFailed","Message":"The conditional request failed"}"#)
    });
    let read3 = mock!(Client::get_item).then_http_response(|| head(100, Some("42")));
    let members = mock!(Client::query).then_http_response(|| {
        let body = r#"{"Items":[{"sk":{"S":"r/J-join@0\u0001x"},"val":{"B":"eA=="}}],"Count":1}"#;
        HttpResponse::new(
            StatusCode::try_from(200).expect("status"),
            SdkBody::from(body),
        )
    });
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        &[&conflict, &ok, &read, &dup, &read2, &full, &read3, &members],
        |b| b.retry_config(RetryConfig::disabled())
    );
    let s = store(client).await;
    assert!(s.is_wide_join(100));
    let st = s
        .join(
            "r/J-join@0",
            "7",
            Bytes::from_static(b"v"),
            JoinSize::all(100),
        )
        .await
        .expect("added after a conflict");
    assert!(st.added && st.count == 7 && !st.completed, "{st:?}");
    let st = s
        .join(
            "r/J-join@0",
            "3",
            Bytes::from_static(b"v"),
            JoinSize::all(100),
        )
        .await
        .expect("duplicate");
    assert!(!st.added && st.count == 8 && !st.completed, "{st:?}");
    let st = s
        .join(
            "r/J-join@0",
            "over",
            Bytes::from_static(b"v"),
            JoinSize::all(100),
        )
        .await
        .expect("full");
    assert!(
        !st.added && st.count == 100 && !st.completed && st.members.len() == 1,
        "a full join, claimed by member 42: {st:?}"
    );
    assert_eq!(st.members["x"], b"x".to_vec());
}
