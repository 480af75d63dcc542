//! Deployment config: which backend serves each cloud name of a workflow.
//!
//! ```yaml
//! clouds:
//!   local-a: { backend: local }
//!   aws:     { backend: aws, region: us-east-1, endpoint_url: "http://127.0.0.1:4566", table: joint, bucket: joint }
//!   aliyun:  { backend: aliyun, region: cn-hangzhou, ... }
//! ```
//! Every key besides `backend` is a backend setting; a bad key is an error naming it. Clouds of a
//! workflow that the file does not name are local clouds.

use std::collections::BTreeMap;
use std::path::Path;

use joint_shim::Cloud;
use serde::Deserialize;

/// The file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// Cloud name → settings.
    #[serde(default)]
    pub clouds: BTreeMap<String, CloudConfig>,
}

/// One cloud's settings.
#[derive(Debug, Clone, Deserialize)]
pub struct CloudConfig {
    /// `local`, or a registered backend (`aws`, `aliyun`, or one a binary adds with
    /// `joint_cli::App::backend`).
    pub backend: String,
    /// Backend settings.
    #[serde(flatten)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

impl CloudConfig {
    /// Settings as strings (numbers and booleans are written as text).
    pub fn strings(&self) -> BTreeMap<String, String> {
        self.settings
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()
    }
}

/// Read a deployment config (YAML or JSON).
pub fn load(path: &Path) -> Result<DeployConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cfg: DeployConfig = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text)
            .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            format!("{}{loc}: {e}", path.display())
        })?
    };
    let backends = crate::backends();
    for (name, c) in &cfg.clouds {
        if c.backend != "local" && backends.get(&c.backend).is_err() {
            return Err(format!(
                "{}: cloud '{name}': unknown backend '{}' (known: local, {})",
                path.display(),
                c.backend,
                backends.names().join(", ")
            ));
        }
    }
    Ok(cfg)
}

/// Build a non-local cloud from its config. Local clouds are built by the runner.
pub async fn build_remote(name: &str, c: &CloudConfig) -> Result<Cloud, String> {
    if c.backend == "local" {
        return Err(format!("cloud '{name}' is local; the runner builds it"));
    }
    crate::backends()
        .build(&c.backend, name, &c.strings())
        .await
        .map_err(|e| e.to_string())
}

/// The non-local clouds of the deployment config at `path` (none without a config).
pub async fn remote_clouds(path: Option<&Path>) -> Result<Vec<Cloud>, String> {
    let Some(p) = path else {
        return Ok(Vec::new());
    };
    let cfg = load(p)?;
    let mut remote = Vec::new();
    for (name, c) in &cfg.clouds {
        if c.backend != "local" {
            remote.push(build_remote(name, c).await?);
        }
    }
    Ok(remote)
}

/// Where `joint run` notes which definition file has version `hash`, so `joint resume` can
/// find it: `{state_dir}/definitions/{hash}`, holding the file's absolute path.
fn definition_note(state_dir: &Path, hash: &str) -> std::path::PathBuf {
    state_dir.join("definitions").join(hash)
}

/// Note that `definition` compiles to version `hash` (best effort: a failure only means
/// `joint resume` needs `--definition`).
pub fn remember_definition(state_dir: &Path, hash: &str, definition: &Path) {
    let Ok(abs) = std::fs::canonicalize(definition) else {
        return;
    };
    let note = definition_note(state_dir, hash);
    if let Some(dir) = note.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = std::fs::write(&note, abs.to_string_lossy().as_bytes());
    }
}

/// The definition file noted for version `hash`.
pub fn recall_definition(state_dir: &Path, hash: &str) -> Result<std::path::PathBuf, String> {
    let note = definition_note(state_dir, hash);
    std::fs::read_to_string(&note)
        .map(|p| std::path::PathBuf::from(p.trim()))
        .map_err(|_| {
            format!(
                "{} does not say which definition has version {}; pass --definition",
                state_dir.display(),
                &hash[..12.min(hash.len())]
            )
        })
}
