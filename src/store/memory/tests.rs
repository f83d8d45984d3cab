//! Memory-store internals the conformance suite cannot see: the purge
//! empties every shard in batches, and an alias that leads into another
//! shard (a rotation to another tag, which the manager never makes) is still
//! followed atomically.

use std::time::Duration;

use serde_json::json;

use super::MemoryStore;
use crate::clock::Clock;
use crate::store::{
    ClientInfo, Data, LoadOutcome, NewSession, Retire, RotateOutcome, SessionStore, Tag, Timeouts,
    Token,
};

#[derive(Debug, Clone, Default)]
struct Manual(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Clock for Manual {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(10),
        absolute: Duration::from_secs(100),
        touch_interval: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn purge_empties_every_shard_past_one_batch() {
    let clock = Manual::default();
    clock
        .0
        .store(1_000_000, std::sync::atomic::Ordering::SeqCst);
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .purge_interval(None)
        .build();
    let (data, client) = (Data::new(), ClientInfo::default());
    // More than one batch per shard on average.
    let n = store.inner.shards.count() * 300;
    for _ in 0..n {
        let id = Token::generate(&Tag::random()).id();
        let new = NewSession {
            data: &data,
            client: &client,
        };
        store.create(&id, new, &timeouts()).await.unwrap();
    }
    assert_eq!(store.len(), n);
    assert_eq!(store.purge_expired(), 0, "nothing is due yet");
    clock
        .0
        .fetch_add(10_001, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(store.purge_expired(), n);
    assert!(store.is_empty());
}

#[tokio::test]
async fn an_alias_into_another_shard_is_followed() {
    let store = MemoryStore::builder().purge_interval(None).build();
    let (mut data, client) = (Data::new(), ClientInfo::default());
    data.insert("n".into(), json!(1));
    let old = Token::generate(&Tag::random()).id();
    let new = loop {
        let id = Token::generate(&Tag::random()).id();
        if store.inner.shards.of(&id) != store.inner.shards.of(&old) {
            break id;
        }
    };
    let session = NewSession {
        data: &data,
        client: &client,
    };
    store.create(&old, session, &timeouts()).await.unwrap();
    let grace = Retire::Alias(Duration::from_secs(5));
    let out = store.rotate(&old, &new, grace, &timeouts()).await.unwrap();
    assert!(matches!(out, RotateOutcome::Rotated(_)), "{out:?}");
    match store.load(&old, &timeouts()).await.unwrap() {
        LoadOutcome::Live(l) => {
            assert_eq!(l.id, new);
            assert_eq!(l.data.get("n"), Some(&json!(1)));
        }
        other => panic!("expected the successor, got {other:?}"),
    }
}
