//! Clouds: a name bound to a FaaS, a coordination store and a blob store.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::traits::{BlobStore, CoordStore, Faas};

/// One cloud's backends.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// Its name as used in definitions (`aws`, `aliyun`, `local-a`).
    pub name: String,
    /// Invocation.
    pub faas: Arc<dyn Faas>,
    /// Checkpoints, invocation records and joins.
    pub coord: Arc<dyn CoordStore>,
    /// Spilled payloads.
    pub blob: Arc<dyn BlobStore>,
}

/// The clouds a runtime can reach, by name.
#[derive(Debug, Clone, Default)]
pub struct Clouds {
    by_name: BTreeMap<String, Cloud>,
}

impl Clouds {
    /// No clouds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a cloud.
    pub fn insert(&mut self, cloud: Cloud) {
        self.by_name.insert(cloud.name.clone(), cloud);
    }

    /// The cloud called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Cloud> {
        self.by_name.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "runtime",
                "cloud",
                name,
                format!(
                    "no cloud '{name}' is configured (known: {})",
                    self.names().join(", ")
                ),
            )
        })
    }

    /// Names of all clouds.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// All clouds.
    pub fn iter(&self) -> impl Iterator<Item = &Cloud> {
        self.by_name.values()
    }
}
