//! Embedding the runtime in another FaaS framework: a plain HTTP handler.
//!
//! A framework such as OpenFaaS or Knative delivers an event by POSTing it to the function's
//! container. The whole Backend-Shim is one call, [`Runtime::handle`]: this router maps
//! `POST /invoke` to it. The framework retries on a 5xx (at-least-once delivery); joint's
//! checkpoints make the retry harmless.
//!
//! ```no_run
//! # async fn demo(runtime: joint_shim::Runtime) {
//! let app = joint_examples::embed::router(runtime, "local-a");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use joint_shim::{ErrorKind, Runtime};

struct AppState {
    runtime: Runtime,
    cloud: String,
}

/// `POST /invoke` (body: the event; header `x-delivery-attempt`: the framework's attempt
/// number) → 200 with the outcome, 400 for an event that can never succeed, 503 for one the
/// framework should deliver again.
pub fn router(runtime: Runtime, cloud: &str) -> Router {
    Router::new()
        .route("/invoke", post(invoke))
        .with_state(Arc::new(AppState {
            runtime,
            cloud: cloud.to_string(),
        }))
}

async fn invoke(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let delivery = headers
        .get("x-delivery-attempt")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    match st.runtime.handle(&st.cloud, &body, delivery).await {
        Ok(o) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "instance": o.instance,
                "ran_function": o.ran_function,
                "adopted": o.adopted,
                "invoked": o.invoked,
            })),
        )
            .into_response(),
        Err(e) => {
            let status = match e.kind() {
                ErrorKind::InvalidInput | ErrorKind::FunctionNotFound => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (
                status,
                axum::Json(
                    serde_json::json!({"error": e.kind().as_str(), "message": e.to_string()}),
                ),
            )
                .into_response()
        }
    }
}
