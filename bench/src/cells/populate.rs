//! Fast population: copies of the keys a real login wrote, pipelined. A
//! login costs O(the user's sessions) in Redis today, so 10,000 sessions of
//! one user, or 1,000,000 sessions, would take minutes through
//! `RedisStore::login`. The copies take the layout from a real login (its
//! session hash, TTL, index entry and index expiry), and [`verify`] checks
//! that sessionkit itself lists and loads them as the user's live sessions.

use sessionkit::redis::RedisStore;
use sessionkit::store::{ClientInfo, LoadOutcome, Tag, Token};
use sessionkit::{SessionStore, UserLimit};

use super::sk;
use crate::resp::Resp;

/// Commands per pipelined batch.
const BATCH: usize = 6_000;

/// What a real login wrote for `user`.
pub struct Template {
    user: String,
    fields: Vec<(String, String)>,
    ttl_ms: i64,
    score: String,
    index_expire_at_ms: i64,
}

impl Template {
    /// Logs `user` in for real and reads back what the login wrote.
    pub fn take(
        rt: &tokio::runtime::Runtime,
        store: &RedisStore,
        stats: &mut Resp,
        user: &str,
    ) -> Result<Template, String> {
        let client = ClientInfo {
            user_agent: Some("sessionkit-bench".to_owned()),
            ip: None,
        };
        let id = rt.block_on(sk::login(store, user, None, UserLimit::Unlimited, &client))?;
        let key = store.session_key(&id);
        let flat = stats.strings(&["HGETALL", &key])?;
        let fields: Vec<(String, String)> = flat
            .chunks(2)
            .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
            .collect();
        let idx = store.user_index_key(user);
        let t = Template {
            user: user.to_owned(),
            fields,
            ttl_ms: stats.int(&["PTTL", &key])?,
            score: stats.simple(&["ZSCORE", &idx, id.hash_part()])?,
            index_expire_at_ms: stats.int(&["PEXPIRETIME", &idx])?,
        };
        // Only the user fields may name the user: anything else that does
        // would be copied wrong for another user.
        let other = t
            .fields
            .iter()
            .find(|(f, v)| !is_user_field(f) && v.contains(user));
        if let Some((f, _)) = other {
            return Err(format!(
                "the session hash's field {f} names the user: cannot copy it"
            ));
        }
        if t.ttl_ms <= 0 || t.index_expire_at_ms <= 0 {
            return Err("a real login's keys have no expiry: layout not understood".into());
        }
        Ok(t)
    }

    fn value_for(&self, field: &str, value: &str, user: &str) -> String {
        if is_user_field(field) {
            value.replace(&self.user, user)
        } else {
            value.to_owned()
        }
    }
}

fn is_user_field(f: &str) -> bool {
    f == "@user" || f == "d:user"
}

/// Queues `count` copies of the template as sessions of `user`.
pub fn queue(
    store: &RedisStore,
    t: &Template,
    user: &str,
    count: usize,
    out: &mut Vec<Vec<String>>,
) {
    let idx = store.user_index_key(user);
    let mut zadd = vec!["ZADD".to_owned(), idx.clone()];
    for _ in 0..count {
        let id = Token::generate(&Tag::for_user(user)).id();
        let key = store.session_key(&id);
        let mut hset = vec!["HSET".to_owned(), key.clone()];
        for (f, v) in &t.fields {
            hset.push(f.clone());
            hset.push(t.value_for(f, v, user));
        }
        out.push(hset);
        out.push(vec!["PEXPIRE".to_owned(), key, t.ttl_ms.to_string()]);
        zadd.push(t.score.clone());
        zadd.push(id.hash_part().to_owned());
    }
    out.push(zadd);
    out.push(vec![
        "PEXPIREAT".to_owned(),
        idx,
        t.index_expire_at_ms.to_string(),
    ]);
}

/// Sends the queue once it is long enough (`all`: whatever is left).
pub fn flush(stats: &mut Resp, out: &mut Vec<Vec<String>>, all: bool) -> Result<(), String> {
    if out.len() >= BATCH || (all && !out.is_empty()) {
        stats.pipeline(out)?;
        out.clear();
    }
    Ok(())
}

/// Checks that sessionkit lists `expected` live sessions of `user`, all
/// its own, and loads one of them with its data.
pub fn verify(
    rt: &tokio::runtime::Runtime,
    store: &RedisStore,
    user: &str,
    expected: usize,
) -> Result<(), String> {
    rt.block_on(async {
        let list = store
            .sessions_of(user, &sk::timeouts())
            .await
            .map_err(|e| format!("sessions_of {user}: {e}"))?;
        if list.len() != expected || list.iter().any(|s| s.user_id != user) {
            return Err(format!(
                "copied sessions not seen as {user}'s: {} listed, {expected} expected",
                list.len()
            ));
        }
        let last = list.last().ok_or("no session listed")?;
        match store.load(&last.id, &sk::timeouts()).await {
            Ok(LoadOutcome::Live(l))
                if l.data.get("user").and_then(|v| v.as_str()) == Some(user) =>
            {
                Ok(())
            }
            other => Err(format!(
                "a copied session of {user} does not load: {other:?}"
            )),
        }
    })
}
