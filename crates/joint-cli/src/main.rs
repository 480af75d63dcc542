//! `joint`: run, validate, compile and inspect serverless workflows across clouds.

fn main() -> std::process::ExitCode {
    joint_cli::main()
}
