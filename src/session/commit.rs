//! What happens after the handler: periodic rotation, the write of what
//! changed, the lock's release, and the cookie to send.
//!
//! The rule: no response tells a client to drop a cookie while that
//! session or its successor is alive, no response replaces a live token
//! with an anonymous one, and a write answered 2xx is in the store
//! afterwards, except writes made with a token that was ended (dropped; the
//! client is told to clear its cookie) or replaced by a login or explicit
//! rotation (dropped; the client's new cookie is left alone). Writes
//! through a token replaced by periodic rotation are kept. And a token
//! change is never lost to a later failure: an error response still carries
//! the new token.

use crate::events::{EventKind, NewEvent, RotationReason};
use crate::http::cookies::{self, CookieAction};
use crate::http::{CommitError, ResponseHeaders};
use crate::store::{NewSession, Retire, RotateOutcome, SaveOutcome};
use crate::token::{Tag, Token};
use crate::{Error, Result, SessionConfig};

use super::lifecycle::emit_rotated;
use super::state::{Standing, State};
use super::{lock, Session};

/// Writes what the request changed and returns the headers for the
/// response; on failure, the headers the error response must still carry.
pub(crate) async fn commit(session: &Session) -> Result<ResponseHeaders, CommitError> {
    let config = session.manager().config();
    let result = write(session).await;
    let st = session.state();
    match result {
        Ok(cookie) => Ok(response_headers(config, &cookie, &st)),
        Err(error) => {
            // A token issued before the failure (a login in the handler, a
            // rotation here) is live in the store: the client must get it.
            let cookie = match st.issued_token() {
                Some(_) => cookie_after_commit(config, &st),
                None => CookieAction::None,
            };
            let headers = response_headers(config, &cookie, &st);
            Err(CommitError { error, headers })
        }
    }
}

async fn write(session: &Session) -> Result<CookieAction> {
    let manager = session.manager();
    let config = manager.config();
    let timeouts = manager.timeouts();
    let (id, token, mut delta, rotation_due, fence) = {
        let mut st = session.state();
        match st.standing() {
            // Never written; sets no cookie (see `Standing`).
            Standing::StandIn | Standing::Superseded => return Ok(CookieAction::None),
            Standing::New | Standing::Stored => {}
        }
        // The lock is released below, once the changes are written: no
        // renewal from here on.
        if let Some(held) = st.lock() {
            held.stop_renewal();
        }
        if st.is_ended() {
            return Ok(removal_if_held(config, &st));
        }
        let delta = st.take_delta();
        let fence = st.lock().map(|held| held.fence);
        (
            st.id().cloned(),
            st.token().cloned(),
            delta,
            st.rotation_due(),
            fence,
        )
    };

    let Some(mut id) = id else {
        if session.state().data().is_empty() {
            return Ok(CookieAction::None);
        }
        if let Err(e) = store_new(session).await {
            session.state().restore_delta(&delta);
            return Err(e);
        }
        return Ok(cookie_after_commit(config, &session.state()));
    };

    // Whether a write landed: the session's persistence is then due.
    let mut wrote = false;
    if let (true, Some(old)) = (rotation_due, &token) {
        let new = Token::generate(&old.tag());
        let retire = Retire::Alias(config.rotation_grace);
        let outcome = manager
            .call(manager.store().rotate(&id, &new.id(), retire, timeouts))
            .await;
        let rotated = {
            let mut st = session.state();
            match outcome {
                Ok(RotateOutcome::Rotated(written)) => {
                    let previous = std::mem::replace(&mut id, new.id());
                    st.rotated(new, written, false);
                    Some((previous, st.user_id().map(str::to_owned)))
                }
                // A sibling request rotated first: write through its alias (or
                // find the token moved, below), and leave the cookie to it.
                Ok(RotateOutcome::Superseded) => {
                    st.rotated_elsewhere();
                    None
                }
                Ok(RotateOutcome::Gone) => return Ok(ended_elsewhere(config, &mut st)),
                Err(e) => {
                    st.restore_delta(&delta);
                    return Err(e);
                }
            }
        };
        if let Some((previous, user)) = rotated {
            wrote = true;
            emit_rotated(
                manager,
                previous,
                id.clone(),
                user,
                RotationReason::Periodic,
            )
            .await;
        }
    }

    delta.fence = fence;
    if !delta.is_empty() {
        let outcome = manager
            .call(manager.store().save(&id, &delta, timeouts))
            .await;
        let mut st = session.state();
        match outcome {
            Ok(SaveOutcome::Saved(written)) => {
                st.saved(written);
                wrote = true;
            }
            Ok(SaveOutcome::SavedToSuccessor(written)) => {
                st.saved(written);
                st.rotated_elsewhere();
                wrote = true;
            }
            Ok(SaveOutcome::Gone) => return Ok(ended_elsewhere(config, &mut st)),
            Ok(SaveOutcome::Superseded) if fence.is_some() => {
                // Replaced under the lock: the changes made under it cannot
                // be written, and must not vanish silently.
                st.drop_lock();
                tracing::debug!(session = %id, "token replaced under the session lock; write refused");
                return Err(Error::LockLost);
            }
            Ok(SaveOutcome::Superseded) => {
                tracing::debug!(session = %id, "token replaced by another request; write dropped");
                st.supersede();
                return Ok(CookieAction::None);
            }
            Ok(SaveOutcome::Fenced) => {
                st.drop_lock();
                tracing::debug!(session = %id, "session lock lost before the commit; write refused");
                return Err(Error::LockLost);
            }
            Err(e) => {
                // The lock stays recorded: the session's drop releases it
                // if no retry commits.
                st.restore_delta(&delta);
                return Err(e);
            }
        }
    }

    if let Some(fence) = fence {
        // Released only now that the changes made under it are written.
        lock::release(manager, &id, fence).await;
        session.state().drop_lock();
    }
    if wrote {
        manager.note_changed(&id).await;
    }

    Ok(cookie_after_commit(config, &session.state()))
}

/// Stores a session that is not stored yet under a fresh token, with the
/// data it holds now.
pub(crate) async fn store_new(session: &Session) -> Result<()> {
    let manager = session.manager();
    let token = Token::generate(&Tag::random());
    let id = token.id();
    let data = session.state().data().clone();
    let new = NewSession {
        data: &data,
        client: session.client(),
    };
    let written = manager
        .call(manager.store().create(&id, new, manager.timeouts()))
        .await?;
    session.state().stored_as_new(token, &data, written);
    manager.note_changed(&id).await;
    manager
        .emit(|| NewEvent {
            kind: EventKind::Created,
            session: Some(id),
            user: None,
        })
        .await;
    Ok(())
}

/// The session ended in the store while this request ran (logout, revoke,
/// eviction or expiry, with no live successor).
fn ended_elsewhere(config: &SessionConfig, st: &mut State) -> CookieAction {
    if let Some(id) = st.id() {
        tracing::debug!(session = %id, "session ended by another request; write dropped");
    }
    st.end();
    CookieAction::Remove(cookies::removal_cookie(config))
}

fn removal_if_held(config: &SessionConfig, st: &State) -> CookieAction {
    if st.client_may_hold_cookie() {
        CookieAction::Remove(cookies::removal_cookie(config))
    } else {
        CookieAction::None
    }
}

/// The cookie for a session that is (still) live after the commit: its
/// token when issued in this request, or a refreshed persistent cookie.
fn cookie_after_commit(config: &SessionConfig, st: &State) -> CookieAction {
    let Some(token) = st.token() else {
        return CookieAction::None;
    };
    let max_age = if config.persistent_cookie {
        st.expiry()
            .map(|w| w.expires_at_ms.saturating_sub(w.now_ms) / 1000)
    } else {
        None
    };
    let refresh = config.persistent_cookie && st.expiry_moved();
    if st.issued_token().is_some() || refresh {
        CookieAction::Set(cookies::set_cookie(config, token, max_age))
    } else {
        CookieAction::None
    }
}

/// The response headers for a committed session.
fn response_headers(config: &SessionConfig, cookie: &CookieAction, st: &State) -> ResponseHeaders {
    let transport = &config.transport;
    let mut out = ResponseHeaders::default();
    if transport.cookie() {
        if let CookieAction::Set(v) | CookieAction::Remove(v) = cookie {
            out.push("set-cookie", v.clone());
        }
    }
    if let (Some(header), Some(token)) = (transport.header(), st.issued_token()) {
        out.push(&header.response_header, token.as_str().to_owned());
    }
    if !out.is_empty() {
        out.push("cache-control", "no-store".to_owned());
    }
    out
}
