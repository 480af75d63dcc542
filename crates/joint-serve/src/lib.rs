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

use joint_shim_local::LocalClouds;

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

/// A `joint serve` running in the background of this process, started by [`spawn`]. Dropping it
/// stops the endpoints (as does [`Served::stop`], which also waits for them and reports how they
/// ended).
#[derive(Debug)]
pub struct Served {
    urls: BTreeMap<String, String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Served {
    /// Endpoint name → `http://ADDR` of every endpoint served.
    pub fn urls(&self) -> &BTreeMap<String, String> {
        &self.urls
    }

    /// The URL of endpoint `name`, or an error naming it when it is not served.
    pub fn url(&self, name: &str) -> Result<&str> {
        self.urls.get(name).map(String::as_str).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "serve",
                "url",
                name,
                format!(
                    "endpoint '{name}' is not served here (served: {})",
                    self.urls.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Stop serving and wait until every endpoint has shut down.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(|e| {
                Error::new(ErrorKind::Other, "serve", "stop", "serve", e.to_string())
            })?,
            None => Ok(()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serve each `(endpoint name, address)` in a background task of the current tokio runtime
/// (what `joint serve` does, in process; port 0 picks a free port). Returns once every endpoint
/// is listening, with their URLs; an unknown endpoint or an address that cannot be bound is an
/// error naming it.
pub async fn spawn(state: Arc<ServeState>, listen: Vec<(String, SocketAddr)>) -> Result<Served> {
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        state,
        listen,
        move |b| {
            let _ = bound_tx.send(b);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    match bound_rx.await {
        Ok(bound) => Ok(Served {
            urls: bound
                .into_iter()
                .map(|(n, a)| (n, format!("http://{a}")))
                .collect(),
            stop: Some(stop_tx),
            task: Some(task),
        }),
        // `serve` returned before binding everything: its error says why.
        Err(_) => match task.await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(Error::new(
                ErrorKind::Other,
                "serve",
                "spawn",
                "serve",
                "joint serve stopped before listening",
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Other,
                "serve",
                "spawn",
                "serve",
                e.to_string(),
            )),
        },
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<ServeState> {
        let clouds = joint_shim_local::LocalCloudsBuilder::new()
            .clouds(["x"])
            .build()
            .expect("local clouds");
        Arc::new(ServeState {
            runtime: None,
            clouds,
            settings: BTreeMap::new(),
        })
    }

    fn any() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn spawn_listens_and_stops() {
        let s = spawn(state(), vec![("lambda".into(), any())])
            .await
            .expect("spawn");
        let url = s.url("lambda").expect("lambda url").to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let e = s.url("fc").expect_err("fc is not served");
        assert!(e.to_string().contains("served: lambda"), "{e}");
        let addr = url.trim_start_matches("http://").to_string();
        assert!(tokio::net::TcpStream::connect(&addr).await.is_ok());
        s.stop().await.expect("stop");
        assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    }

    #[tokio::test]
    async fn spawn_names_an_unknown_endpoint() {
        let e = spawn(state(), vec![("sqs".into(), any())])
            .await
            .expect_err("unknown endpoint");
        assert!(e.to_string().contains("unknown endpoint 'sqs'"), "{e}");
    }
}
