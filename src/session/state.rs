//! [`State`]: what one request knows of its session, and every transition
//! it goes through, one method each. Store calls happen elsewhere
//! (`lifecycle.rs`, `commit.rs`, `lock.rs`); they only call these methods.

use std::collections::HashSet;

use serde_json::Value;

use crate::config::Limits;
use crate::store::{Data, Delta, Loaded, Written};
use crate::token::Token;
use crate::{Error, Result, SessionId};

use super::lock::HeldLock;
use super::Status;

/// Where the session stands with the store, as far as this request knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Standing {
    /// Not stored (no token, or one that named nothing live). The first
    /// write stores it under a fresh token.
    #[default]
    New,
    /// Stored, live when last seen.
    Stored,
    /// The request's token was replaced by a login or an explicit rotation
    /// in another request. It reads as empty, never creates a session,
    /// sets no cookie, and its writes are dropped: following the old token
    /// into the new session would undo the fixation defence, and the
    /// client's new cookie must be left alone.
    Superseded,
    /// A stand-in for a session the store could not load
    /// ([`StoreFailure::Continue`](crate::StoreFailure::Continue)): never
    /// written, and it cannot be logged out, rotated or locked.
    StandIn,
}

/// Everything the manager needs to commit the session.
#[derive(Debug, Default)]
pub(crate) struct State {
    standing: Standing,
    /// The token the client should hold. `None` when the session is not
    /// stored yet, or was reached through a rotation alias (the client
    /// holds an older token that still works, and the request that rotated
    /// sends it the new one).
    token: Option<Token>,
    /// Where the session lives in the store; `None` until first written.
    id: Option<SessionId>,
    data: Data,
    dirty: HashSet<String>,
    cleared: bool,
    status: Status,
    user_id: Option<String>,
    /// The token changed in this request: send it.
    send_token: bool,
    /// The latest expiry the store reported, and whether it moved in this
    /// request (then a persistent cookie's `Max-Age` is refreshed).
    expiry: Option<Written>,
    expiry_moved: bool,
    /// The request carried a token (so a removal cookie has something to clear).
    had_token: bool,
    /// Periodic rotation is due at commit.
    rotation_due: bool,
    /// Bytes of keys and JSON values, computed on the first insert.
    size: Option<usize>,
    /// The session lock this request holds: released after the commit's
    /// write, which carries its fence.
    lock: Option<HeldLock>,
}

impl State {
    // ------------------------------------------------------------ loading

    /// A request without a usable token, or whose token named nothing live.
    pub(crate) fn new(had_token: bool) -> Self {
        State {
            had_token,
            ..State::default()
        }
    }

    /// A request whose token was replaced by a login or explicit rotation.
    pub(crate) fn superseded() -> Self {
        State {
            standing: Standing::Superseded,
            had_token: true,
            ..State::default()
        }
    }

    /// A session known only by the client's token, never read: what a
    /// [`LazySession`](crate::LazySession) logs in or out from without
    /// loading. Its store id is the token's; its data and user are unknown,
    /// so it never reaches a handler: the login or logout run on it replaces
    /// or ends it (the store follows aliases and reads the latest data).
    pub(crate) fn unread(token: Token, id: SessionId) -> Self {
        State {
            standing: Standing::Stored,
            token: Some(token),
            id: Some(id),
            had_token: true,
            ..State::default()
        }
    }

    /// The stand-in of [`StoreFailure::Continue`](crate::StoreFailure::Continue).
    pub(crate) fn stand_in() -> Self {
        State {
            standing: Standing::StandIn,
            ..State::default()
        }
    }

    /// A live session loaded with `token`. Reached through an alias, the
    /// client's token is not this session's: no rotation, no cookie.
    /// `asked` is `token`'s id, computed once by the caller (a SHA-256).
    pub(crate) fn loaded(token: Token, asked: &SessionId, l: Loaded, rotation_due: bool) -> Self {
        let via_alias = l.id != *asked;
        State {
            standing: Standing::Stored,
            token: (!via_alias).then_some(token),
            id: Some(l.id),
            data: l.data,
            user_id: l.meta.user_id,
            expiry: Some(Written {
                now_ms: l.now_ms,
                expires_at_ms: l.expires_at_ms,
            }),
            expiry_moved: l.touched,
            had_token: true,
            rotation_due: rotation_due && !via_alias,
            ..State::default()
        }
    }

    // ------------------------------------------------------------ data

    /// The value at `key`.
    pub(crate) fn value(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    /// The keys present.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.data.keys()
    }

    /// Sets `key`, within `limits`; an equal value changes nothing.
    pub(crate) fn insert(&mut self, key: String, value: Value, limits: &Limits) -> Result<()> {
        if self.status == Status::Destroyed {
            return Err(Error::SessionEnded);
        }
        let value_size = json_len(&value);
        let old_size = match self.data.get(&key) {
            Some(old) if *old == value => return Ok(()),
            Some(old) => key.len() + json_len(old),
            None if self.data.len() >= limits.max_keys => {
                return Err(Error::TooManyKeys {
                    max: limits.max_keys,
                })
            }
            None => 0,
        };
        let size = self.size() - old_size + key.len() + value_size;
        if size > limits.max_session_bytes {
            return Err(Error::SessionTooLarge {
                size,
                max: limits.max_session_bytes,
            });
        }
        self.size = Some(size);
        self.data.insert(key.clone(), value);
        self.dirty.insert(key);
        self.advance(Status::Changed);
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        if self.data.remove(key).is_none() {
            return false;
        }
        self.size = None;
        self.dirty.insert(key.to_owned());
        self.advance(Status::Changed);
        true
    }

    /// Removes every key, including keys other requests add before the commit.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.size = Some(0);
        self.dirty.clear();
        self.cleared = true;
        self.advance(Status::Changed);
    }

    /// Bytes of keys and JSON values held now.
    fn size(&mut self) -> usize {
        if let Some(size) = self.size {
            return size;
        }
        let size = self.data.iter().map(|(k, v)| k.len() + json_len(v)).sum();
        self.size = Some(size);
        size
    }

    /// Takes the pending changes as a delta, leaving none pending.
    pub(crate) fn take_delta(&mut self) -> Delta {
        let mut delta = Delta {
            clear: std::mem::take(&mut self.cleared),
            ..Delta::default()
        };
        for key in std::mem::take(&mut self.dirty) {
            match self.data.get(&key) {
                Some(v) => delta.set.push((key, v.clone())),
                None => delta.remove.push(key),
            }
        }
        delta
    }

    /// Puts back changes taken by [`take_delta`](Self::take_delta) when they
    /// could not be written.
    pub(crate) fn restore_delta(&mut self, delta: &Delta) {
        self.cleared |= delta.clear;
        self.dirty.extend(delta.remove.iter().cloned());
        self.dirty.extend(delta.set.iter().map(|(k, _)| k.clone()));
    }

    /// The store's latest data replaces what this request holds, and the
    /// changes still pending here (made since the delta was taken, or not
    /// taken yet) are applied again on top; they stay pending.
    fn rebase(&mut self, mut data: Data) {
        if self.cleared {
            data.clear();
        }
        for key in &self.dirty {
            match self.data.get(key) {
                Some(v) => data.insert(key.clone(), v.clone()),
                None => data.remove(key),
            };
        }
        self.data = data;
        self.size = None;
    }

    // ------------------------------------------------------------ transitions

    fn advance(&mut self, to: Status) {
        self.status = self.status.max(to);
    }

    /// First write of a new session: stored under `token`, holding the data
    /// it held then (`snapshot`); changes made since stay pending.
    pub(crate) fn stored_as_new(&mut self, token: Token, snapshot: &Data, written: Written) {
        let State { dirty, data, .. } = &mut *self;
        dirty.retain(|k| data.get(k) != snapshot.get(k));
        self.cleared = false;
        self.standing = Standing::Stored;
        self.adopt(token, written);
    }

    /// A login succeeded: the session is now `token`'s, bound to `user_id`,
    /// holding `data` (the store's merge of the old session and the
    /// login's delta) plus changes made since.
    pub(crate) fn logged_in(
        &mut self,
        token: Token,
        user_id: String,
        data: Data,
        written: Written,
    ) {
        // The old session's lock ended with it; the new session is known to
        // this request only, and is written unfenced.
        self.drop_lock();
        self.rebase(data);
        self.user_id = Some(user_id);
        self.standing = Standing::Stored;
        self.adopt(token, written);
        self.advance(Status::Rotated);
    }

    /// A rotation succeeded: same session, new token. An explicit rotation
    /// (`drop_lock`) ends the lock with the old token; periodic rotation
    /// moves it along.
    pub(crate) fn rotated(&mut self, token: Token, written: Written, drop_lock: bool) {
        if drop_lock {
            self.drop_lock();
        }
        self.adopt(token, written);
        self.advance(Status::Rotated);
    }

    fn adopt(&mut self, token: Token, written: Written) {
        self.id = Some(token.id());
        self.token = Some(token);
        self.send_token = true;
        self.rotation_due = false;
        self.expiry = Some(written);
    }

    /// Another request rotated the token first (periodic rotation): this
    /// request writes through the alias and sends no cookie; the request
    /// that rotated sends the new one.
    pub(crate) fn rotated_elsewhere(&mut self) {
        self.token = None;
        self.rotation_due = false;
    }

    /// A write reached the store.
    pub(crate) fn saved(&mut self, written: Written) {
        self.expiry = Some(written);
        self.expiry_moved = true;
    }

    /// The lock was taken: its holder starts from the session's latest
    /// state, read in the same step.
    pub(crate) fn locked(&mut self, loaded: Loaded, lock: HeldLock) {
        self.rebase(loaded.data);
        self.user_id = loaded.meta.user_id;
        self.expiry = Some(Written {
            now_ms: loaded.now_ms,
            expires_at_ms: loaded.expires_at_ms,
        });
        self.expiry_moved |= loaded.touched;
        if self.id.as_ref() != Some(&loaded.id) {
            // Locked through a rotation alias: another request rotated, and
            // its response carries the new token.
            self.id = Some(loaded.id);
            self.rotated_elsewhere();
        }
        self.lock = Some(lock);
    }

    /// The token was replaced by another request's login or explicit
    /// rotation while this one ran: its writes are dropped, it sets no cookie.
    pub(crate) fn supersede(&mut self) {
        self.drop_lock();
        self.standing = Standing::Superseded;
        self.token = None;
        self.send_token = false;
        self.rotation_due = false;
        self.data.clear();
        self.dirty.clear();
        self.cleared = false;
        self.size = None;
    }

    /// Ended (logout, revoke, eviction, expiry), here or by another request:
    /// data gone, cookie to be cleared. Its lock ended with it in the store.
    pub(crate) fn end(&mut self) {
        self.drop_lock();
        self.data.clear();
        self.dirty.clear();
        self.cleared = false;
        self.size = None;
        self.user_id = None;
        self.advance(Status::Destroyed);
    }

    /// Forgets the lock (it ended in the store, or is being released).
    pub(crate) fn drop_lock(&mut self) {
        if let Some(held) = self.lock.take() {
            held.stop_renewal();
        }
    }

    // ------------------------------------------------------------ reading

    pub(crate) fn standing(&self) -> Standing {
        self.standing
    }

    pub(crate) fn status(&self) -> Status {
        self.status
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.status == Status::Destroyed
    }

    pub(crate) fn id(&self) -> Option<&SessionId> {
        self.id.as_ref()
    }

    pub(crate) fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The token issued in this request, if any (and the session lives).
    pub(crate) fn issued_token(&self) -> Option<&Token> {
        self.token
            .as_ref()
            .filter(|_| self.send_token && !self.is_ended())
    }

    pub(crate) fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    pub(crate) fn data(&self) -> &Data {
        &self.data
    }

    pub(crate) fn rotation_due(&self) -> bool {
        self.rotation_due
    }

    pub(crate) fn expiry(&self) -> Option<Written> {
        self.expiry
    }

    pub(crate) fn expiry_moved(&self) -> bool {
        self.expiry_moved
    }

    /// Whether the client may hold a cookie that a removal would clear.
    pub(crate) fn client_may_hold_cookie(&self) -> bool {
        self.had_token || self.token.is_some()
    }

    pub(crate) fn lock(&self) -> Option<&HeldLock> {
        self.lock.as_ref()
    }

    pub(crate) fn lock_mut(&mut self) -> Option<&mut HeldLock> {
        self.lock.as_mut()
    }

    /// The lock, leaving none recorded (for the release after a commit or
    /// a drop).
    pub(crate) fn take_lock(&mut self) -> Option<HeldLock> {
        self.lock.take()
    }
}

/// The length of a value's JSON text, without building the text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` cannot fail: its keys are strings and the writer
    // never errors. Were it to, 0 only makes the size check laxer.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
