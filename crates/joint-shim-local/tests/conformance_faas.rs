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

/// A caller that gives up while its event is being stored (the invoke stack's timeout drops the
/// call) must not leave an accepted event behind that is never delivered: the durable queue
/// delivers it anyway, as a platform that received the request does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_dropped_while_being_stored_is_still_delivered() {
    let dir = tempfile::tempdir().expect("dir");
    let f = LocalFaas::durable(
        "local-a",
        LocalFaasConfig::default(),
        &dir.path().join("queue.db"),
        joint_shim_local::Durability::Process,
    )
    .expect("durable queue");
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = calls.clone();
    f.add_raw(
        "count",
        handler_fn(move |_, _| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok(serde_json::Value::Null) }
        }),
    );
    // Keep the queue's writer busy, so that the next call is still being stored when it is
    // dropped after its first poll.
    let busy: Vec<_> = (0..2000)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                f.invoke_async("count", bytes::Bytes::from(format!("{{\"i\": {i}}}")))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let call = f.invoke_async("count", bytes::Bytes::from_static(b"{}"));
    let _ = tokio::time::timeout(std::time::Duration::ZERO, call).await;
    for b in busy {
        b.await.expect("task").expect("accepted");
    }
    for _ in 0..500 {
        if calls.load(std::sync::atomic::Ordering::SeqCst) > 2000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    f.idle().await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2001,
        "a stored event was never delivered"
    );
}
