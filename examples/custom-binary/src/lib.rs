//! Building on joint from outside: typed handlers, a `Faas` that calls another platform, that
//! platform's HTTP trigger in front of `Runtime::handle`, and a backend for `--clouds`.
//!
//! The "other platform" is a small OpenFaaS-style gateway ([`gateway`]): `POST
//! /async-function/{name}` queues an event and answers 202, then delivers it to the function's
//! HTTP trigger, retrying on a 5xx; `POST /function/{name}` calls it and returns its answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use joint_shim::{
    Backend, Cloud, Error, ErrorKind, Faas, FaasCapabilities, Handlers, Result, fn_error,
    typed_handler,
};
use serde::{Deserialize, Serialize};

/// An order line, as the `price` function takes it.
#[derive(Debug, Deserialize)]
pub struct Order {
    /// Order id.
    pub id: String,
    /// Items.
    pub qty: u32,
    /// Unit price in cents.
    pub unit_cents: u32,
}

/// What `price` returns.
#[derive(Debug, Serialize)]
pub struct Priced {
    /// Order id.
    pub id: String,
    /// Total in cents.
    pub total_cents: u32,
}

/// This binary's handlers: the built-in examples plus a typed one.
pub fn handlers() -> Handlers {
    let mut h = joint_examples::builtin_handlers();
    h.register(
        "price",
        typed_handler(|o: Order, _ctx| async move {
            if o.qty == 0 {
                return Err(fn_error(format!("order {} has no items", o.id)));
            }
            Ok(Priced {
                id: o.id,
                total_cents: o.qty * o.unit_cents,
            })
        }),
    );
    h
}

/// The outbound half: invoking functions that live behind a gateway.
#[derive(Debug, Clone)]
pub struct GatewayFaas {
    base: String,
    http: reqwest::Client,
    cloud: String,
}

impl GatewayFaas {
    /// Functions behind the gateway at `base` (e.g. `http://127.0.0.1:8080`), as cloud `cloud`.
    pub fn new(base: &str, cloud: &str) -> GatewayFaas {
        GatewayFaas {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            cloud: cloud.to_string(),
        }
    }

    fn err(&self, kind: ErrorKind, op: &'static str, f: &str, msg: impl Into<String>) -> Error {
        Error::new(kind, format!("gateway({})", self.cloud), op, f, msg)
    }

    async fn post(&self, op: &'static str, path: &str, f: &str, payload: Bytes) -> Result<Bytes> {
        let limit = match op {
            "invoke_async" => ASYNC_LIMIT,
            _ => SYNC_LIMIT,
        };
        if payload.len() as u64 > limit {
            return Err(self.err(
                ErrorKind::PayloadTooLarge,
                op,
                f,
                format!("{} bytes is over the {limit}-byte limit", payload.len()),
            ));
        }
        let r = self
            .http
            .post(format!("{}/{path}/{f}", self.base))
            .body(payload)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Unavailable
                };
                self.err(kind, op, f, e.to_string())
            })?;
        let status = r.status();
        let body = r.bytes().await.unwrap_or_default();
        let text = || String::from_utf8_lossy(&body).to_string();
        match status.as_u16() {
            200..=299 => Ok(body),
            404 => Err(self.err(ErrorKind::FunctionNotFound, op, f, text())),
            413 => Err(self.err(ErrorKind::PayloadTooLarge, op, f, text())),
            429 => Err(self.err(ErrorKind::Throttled, op, f, text())),
            500 if op == "invoke_sync" => Err(self.err(ErrorKind::FunctionError, op, f, text())),
            _ => Err(self.err(
                ErrorKind::Unavailable,
                op,
                f,
                format!("{status}: {}", text()),
            )),
        }
    }
}

/// The gateway's async payload limit.
pub const ASYNC_LIMIT: u64 = 256 * 1024;
/// The gateway's sync payload limit.
pub const SYNC_LIMIT: u64 = 1024 * 1024;

#[async_trait]
impl Faas for GatewayFaas {
    fn capabilities(&self) -> FaasCapabilities {
        FaasCapabilities {
            async_payload_limit: ASYNC_LIMIT,
            sync_payload_limit: SYNC_LIMIT,
            // The gateway delivers within its retries: 3 attempts 100 ms apart.
            redelivery_window: Duration::from_secs(60),
        }
    }
    async fn invoke_async(&self, function: &str, payload: Bytes) -> Result<()> {
        self.post("invoke_async", "async-function", function, payload)
            .await
            .map(|_| ())
    }
    async fn invoke_sync(&self, function: &str, payload: Bytes) -> Result<Bytes> {
        self.post("invoke_sync", "function", function, payload)
            .await
    }
}

/// The gateway: function name → the URL of its HTTP trigger (its `/invoke` route).
pub fn gateway(functions: BTreeMap<String, String>) -> Router {
    Router::new()
        .route("/async-function/{name}", post(async_call))
        .route("/function/{name}", post(sync_call))
        .with_state(Arc::new(Gateway {
            functions,
            http: reqwest::Client::new(),
        }))
}

struct Gateway {
    functions: BTreeMap<String, String>,
    http: reqwest::Client,
}

async fn async_call(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(url) = g.functions.get(&name).cloned() else {
        return (StatusCode::NOT_FOUND, format!("no function {name}")).into_response();
    };
    // Queue it and answer 202; deliver with up to three attempts, retrying on a 5xx.
    tokio::spawn(async move {
        for attempt in 1..=3u32 {
            let r = g
                .http
                .post(&url)
                .header("x-delivery-attempt", attempt.to_string())
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(r) if !r.status().is_server_error() => return,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    StatusCode::ACCEPTED.into_response()
}

async fn sync_call(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(url) = g.functions.get(&name) else {
        return (StatusCode::NOT_FOUND, format!("no function {name}")).into_response();
    };
    match g.http.post(url).body(body).send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, r.bytes().await.unwrap_or_default()).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// `backend: gateway` in a `--clouds` file: functions behind the gateway at `url`, checkpoints
/// and blobs in a local SQLite file and folder under `state_dir`.
pub struct GatewayBackend;

#[async_trait]
impl Backend for GatewayBackend {
    fn name(&self) -> &str {
        "gateway"
    }

    async fn build(&self, cloud: &str, settings: &BTreeMap<String, String>) -> Result<Cloud> {
        let bad = |key: &str, msg: String| {
            Error::new(ErrorKind::InvalidInput, "gateway", "config", key, msg)
        };
        for k in settings.keys() {
            if !["url", "state_dir"].contains(&k.as_str()) {
                return Err(bad(
                    k,
                    format!("cloud '{cloud}': unknown setting '{k}' (known: url, state_dir)"),
                ));
            }
        }
        let url = settings.get("url").ok_or_else(|| {
            bad(
                "url",
                format!("cloud '{cloud}': set `url`, the gateway's address"),
            )
        })?;
        let dir = std::path::PathBuf::from(
            settings
                .get("state_dir")
                .ok_or_else(|| bad("state_dir", format!("cloud '{cloud}': set `state_dir`")))?,
        );
        Ok(Cloud {
            name: cloud.to_string(),
            faas: Arc::new(GatewayFaas::new(url, cloud)),
            coord: Arc::new(joint_shim_local::SqliteCoordStore::open(
                dir.join("coord.db"),
                cloud,
            )?),
            blob: Arc::new(joint_shim_local::FsBlobStore::new(
                dir.join("blobs"),
                cloud,
            )?),
        })
    }
}
