//! The workloads of `joint bench paper`.

use std::sync::Arc;

use serde_json::json;

use crate::paperbench::Case;

fn load(name: &str, src: &str) -> Result<Arc<joint_core::workflow::Workflow>, String> {
    joint_core::compile::load(name, src)
        .map(Arc::new)
        .map_err(|d| format!("{name}: {d}"))
}

/// IoT chain of `len` functions alternating aws/aliyun with a 1 KB payload.
fn iot(len: u32) -> Result<Arc<joint_core::workflow::Workflow>, String> {
    let mut src = String::from("workflow: iot\nfunctions:\n");
    for i in 0..len {
        let cloud = if i % 2 == 0 { "aws" } else { "aliyun" };
        src.push_str(&format!(
            "  - name: record{i}\n    cloud: {cloud}\n    memory_mb: 512\n    handler: echo\n"
        ));
        if i + 1 < len {
            src.push_str(&format!("    next: [{{to: record{}}}]\n", i + 1));
        }
    }
    load("iot.yaml", &src)
}

/// Every case, paper sizes (or smaller ones with `quick`).
pub fn cases(quick: bool) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    let payload = json!({"reading": "x".repeat(1000)});
    let lens: Vec<u32> = if quick {
        vec![1, 5, 10]
    } else {
        (1..=10).collect()
    };
    for len in lens {
        out.push(Case {
            family: "iot",
            size: format!("len={len}"),
            workflow: iot(len)?,
            input: payload.clone(),
        });
    }
    Ok(out)
}
