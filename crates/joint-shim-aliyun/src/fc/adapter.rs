//! The FC custom-runtime adapter: an HTTP server on `FC_SERVER_PORT` (default 9000) whose
//! event-invoke handler (`POST /invoke`) hands the event to [`Runtime::handle`].
//!
//! FC delivers an async event at least once and retries it when the handler answers with an
//! error, which is exactly the contract `Runtime::handle` expects: an error means "deliver
//! again; nothing committed is lost or doubled".
//!
//! An envelope is run only by the function it is for: the adapter compares the envelope's
//! function with the function FC invoked (the `x-fc-function-name` request header FC sends a
//! custom runtime, else the `FC_FUNCTION_NAME` variable) and refuses a mismatch — the runtime
//! would otherwise run the function the envelope names, whichever function was invoked.

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
    if let Err(m) = check_addressed(&headers, &body) {
        tracing::warn!(request_id, error = %m, "refused an envelope for another function");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            serde_json::json!({"errorType": "InvalidInput", "errorMessage": m}).to_string(),
        )
            .into_response();
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

/// Environment variable FC sets to the function's name.
pub const FUNCTION_NAME_ENV: &str = "FC_FUNCTION_NAME";

/// Refuse an envelope for another function than the one FC invoked.
fn check_addressed(headers: &HeaderMap, event: &[u8]) -> std::result::Result<(), String> {
    let Some(function) = joint_core::envelope::addressed_function(event) else {
        return Ok(());
    };
    let invoked = headers
        .get("x-fc-function-name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| std::env::var(FUNCTION_NAME_ENV).ok())
        .filter(|n| !n.is_empty());
    let Some(invoked) = invoked else {
        return Err(format!(
            "cannot tell which function FC invoked (no x-fc-function-name header and no \
             {FUNCTION_NAME_ENV}), so the event for function '{}' is refused",
            function.chars().take(140).collect::<String>()
        ));
    };
    joint_core::envelope::check_addressed(event, &invoked).map_err(|e| e.to_string())
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
