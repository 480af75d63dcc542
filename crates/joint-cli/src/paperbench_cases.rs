//! The workloads of `joint bench paper`: the paper's four workflows (crate
//! `joint_examples::paper`) at the paper's sizes.

use std::sync::Arc;

use joint_examples::paper;

use crate::paperbench::Case;

/// Every case, paper sizes (or smaller ones with `quick`).
pub fn cases(quick: bool) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    let lens: Vec<u32> = if quick {
        vec![1, 5, 10]
    } else {
        (1..=10).collect()
    };
    for len in lens {
        out.push(Case {
            family: "iot",
            size: format!("len={len}"),
            workflow: Arc::new(paper::iot_chain(len)),
            input: paper::iot_input(1024, 7),
        });
    }
    let samples: u64 = if quick { 100_000 } else { 1_000_000 };
    let widths: Vec<u32> = if quick {
        vec![2, 16, 64]
    } else {
        vec![2, 4, 8, 16, 32, 64, 128, 256]
    };
    let mc = Arc::new(paper::monte_carlo());
    for b in widths {
        out.push(Case {
            family: "mc",
            size: format!("branches={b}"),
            workflow: mc.clone(),
            input: paper::monte_carlo_input(b, samples, 11),
        });
    }
    let video = Arc::new(paper::video_analytics());
    for fanout in [4, 8] {
        out.push(Case {
            family: "video",
            size: format!("fanout={fanout}"),
            workflow: video.clone(),
            input: paper::video_input(fanout, if quick { 64 } else { 240 }, 1),
        });
    }
    out.push(Case {
        family: "qa",
        size: "4 questions".into(),
        workflow: Arc::new(paper::question_answering()),
        input: paper::qa_input(4, 3),
    });
    Ok(out)
}
