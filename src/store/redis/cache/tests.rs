use std::num::NonZeroUsize;
use std::sync::Arc;

use ::redis::Value;

use super::ClientCache;
use crate::store::{Loaded, Meta, Timeouts};
use crate::token::{Tag, Token};
use serde_json::json;
use std::time::Duration;

const HOUR: i64 = 3_600_000;

fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(86_400),
        touch_interval: Duration::from_secs(60),
    }
}

fn cache(cap: usize) -> Arc<ClientCache> {
    let c = Arc::new(ClientCache::new(
        NonZeroUsize::new(cap).unwrap(),
        3000,
        64,
        Arc::new(tokio::sync::Notify::new()),
    ));
    assert!(c.connection_ready(1));
    c
}

fn loaded(version: u64, seen: i64, value: i64) -> Loaded {
    Loaded {
        id: Token::generate(&Tag::random()).id(),
        meta: Meta {
            user_id: None,
            created_ms: seen,
            last_seen_ms: seen,
            token_issued_ms: seen,
            absolute_deadline_ms: seen + 24 * HOUR,
            version,
            user_agent: None,
            client_ip: None,
        },
        data: [("v".to_owned(), json!(value))].into_iter().collect(),
        now_ms: seen,
        expires_at_ms: seen + HOUR,
        touched: false,
    }
}

fn get(c: &ClientCache, key: &str) -> Option<Loaded> {
    c.lookup(key, &timeouts(), HOUR, || "h".into())
}

fn value(c: &ClientCache, key: &str) -> Option<i64> {
    get(c, key).map(|l| l.data["v"].as_i64().unwrap())
}

const NOW: i64 = 1_700_000_000_000;

#[test]
fn a_fresh_reply_is_served_until_invalidated() {
    let c = cache(10);
    assert!(get(&c, "k").is_none());
    c.begin("k".into(), 1).fresh(&loaded(1, NOW, 7));
    let hit = get(&c, "k").unwrap();
    assert_eq!(hit.data["v"], json!(7));
    assert!(!hit.touched);
    assert!(hit.now_ms >= NOW);
    assert_eq!(hit.expires_at_ms, NOW + HOUR);
    c.on_invalidate(&[Value::Array(vec![Value::BulkString(b"k".to_vec())])]);
    assert!(get(&c, "k").is_none());
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.invalidations), (1, 2, 1));
}

#[test]
fn an_invalidation_during_the_call_wins() {
    let c = cache(10);
    let t = c.begin("k".into(), 1);
    c.on_invalidate(&[Value::Array(vec![Value::BulkString(b"k".to_vec())])]);
    t.fresh(&loaded(1, NOW, 7));
    assert!(get(&c, "k").is_none(), "the stale reply was not cached");
    // A call started after the push is fine.
    c.begin("k".into(), 1).fresh(&loaded(2, NOW, 8));
    assert_eq!(value(&c, "k"), Some(8));
}

#[test]
fn an_older_reply_never_overwrites_a_newer_one() {
    let c = cache(10);
    let load = c.begin("k".into(), 1);
    let save = c.begin("k".into(), 1);
    save.fresh(&loaded(2, NOW + 5, 2));
    load.fresh(&loaded(1, NOW, 1));
    assert_eq!(value(&c, "k"), Some(2));
    // Even if the newer entry was evicted meanwhile.
    let load = c.begin("k".into(), 1);
    let save = c.begin("k".into(), 1);
    save.fresh(&loaded(3, NOW + 6, 3));
    c.lock().lru.pop("k");
    load.fresh(&loaded(2, NOW + 5, 2));
    assert!(get(&c, "k").is_none());
}

#[test]
fn gone_and_failed_calls_block_overlapping_replies() {
    let c = cache(10);
    let load = c.begin("k".into(), 1);
    c.begin("k".into(), 1).gone();
    load.fresh(&loaded(1, NOW, 1));
    assert!(get(&c, "k").is_none(), "a revoke beats an older read");

    let load = c.begin("k".into(), 1);
    drop(c.begin("k".into(), 1)); // a save that timed out
    load.fresh(&loaded(1, NOW, 1));
    assert!(get(&c, "k").is_none(), "a failed write may still land");

    // No flight left: the next call caches.
    assert!(c.lock().flights.is_empty());
    c.begin("k".into(), 1).fresh(&loaded(1, NOW, 1));
    assert_eq!(value(&c, "k"), Some(1));
    let load = c.begin("k".into(), 1);
    c.forget("k");
    assert!(get(&c, "k").is_none());
    load.fresh(&loaded(1, NOW, 1));
    assert!(get(&c, "k").is_none(), "forget blocks calls in flight");
}

#[test]
fn disconnection_empties_and_blocks_until_tracking_is_back() {
    let c = cache(10);
    c.begin("a".into(), 1).fresh(&loaded(1, NOW, 1));
    let in_flight = c.begin("b".into(), 1);
    c.connection_lost(1);
    assert_eq!(c.len(), 0);
    in_flight.fresh(&loaded(1, NOW, 1));
    c.begin("c".into(), 1).fresh(&loaded(1, NOW, 1));
    assert_eq!(c.len(), 0, "nothing is cached without a live connection");
    // A new connection must be ready before its replies are cached.
    c.begin("d".into(), 2).fresh(&loaded(1, NOW, 1));
    assert_eq!(c.len(), 0);
    assert!(c.connection_ready(2));
    c.begin("d".into(), 2).fresh(&loaded(1, NOW, 1));
    assert_eq!(c.len(), 1);
    // A connection lost before it was ready never becomes live.
    c.connection_lost(3);
    assert!(!c.connection_ready(3));
}

#[test]
fn odd_pushes_empty_the_cache_without_panicking() {
    let c = cache(10);
    for data in [
        vec![],
        vec![Value::Nil],
        vec![Value::Int(3)],
        vec![Value::Array(vec![Value::Int(1)])],
    ] {
        c.begin("k".into(), 1).fresh(&loaded(1, NOW, 1));
        c.on_invalidate(&data);
        assert_eq!(c.len(), 0, "{data:?}");
    }
    c.begin("k".into(), 1).fresh(&loaded(1, NOW, 1));
    c.on_invalidate(&[Value::Array(vec![Value::BulkString(vec![0xff])])]);
    assert_eq!(c.len(), 1, "a key that is not ours changes nothing");
}

#[test]
fn bounded_by_capacity() {
    let c = cache(3);
    for i in 0..10 {
        c.begin(format!("k{i}"), 1).fresh(&loaded(1, NOW, i));
    }
    assert_eq!(c.len(), 3);
    assert_eq!(value(&c, "k9"), Some(9));
    assert!(get(&c, "k0").is_none());
}

#[test]
fn never_served_past_the_redis_expiry() {
    let c = cache(10);
    let mut l = loaded(1, NOW, 1);
    l.expires_at_ms = NOW + 50;
    c.begin("k".into(), 1).fresh(&l);
    assert!(get(&c, "k").is_some());
    std::thread::sleep(Duration::from_millis(60));
    assert!(get(&c, "k").is_none());
    assert_eq!(c.len(), 0);
}

#[test]
fn a_due_touch_is_queued_once_and_applied_by_the_flush() {
    let c = cache(10);
    // Last seen two minutes ago (touch interval 60 s): due.
    let mut l = loaded(4, NOW - 120_000, 1);
    l.now_ms = NOW;
    l.expires_at_ms = NOW - 120_000 + HOUR;
    c.begin("k".into(), 1).fresh(&l);
    let first = get(&c, "k").unwrap();
    assert!(first.touched);
    assert!(first.meta.last_seen_ms >= NOW);
    assert!(first.expires_at_ms >= NOW + HOUR);
    let second = get(&c, "k").unwrap();
    assert!(!second.touched, "queued once");
    assert_eq!(second.expires_at_ms, first.expires_at_ms);
    let batch = c.take_touches(100);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].key, "k");
    assert!(c.take_touches(100).is_empty());
    c.begin("k".into(), 1)
        .touched(NOW + 1, NOW + 1 + HOUR, NOW + 1, 4);
    let e = c.lock().lru.peek("k").map(|e| (e.redis_exp, e.redis_seen));
    assert_eq!(e, Some((NOW + 1 + HOUR, NOW + 1)));
    // A touch of another version drops the entry.
    c.begin("k".into(), 1)
        .touched(NOW + 2, NOW + 2 + HOUR, NOW + 2, 5);
    assert_eq!(c.len(), 0);
}

#[test]
fn a_touch_close_to_the_redis_expiry_goes_to_redis() {
    let c = cache(10);
    let mut l = loaded(1, NOW - 120_000, 1);
    l.now_ms = NOW;
    l.expires_at_ms = NOW + 2000; // closer than the 3 s margin
    c.begin("k".into(), 1).fresh(&l);
    assert!(get(&c, "k").is_none());
    assert!(c.take_touches(10).is_empty());
}
