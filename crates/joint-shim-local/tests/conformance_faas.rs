//! The FaaS conformance suite against the local FaaS.

use std::sync::Arc;

use joint_shim::{Faas, fn_error, handler_fn};
use joint_shim_local::{LocalFaas, LocalFaasConfig};

#[tokio::test]
async fn local_faas_passes_the_conformance_suite() {
    let f = LocalFaas::new("local-a", LocalFaasConfig::default());
    f.add_raw("echo", handler_fn(|v, _| async move { Ok(v) }));
    f.add_raw(
        "broken",
        handler_fn(|_, _| async move { Err(fn_error("broken on purpose")) }),
    );
    joint_shim::conformance::faas(Arc::new(f.clone()) as Arc<dyn Faas>, "echo", "broken").await;
    f.idle().await;
    assert_eq!(f.stats().accepted, 1);
    // An outage refuses everything with a failover-worthy error.
    f.set_down(true);
    let e = f
        .invoke_async("echo", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), joint_shim::ErrorKind::Unavailable);
    assert!(e.is_failover_worthy() && e.is_retryable());
}
