//! `joint serve`: expose local clouds over HTTP with provider-compatible endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use joint_serve::{ServeState, endpoint_names, serve};
use joint_shim::{Deliver, GcPolicy, Runtime, RuntimeConfig};
use joint_shim_local::LocalCloudsBuilder;

/// `joint serve` arguments. The hosted functions run with the configuration of a deployed
/// function (`RuntimeConfig::from_env`): `JOINT_KEYS` makes them refuse unsigned and forged
/// events, `JOINT_INVOKE_DEADLINE_SECS` sets the invocation deadline.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Workflow whose functions these clouds host (optional: stores only without it).
    pub definition: Option<PathBuf>,
    /// Endpoint to serve, NAME=ADDR (repeatable), e.g. `lambda=127.0.0.1:9001`.
    #[arg(long = "listen", value_name = "NAME=ADDR")]
    pub listen: Vec<String>,
    /// Endpoint setting KEY=VALUE (repeatable), e.g. credentials to verify signatures, or a
    /// request timeout `NAME.timeout_secs=SECONDS` (defaults: lambda and fc 900, oss and ots 30).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Extra local clouds to create (repeatable), besides the workflow's.
    #[arg(long = "cloud")]
    pub clouds: Vec<String>,
    /// Where the local clouds keep their state.
    #[arg(long, default_value = ".joint")]
    pub state_dir: PathBuf,
}

fn pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("--{what} '{s}' is not NAME=VALUE"))
        })
        .collect()
}

/// Run the server until Ctrl-C or SIGTERM.
pub async fn run(a: ServeArgs) -> ExitCode {
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let listen = match pairs(&a.listen, "listen") {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if listen.is_empty() {
        return fail(format!(
            "nothing to serve: pass --listen NAME=ADDR (endpoints: {})",
            endpoint_names().join(", ")
        ));
    }
    let mut addrs = Vec::new();
    for (n, a) in listen {
        match a.parse::<SocketAddr>() {
            Ok(addr) => addrs.push((n, addr)),
            Err(e) => return fail(format!("--listen {n}={a}: {e}")),
        }
    }
    let settings: BTreeMap<String, String> = match pairs(&a.set, "set") {
        Ok(p) => p.into_iter().collect(),
        Err(e) => return fail(e),
    };
    let workflow = match &a.definition {
        None => None,
        Some(p) => match crate::load::load_workflow(p) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
    };
    let mut names = a.clouds.clone();
    if let Some(w) = &workflow {
        names.extend(w.clouds.iter().cloned());
    }
    if names.is_empty() {
        names.push("local".into());
    }
    let clouds = match LocalCloudsBuilder::new()
        .state_dir(&a.state_dir)
        .clouds(names)
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    // The same configuration as a deployed function (`JOINT_KEYS`, `JOINT_INVOKE_DEADLINE_SECS`):
    // with deployment keys, unsigned and forged events are refused here as they are there. The
    // endpoints serve other processes, whose duplicates this one cannot see: keep the runs'
    // state for the stores' retention, as deployed functions do (ADR 0009).
    let cfg = match RuntimeConfig::from_env() {
        Ok(c) => RuntimeConfig {
            gc: GcPolicy::Retain,
            ..c
        },
        Err(e) => return fail(e),
    };
    let runtime = match workflow
        .map(|w| Runtime::new(w, clouds.clouds.clone(), crate::base_handlers(), cfg, None))
    {
        None => None,
        Some(Ok(rt)) => {
            clouds.attach(Arc::new(rt.clone()) as Arc<dyn Deliver>);
            Some(rt)
        }
        Some(Err(e)) => return fail(e.to_string()),
    };
    let state = Arc::new(ServeState {
        runtime,
        clouds,
        settings,
    });
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    };
    let result = serve(
        state,
        addrs,
        |bound| {
            let m: BTreeMap<String, String> = bound
                .into_iter()
                .map(|(n, a)| (n, format!("http://{a}")))
                .collect();
            println!("{}", serde_json::json!({ "listening": m }));
        },
        shutdown,
    )
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}
