//! [`SessionManager`]: load before the handler, commit after it, and the
//! per-user operations. Framework adapters call only this.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::duration_ms;
use crate::cookies::{self, CookieAction};
use crate::headers::{self, HeaderSource, ResponseHeaders};
use crate::session::{State, Status};
use crate::store::{
    ClientInfo, Login, LoginOutcome, NewSession, Retire, RotateOutcome, SaveOutcome, SessionInfo,
    SessionStore, Timeouts, Written,
};
use crate::token::{Tag, Token};
use crate::{Error, Result, Session, SessionConfig, SessionId};

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
        Ok(self.response_headers(&cookie, &session.lock()))
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
        let (id, token, delta, rotation_due) = {
            let mut st = session.lock();
            if st.detached {
                return Ok(CookieAction::None);
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
            (st.id.clone(), st.token.clone(), delta, st.rotation_due)
        };

        let Some(mut id) = id else {
            if session.lock().data.is_empty() {
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
                let mut st = session.lock();
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

        if !delta.is_empty() {
            let outcome = self
                .call(self.inner.store.save(&id, &delta, timeouts))
                .await;
            let mut st = session.lock();
            match outcome {
                Ok(SaveOutcome::Saved(w)) => {
                    st.expiry = Some(w);
                    st.expiry_moved = true;
                }
                Ok(SaveOutcome::Gone) => return Ok(self.ended_elsewhere(&mut st)),
                Ok(SaveOutcome::Moved) => {
                    tracing::debug!(session = %id, "token replaced by another request; write dropped");
                    return Ok(CookieAction::None);
                }
                Err(e) => {
                    st.restore_delta(&delta);
                    return Err(e);
                }
            }
        }

        Ok(self.cookie_after_commit(&session.lock()))
    }

    /// First write of an anonymous session: store it under a fresh token.
    async fn create(&self, session: &Session) -> Result<CookieAction> {
        let token = Token::generate(&Tag::random());
        let id = token.id();
        let data = session.lock().data.clone();
        let new = NewSession {
            data: &data,
            client: session.client(),
        };
        let written = self
            .call(self.inner.store.create(&id, new, &self.inner.timeouts))
            .await?;
        let mut st = session.lock();
        st.id = Some(id);
        st.token = Some(token);
        st.send_token = true;
        st.expiry = Some(written);
        keep_changes_made_since(&mut st, &data);
        Ok(self.cookie_after_commit(&st))
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
            let mut st = session.lock();
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
        let mut st = session.lock();
        match outcome {
            Ok(LoginOutcome::LoggedIn { written, evicted }) => {
                if !evicted.is_empty() {
                    tracing::debug!(session = %new_id, evicted = evicted.len(), "login evicted older sessions");
                }
                keep_changes_made_since(&mut st, &data);
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
        let id = session.lock().id.clone();
        if let Some(id) = &id {
            self.call(self.inner.store.revoke(id)).await?;
            tracing::debug!(session = %id, "logged out");
        }
        end_locally(&mut session.lock());
        Ok(())
    }

    pub(crate) async fn logout_everywhere_session(&self, session: &Session) -> Result<u64> {
        let (id, user) = {
            let st = session.lock();
            (st.id.clone(), st.user_id.clone())
        };
        let ended = match (&user, &id) {
            (Some(user), _) => self.call(self.inner.store.revoke_user(user, None)).await?,
            (None, Some(id)) => u64::from(self.call(self.inner.store.revoke(id)).await?),
            (None, None) => 0,
        };
        tracing::debug!(session = ?id, ended, "logged out everywhere");
        end_locally(&mut session.lock());
        Ok(ended)
    }

    pub(crate) async fn rotate_session(&self, session: &Session) -> Result<()> {
        let (id, tag) = {
            let st = session.lock();
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
        let mut st = session.lock();
        match outcome {
            RotateOutcome::Rotated(w) => {
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
fn end_locally(st: &mut State) {
    st.data.clear();
    st.dirty.clear();
    st.user_id = None;
    st.advance(Status::Destroyed);
}
