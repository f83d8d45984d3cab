//! `examples/tracker_flow.rs` on every store: two workers, each on its own
//! store connection, pass one conversation between them.

mod support;

#[allow(dead_code)]
#[path = "../examples/tracker_flow/flow.rs"]
mod flow;

use sessionkit::tracker::KeyedState;
use support::Backend;

async fn passes_the_conversation_between_workers(backend: Backend) {
    let steps = flow::run(
        backend.keyed_store(),
        backend.second_keyed_store().await,
        "conversation-1",
    )
    .await
    .unwrap_or_else(|e| panic!("{}: the flow failed: {e}", backend.name()));
    let workers: Vec<&str> = steps.iter().map(|s| s.worker).collect();
    assert_eq!(
        workers,
        ["worker A", "worker B"].repeat(4),
        "alternating workers"
    );
    let states: Vec<KeyedState> = steps.iter().map(|s| s.state).collect();
    use KeyedState::{Active as A, Finished as F};
    assert_eq!(states, [A, A, A, A, F, F, A, A]);
    let counts: Vec<usize> = steps
        .iter()
        .map(|s| s.conversation.messages.len())
        .collect();
    assert_eq!(
        counts,
        [0, 1, 2, 3, 3, 3, 3, 4],
        "every message kept, in order"
    );
    let last = &steps[7].conversation;
    assert_eq!(last.messages[2], "INV-1024");
    assert_eq!(last.messages[3], "one more thing");
    // Each write bumped the version once; the review read changed nothing.
    let v: Vec<u64> = steps.iter().map(|s| s.version - steps[0].version).collect();
    assert_eq!(v, [0, 1, 2, 3, 4, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    passes_the_conversation_between_workers(Backend::memory_paused().await).await
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    passes_the_conversation_between_workers(Backend::redis().await).await
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    passes_the_conversation_between_workers(Backend::redis_cluster().await).await
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    passes_the_conversation_between_workers(Backend::postgres().await).await
}
