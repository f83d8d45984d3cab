//! Keyed sessions passed between workers: a chat conversation, named by the
//! application's own key, handled by whichever of two workers receives the
//! next event. Each worker has its own store connection, as two replicas
//! would: worker A starts it, worker B adds a message under the lock, ...,
//! one finishes it, the other reads it as finished, one resumes it.
//!
//! ```text
//! cargo run --example tracker_flow                                   # in memory
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example tracker_flow --features redis
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --example tracker_flow --features postgres
//! ```
//!
//! The workers and the events are in `tracker_flow/flow.rs`, which
//! `tests/tracker_flow.rs` runs on every store.

#[path = "tracker_flow/flow.rs"]
mod flow;

use std::sync::Arc;

use sessionkit::tracker::KeyedStore;

type Stores = (Arc<dyn KeyedStore>, Arc<dyn KeyedStore>, String);

/// Two stores on the same data: two connections to `DATABASE_URL` or
/// `REDIS_URL` when set (with the features), else one memory store.
async fn stores() -> Result<Stores, sessionkit::Error> {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        use sessionkit::postgres::PostgresStore;
        let a = PostgresStore::connect(&url).await?;
        let b = PostgresStore::connect(&url).await?;
        return Ok((
            Arc::new(a),
            Arc::new(b),
            "PostgreSQL (two pools)".to_owned(),
        ));
    }
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        use sessionkit::redis::RedisStore;
        let a = RedisStore::connect(&url).await?;
        let b = RedisStore::connect(&url).await?;
        return Ok((
            Arc::new(a),
            Arc::new(b),
            "Redis (two connections)".to_owned(),
        ));
    }
    let memory = sessionkit::MemoryStore::new();
    Ok((
        Arc::new(memory.clone()),
        Arc::new(memory),
        "memory (one process, one store; set REDIS_URL or DATABASE_URL for two connections)"
            .to_owned(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b, where_) = stores().await?;
    println!("keyed sessions in {where_}");
    let key = format!("conversation-{}", std::process::id());
    let steps = flow::run(a.clone(), b, &key).await?;
    // Versions start from the store's clock (so a removed and restarted
    // key never reuses one); shown here as writes since the start.
    let first = steps.first().map_or(0, |s| s.version);
    for s in &steps {
        println!(
            "{}: {:<52} {:<8} version +{} ({} messages)",
            s.worker,
            s.what,
            s.state.as_str(),
            s.version - first,
            s.conversation.messages.len()
        );
    }
    if let Some(last) = steps.last() {
        println!("\nthe conversation of {}:", last.conversation.user);
        for m in &last.conversation.messages {
            println!("  {m}");
        }
    }
    // Tidy up: the example's key is its own.
    sessionkit::tracker::Tracker::<flow::Conversation>::from_arc(a, "chat")
        .remove(&key)
        .await?;
    Ok(())
}
