//! A Lambda function (`provided.al2023`) serving joint's example handlers: deploy it zipped as
//! `bootstrap`; the environment selects the workflow and the cloud (see
//! `joint_shim_aws::lambda`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    joint_shim_aws::lambda::run(joint_examples::builtin_handlers()).await
}
