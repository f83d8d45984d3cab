//! sessionkit's public store API driven from the benchmark process: the
//! login and per-user cells call `RedisStore` directly (no HTTP), through a
//! runtime of their own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sessionkit::redis::RedisStore;
use sessionkit::store::{ClientInfo, Delta, Login, LoginOutcome, Tag, Timeouts, Token};
use sessionkit::{SessionId, SessionStore, UserLimit};

/// A runtime for the store calls (2 workers: the machine's cores).
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

pub async fn connect(url: &str) -> Result<RedisStore, String> {
    RedisStore::connect(url)
        .await
        .map_err(|e| format!("RedisStore::connect: {e}"))
}

/// `SessionConfig::default()`'s timeouts (30 min idle, 12 h absolute,
/// touch every 60 s), as the manager hands them to the store.
pub fn timeouts() -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(30 * 60),
        absolute: Duration::from_secs(12 * 60 * 60),
        touch_interval: Duration::from_secs(60),
    }
}

/// Logs `user` in (from `old`, if given) as the manager would: a new id
/// with the user's slot tag, the session's `user` key set, `limit`
/// enforced. Returns the new session's id.
pub async fn login(
    store: &RedisStore,
    user: &str,
    old: Option<&SessionId>,
    limit: UserLimit,
    client: &ClientInfo,
) -> Result<SessionId, String> {
    let new = Token::generate(&Tag::for_user(user)).id();
    let delta = Delta {
        set: vec![("user".to_owned(), serde_json::Value::from(user))],
        ..Delta::default()
    };
    let outcome = store
        .login(
            Login {
                old,
                new: &new,
                user_id: user,
                delta: &delta,
                client,
                limit,
                moved_grace: Duration::from_secs(30),
            },
            &timeouts(),
        )
        .await
        .map_err(|e| format!("login of {user}: {e}"))?;
    match outcome {
        LoginOutcome::LoggedIn { .. } => Ok(new),
        LoginOutcome::Rejected { max } => Err(format!("login of {user} rejected (max {max})")),
    }
}

/// Runs `count` logins, `user(i)` for the i-th, on `tasks` concurrent
/// tasks.
pub async fn login_many(
    store: &RedisStore,
    count: usize,
    tasks: usize,
    limit: UserLimit,
    user: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let user = Arc::new(user);
    let mut handles = Vec::new();
    for _ in 0..tasks.max(1) {
        let (store, next, user) = (store.clone(), Arc::clone(&next), Arc::clone(&user));
        handles.push(tokio::spawn(async move {
            let client = ClientInfo::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), String>(());
                }
                login(&store, &user(i), None, limit, &client).await?;
            }
        }));
    }
    for h in handles {
        h.await.map_err(|e| format!("login task: {e}"))??;
    }
    Ok(())
}

/// The ids of a user's live sessions.
pub async fn ids_of(store: &RedisStore, user: &str) -> Result<Vec<SessionId>, String> {
    Ok(store
        .sessions_of(user, &timeouts())
        .await
        .map_err(|e| format!("sessions_of {user}: {e}"))?
        .into_iter()
        .map(|s| s.id)
        .collect())
}
