//! A deployment whose functions are hosted by `joint serve`'s Lambda endpoint and invoked
//! through aws-sdk-lambda, with checkpoints in DynamoDB and blobs in S3 on an emulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use joint_serve::{ServeState, Served, spawn};
use joint_shim::layers::{Chaos, CommitLedger, Counted, OpCounts};
use joint_shim::{Cloud, Clouds, CoordStore, Deliver, GcPolicy, Runtime, RuntimeConfig};
use joint_shim_aws::AwsBuilder;
use joint_shim_local::{LocalClouds, LocalCloudsBuilder, LocalFaasConfig};
use serde_json::Value;

/// A running deployment.
pub struct ServeDeployment {
    pub runtime: Runtime,
    pub local: LocalClouds,
    /// Operation counts per cloud (coordination store, blob store and Lambda invocations).
    pub counts: BTreeMap<String, OpCounts>,
    /// What the coordination stores answered to every create.
    pub ledger: CommitLedger,
    /// Times a run stalled on lost events and was resumed.
    pub resumes: Arc<std::sync::atomic::AtomicU32>,
    /// The Lambda endpoint; stops serving when dropped.
    _served: Served,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Deploy `workflow` with its functions behind a `joint serve` Lambda endpoint and its stores on
/// the emulator at `store_url`.
pub async fn deploy(
    workflow: Arc<joint_core::workflow::Workflow>,
    store_url: &str,
    chaos: Chaos,
) -> ServeDeployment {
    let addr = free_addr();
    let lambda_url = format!("http://{addr}");
    let ledger = CommitLedger::new();
    let mut clouds = Clouds::new();
    let mut counts = BTreeMap::new();
    for name in &workflow.clouds {
        let stores = super::fresh_cloud(store_url, name, &[]).await;
        let faas = AwsBuilder::new()
            .with_config("region", "us-east-1")
            .with_config("endpoint_url", lambda_url.clone())
            .with_config("access_key_id", "test")
            .with_config("secret_access_key", "test")
            .with_config("table", "unused")
            .with_config("bucket", "unused")
            .with_config("cloud", name.clone())
            .build()
            .await
            .expect("lambda client")
            .faas;
        let c = OpCounts::new();
        clouds.insert(Cloud {
            name: name.clone(),
            faas: Arc::new(Counted::new(faas, c.clone())),
            coord: Arc::new(Counted::new(ledger.watch(stores.coord), c.clone())),
            blob: Arc::new(Counted::new(stores.blob, c.clone())),
        });
        counts.insert(name.clone(), c);
    }
    let mut fcfg = LocalFaasConfig {
        chaos,
        ..LocalFaasConfig::default()
    };
    if chaos.is_active() {
        fcfg.max_deliveries = 100;
        fcfg.retry_delay = Duration::from_millis(20);
        fcfg.visibility_timeout = Duration::from_millis(200);
    }
    let local = LocalCloudsBuilder::new()
        .clouds(workflow.clouds.iter().cloned())
        .faas_config(fcfg)
        .chaos(chaos)
        .build()
        .expect("local clouds");
    let cfg = RuntimeConfig {
        chaos,
        gc: GcPolicy::WhenQuiet,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(
        workflow,
        clouds,
        joint_examples::builtin_handlers(),
        cfg,
        None,
    )
    .expect("runtime");
    local.attach(Arc::new(runtime.clone()) as Arc<dyn Deliver>);
    let state = Arc::new(ServeState {
        runtime: Some(runtime.clone()),
        clouds: local.clone(),
        settings: BTreeMap::new(),
    });
    let served = spawn(state, vec![("lambda".to_string(), addr)])
        .await
        .expect("joint serve");
    ServeDeployment {
        runtime,
        local,
        counts,
        ledger,
        resumes: Arc::default(),
        _served: served,
    }
}

impl ServeDeployment {
    /// Start a run and wait for its output.
    pub async fn run(&self, run_id: &str, input: Value) -> std::result::Result<Value, String> {
        let rt = &self.runtime;
        rt.start(run_id, input.clone())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(120);
        // Poll the home cloud only, so polling never counts as a read of another cloud's store.
        let home = rt.home().map_err(|e| e.to_string())?.faas.clone();
        let key = joint_core::naming::run_key(run_id);
        let rec = loop {
            let home_store = &rt.clouds().get(&home).map_err(|e| e.to_string())?.coord;
            if let Some(item) = home_store.get(&key).await.map_err(|e| e.to_string())? {
                let rec: joint_core::envelope::RunRecord =
                    serde_json::from_slice(&item.value).map_err(|e| e.to_string())?;
                break rec;
            }
            if Instant::now() > deadline {
                return Err(format!("run {run_id} did not finish in time"));
            }
            // Nothing in flight and no record: events were lost (chaos `lose`). Do what the
            // sweeper does, through DynamoDB and the Lambda endpoint.
            if self.local.faas.values().all(|f| f.inflight() == 0) {
                let r = rt
                    .resume_stalled(run_id, &input)
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.errors.is_empty() {
                    return Err(format!("resume of {run_id}: {:?}", r.errors));
                }
                self.resumes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.local.idle().await;
        let out = rt.resolve_output(&rec).await.map_err(|e| e.to_string())?;
        rt.run_deferred_gc().await.map_err(|e| e.to_string())?;
        out.map_err(|f| format!("run failed: {f:?}"))
    }
}
