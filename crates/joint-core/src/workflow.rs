//! A compiled workflow: the set of per-function sub-graphs a deployment carries.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::subgraph::SubGraph;

/// All sub-graphs of one workflow, keyed by function name.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Workflow name.
    pub name: String,
    /// The start function.
    pub start: String,
    /// Sub-graphs by function name.
    pub functions: BTreeMap<String, SubGraph>,
    /// Every cloud a function is placed on or fails over to, sorted.
    pub clouds: Vec<String>,
    /// SHA-256 (hex) of the canonical JSON of the sub-graphs; runs carry it in their envelopes.
    pub hash: String,
}

impl Workflow {
    /// Assemble from already-validated sub-graphs (the compiler and the importer call this).
    pub fn assemble(
        name: String,
        start: String,
        functions: BTreeMap<String, SubGraph>,
    ) -> Workflow {
        let mut clouds: Vec<String> = functions
            .values()
            .flat_map(|s| {
                std::iter::once(s.faas.clone())
                    .chain(s.failover.iter().cloned())
                    .chain(s.next.iter().flat_map(|n| {
                        std::iter::once(n.faas.clone()).chain(n.failover.iter().cloned())
                    }))
            })
            .filter(|c| !c.is_empty())
            .collect();
        clouds.sort();
        clouds.dedup();
        let mut functions = functions;
        for s in functions.values_mut() {
            s.clouds = clouds.clone();
            if s.workflow.is_empty() {
                s.workflow = name.clone();
            }
        }
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        for s in functions.values() {
            h.update(serde_json::to_vec(s).unwrap_or_default());
        }
        let hash = hex::encode(h.finalize());
        Workflow {
            name,
            start,
            functions,
            clouds,
            hash,
        }
    }

    /// The sub-graph of `function`.
    pub fn sub(&self, function: &str) -> Option<&SubGraph> {
        self.functions.get(function)
    }

    /// The sub-graphs as a JSON array (what `joint compile` writes).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.functions
                .values()
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .collect(),
        )
    }
}
