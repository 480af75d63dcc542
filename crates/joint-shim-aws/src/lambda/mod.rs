//! Running joint functions inside AWS Lambda (`provided.al2023`): the adapter is thin — it
//! builds a [`Runtime`] once from the environment and hands every event to
//! [`Runtime::handle`].
//!
//! Environment of a deployed function:
//!
//! | variable | meaning |
//! |---|---|
//! | `JOINT_WORKFLOW` | path of the workflow definition (default `$LAMBDA_TASK_ROOT/workflow.json`) |
//! | `JOINT_WORKFLOW_JSON` | the definition itself, JSON or YAML (instead of a file) |
//! | `JOINT_CLOUD` | the cloud this deployment serves (default `aws`) |
//! | `JOINT_CLOUDS` | JSON object: cloud name → settings of [`crate::AwsBuilder`] for every cloud of the workflow; clouds not named use the `JOINT_AWS_*`/`AWS_*` variables |
//! | `JOINT_KEYS` | deployment keys: sign every event sent, refuse unsigned or forged ones |
//! | `JOINT_INVOKE_DEADLINE_SECS` | how long an invoked successor has before `joint resume` / the sweeper re-drive it (default 3600) |
//! | `JOINT_RAW_FUNCTION` | serve a registered handler directly on the raw event instead of a workflow (test functions such as `echo`) |
//! | `JOINT_AWS_*`, `AWS_*` | see [`crate::AwsBuilder::from_env`] |
//!
//! An EventBridge schedule whose input is `{"joint": "sweep"}` makes the function run one sweeper
//! pass ([`Runtime::sweep`]): runs whose events were lost are re-driven.

mod config;

use std::sync::Arc;

use joint_shim::{Handler, Handlers, Runtime};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

pub use config::{LambdaConfig, build_runtime};

/// What one event becomes.
#[derive(Clone)]
enum Mode {
    Workflow { runtime: Runtime, cloud: String },
    Raw(Arc<dyn Handler>, String),
}

/// Run the Lambda runtime loop serving `handlers`, configured from the environment (see the
/// module docs). Returns only when the runtime API goes away or the configuration is bad.
pub async fn run(handlers: Handlers) -> Result<(), lambda_runtime::Error> {
    let cfg = LambdaConfig::from_env()?;
    let mode = match &cfg.raw_function {
        Some(name) => Mode::Raw(config::raw_handler(&handlers, name)?, name.clone()),
        None => Mode::Workflow {
            runtime: build_runtime(&cfg, handlers).await?,
            cloud: cfg.cloud.clone(),
        },
    };
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| {
        let mode = mode.clone();
        async move { handle(&mode, ev).await }
    }))
    .await
}

/// Handle one event: a joint envelope for a workflow function, or the raw input of a raw one.
async fn handle(mode: &Mode, ev: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    match mode {
        Mode::Workflow { runtime, cloud } => {
            let bytes = serde_json::to_vec(&ev.payload).map_err(|e| Diagnostic {
                error_type: "InvalidEvent".into(),
                error_message: e.to_string(),
            })?;
            if joint_shim::runtime::is_sweep_event(&bytes) {
                return match runtime.sweep().await {
                    Ok(r) => Ok(serde_json::json!({ "sweep": r })),
                    Err(e) => Err(Diagnostic {
                        error_type: format!("joint.{}", e.kind().as_str()),
                        error_message: e.to_string(),
                    }),
                };
            }
            // Lambda retries failed async events; the delivery count is not exposed, and the
            // protocol does not depend on it.
            match runtime.handle(cloud, &bytes, 1).await {
                Ok(out) => {
                    if let Some(why) = &out.incomplete {
                        // Make Lambda deliver the event again.
                        return Err(Diagnostic {
                            error_type: "Incomplete".into(),
                            error_message: why.clone(),
                        });
                    }
                    Ok(serde_json::json!({
                        "instance": out.instance,
                        "ran_function": out.ran_function,
                        "adopted": out.adopted,
                        "invoked": out.invoked,
                    }))
                }
                Err(e) => Err(Diagnostic {
                    error_type: format!("joint.{}", e.kind().as_str()),
                    error_message: e.to_string(),
                }),
            }
        }
        Mode::Raw(handler, name) => {
            let ctx = joint_shim::Context {
                workflow_id: ev.context.request_id.clone(),
                instance: ev.context.request_id.clone(),
                function: name.clone(),
                cloud: "aws".into(),
                attempt: 1,
                vars: Default::default(),
            };
            handler
                .call(ev.payload, &ctx)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.kind,
                    error_message: e.message,
                })
        }
    }
}
