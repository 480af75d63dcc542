//! The cost model: what a run costs per 10^6 runs, by component, from counted operations and
//! measured durations, with unit prices loaded from a data file that names each price's source.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One unit price with its provenance.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per unit.
    pub price: f64,
    /// Where the number comes from.
    pub source: String,
    /// When it was read.
    pub date: String,
}

/// A provider's FaaS and egress prices.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderPrices {
    /// Per GB-second of function execution.
    pub gb_second: Price,
    /// Per invocation.
    pub request: Price,
    /// Per GB leaving the provider.
    pub egress_gb: Price,
}

/// The price file (`data/prices.json`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// What the file is.
    pub description: String,
    /// Currency of every price.
    pub currency: String,
    /// Per provider.
    pub providers: BTreeMap<String, ProviderPrices>,
    /// Cloud name → provider (`*` for clouds not listed).
    pub cloud_provider: BTreeMap<String, String>,
    /// Per coordination-store write.
    pub datastore_write: Price,
    /// Per coordination-store read.
    pub datastore_read: Price,
    /// Per object-store request.
    pub object_request: Price,
    /// Per managed-orchestrator state transition.
    pub state_transition: Price,
    /// Orchestrator VM, per hour.
    pub orchestrator_vm_hour: Price,
    /// Database VM, per hour.
    pub database_vm_hour: Price,
    /// Concurrent runs a VM serves (the paper's N).
    pub vm_concurrency: Price,
}

impl Prices {
    /// Parse the price file; errors name the field.
    pub fn from_json(src: &str) -> Result<Prices, String> {
        let p: Prices = serde_json::from_str(src)
            .map_err(|e| format!("prices: {e} (line {}, column {})", e.line(), e.column()))?;
        for (cloud, prov) in &p.cloud_provider {
            if !p.providers.contains_key(prov) {
                return Err(format!(
                    "prices: cloud_provider maps '{cloud}' to '{prov}', which has no prices"
                ));
            }
        }
        if !p.cloud_provider.contains_key("*") {
            return Err("prices: cloud_provider needs a '*' entry for other clouds".into());
        }
        Ok(p)
    }

    /// The prices of the provider behind `cloud`.
    pub fn provider(&self, cloud: &str) -> &ProviderPrices {
        let name = self
            .cloud_provider
            .get(cloud)
            .or_else(|| self.cloud_provider.get("*"))
            .map(String::as_str)
            .unwrap_or("");
        self.providers
            .get(name)
            .or_else(|| self.providers.values().next())
            .expect("from_json checked that providers are present")
    }
}

/// What one run consumed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// GB-seconds of function execution per cloud.
    pub gb_seconds: BTreeMap<String, f64>,
    /// Function invocations per cloud.
    pub requests: BTreeMap<String, u64>,
    /// Coordination-store writes.
    pub datastore_writes: u64,
    /// Coordination-store reads.
    pub datastore_reads: u64,
    /// Object-store requests.
    pub object_requests: u64,
    /// Managed-orchestrator state transitions.
    pub state_transitions: u64,
    /// Seconds an orchestrator VM is busy with the run.
    pub orchestrator_vm_seconds: f64,
    /// Seconds a database VM is busy with the run.
    pub database_vm_seconds: f64,
    /// Bytes leaving each cloud for another one.
    pub egress_bytes: BTreeMap<String, u64>,
}

/// Cost per 10^6 runs, by component (USD).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cost {
    /// Function GB-s.
    pub functions: f64,
    /// Function requests.
    pub requests: f64,
    /// Datastore writes.
    pub datastore_writes: f64,
    /// Datastore reads.
    pub datastore_reads: f64,
    /// Object-store requests.
    pub object_requests: f64,
    /// State transitions.
    pub state_transitions: f64,
    /// Orchestrator and database VM hours.
    pub vm_hours: f64,
    /// Egress between clouds.
    pub egress: f64,
}

impl Cost {
    /// Sum of the components.
    pub fn total(&self) -> f64 {
        self.functions
            + self.requests
            + self.datastore_writes
            + self.datastore_reads
            + self.object_requests
            + self.state_transitions
            + self.vm_hours
            + self.egress
    }
}

/// Runs the cost is quoted for.
pub const RUNS: f64 = 1e6;

/// Cost of 10^6 runs that each use `u`. VM time follows the paper: price/h × 10^6 × busy time / N.
pub fn per_million(u: &Usage, p: &Prices) -> Cost {
    let functions = u
        .gb_seconds
        .iter()
        .map(|(c, gbs)| gbs * p.provider(c).gb_second.price)
        .sum::<f64>()
        * RUNS;
    let requests = u
        .requests
        .iter()
        .map(|(c, n)| *n as f64 * p.provider(c).request.price)
        .sum::<f64>()
        * RUNS;
    let egress = u
        .egress_bytes
        .iter()
        .map(|(c, b)| *b as f64 / 1e9 * p.provider(c).egress_gb.price)
        .sum::<f64>()
        * RUNS;
    let n = p.vm_concurrency.price.max(1.0);
    let vm_hours = (u.orchestrator_vm_seconds * p.orchestrator_vm_hour.price
        + u.database_vm_seconds * p.database_vm_hour.price)
        / 3600.0
        * RUNS
        / n;
    Cost {
        functions,
        requests,
        datastore_writes: u.datastore_writes as f64 * p.datastore_write.price * RUNS,
        datastore_reads: u.datastore_reads as f64 * p.datastore_read.price * RUNS,
        object_requests: u.object_requests as f64 * p.object_request.price * RUNS,
        state_transitions: u.state_transitions as f64 * p.state_transition.price * RUNS,
        vm_hours,
        egress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        Prices::from_json(include_str!("../../../data/prices.json")).unwrap()
    }

    #[test]
    fn paper_iot_datastore_cost_is_reproduced() {
        // Paper §6.4: IoT chain of 10 = 30 writes + 20 reads = $48.50 per 10^6 runs.
        let u = Usage {
            datastore_writes: 30,
            datastore_reads: 20,
            ..Usage::default()
        };
        let c = per_million(&u, &prices());
        assert!(
            (c.datastore_writes + c.datastore_reads - 48.507).abs() < 0.01,
            "{c:?}"
        );
    }

    #[test]
    fn paper_xafcl_vm_formula() {
        // Paper Table 3: xAFCL IoT-10, makespan about 2.75 s: 0.396+0.099 $/h x 10^6 x T / 2.
        let u = Usage {
            orchestrator_vm_seconds: 2.75,
            database_vm_seconds: 2.75,
            ..Usage::default()
        };
        let c = per_million(&u, &prices());
        assert!((c.vm_hours - 189.06).abs() < 0.5, "{}", c.vm_hours);
    }

    #[test]
    fn transitions_and_functions() {
        let mut u = Usage {
            state_transitions: 21,
            ..Usage::default()
        };
        u.gb_seconds.insert("aliyun".into(), 1.0);
        u.requests.insert("aws".into(), 2);
        let c = per_million(&u, &prices());
        assert!(
            (c.state_transitions - 525.0).abs() < 1e-6,
            "paper: video fan-out 8 = $525"
        );
        assert!((c.functions - 16.384).abs() < 1e-6);
        assert!((c.requests - 0.4).abs() < 1e-9);
        assert!(c.total() > 541.0);
    }

    #[test]
    fn bad_price_files_name_the_problem() {
        let e = Prices::from_json("{}").unwrap_err();
        assert!(e.contains("missing field"), "{e}");
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../../data/prices.json")).unwrap();
        v["cloud_provider"]["x"] = serde_json::json!("gcp");
        let e = Prices::from_json(&v.to_string()).unwrap_err();
        assert!(e.contains("'x' to 'gcp'"), "{e}");
    }
}
