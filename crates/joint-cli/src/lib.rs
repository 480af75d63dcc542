//! joint-cli: the `joint` command line, usable as a library.
//!
//! [`main`] is the `joint` binary; [`App`] is the same command line with your own Rust
//! handlers and backends, for a binary of your own:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let mut handlers = joint_examples::builtin_handlers();
//!     handlers.register("greet", joint_shim::handler_fn(|v, _| async move { Ok(v) }));
//!     joint_cli::App::new().handlers(handlers).main()
//! }
//! ```
//!
//! A backend crate registers with [`App::backend`]; `--clouds` files then accept its name.
#![deny(missing_docs)]

use std::sync::OnceLock;

mod aliyun;
mod aws;
mod bench;
mod cli;
mod cost;
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
static BACKENDS: OnceLock<joint_shim::Backends> = OnceLock::new();

/// The `joint` command line, with the handlers and backends of your binary.
#[derive(Clone)]
pub struct App {
    handlers: joint_shim::Handlers,
    backends: joint_shim::Backends,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// The built-in example handlers and the built-in backends (`aws`, `aliyun`).
    pub fn new() -> App {
        let mut backends = joint_shim::Backends::new();
        backends.register(std::sync::Arc::new(aws::AwsBackend));
        backends.register(std::sync::Arc::new(aliyun::AliyunBackend));
        App {
            handlers: joint_examples::builtin_handlers(),
            backends,
        }
    }

    /// Run functions with these Rust handlers (instead of the built-in examples).
    pub fn handlers(mut self, h: joint_shim::Handlers) -> App {
        self.handlers = h;
        self
    }

    /// Accept clouds of this backend in `--clouds` files.
    pub fn backend(mut self, b: std::sync::Arc<dyn joint_shim::Backend>) -> App {
        self.backends.register(b);
        self
    }

    /// Parse the command line and run it.
    pub fn main(self) -> std::process::ExitCode {
        let _ = BASE_HANDLERS.set(self.handlers);
        let _ = BACKENDS.set(self.backends);
        cli::run_cli()
    }
}

/// The backends `--clouds` files may name (besides `local`).
pub(crate) fn backends() -> joint_shim::Backends {
    BACKENDS
        .get()
        .cloned()
        .unwrap_or_else(|| App::new().backends)
}

/// The Rust handlers every command runs functions with: the ones given to [`main_with`], or the
/// built-in example handlers.
pub(crate) fn base_handlers() -> joint_shim::Handlers {
    BASE_HANDLERS
        .get()
        .cloned()
        .unwrap_or_else(joint_examples::builtin_handlers)
}
