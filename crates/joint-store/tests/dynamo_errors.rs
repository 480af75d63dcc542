//! Error mapping of the DynamoDB store with aws-smithy-mocks: responses as DynamoDB sends them
//! (status and `__type`), parsed by the real SDK deserializers.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
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
