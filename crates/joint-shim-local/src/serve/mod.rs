//! `joint serve`: local clouds over HTTP, speaking the providers' APIs so the real AWS and
//! Aliyun shims (and the providers' own SDKs and CLIs) run unmodified against them.
//!
//! Each endpoint is a module with a `router(state) -> axum::Router`; [`ENDPOINTS`] lists them
//! by the name used in `joint serve --listen NAME=ADDR`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use joint_shim::{Error, ErrorKind, Result, Runtime};

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

/// An endpoint: its name and how to build its router.
pub type Endpoint = (&'static str, fn(Arc<ServeState>) -> axum::Router);

/// Every endpoint `joint serve` knows.
pub const ENDPOINTS: &[Endpoint] = &[
    ("lambda", lambda::router),
    ("fc", fc::router),
    ("oss", oss::router),
    ("ots", ots::router),
];

/// Names of the known endpoints.
pub fn endpoint_names() -> Vec<&'static str> {
    ENDPOINTS.iter().map(|(n, _)| *n).collect()
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
        let Some((_, make)) = ENDPOINTS.iter().find(|(n, _)| *n == name) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "serve",
                "listen",
                &name,
                format!(
                    "unknown endpoint '{name}' (known: {})",
                    endpoint_names().join(", ")
                ),
            ));
        };
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
        servers.push((name, listener, make(state.clone())));
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
