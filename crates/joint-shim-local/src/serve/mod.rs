//! `joint serve`: local clouds over HTTP, speaking the providers' APIs so the real AWS and
//! Aliyun shims (and the providers' own SDKs and CLIs) run unmodified against them.
//!
//! Each endpoint is a module with a `router(state) -> axum::Router`; [`ENDPOINTS`] lists them
//! by the name used in `joint serve --listen NAME=ADDR`.
//!
//! # Request timeouts
//! Every request of endpoint `NAME` must finish within `--set NAME.timeout_secs=SECONDS`
//! (decimals allowed), or it is answered with the provider's request-timeout error (HTTP 408:
//! Lambda `RequestTimeoutException`, FC and OSS `RequestTimeout`, Tablestore
//! `OTSRequestTimeout`) and its work is dropped at its next `.await` — a hosted function stops
//! as a Lambda does at its timeout; the protocol's checkpoints make a redelivery safe. The clock
//! covers the whole request, reading the body included, so a stalled upload times out too.
//!
//! | endpoint | default | why |
//! |---|---|---|
//! | `lambda`, `fc` | 900 s | a synchronous invoke runs as long as its function: Lambda's maximum function timeout (FC allows longer; raise `fc.timeout_secs`) |
//! | `oss`, `ots` | 30 s | store requests on one machine take milliseconds |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use joint_shim::{Error, ErrorKind, Result, Runtime};
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower::timeout::error::Elapsed;

use crate::LocalClouds;

pub mod fc;
pub mod lambda;
pub mod oss;
pub mod ots;

/// What every endpoint can reach.
#[derive(Clone)]
pub struct ServeState {
    /// The runtime executing the hosted workflow's functions (`None` when serving stores only).
    pub runtime: Option<Runtime>,
    /// The local clouds behind the endpoints.
    pub clouds: LocalClouds,
    /// Endpoint settings from `--set key=value` (credentials to verify signatures, bucket names…).
    pub settings: BTreeMap<String, String>,
}

impl ServeState {
    /// A setting, or an error naming the key.
    pub fn setting(&self, key: &str) -> Result<&str> {
        self.settings.get(key).map(String::as_str).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "serve",
                "setting",
                key,
                format!("missing setting '{key}' (pass --set {key}=VALUE)"),
            )
        })
    }
}

/// An endpoint's answer to a request that ran out of time, in the provider's error format:
/// `(state, method, uri, message)`.
pub type TimedOut = fn(&ServeState, &Method, &Uri, &str) -> Response;

/// An endpoint: its name, how to build its router, and its request timeout.
#[derive(Clone, Copy)]
pub struct Endpoint {
    /// The name in `--listen NAME=ADDR` and in its settings (`NAME.timeout_secs`).
    pub name: &'static str,
    /// Builds the endpoint's router (without the timeout, which [`endpoint_router`] adds).
    pub router: fn(Arc<ServeState>) -> axum::Router,
    /// The request timeout when `NAME.timeout_secs` is not set.
    pub default_timeout: Duration,
    /// The answer to a request that ran out of time.
    pub timed_out: TimedOut,
}

/// Default request timeout of the function-invoking endpoints (`lambda`, `fc`): 900 s, Lambda's
/// maximum function timeout, since a synchronous invoke lasts as long as its function.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(900);
/// Default request timeout of the store endpoints (`oss`, `ots`).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every endpoint `joint serve` knows.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        name: "lambda",
        router: lambda::router,
        default_timeout: INVOKE_TIMEOUT,
        timed_out: lambda::timed_out,
    },
    Endpoint {
        name: "fc",
        router: fc::router,
        default_timeout: INVOKE_TIMEOUT,
        timed_out: fc::timed_out,
    },
    Endpoint {
        name: "oss",
        router: oss::router,
        default_timeout: STORE_TIMEOUT,
        timed_out: oss::timed_out,
    },
    Endpoint {
        name: "ots",
        router: ots::router,
        default_timeout: STORE_TIMEOUT,
        timed_out: ots::timed_out,
    },
];

/// Names of the known endpoints.
pub fn endpoint_names() -> Vec<&'static str> {
    ENDPOINTS.iter().map(|e| e.name).collect()
}

fn find_endpoint(name: &str) -> Result<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "serve",
            "listen",
            name,
            format!(
                "unknown endpoint '{name}' (known: {})",
                endpoint_names().join(", ")
            ),
        )
    })
}

/// The request timeout of endpoint `name`: setting `{name}.timeout_secs` (a positive number of
/// seconds, decimals allowed), else the endpoint's default. A bad value is an error naming the
/// setting.
pub fn request_timeout(state: &ServeState, name: &str) -> Result<Duration> {
    let ep = find_endpoint(name)?;
    let key = format!("{name}.timeout_secs");
    let Some(raw) = state.settings.get(&key) else {
        return Ok(ep.default_timeout);
    };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "serve",
                "setting",
                &key,
                format!(
                    "--set {key}={raw}: expected a positive number of seconds (e.g. 30 or 0.5)"
                ),
            )
        })
}

/// The router of endpoint `name` with its request timeout ([`request_timeout`]) applied: a
/// request still running when it expires is dropped and answered with the endpoint's
/// provider-shaped timeout error.
pub fn endpoint_router(state: Arc<ServeState>, name: &str) -> Result<axum::Router> {
    let ep = find_endpoint(name)?;
    let timeout = request_timeout(&state, name)?;
    let timed_out = ep.timed_out;
    let on_error = {
        let state = state.clone();
        move |method: Method, uri: Uri, err: BoxError| {
            let state = state.clone();
            async move {
                if err.is::<Elapsed>() {
                    let msg = format!(
                        "joint serve: the request did not finish within the {name} endpoint's \
                         request timeout of {timeout:?} (raise it with --set \
                         {name}.timeout_secs=SECONDS)",
                        name = ep.name
                    );
                    timed_out(&state, &method, &uri, &msg)
                } else {
                    // The routers never fail (their error type is Infallible); keep a clear
                    // answer anyway rather than a panic.
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("joint serve ({}): {err}", ep.name),
                    )
                        .into_response()
                }
            }
        }
    };
    Ok((ep.router)(state).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(on_error))
            .layer(TimeoutLayer::new(timeout)),
    ))
}

/// Serve each `(endpoint name, address)` until `shutdown` resolves. Returns the bound addresses
/// (useful with port 0) through `bound` before serving.
pub async fn serve(
    state: Arc<ServeState>,
    listen: Vec<(String, SocketAddr)>,
    bound: impl FnOnce(Vec<(String, SocketAddr)>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for (name, addr) in listen {
        // An unknown endpoint or a bad setting fails before anything is served.
        let router = endpoint_router(state.clone(), &name)?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "serve",
                "bind",
                addr.to_string(),
                format!("cannot listen for {name}: {e}"),
            )
        })?;
        let local = listener.local_addr().map_err(|e| {
            Error::new(
                ErrorKind::Other,
                "serve",
                "bind",
                addr.to_string(),
                e.to_string(),
            )
        })?;
        addrs.push((name.clone(), local));
        servers.push((name, listener, router));
    }
    bound(addrs);
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();
    for (name, listener, router) in servers {
        let mut rx = tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await;
            (name, r)
        }));
    }
    shutdown.await;
    let _ = tx.send(());
    for t in tasks {
        if let Ok((name, Err(e))) = t.await {
            return Err(Error::new(
                ErrorKind::Other,
                "serve",
                "serve",
                name,
                e.to_string(),
            ));
        }
    }
    Ok(())
}
