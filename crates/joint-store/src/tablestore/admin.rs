//! Table creation.

use joint_shim_aliyun::ots::proto;
use joint_shim_aliyun::ots::{OtsClient, OtsError};

/// Create the coordination table `(p STRING, k STRING)` with one version per cell and a TTL
/// in seconds (`-1`: keep forever). Returns `false` when the table already exists.
pub async fn create_table(
    client: &OtsClient,
    table: &str,
    ttl_secs: i32,
) -> Result<bool, OtsError> {
    let req = proto::CreateTableRequest {
        table_meta: proto::TableMeta {
            table_name: table.to_string(),
            primary_key: ["p", "k"]
                .iter()
                .map(|n| proto::PrimaryKeySchema {
                    name: n.to_string(),
                    r#type: proto::PrimaryKeyType::String as i32,
                    option: None,
                })
                .collect(),
        },
        reserved_throughput: proto::ReservedThroughput {
            capacity_unit: proto::CapacityUnit {
                read: Some(0),
                write: Some(0),
            },
        },
        table_options: Some(proto::TableOptions {
            time_to_live: Some(ttl_secs),
            max_versions: Some(1),
            deviation_cell_version_in_sec: None,
            allow_update: None,
        }),
    };
    match client
        .call::<_, proto::CreateTableResponse>("CreateTable", &req)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code == "OTSObjectAlreadyExist" => Ok(false),
        Err(e) => Err(e),
    }
}
