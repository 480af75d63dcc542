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
//!
//! An envelope runs only in the deployment of its own function: its function `F` must be the
//! invoked Lambda function (`AWS_LAMBDA_FUNCTION_NAME`) `{function_prefix}F`, else the event
//! is refused with `joint.InvalidInput` (the runtime would run `F` whichever function was
//! invoked).

mod config;

use std::sync::Arc;

use joint_shim::{Handler, Handlers, Runtime};

use crate::LambdaFaas;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

pub use config::{LambdaConfig, build_runtime};

/// What one event becomes.
#[derive(Clone)]
enum Mode {
    Workflow {
        runtime: Runtime,
        cloud: String,
        /// Names the Lambda function of each workflow function on this cloud.
        faas: LambdaFaas,
    },
    Raw(Arc<dyn Handler>, String),
}

/// Refuse an envelope delivered to another Lambda function than its own: the runtime runs the
/// function the envelope names, so an event for `B` sent to the deployment of `A` must not run
/// `B` there. `invoked` is the Lambda function the platform invoked (`AWS_LAMBDA_FUNCTION_NAME`).
fn check_addressed(faas: &LambdaFaas, invoked: &str, event: &[u8]) -> Result<(), Diagnostic> {
    let Some(function) = joint_core::envelope::addressed_function(event) else {
        return Ok(());
    };
    let own = faas.function_name(&function);
    if own == invoked {
        return Ok(());
    }
    Err(Diagnostic {
        error_type: "joint.InvalidInput".into(),
        error_message: format!(
            "the event is for joint function '{}' (Lambda function '{}') but was delivered to \
             Lambda function '{invoked}'; refusing to run a function other than the one invoked",
            function.chars().take(140).collect::<String>(),
            own.chars().take(200).collect::<String>()
        ),
    })
}

/// Run the Lambda runtime loop serving `handlers`, configured from the environment (see the
/// module docs). Returns only when the runtime API goes away or the configuration is bad.
pub async fn run(handlers: Handlers) -> Result<(), lambda_runtime::Error> {
    let cfg = LambdaConfig::from_env()?;
    let mode = match &cfg.raw_function {
        Some(name) => Mode::Raw(config::raw_handler(&handlers, name)?, name.clone()),
        None => {
            let (runtime, faas) = config::build_deployment(&cfg, handlers).await?;
            Mode::Workflow {
                runtime,
                cloud: cfg.cloud.clone(),
                faas,
            }
        }
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
        Mode::Workflow {
            runtime,
            cloud,
            faas,
        } => {
            let bytes = serde_json::to_vec(&ev.payload).map_err(|e| Diagnostic {
                error_type: "InvalidEvent".into(),
                error_message: e.to_string(),
            })?;
            check_addressed(faas, &ev.context.env_config.function_name, &bytes)?;
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
                            error_message: why.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn faas(prefix: &str) -> LambdaFaas {
        let conf = aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .build();
        LambdaFaas::new(
            aws_sdk_lambda::Client::from_conf(conf),
            prefix,
            None,
            joint_shim::FaasCapabilities {
                async_payload_limit: 1024 * 1024,
                sync_payload_limit: 6 * 1024 * 1024,
                redelivery_window: crate::faas::DEFAULT_REDELIVERY_WINDOW,
            },
            "aws",
        )
    }

    #[test]
    fn an_envelope_for_another_function_is_refused() {
        let f = faas("wf-");
        let boom = br#"{"v":1,"workflow":"w","workflow_id":"r","function":"boom","step":0}"#;
        assert!(check_addressed(&f, "wf-boom", boom).is_ok());
        let e = check_addressed(&f, "wf-first", boom).expect_err("misaddressed");
        assert_eq!(e.error_type, "joint.InvalidInput");
        assert!(
            e.error_message
                .contains("'boom' (Lambda function 'wf-boom')")
                && e.error_message
                    .contains("delivered to Lambda function 'wf-first'"),
            "{}",
            e.error_message
        );
        // Not an envelope (a sweep event, a raw payload): left to the runtime.
        assert!(check_addressed(&f, "wf-first", br#"{"joint":"sweep"}"#).is_ok());
        assert!(check_addressed(&f, "wf-first", b"[1]").is_ok());
    }

    fn event(payload: Value, lambda_function: &str) -> LambdaEvent<Value> {
        let mut ctx = lambda_runtime::Context::default();
        ctx.env_config = Arc::new(lambda_runtime::Config {
            function_name: lambda_function.to_string(),
            ..lambda_runtime::Config::default()
        });
        LambdaEvent::new(payload, ctx)
    }

    #[tokio::test]
    async fn the_adapter_runs_only_the_function_it_was_invoked_as() {
        let src = "workflow: w\nfunctions:\n  - {name: first, cloud: aws, handler: inc, next: [{to: boom}]}\n  - {name: boom, cloud: aws, handler: inc}\n";
        let w = Arc::new(joint_core::compile::load("w.yaml", src).expect("definition"));
        let local = joint_shim_local::LocalCloudsBuilder::new()
            .clouds(["aws"])
            .build()
            .expect("local clouds");
        let runtime = Runtime::new(
            w.clone(),
            local.clouds.clone(),
            joint_examples::builtin_handlers(),
            joint_shim::RuntimeConfig::default(),
            None,
        )
        .expect("runtime");
        let mode = Mode::Workflow {
            runtime: runtime.clone(),
            cloud: "aws".into(),
            faas: faas("wf-"),
        };
        let mut env = runtime
            .start_envelope(
                "r1",
                joint_core::envelope::Input::Inline(serde_json::json!(1)),
            )
            .expect("envelope");
        env.function = "boom".into();
        let payload: Value = serde_json::from_slice(&env.encode()).expect("json");
        let e = handle(&mode, event(payload.clone(), "wf-first"))
            .await
            .expect_err("an envelope for boom sent to first is refused");
        assert_eq!(e.error_type, "joint.InvalidInput", "{}", e.error_message);
        assert!(e.error_message.contains("'boom'"), "{}", e.error_message);
        assert!(
            runtime
                .status("r1")
                .await
                .expect("status")
                .instances
                .is_empty(),
            "nothing ran"
        );
        // Delivered to its own function, it runs.
        let out = handle(&mode, event(payload, "wf-boom"))
            .await
            .map_err(|d| d.error_message)
            .expect("boom runs when invoked as boom");
        assert_eq!(out["ran_function"], true, "{out}");
    }
}
