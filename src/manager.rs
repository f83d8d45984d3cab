//! [`SessionManager`]: load before the handler, commit after it, and the
//! per-user operations. Framework adapters call only this.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::duration_ms;
use crate::cookies::{self, CookieAction};
use crate::headers::{self, HeaderSource, ResponseHeaders};
use crate::lock::{self, HeldLock};
use crate::session::{State, Status};
use crate::store::{
    ClientInfo, Loaded, LockOutcome, Login, LoginOutcome, NewSession, Retire, RotateOutcome,
    SaveOutcome, SessionInfo, SessionStore, Timeouts, Written,
};
use crate::token::{Tag, Token};
use crate::{Error, Result, Session, SessionConfig, SessionId, SessionLock};

/// The first pause between two attempts to take a held lock.
const LOCK_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two attempts to take a held lock.
const LOCK_BACKOFF_MAX: Duration = Duration::from_millis(50);

/// Loads and commits sessions and runs per-user operations. Built once from
/// a store and a [`SessionConfig`]; `Clone` (cheap), `Send + Sync`, and free
/// of any web framework, so an admin page or a background job can use it too.
///
/// ```
/// use sessionkit::{MemoryStore, SessionConfig, SessionManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> sessionkit::Result<()> {
/// let manager = SessionManager::new(MemoryStore::new(), SessionConfig::default());
/// // "Log out everywhere" for a user, from any code:
/// let ended = manager.revoke_user("alice").await?;
/// assert_eq!(ended, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    timeouts: Timeouts,
}

impl SessionManager {
    /// A manager over `store` with `config`.
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// A manager over a shared store.
    pub fn from_arc(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        let timeouts = config.timeouts();
        SessionManager {
            inner: Arc::new(Inner {
                store,
                config,
                timeouts,
            }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The store in use.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Runs one store call under the configured timeout.
    async fn call<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = self.inner.config.store_timeout;
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| Error::StoreTimeout(limit))?
    }

    /// Loads the session for a request: finds the token (cookie or header,
    /// as configured) and records the client's user agent and address. A
    /// missing, malformed, tampered, expired or unknown token gives a fresh
    /// anonymous session (nothing is stored until something is inserted).
    ///
    /// # Errors
    /// Only store failures and timeouts; bad input never errors.
    pub async fn load_request(
        &self,
        headers: &(impl HeaderSource + ?Sized),
        ip: Option<IpAddr>,
    ) -> Result<Session> {
        let token = headers::token_of(&self.inner.config, headers);
        let client = headers::client_of(headers, ip);
        self.load(token, client).await
    }

    /// A fresh anonymous session that commit never writes, for
    /// [`StoreFailure::Continue`](crate::StoreFailure::Continue).
    pub(crate) fn detached_session(&self, client: ClientInfo) -> Session {
        let st = State {
            detached: true,
            ..State::default()
        };
        Session::new(self.clone(), client, st)
    }

    /// Loads the session a token names (see [`load_request`](Self::load_request)).
    ///
    /// # Errors
    /// Only store failures and timeouts.
    pub async fn load(&self, token: Option<Token>, client: ClientInfo) -> Result<Session> {
        let mut st = State {
            had_token: token.is_some(),
            ..State::default()
        };
        if let Some(token) = token {
            let asked = token.id();
            let timeouts = &self.inner.timeouts;
            if let Some(l) = self.call(self.inner.store.load(&asked, timeouts)).await? {
                let via_alias = l.id != asked;
                st.rotation_due = !via_alias
                    && self.inner.config.rotation_interval.is_some_and(|every| {
                        l.now_ms.saturating_sub(l.meta.token_issued_ms) >= duration_ms(every)
                    });
                st.token = (!via_alias).then_some(token);
                st.id = Some(l.id);
                st.data = l.data;
                st.user_id = l.meta.user_id;
                st.expiry = Some(Written {
                    now_ms: l.now_ms,
                    expires_at_ms: l.expires_at_ms,
                });
                st.expiry_moved = l.touched;
            }
        }
        Ok(Session::new(self.clone(), client, st))
    }

    /// Writes what the handler changed and returns the headers to add to the
    /// response (cookie, token header, `Cache-Control`).
    ///
    /// Nothing is written for an unchanged session; a changed one writes only
    /// the changed keys. A session ended meanwhile (logout or revoke in
    /// another request) is not written back: the write is dropped and the
    /// cookie cleared.
    ///
    /// # Errors
    /// Store failures and timeouts; the pending changes are kept in the
    /// session, so a retry can commit them.
    pub async fn commit(&self, session: &Session) -> Result<ResponseHeaders> {
        let cookie = self.commit_session(session).await?;
        Ok(self.response_headers(&cookie, &session.state()))
    }

    /// The response headers for a committed session.
    fn response_headers(&self, cookie: &CookieAction, st: &State) -> ResponseHeaders {
        let transport = &self.inner.config.transport;
        let mut out = ResponseHeaders::default();
        if transport.cookie() {
            if let CookieAction::Set(v) | CookieAction::Remove(v) = cookie {
                out.push("set-cookie", v.clone());
            }
        }
        if let (Some(header), Some(token), true) = (transport.header(), &st.token, st.send_token) {
            if st.status != Status::Destroyed {
                out.push(&header.response_header, token.as_str().to_owned());
            }
        }
        if !out.is_empty() {
            out.push("cache-control", "no-store".to_owned());
        }
        out
    }

    async fn commit_session(&self, session: &Session) -> Result<CookieAction> {
        let config = &self.inner.config;
        let timeouts = &self.inner.timeouts;
        let (id, token, mut delta, rotation_due, fence) = {
            let mut st = session.state();
            if st.detached {
                return Ok(CookieAction::None);
            }
            // The lock is released below, once the changes are written: no
            // renewal from here on.
            if let Some(held) = &st.lock {
                held.stop_renewal();
            }
            if st.status == Status::Destroyed {
                let client_may_hold_cookie = st.had_token || st.token.is_some();
                return Ok(if client_may_hold_cookie {
                    CookieAction::Remove(cookies::removal_cookie(config))
                } else {
                    CookieAction::None
                });
            }
            let delta = st.take_delta();
            let fence = st.lock.as_ref().map(|held| held.fence);
            (
                st.id.clone(),
                st.token.clone(),
                delta,
                st.rotation_due,
                fence,
            )
        };

        let Some(mut id) = id else {
            if session.state().data.is_empty() {
                return Ok(CookieAction::None);
            }
            return self.create(session).await;
        };

        if rotation_due {
            if let Some(old) = &token {
                let new = Token::generate(&old.tag());
                let retire = Retire::Alias(config.rotation_grace);
                let outcome = self
                    .call(self.inner.store.rotate(&id, &new.id(), retire, timeouts))
                    .await;
                let mut st = session.state();
                match outcome {
                    Ok(RotateOutcome::Rotated(w)) => {
                        id = new.id();
                        st.id = Some(id.clone());
                        st.token = Some(new);
                        st.send_token = true;
                        st.rotation_due = false;
                        st.expiry = Some(w);
                        st.advance(Status::Rotated);
                    }
                    Ok(RotateOutcome::Gone) => return Ok(self.ended_elsewhere(&mut st)),
                    Err(e) => {
                        st.restore_delta(&delta);
                        return Err(e);
                    }
                }
            }
        }

        delta.fence = fence;
        if !delta.is_empty() {
            let outcome = self
                .call(self.inner.store.save(&id, &delta, timeouts))
                .await;
            let mut st = session.state();
            match outcome {
                Ok(SaveOutcome::Saved(w)) => {
                    st.expiry = Some(w);
                    st.expiry_moved = true;
                }
                Ok(SaveOutcome::Gone) => return Ok(self.ended_elsewhere(&mut st)),
                Ok(SaveOutcome::Moved) if fence.is_some() => {
                    // The token was replaced under the lock: the changes
                    // made under it cannot be written, and must not vanish
                    // silently.
                    st.lock = None;
                    tracing::debug!(session = %id, "token replaced under the session lock; write refused");
                    return Err(Error::LockLost);
                }
                Ok(SaveOutcome::Moved) => {
                    tracing::debug!(session = %id, "token replaced by another request; write dropped");
                    return Ok(CookieAction::None);
                }
                Ok(SaveOutcome::Fenced) => {
                    st.lock = None;
                    tracing::debug!(session = %id, "session lock lost before the commit; write refused");
                    return Err(Error::LockLost);
                }
                Err(e) => {
                    // The lock stays recorded: the session's drop releases
                    // it if no retry commits.
                    st.restore_delta(&delta);
                    return Err(e);
                }
            }
        }

        if let Some(fence) = fence {
            // Released only now that the changes made under it are written.
            self.release_lock(&id, fence).await;
            session.state().lock = None;
        }

        Ok(self.cookie_after_commit(&session.state()))
    }

    /// First write of an anonymous session: store it under a fresh token.
    async fn create(&self, session: &Session) -> Result<CookieAction> {
        self.store_new(session).await?;
        Ok(self.cookie_after_commit(&session.state()))
    }

    /// Stores a session that is not stored yet under a fresh token, with the
    /// data it holds now.
    async fn store_new(&self, session: &Session) -> Result<()> {
        let token = Token::generate(&Tag::random());
        let id = token.id();
        let data = session.state().data.clone();
        let new = NewSession {
            data: &data,
            client: session.client(),
        };
        let written = self
            .call(self.inner.store.create(&id, new, &self.inner.timeouts))
            .await?;
        let mut st = session.state();
        st.id = Some(id);
        st.token = Some(token);
        st.send_token = true;
        st.expiry = Some(written);
        keep_changes_made_since(&mut st, &data);
        Ok(())
    }

    /// The session vanished from the store while this request ran.
    fn ended_elsewhere(&self, st: &mut State) -> CookieAction {
        if let Some(id) = &st.id {
            tracing::debug!(session = %id, "session ended by another request; write dropped");
        }
        st.advance(Status::Destroyed);
        CookieAction::Remove(cookies::removal_cookie(&self.inner.config))
    }

    fn cookie_after_commit(&self, st: &State) -> CookieAction {
        let config = &self.inner.config;
        let Some(token) = &st.token else {
            return CookieAction::None;
        };
        let max_age = if config.persistent_cookie {
            st.expiry
                .map(|w| w.expires_at_ms.saturating_sub(w.now_ms) / 1000)
        } else {
            None
        };
        let refresh = config.persistent_cookie && st.expiry_moved;
        if st.send_token || refresh {
            CookieAction::Set(cookies::set_cookie(config, token, max_age))
        } else {
            CookieAction::None
        }
    }

    pub(crate) async fn login_session(&self, session: &Session, user_id: String) -> Result<()> {
        let (old, data, delta) = {
            let mut st = session.state();
            if st.status == Status::Destroyed {
                return Err(Error::SessionEnded);
            }
            let delta = st.take_delta();
            (st.id.clone(), st.data.clone(), delta)
        };
        let new = Token::generate(&Tag::for_user(&user_id));
        let new_id = new.id();
        let login = Login {
            old: old.as_ref(),
            new: &new_id,
            user_id: &user_id,
            data: &data,
            client: session.client(),
            limit: self.inner.config.user_limit,
            moved_grace: self.inner.config.rotation_grace,
        };
        let outcome = self
            .call(self.inner.store.login(login, &self.inner.timeouts))
            .await;
        let mut st = session.state();
        match outcome {
            Ok(LoginOutcome::LoggedIn { written, evicted }) => {
                if !evicted.is_empty() {
                    tracing::debug!(session = %new_id, evicted = evicted.len(), "login evicted older sessions");
                }
                keep_changes_made_since(&mut st, &data);
                // The old session's lock ended with it; the new session is
                // known to this request only, and is written unfenced.
                if let Some(held) = st.lock.take() {
                    held.stop_renewal();
                }
                st.id = Some(new_id);
                st.token = Some(new);
                st.user_id = Some(user_id);
                // A stand-in session that logs in is a real one from now on.
                st.detached = false;
                st.send_token = true;
                st.rotation_due = false;
                st.expiry = Some(written);
                st.advance(Status::Rotated);
                Ok(())
            }
            Ok(LoginOutcome::Rejected { max }) => {
                st.restore_delta(&delta);
                Err(Error::TooManySessions { max })
            }
            Err(e) => {
                st.restore_delta(&delta);
                Err(e)
            }
        }
    }

    pub(crate) async fn logout_session(&self, session: &Session) -> Result<()> {
        let id = session.state().id.clone();
        if let Some(id) = &id {
            self.call(self.inner.store.revoke(id)).await?;
            tracing::debug!(session = %id, "logged out");
        }
        end_locally(&mut session.state());
        Ok(())
    }

    pub(crate) async fn logout_everywhere_session(&self, session: &Session) -> Result<u64> {
        let (id, user) = {
            let st = session.state();
            (st.id.clone(), st.user_id.clone())
        };
        let ended = match (&user, &id) {
            (Some(user), _) => self.call(self.inner.store.revoke_user(user, None)).await?,
            (None, Some(id)) => u64::from(self.call(self.inner.store.revoke(id)).await?),
            (None, None) => 0,
        };
        tracing::debug!(session = ?id, ended, "logged out everywhere");
        end_locally(&mut session.state());
        Ok(ended)
    }

    pub(crate) async fn rotate_session(&self, session: &Session) -> Result<()> {
        let (id, tag) = {
            let st = session.state();
            if st.status == Status::Destroyed {
                return Err(Error::SessionEnded);
            }
            match &st.id {
                None => return Ok(()),
                Some(id) => (id.clone(), Tag::of_id(id)),
            }
        };
        let new = Token::generate(&tag);
        let retire = Retire::Moved(self.inner.config.rotation_grace);
        let outcome = self
            .call(
                self.inner
                    .store
                    .rotate(&id, &new.id(), retire, &self.inner.timeouts),
            )
            .await?;
        let mut st = session.state();
        match outcome {
            RotateOutcome::Rotated(w) => {
                // The store dropped the lock with the old token; as after a
                // login, the new token is known to this request only.
                if let Some(held) = st.lock.take() {
                    held.stop_renewal();
                }
                st.id = Some(new.id());
                st.token = Some(new);
                st.send_token = true;
                st.rotation_due = false;
                st.expiry = Some(w);
                st.advance(Status::Rotated);
                Ok(())
            }
            RotateOutcome::Gone => {
                self.ended_elsewhere(&mut st);
                Err(Error::SessionEnded)
            }
        }
    }

    /// Takes the session's lock for this request (see [`Session::lock`]).
    pub(crate) async fn lock_session(&self, session: &Session) -> Result<SessionLock> {
        let _one_at_a_time = session.lock_gate().await;
        {
            let mut st = session.state();
            if st.status == Status::Destroyed {
                return Err(Error::SessionEnded);
            }
            if st.detached {
                return Err(Error::store(
                    "the session store failed when this request's session was loaded; it cannot be locked",
                ));
            }
            // Held by this request already: another guard, no store call.
            if let Some(held) = &mut st.lock {
                let fence = held.fence;
                let renewal = match held.renewal.upgrade() {
                    Some(r) => Some(r),
                    None => {
                        let r = lock::spawn_renewal(session, fence);
                        held.renewal = r.as_ref().map_or_else(Default::default, Arc::downgrade);
                        r
                    }
                };
                return Ok(SessionLock::new(session.clone(), fence, renewal));
            }
        }
        if session.state().id.is_none() {
            // Something to lock: the session gets its token now.
            self.store_new(session).await?;
        }
        let Some(id) = session.state().id.clone() else {
            return Err(Error::SessionEnded);
        };
        let (fence, loaded) = self.acquire(&id).await?;
        let locked_id = loaded.id.clone();
        let ended = {
            let mut st = session.state();
            // Ended by a clone of this session while we waited?
            let ended = st.status == Status::Destroyed;
            if !ended {
                apply_fresh(&mut st, loaded);
                st.lock = Some(HeldLock {
                    fence,
                    renewal: Default::default(),
                });
            }
            ended
        };
        if ended {
            self.release_lock(&locked_id, fence).await;
            return Err(Error::SessionEnded);
        }
        let renewal = lock::spawn_renewal(session, fence);
        if let (Some(r), Some(held)) = (&renewal, &mut session.state().lock) {
            held.renewal = Arc::downgrade(r);
        }
        tracing::debug!(session = %locked_id, fence, "session locked");
        Ok(SessionLock::new(session.clone(), fence, renewal))
    }

    /// Polls the store until the lock of `id` is ours or the lock timeout
    /// has passed.
    async fn acquire(&self, id: &SessionId) -> Result<(u64, Loaded)> {
        let config = &self.inner.config;
        let started = tokio::time::Instant::now();
        let mut backoff = LOCK_BACKOFF_MIN;
        loop {
            let outcome = self
                .call(
                    self.inner
                        .store
                        .lock(id, config.lock_lease, &self.inner.timeouts),
                )
                .await?;
            match outcome {
                LockOutcome::Acquired { fence, loaded } => return Ok((fence, loaded)),
                LockOutcome::Gone => return Err(Error::SessionEnded),
                LockOutcome::Held => {}
            }
            let waited = started.elapsed();
            if waited >= config.lock_timeout {
                tracing::debug!(session = %id, ?waited, "gave up waiting for the session lock");
                return Err(Error::LockTimeout(config.lock_timeout));
            }
            // Jittered, so waiters spread out instead of polling in step.
            let pause = jittered(backoff).min(config.lock_timeout - waited);
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(LOCK_BACKOFF_MAX);
        }
    }

    /// Renews the lease of a lock this manager's request holds.
    pub(crate) async fn renew_lock(&self, id: &SessionId, fence: u64) -> Result<bool> {
        let lease = self.inner.config.lock_lease;
        self.call(self.inner.store.renew_lock(id, fence, lease))
            .await
    }

    /// Releases a lock; a failure is logged (the lease runs out anyway).
    pub(crate) async fn release_lock(&self, id: &SessionId, fence: u64) {
        match self.call(self.inner.store.unlock(id, fence)).await {
            Ok(()) => tracing::debug!(session = %id, fence, "session lock released"),
            Err(e) => tracing::warn!(
                session = %id,
                error = %e,
                "could not release a session lock; it is freed when its lease runs out"
            ),
        }
    }

    /// The user's live sessions, most recently used first: public id,
    /// created, last seen, expiry, user agent, client IP. Costs O(the user's
    /// sessions) in the store.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionInfo>> {
        self.call(self.inner.store.sessions_of(user_id, &self.inner.timeouts))
            .await
    }

    /// Ends one session. Final: requests in flight with it cannot write it
    /// back. Returns whether it was live. Check that the id belongs to the
    /// caller's user before offering this to end users.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.call(self.inner.store.revoke(id)).await
    }

    /// Ends the session `id` only if it belongs to `user_id`: the safe form
    /// of [`revoke`](Self::revoke) for a "revoke this device" button, whose
    /// id comes from the client. Returns whether a session was ended.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke_of_user(&self, user_id: &str, id: &SessionId) -> Result<bool> {
        // A user's sessions all carry the user's tag: most foreign ids are
        // refused without a store call.
        if id.tag() != Tag::for_user(user_id).as_str() {
            return Ok(false);
        }
        let owned = self.sessions_of(user_id).await?.iter().any(|s| &s.id == id);
        if !owned {
            return Ok(false);
        }
        self.revoke(id).await
    }

    /// Ends every session of a user ("log out everywhere"). Returns how many.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64> {
        self.call(self.inner.store.revoke_user(user_id, None)).await
    }

    /// Ends every session of a user but `keep` ("log out other devices").
    /// Returns how many.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke_user_except(&self, user_id: &str, keep: &SessionId) -> Result<u64> {
        self.call(self.inner.store.revoke_user(user_id, Some(keep)))
            .await
    }
}

/// A pause of between half and all of `backoff`.
fn jittered(backoff: Duration) -> Duration {
    let max = u64::try_from(backoff.as_micros())
        .unwrap_or(u64::MAX)
        .max(2);
    Duration::from_micros(rand::random_range(max / 2..=max))
}

/// On lock acquisition: the session's latest state replaces what this
/// request loaded, and the changes this request made before locking are
/// applied again on top (they stay pending, for the commit).
fn apply_fresh(st: &mut State, loaded: Loaded) {
    let mut data = loaded.data;
    if st.cleared {
        data.clear();
    }
    for key in &st.dirty {
        match st.data.get(key) {
            Some(v) => data.insert(key.clone(), v.clone()),
            None => data.remove(key),
        };
    }
    st.data = data;
    st.size = None;
    st.user_id = loaded.meta.user_id;
    st.expiry = Some(Written {
        now_ms: loaded.now_ms,
        expires_at_ms: loaded.expires_at_ms,
    });
    st.expiry_moved |= loaded.touched;
    if st.id.as_ref() != Some(&loaded.id) {
        // Locked through a rotation alias: the session was rotated by
        // another request, whose response carries the new token.
        st.id = Some(loaded.id);
        st.token = None;
        st.rotation_due = false;
    }
}

/// After the store took a snapshot of the whole data (create, login), only
/// keys changed since the snapshot remain to be written.
fn keep_changes_made_since(st: &mut State, snapshot: &crate::store::Data) {
    let State {
        dirty,
        data,
        cleared,
        ..
    } = st;
    dirty.retain(|k| data.get(k) != snapshot.get(k));
    *cleared = false;
}

/// Marks a session ended in this request: data gone, cookie to be cleared.
/// Its lock ended with it in the store.
fn end_locally(st: &mut State) {
    if let Some(held) = st.lock.take() {
        held.stop_renewal();
    }
    st.data.clear();
    st.dirty.clear();
    st.user_id = None;
    st.advance(Status::Destroyed);
}
