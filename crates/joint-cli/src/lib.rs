//! joint-cli: the `joint` command line, usable as a library.
//!
//! [`main`] is the `joint` binary; [`main_with`] is the same command line with your own Rust
//! handlers, for a binary of your own:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let mut handlers = joint_examples::builtin_handlers();
//!     handlers.register("greet", joint_shim::handler_fn(|v, _| async move { Ok(v) }));
//!     joint_cli::main_with(handlers)
//! }
//! ```
#![deny(missing_docs)]

use std::sync::OnceLock;

mod aliyun;
mod aws;
mod bench;
mod cost;
mod cli;
mod deploy;
mod failoverbench;
mod faultbench;
mod graph;
mod harness;
mod langbench;
mod load;
mod paperbench;
mod paperbench_cases;
mod progress;
mod resume;
mod serve;
pub mod sfn;
mod sfnbench;
mod timeline;

pub(crate) use cli::{fail, open_state, print_report};
pub use cli::{main, main_with};

static BASE_HANDLERS: OnceLock<joint_shim::Handlers> = OnceLock::new();

fn set_base_handlers(h: joint_shim::Handlers) {
    let _ = BASE_HANDLERS.set(h);
}

/// The Rust handlers every command runs functions with: the ones given to [`main_with`], or the
/// built-in example handlers.
pub(crate) fn base_handlers() -> joint_shim::Handlers {
    BASE_HANDLERS
        .get()
        .cloned()
        .unwrap_or_else(joint_examples::builtin_handlers)
}
