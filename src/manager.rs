//! The methods of [`SessionManager`] (the type itself is in `context.rs`):
//! building one, the per-user operations apps call, and the load and commit
//! that framework adapters call around each request.

use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::duration_ms;
use crate::events::{EventFeed, EventKind, NewEvent, RevokeScope};
use crate::http::headers::{self, HeaderSource};
use crate::http::{CommitError, ResponseHeaders};
use crate::session::{commit, State};
use crate::store::persist::Ending;
use crate::store::{ClientInfo, LoadOutcome, SessionInfo, SessionStore};
use crate::token::{Tag, Token};
use crate::{Result, Session, SessionConfig, SessionId, SessionManager};

impl SessionManager {
    /// A manager over `store` with `config`.
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// The user's live sessions, most recently used first: public id,
    /// created, last seen, expiry, user agent, client IP. Costs O(the user's
    /// sessions) in the store.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionInfo>> {
        self.call(self.store().sessions_of(user_id, self.timeouts()))
            .await
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
        self.revoke_one(id, Some(user_id)).await
    }

    /// Ends one session. Final: requests in flight with it cannot write it
    /// back. Returns whether it was live. Check that the id belongs to the
    /// caller's user before offering this to end users
    /// ([`revoke_of_user`](Self::revoke_of_user) does).
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.revoke_one(id, None).await
    }

    async fn revoke_one(&self, id: &SessionId, user: Option<&str>) -> Result<bool> {
        let snapshot = self.snapshot(id).await;
        let ended = self.call(self.store().revoke(id)).await?;
        if ended {
            self.note_ended(snapshot.into_iter().collect(), Ending::Revoked)
                .await;
            self.emit(|| NewEvent {
                kind: EventKind::Revoked {
                    scope: RevokeScope::One,
                },
                session: Some(id.clone()),
                user: user.map(str::to_owned),
            })
            .await;
        }
        Ok(ended)
    }

    /// Ends every session of a user ("log out everywhere"). Returns how many.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke_user(&self, user_id: &str) -> Result<u64> {
        let snapshots = self.snapshots_of(user_id, None).await;
        let count = self.call(self.store().revoke_user(user_id, None)).await?;
        if count > 0 {
            self.note_ended(snapshots, Ending::Revoked).await;
        }
        self.emit_revoked_many(user_id, None, count).await;
        Ok(count)
    }

    /// Ends every session of a user but `keep` ("log out other devices").
    /// Returns how many.
    ///
    /// # Errors
    /// Store failures and timeouts.
    pub async fn revoke_user_except(&self, user_id: &str, keep: &SessionId) -> Result<u64> {
        let snapshots = self.snapshots_of(user_id, Some(keep)).await;
        let count = self
            .call(self.store().revoke_user(user_id, Some(keep)))
            .await?;
        if count > 0 {
            self.note_ended(snapshots, Ending::Revoked).await;
        }
        self.emit_revoked_many(user_id, Some(keep), count).await;
        Ok(count)
    }

    /// The event of a revocation of `count` sessions of `user_id` (all, or
    /// all but `kept`); none if it ended nothing.
    pub(crate) async fn emit_revoked_many(
        &self,
        user_id: &str,
        kept: Option<&SessionId>,
        count: u64,
    ) {
        if count == 0 {
            return;
        }
        self.emit(|| NewEvent {
            kind: EventKind::Revoked {
                scope: match kept {
                    Some(kept) => RevokeScope::AllButOne {
                        kept: kept.clone(),
                        count,
                    },
                    None => RevokeScope::AllOfUser { count },
                },
            },
            session: None,
            user: Some(user_id.to_owned()),
        })
        .await;
    }

    /// A feed of the lifecycle events of every instance on this manager's
    /// store, from now on (see the [`events`](crate::events) module).
    ///
    /// # Errors
    /// [`Error::EventsOff`](crate::Error::EventsOff) if the manager was
    /// built without [`with_events`](Self::with_events); store failures.
    pub async fn events(&self) -> Result<EventFeed> {
        let bus = self.bus().ok_or(crate::Error::EventsOff)?;
        let feed = self.call(bus.subscribe()).await?;
        // Trackers on the same bus have feeds of their own.
        Ok(feed.filtered(|e| !matches!(e.kind, EventKind::Keyed { .. })))
    }

    /// Loads the session for a request (for adapters): finds the token
    /// (cookie or header, as configured) and records the client's user
    /// agent and address. A missing, malformed, tampered, expired or
    /// unknown token gives a fresh anonymous session (nothing is stored
    /// until something is inserted).
    ///
    /// # Errors
    /// Only store failures and timeouts; bad input never errors.
    pub async fn load_request(
        &self,
        headers: &(impl HeaderSource + ?Sized),
        ip: Option<IpAddr>,
    ) -> Result<Session> {
        let token = headers::token_of(self.config(), headers);
        let client = headers::client_of(headers, ip);
        self.load(token, client).await
    }

    /// Loads the session a token names (see [`load_request`](Self::load_request)).
    /// A token replaced by another request's login or explicit rotation
    /// gives an empty session that is never written and sets no cookie.
    ///
    /// # Errors
    /// Only store failures and timeouts.
    pub async fn load(&self, token: Option<Token>, client: ClientInfo) -> Result<Session> {
        let Some(token) = token else {
            return Ok(Session::new(self.clone(), client, State::new(false)));
        };
        let asked = token.id();
        let state = match self
            .call(self.store().load(&asked, self.timeouts()))
            .await?
        {
            LoadOutcome::Live(l) => {
                let due = self.config().rotation_interval.is_some_and(|every| {
                    l.now_ms.saturating_sub(l.meta.token_issued_ms) >= duration_ms(every)
                });
                State::loaded(token, &asked, l, due)
            }
            LoadOutcome::Superseded => State::superseded(),
            LoadOutcome::Missing => State::new(true),
        };
        Ok(Session::new(self.clone(), client, state))
    }

    /// The session `token` names, unread (see `State::unread`); a fresh
    /// anonymous one without a token.
    pub(crate) fn unread(&self, token: Option<Token>, client: ClientInfo) -> Session {
        let state = match token {
            Some(token) => {
                let id = token.id();
                State::unread(token, id)
            }
            None => State::new(false),
        };
        Session::new(self.clone(), client, state)
    }

    /// A fresh anonymous session that commit never writes, for
    /// [`StoreFailure::Continue`](crate::StoreFailure::Continue).
    pub(crate) fn stand_in(&self, client: ClientInfo) -> Session {
        Session::new(self.clone(), client, State::stand_in())
    }

    /// Writes what the handler changed and returns the headers to add to the
    /// response (cookie, token header, `Cache-Control`); for adapters.
    ///
    /// Nothing is written for an unchanged session; a changed one writes only
    /// the changed keys. A session ended meanwhile (logout or revoke in
    /// another request) is not written back: the write is dropped and the
    /// cookie cleared. A session whose token another request replaced by a
    /// login or explicit rotation drops its write and leaves the cookie
    /// alone.
    ///
    /// # Errors
    /// Store failures and timeouts, with the headers the error response
    /// must still carry (a token issued in this request). The pending
    /// changes are kept in the session, so a retry can commit them.
    pub async fn commit(&self, session: &Session) -> Result<ResponseHeaders, CommitError> {
        commit::commit(session).await
    }
}
