//! A `joint` of your own: every command of the joint CLI, with this crate's handlers and its
//! `gateway` backend (docs/embedding.md, docs/new-backend.md).

fn main() -> std::process::ExitCode {
    joint_cli::App::new()
        .handlers(joint_example_custom::handlers())
        .backend(std::sync::Arc::new(joint_example_custom::GatewayBackend))
        .main()
}
