//! A progress bar fed by runtime events.

use std::collections::BTreeSet;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use joint_shim::observe::{ObsEvent, Observer};

/// Shows committed instances and failovers while a run goes on.
pub struct Progress {
    bar: ProgressBar,
    done: Mutex<BTreeSet<String>>,
}

impl Progress {
    /// A spinner on stderr (hidden when stderr is not a terminal).
    pub fn new(workflow: &str) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {prefix} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(workflow.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(80));
        Progress {
            bar,
            done: Mutex::new(BTreeSet::new()),
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn event(&self, e: &ObsEvent) {
        match e {
            ObsEvent::InstanceEnd {
                instance,
                cloud,
                error: None,
                ..
            } => {
                let n = {
                    let mut d = self.done.lock().unwrap_or_else(|p| p.into_inner());
                    d.insert(instance.clone());
                    d.len()
                };
                let name = instance.split_once('/').map(|x| x.1).unwrap_or(instance);
                self.bar
                    .set_message(format!("{n} instances done · last {name} on {cloud}"));
            }
            ObsEvent::Failover {
                function, from, to, ..
            } => {
                self.bar
                    .println(format!("failover: {function} {from} -> {to}"));
            }
            _ => {}
        }
    }
}
