//! The FC custom-runtime adapter: an HTTP server on `FC_SERVER_PORT` (default 9000) whose
//! event-invoke handler (`POST /invoke`) hands the event to [`Runtime::handle`].
//!
//! FC delivers an async event at least once and retries it when the handler answers with an
//! error, which is exactly the contract `Runtime::handle` expects: an error means "deliver
//! again; nothing committed is lost or doubled".

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use joint_shim::{Deliver, Result};
use std::sync::Arc;

/// Environment variable FC sets for the port a custom runtime listens on.
pub const PORT_ENV: &str = "FC_SERVER_PORT";
/// The port when the variable is not set.
pub const DEFAULT_PORT: u16 = 9000;

#[derive(Clone)]
struct AdapterState {
    runtime: Arc<dyn Deliver>,
    cloud: String,
}

/// The adapter's routes: `POST /invoke` (event functions) and `POST /initialize`.
pub fn router(runtime: Arc<dyn Deliver>, cloud: &str) -> Router {
    Router::new()
        .route("/invoke", post(invoke))
        .route("/initialize", post(|| async { StatusCode::OK }))
        .with_state(AdapterState {
            runtime,
            cloud: cloud.to_string(),
        })
}

async fn invoke(State(s): State<AdapterState>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = headers
        .get("x-fc-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if joint_shim::runtime::is_sweep_event(&body) {
        return match s.runtime.sweep().await {
            Ok(r) => (
                StatusCode::OK,
                [("content-type", "application/json")],
                serde_json::json!({ "ok": true, "sweep": r }).to_string(),
            )
                .into_response(),
            Err(e) => {
                tracing::warn!(request_id, error = %e, "sweep failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-type", "application/json")],
                    serde_json::json!({ "ok": false, "error": e.to_string() }).to_string(),
                )
                    .into_response()
            }
        };
    }
    // FC retries failed async invocations; it does not number deliveries, so the runtime is
    // told "first delivery" and relies on its checkpoints for the rest.
    match s.runtime.deliver(&s.cloud, body, 1).await {
        Ok(outcome) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            serde_json::json!({ "ok": true, "outcome": format!("{outcome:?}") }).to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(request_id, error = %e, "joint function failed; FC will retry");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("content-type", "application/json")],
                serde_json::json!({
                    "errorType": e.kind().as_str(),
                    "errorMessage": e.to_string(),
                })
                .to_string(),
            )
                .into_response()
        }
    }
}

/// The address from `FC_SERVER_PORT` (all interfaces).
pub fn listen_addr() -> std::result::Result<SocketAddr, String> {
    let port = match std::env::var(PORT_ENV) {
        Ok(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{PORT_ENV}='{p}' is not a port number"))?,
        Err(_) => DEFAULT_PORT,
    };
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// Serve the adapter on `addr` until `shutdown` resolves.
pub async fn serve(
    runtime: Arc<dyn Deliver>,
    cloud: &str,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        joint_shim::Error::new(
            joint_shim::ErrorKind::Unavailable,
            "fc-adapter",
            "bind",
            addr.to_string(),
            e.to_string(),
        )
    })?;
    axum::serve(listener, router(runtime, cloud))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| {
            joint_shim::Error::new(
                joint_shim::ErrorKind::Other,
                "fc-adapter",
                "serve",
                addr.to_string(),
                e.to_string(),
            )
        })
}
