//! The adapter's configuration, read once at cold start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use joint_shim::{Clouds, Handler, Handlers, Runtime, RuntimeConfig};

use crate::AwsBuilder;

type BoxError = lambda_runtime::Error;

/// Configuration of a deployed function (see the [module docs](super)).
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// The definition's text and a name hint (its path).
    pub workflow: (String, String),
    /// The cloud this deployment serves.
    pub cloud: String,
    /// Per-cloud settings.
    pub clouds: BTreeMap<String, BTreeMap<String, String>>,
    /// Serve this handler on raw events.
    pub raw_function: Option<String>,
}

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl LambdaConfig {
    /// Read the environment.
    pub fn from_env() -> Result<Self, BoxError> {
        let raw_function = var("JOINT_RAW_FUNCTION");
        let workflow = if raw_function.is_some() {
            (String::new(), String::new())
        } else if let Some(text) = var("JOINT_WORKFLOW_JSON") {
            // The variable may hold YAML too; the hint picks the parser.
            let t = text.trim_start();
            let hint = if t.starts_with('{') || t.starts_with('[') {
                "workflow.json"
            } else {
                "workflow.yaml"
            };
            (hint.to_string(), text)
        } else {
            let path = var("JOINT_WORKFLOW").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(var("LAMBDA_TASK_ROOT").unwrap_or_else(|| ".".into()))
                    .join("workflow.json")
            });
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("JOINT_WORKFLOW: cannot read {}: {e}", path.display()))?;
            (path.display().to_string(), text)
        };
        let clouds = match var("JOINT_CLOUDS") {
            None => BTreeMap::new(),
            Some(j) => {
                let v: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
                    serde_json::from_str(&j).map_err(|e| format!("JOINT_CLOUDS: {e}"))?;
                v.into_iter()
                    .map(|(c, s)| {
                        let s = s
                            .into_iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    serde_json::Value::String(s) => s,
                                    other => other.to_string(),
                                };
                                (k, v)
                            })
                            .collect();
                        (c, s)
                    })
                    .collect()
            }
        };
        Ok(LambdaConfig {
            workflow,
            cloud: var("JOINT_CLOUD").unwrap_or_else(|| "aws".into()),
            clouds,
            raw_function,
        })
    }
}

/// The registered handler `name`.
pub(crate) fn raw_handler(handlers: &Handlers, name: &str) -> Result<Arc<dyn Handler>, BoxError> {
    let sub: joint_core::subgraph::SubGraph =
        serde_json::from_value(serde_json::json!({"Name": name, "Handler": name}))
            .map_err(|e| format!("JOINT_RAW_FUNCTION: {e}"))?;
    Ok(handlers.resolve(&sub)?)
}

/// Load the workflow and build every cloud of it as an AWS cloud, then the runtime.
pub async fn build_runtime(cfg: &LambdaConfig, handlers: Handlers) -> Result<Runtime, BoxError> {
    Ok(build_deployment(cfg, handlers).await?.0)
}

/// [`build_runtime`], and the Lambda invoker of the cloud this deployment serves (which names
/// the Lambda function of each workflow function).
pub(crate) async fn build_deployment(
    cfg: &LambdaConfig,
    handlers: Handlers,
) -> Result<(Runtime, crate::LambdaFaas), BoxError> {
    let (hint, src) = &cfg.workflow;
    let workflow = joint_core::compile::load(hint, src)
        .map_err(|d| format!("the workflow definition is invalid:\n{d}"))?;
    let mut clouds = Clouds::new();
    let mut own = None;
    for name in &workflow.clouds {
        let mut b = AwsBuilder::from_env().with_config("cloud", name.clone());
        if let Some(s) = cfg.clouds.get(name) {
            b = b.with_settings(s);
        }
        let cloud = b.build().await?;
        if *name == cfg.cloud {
            own = Some(cloud.faas.clone());
        }
        clouds.insert(cloud.into_cloud());
    }
    let Some(own) = own else {
        return Err(format!(
            "JOINT_CLOUD '{}' is not a cloud of workflow '{}' (its clouds: {})",
            cfg.cloud,
            workflow.name,
            workflow.clouds.join(", ")
        )
        .into());
    };
    let runtime = Runtime::new(
        Arc::new(workflow),
        clouds,
        handlers,
        RuntimeConfig::from_env()?,
        None,
    )?;
    Ok((runtime, own))
}
