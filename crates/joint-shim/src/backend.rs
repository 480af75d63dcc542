//! Backends by name: how a deployment config's `backend: NAME` becomes a [`Cloud`]. A backend
//! crate implements [`Backend`] and is registered with the command line
//! (`joint_cli::App::backend`), so it plugs into `--clouds` without editing the CLI.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::cloud::Cloud;
use crate::error::{Error, ErrorKind, Result};

/// A kind of cloud (`aws`, `aliyun`, `nats`, …) that can be built from settings.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Its name in deployment configs (`backend: NAME`).
    fn name(&self) -> &str;

    /// Build cloud `cloud` from its `settings` (every key of the config besides `backend`).
    ///
    /// Behavior:
    /// - An unknown key or a bad value fails with `InvalidInput` naming the key.
    /// - Makes no request: reachability is the preflight's business.
    async fn build(&self, cloud: &str, settings: &BTreeMap<String, String>) -> Result<Cloud>;
}

/// The registered backends.
#[derive(Clone, Default)]
pub struct Backends {
    by_name: BTreeMap<String, Arc<dyn Backend>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Backends {
    /// None.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `b` under its name (replacing one of the same name).
    pub fn register(&mut self, b: Arc<dyn Backend>) -> &mut Self {
        self.by_name.insert(b.name().to_string(), b);
        self
    }

    /// Registered names.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The backend called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn Backend>> {
        self.by_name.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "backends",
                "backend",
                name,
                format!(
                    "unknown backend '{name}' (known: local, {})",
                    self.names().join(", ")
                ),
            )
        })
    }

    /// Build cloud `cloud` with backend `backend`.
    pub async fn build(
        &self,
        backend: &str,
        cloud: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<Cloud> {
        self.get(backend)?.build(cloud, settings).await
    }
}
