//! Store-level helpers of the Redis durability and partition suites: a
//! session holding one integer `k`, written and read through the store.

use std::time::Duration;

use serde_json::json;
use sessionkit::redis::RedisStore;
use sessionkit::store::{
    ClientInfo, Data, Delta, LoadOutcome, NewSession, SaveOutcome, SessionStore, Tag, Timeouts,
    Token,
};
use sessionkit::SessionId;

/// Timeouts under which nothing expires or needs a touch during a test.
pub fn calm() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(3600),
        touch_interval: Duration::from_secs(600),
    }
}

/// A delta setting `k`.
pub fn set_k(k: i64) -> Delta {
    Delta {
        set: vec![("k".to_owned(), json!(k))],
        ..Delta::default()
    }
}

/// A new anonymous session holding `k`.
pub async fn try_create(store: &RedisStore, k: i64) -> sessionkit::Result<SessionId> {
    let id = Token::generate(&Tag::random()).id();
    let data: Data = [("k".to_owned(), json!(k))].into_iter().collect();
    let client = ClientInfo::default();
    store
        .create(
            &id,
            NewSession {
                data: &data,
                client: &client,
            },
            &calm(),
        )
        .await?;
    Ok(id)
}

/// [`try_create`], which must succeed.
pub async fn create(store: &RedisStore, k: i64) -> SessionId {
    try_create(store, k).await.expect("create")
}

/// `k` of a live session, `None` if it is not live.
pub async fn value(store: &RedisStore, id: &SessionId) -> sessionkit::Result<Option<i64>> {
    Ok(match store.load(id, &calm()).await? {
        LoadOutcome::Live(l) => l.data.get("k").and_then(serde_json::Value::as_i64),
        LoadOutcome::Superseded | LoadOutcome::Missing => None,
    })
}

/// Sets `k`, which must be saved.
pub async fn save_k(store: &RedisStore, id: &SessionId, k: i64) {
    let out = store.save(id, &set_k(k), &calm()).await.expect("save");
    assert!(matches!(out, SaveOutcome::Saved(_)), "{out:?}");
}

/// A duration in ms with one decimal, for the printed figures.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
