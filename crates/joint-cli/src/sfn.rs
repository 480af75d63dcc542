//! The Step Functions baseline on an emulator (or AWS): deploy a workflow's functions twice —
//! as plain Lambdas (the user handler only, `JOINT_RAW_FUNCTION`) behind an Amazon States
//! Language state machine ([`joint_core::asl`]), and as joint Lambdas that drive each other — and run
//! both, timing each run from the client's start call to the observed result.
//!
//! Used by `joint bench sfn` and the `sfn_ministack` test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use joint_core::workflow::Workflow;
use joint_shim::{Clouds, Handlers, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use joint_core::asl::{AslTarget, plain_functions, to_asl};
use joint_shim_aws::AwsBuilder;
use joint_shim_aws::deploy::{FunctionSpec, deploy_function};

/// Account id the emulator uses in ARNs.
pub const EMULATOR_ACCOUNT: &str = "000000000000";
/// Region used on the emulator.
pub const EMULATOR_REGION: &str = "us-east-1";
const ROLE: &str = "arn:aws:iam::000000000000:role/joint-sfn";

type Res<T> = Result<T, String>;

/// SDK clients on the emulator at `endpoint` (static test credentials).
#[derive(Debug, Clone)]
pub struct Emulator {
    /// Endpoint URL.
    pub endpoint: String,
    /// Lambda client.
    pub lambda: aws_sdk_lambda::Client,
    /// Step Functions client.
    pub sfn: aws_sdk_sfn::Client,
}

impl Emulator {
    /// Clients on `endpoint`.
    pub async fn new(endpoint: &str) -> Emulator {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(EMULATOR_REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "test",
                "test",
                None,
                None,
                "joint-sfn",
            ))
            .load()
            .await;
        Emulator {
            endpoint: endpoint.to_string(),
            lambda: aws_sdk_lambda::Client::new(&conf),
            sfn: aws_sdk_sfn::Client::new(&conf),
        }
    }

    /// Create (or update) Lambda `name` (`provided.al2023`, handler `bootstrap`) from `zip`
    /// with `env`.
    pub async fn create_function(&self, name: &str, zip: &[u8], env: &[(&str, String)]) -> Res<()> {
        deploy_function(
            &self.lambda,
            &FunctionSpec {
                name: name.to_string(),
                zip: zip.to_vec(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                role: ROLE.to_string(),
                memory_mb: 128,
                timeout_secs: 60,
            },
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Deploy one plain Lambda per function of `w` (`{prefix}F`, running only F's handler on its
    /// input) and a state machine `name` invoking them; returns the state machine's ARN.
    pub async fn deploy_state_machine(
        &self,
        w: &Workflow,
        prefix: &str,
        name: &str,
        zip: &[u8],
    ) -> Res<String> {
        for (f, h) in plain_functions(w)? {
            self.create_function(&format!("{prefix}{f}"), zip, &[("JOINT_RAW_FUNCTION", h)])
                .await?;
        }
        let def = to_asl(
            w,
            &AslTarget {
                region: EMULATOR_REGION.into(),
                account: EMULATOR_ACCOUNT.into(),
                function_prefix: prefix.into(),
            },
        )?;
        let out = self
            .sfn
            .create_state_machine()
            .name(name)
            .definition(def.to_string())
            .role_arn(ROLE)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "CreateStateMachine {name}: {}",
                    aws_sdk_sfn::error::DisplayErrorContext(e)
                )
            })?;
        Ok(out.state_machine_arn().to_string())
    }

    /// One execution: StartExecution, then DescribeExecution every `poll` until it ends.
    pub async fn run_execution(&self, arn: &str, input: &Value, poll: Duration) -> Res<SfnRun> {
        let t0 = Instant::now();
        let start = self
            .sfn
            .start_execution()
            .state_machine_arn(arn)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "StartExecution: {}",
                    aws_sdk_sfn::error::DisplayErrorContext(e)
                )
            })?;
        let exec = start.execution_arn().to_string();
        let deadline = t0 + Duration::from_secs(300);
        loop {
            let d = self
                .sfn
                .describe_execution()
                .execution_arn(&exec)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "DescribeExecution: {}",
                        aws_sdk_sfn::error::DisplayErrorContext(e)
                    )
                })?;
            use aws_sdk_sfn::types::ExecutionStatus as S;
            match d.status() {
                S::Running | S::PendingRedrive => {}
                S::Succeeded => {
                    let makespan_ms = t0.elapsed().as_secs_f64() * 1000.0;
                    let output = d
                        .output()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| format!("execution output: {e}"))?
                        .unwrap_or(Value::Null);
                    let (events, transitions) = self.history(&exec).await?;
                    return Ok(SfnRun {
                        output,
                        makespan_ms,
                        events,
                        transitions,
                    });
                }
                other => {
                    return Err(format!(
                        "execution {exec} ended {other:?}: {} {}",
                        d.error().unwrap_or(""),
                        d.cause().unwrap_or("")
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("execution {exec}: no result within 300 s"));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The execution's history: (events, state transitions). A transition is a state entered —
    /// `*StateEntered` events, plus the Task states run inside Parallel branches and Map
    /// iterations, whose entries the emulator records only as `TaskScheduled`.
    async fn history(&self, exec: &str) -> Res<(u64, u64)> {
        let mut events = 0u64;
        let (mut entered, mut task_entered, mut scheduled) = (0u64, 0u64, 0u64);
        let mut token: Option<String> = None;
        loop {
            let page = self
                .sfn
                .get_execution_history()
                .execution_arn(exec)
                .max_results(1000)
                .include_execution_data(false)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "GetExecutionHistory: {}",
                        aws_sdk_sfn::error::DisplayErrorContext(e)
                    )
                })?;
            for ev in page.events() {
                events += 1;
                let t = ev.r#type().as_str();
                if t.ends_with("StateEntered") {
                    entered += 1;
                }
                if t == "TaskStateEntered" {
                    task_entered += 1;
                }
                if t == "TaskScheduled" {
                    scheduled += 1;
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok((events, entered + scheduled.saturating_sub(task_entered)))
    }
}

/// One Step Functions execution.
#[derive(Debug, Clone)]
pub struct SfnRun {
    /// The execution's output.
    pub output: Value,
    /// StartExecution to the DescribeExecution that saw SUCCEEDED, in ms.
    pub makespan_ms: f64,
    /// History events.
    pub events: u64,
    /// State transitions (see [`Emulator::history`]).
    pub transitions: u64,
}

/// joint deployed on the emulator: every cloud of the workflow backed by its own DynamoDB table,
/// S3 bucket and Lambda prefix, and a runtime in this process to start runs and read results.
pub struct JointDeployment {
    /// Starts runs and reads run records.
    pub runtime: Runtime,
    /// Tables created (one per cloud).
    pub tables: Vec<String>,
}

/// Deploy `src` (the definition's text) as joint Lambdas: for every cloud `c` a fresh table and
/// bucket `{id}-{c}` and functions `{id}-{c}-F`. `handlers` must match the Lambdas' handlers.
pub async fn deploy_joint(
    em: &Emulator,
    hint: &str,
    src: &str,
    id: &str,
    zip: &[u8],
    handlers: Handlers,
) -> Res<JointDeployment> {
    let w = joint_core::compile::load(hint, src).map_err(|d| d.to_string())?;
    let mut clouds = Clouds::new();
    let mut settings = serde_json::Map::new();
    let mut tables = Vec::new();
    for c in &w.clouds {
        let table = format!("{id}-{c}");
        let bucket = format!("{id}-{c}").to_lowercase();
        let prefix = format!("{id}-{c}-");
        let kv: BTreeMap<&str, &str> = [
            ("region", EMULATOR_REGION),
            ("endpoint_url", em.endpoint.as_str()),
            ("access_key_id", "test"),
            ("secret_access_key", "test"),
            ("cloud", c.as_str()),
            ("table", table.as_str()),
            ("bucket", bucket.as_str()),
            ("function_prefix", prefix.as_str()),
        ]
        .into_iter()
        .collect();
        let mut b = AwsBuilder::new();
        for (k, v) in &kv {
            b = b.with_config(k, *v);
        }
        let ac = b.build().await.map_err(|e| format!("cloud {c}: {e}"))?;
        joint_store::dynamo::create_table(ac.coord.client(), ac.coord.table())
            .await
            .map_err(|e| format!("create table {table}: {e}"))?;
        ac.blob
            .create_bucket()
            .await
            .map_err(|e| format!("create bucket {bucket}: {e}"))?;
        settings.insert(
            c.clone(),
            Value::Object(kv.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()),
        );
        tables.push(table);
        clouds.insert(ac.into_cloud());
    }
    let clouds_env = Value::Object(settings).to_string();
    for f in w.functions.values() {
        for c in std::iter::once(&f.faas).chain(f.failover.iter()) {
            em.create_function(
                &format!("{id}-{c}-{}", f.name),
                zip,
                &[
                    ("JOINT_WORKFLOW_JSON", src.to_string()),
                    ("JOINT_CLOUD", c.clone()),
                    ("JOINT_CLOUDS", clouds_env.clone()),
                ],
            )
            .await?;
        }
    }
    let runtime = Runtime::new(
        Arc::new(w),
        clouds,
        handlers,
        RuntimeConfig::default(),
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(JointDeployment { runtime, tables })
}

impl JointDeployment {
    /// One run: invoke the start Lambda, then read the run record every `poll` until it exists.
    /// Returns the output and the makespan in ms.
    pub async fn run(&self, run_id: &str, input: Value, poll: Duration) -> Res<(Value, f64)> {
        let t0 = Instant::now();
        self.runtime
            .start(run_id, input)
            .await
            .map_err(|e| format!("start: {e}"))?;
        let deadline = t0 + Duration::from_secs(300);
        let rec = loop {
            if let Some(r) = self
                .runtime
                .run_record(run_id)
                .await
                .map_err(|e| format!("run record: {e}"))?
            {
                break r;
            }
            if Instant::now() > deadline {
                return Err(format!("run {run_id}: no result within 300 s"));
            }
            tokio::time::sleep(poll).await;
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        match self
            .runtime
            .resolve_output(&rec)
            .await
            .map_err(|e| format!("resolve output: {e}"))?
        {
            Ok(v) => Ok((v, ms)),
            Err(f) => Err(format!("run {run_id} failed: {f:?}")),
        }
    }
}

/// The `provided.al2023` package of `exe` ([`joint_shim_aws::deploy::zip_bootstrap`]).
pub fn zip_bootstrap(exe: &[u8]) -> Vec<u8> {
    joint_shim_aws::deploy::zip_bootstrap(exe).unwrap_or_default()
}
