//! The real Lambda path on ministack: the example function binary zipped as `bootstrap`,
//! created with CreateFunction (`provided.al2023`) and run by ministack as a local process.
//! The FaaS conformance suite, then workflows whose functions invoke their successors through
//! aws-sdk-lambda and commit through aws-sdk-dynamodb — no joint process in the middle.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use joint_shim::{Clouds, Runtime, RuntimeConfig};
use joint_shim_aws::deploy::{FunctionSpec, deploy_function, zip_bootstrap};
use serde_json::json;

/// Create a `provided.al2023` Lambda on the emulator with the library's deployment code.
async fn create_function(
    emu: &aws_sdk_lambda::Client,
    name: &str,
    zip: &[u8],
    env: &[(&str, String)],
) {
    deploy_function(
        emu,
        &FunctionSpec {
            name: name.to_string(),
            zip: zip.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            role: "arn:aws:iam::000000000000:role/joint-test".into(),
            memory_mb: 128,
            timeout_secs: 60,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn real_lambda_functions_on_ministack() {
    let Some(url) = common::emulator("ministack", "JOINT_TEST_MINISTACK_URL") else {
        return;
    };
    let Some(exe) = common::bootstrap_exe() else {
        return;
    };
    let zip = zip_bootstrap(&exe).expect("package");
    let emu = common::lambda_client(&url).await;
    let id = common::uniq();

    // FaaS conformance with an echo and a failing function.
    let prefix = format!("t{id}-");
    let cloud = common::fresh_cloud(&url, "aws", &[("function_prefix", prefix.as_str())]).await;
    for (f, h) in [("echo", "echo"), ("fail", "fail")] {
        create_function(
            &emu,
            &format!("{prefix}{f}"),
            &zip,
            &[("JOINT_RAW_FUNCTION", h.to_string())],
        )
        .await;
    }
    joint_shim::conformance::faas(Arc::new(cloud.faas.clone()), "echo", "fail").await;

    // Workflows on two AWS clouds (separate tables, buckets and function prefixes).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for (file, input, expected) in [
        ("chain.yaml", json!(3), json!(6)),
        ("parallel.yaml", json!(3), json!(13)),
        ("map.yaml", json!({"n": 4}), json!(14)),
    ] {
        let src = std::fs::read_to_string(dir.join(file))
            .expect("example")
            .replace("local-a", "aws")
            .replace("local-b", "aws2");
        let w = joint_core::compile::load(file, &src).unwrap_or_else(|d| panic!("{d:?}"));
        let wid = format!("{}{}", w.name, common::uniq());
        let mut clouds = Clouds::new();
        let mut settings = serde_json::Map::new();
        for c in &w.clouds {
            let p = format!("{wid}-{c}-");
            let ac = common::fresh_cloud(&url, c, &[("function_prefix", p.as_str())]).await;
            let mut s = serde_json::Map::new();
            for (k, v) in common::settings(&url, c, ac.coord.table(), ac.blob.bucket()) {
                s.insert(k, json!(v));
            }
            s.insert("function_prefix".into(), json!(p));
            settings.insert(c.clone(), serde_json::Value::Object(s));
            clouds.insert(ac.into_cloud());
        }
        let clouds_env = serde_json::Value::Object(settings).to_string();
        for f in w.functions.values() {
            for c in std::iter::once(&f.faas).chain(f.failover.iter()) {
                create_function(
                    &emu,
                    &format!("{wid}-{c}-{}", f.name),
                    &zip,
                    &[
                        ("JOINT_WORKFLOW_JSON", src.clone()),
                        ("JOINT_CLOUD", c.clone()),
                        ("JOINT_CLOUDS", clouds_env.clone()),
                    ],
                )
                .await;
            }
        }
        let rt = Runtime::new(
            Arc::new(w),
            clouds,
            joint_examples::builtin_handlers(),
            RuntimeConfig::default(),
            None,
        )
        .expect("runtime");
        let run = format!("m{}", common::uniq());
        rt.start(&run, input).await.expect("start");
        let deadline = Instant::now() + Duration::from_secs(180);
        let rec = loop {
            if let Some(r) = rt.run_record(&run).await.expect("record") {
                break r;
            }
            assert!(Instant::now() < deadline, "{file}: no result in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let out = rt.resolve_output(&rec).await.expect("resolve");
        assert_eq!(out.expect("succeeded"), expected, "{file}");
        // A scheduled `{"joint": "sweep"}` event makes a deployed function run one sweeper pass
        // over the stores (the finished run needs nothing).
        let start = rt.home().expect("home").clone();
        let answer = rt
            .clouds()
            .get(&start.faas)
            .expect("home cloud")
            .faas
            .invoke_sync(
                &start.name,
                bytes::Bytes::from_static(b"{\"joint\":\"sweep\"}"),
            )
            .await
            .expect("sweep invocation");
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
        assert!(answer["sweep"]["runs"].is_u64(), "{file}: {answer}");
        assert_eq!(answer["sweep"]["errors"], json!([]), "{file}: {answer}");
        eprintln!("{file}: ran on ministack Lambda");
    }
}
