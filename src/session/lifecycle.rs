//! What happens on login, logout and explicit rotation: the store call, and
//! the state transition that follows its answer. Periodic rotation happens
//! at commit (`commit.rs`).
//!
//! The rules these keep, with parallel requests in mind:
//! - **login** reads the old session's *latest* data in the store step that
//!   creates the new session (so a key another request saved meanwhile is
//!   carried over), applies this request's own changes on top, and retires
//!   the old token as *moved*. From a session that ended meanwhile (or was
//!   already replaced) it carries only this request's own changes.
//! - **logout** and **rotate** refuse to act on a session this request
//!   cannot speak for: the stand-in of `StoreFailure::Continue` (the store
//!   never answered) and a superseded session (another request replaced
//!   the token; its successor is not this request's to end).
//! - a **login or rotation that timed out** may have landed: the old token
//!   is then retired and the new one is the client's only way back in. So
//!   the new id is looked up once before the timeout is reported, and a
//!   session found there is adopted (see [`landed`]).

use crate::events::{EventKind, NewEvent, RevokeScope, RotationReason};
use crate::store::persist::Ending;
use crate::store::{
    LoadOutcome, Loaded, Login, LoginOutcome, LogoutOutcome, Retire, RotateOutcome, Written,
};
use crate::token::{Tag, Token};
use crate::{Error, Result, SessionId, SessionManager};

use super::state::Standing;
use super::Session;

/// The error for an operation the session's standing does not allow.
fn refuse(standing: Standing) -> Option<Error> {
    match standing {
        Standing::StandIn => Some(Error::StandIn),
        Standing::Superseded => Some(Error::Superseded),
        Standing::New | Standing::Stored => None,
    }
}

/// [`Session::login`].
pub(crate) async fn login(session: &Session, user_id: String) -> Result<()> {
    let manager = session.manager();
    let config = manager.config();
    let (old, delta) = {
        let mut st = session.state();
        if st.is_ended() {
            return Err(Error::SessionEnded);
        }
        // Only a stored session has data in the store to carry over; a
        // superseded or stand-in session carries its own changes only.
        let old = match st.standing() {
            Standing::Stored => st.id().cloned(),
            _ => None,
        };
        (old, st.take_delta())
    };
    let new = Token::generate(&Tag::for_user(&user_id));
    let new_id = new.id();
    let doomed = manager.snapshots_before_login(&user_id, old.as_ref()).await;
    let login = Login {
        old: old.as_ref(),
        new: &new_id,
        user_id: &user_id,
        delta: &delta,
        client: session.client(),
        limit: config.user_limit,
        moved_grace: config.rotation_grace,
    };
    let outcome = manager
        .call(manager.store().login(login, manager.timeouts()))
        .await;
    // The state's guard is not held across the awaits below (the future
    // must stay `Send`): the answer is applied in a block of its own.
    let mut new = Some(new);
    let answered = {
        let mut st = session.state();
        match outcome {
            Ok(LoginOutcome::LoggedIn {
                written,
                data,
                evicted,
            }) => {
                if !evicted.is_empty() {
                    tracing::debug!(session = %new_id, evicted = evicted.len(), "login evicted older sessions");
                }
                if let Some(new) = new.take() {
                    st.logged_in(new, user_id.clone(), data, written);
                }
                Ok(evicted)
            }
            Ok(LoginOutcome::Rejected { max }) => {
                st.restore_delta(&delta);
                return Err(Error::TooManySessions { max });
            }
            Err(e @ Error::StoreTimeout(_)) => Err(e),
            Err(e) => {
                st.restore_delta(&delta);
                return Err(e);
            }
        }
    };
    let evicted = match answered {
        Ok(evicted) => evicted,
        Err(e) => {
            let found = landed(manager, &new_id).await;
            let mut st = session.state();
            match (found, new.take()) {
                (Some(l), Some(new)) if l.meta.user_id.as_deref() == Some(user_id.as_str()) => {
                    tracing::debug!(session = %new_id, "login timed out but landed");
                    let written = written_of(&l);
                    st.logged_in(new, user_id.clone(), l.data, written);
                    // What it evicted is not known: the answer was lost.
                    Vec::new()
                }
                _ => {
                    st.restore_delta(&delta);
                    return Err(e);
                }
            }
        }
    };
    manager.note_changed(&new_id).await;
    manager.note_evicted(&evicted, &user_id, doomed).await;
    emit_login(manager, &new_id, old, &user_id, evicted).await;
    Ok(())
}

/// The events of a login: the new session, then each session its user's
/// limit ended.
async fn emit_login(
    manager: &SessionManager,
    new_id: &SessionId,
    previous: Option<SessionId>,
    user_id: &str,
    evicted: Vec<SessionId>,
) {
    manager
        .emit(|| NewEvent {
            kind: EventKind::LoggedIn { previous },
            session: Some(new_id.clone()),
            user: Some(user_id.to_owned()),
        })
        .await;
    for gone in evicted {
        manager
            .emit(|| NewEvent {
                kind: EventKind::Evicted { by: new_id.clone() },
                session: Some(gone),
                user: Some(user_id.to_owned()),
            })
            .await;
    }
}

/// After a login or explicit rotation to `new_id` timed out: the session
/// under `new_id` if the call landed after all. The store answers on one
/// connection in order for Redis, so a lookup sent after the call sees it;
/// on PostgreSQL a call still running when the lookup reads is missed, and
/// the timeout is reported as before.
async fn landed(manager: &SessionManager, new_id: &SessionId) -> Option<Loaded> {
    let lookup = manager.store().load(new_id, manager.timeouts());
    match manager.call(lookup).await {
        Ok(LoadOutcome::Live(l)) if l.id == *new_id => Some(l),
        _ => None,
    }
}

fn written_of(l: &Loaded) -> Written {
    Written {
        now_ms: l.now_ms,
        expires_at_ms: l.expires_at_ms,
    }
}

/// [`Session::logout`].
pub(crate) async fn logout(session: &Session) -> Result<()> {
    let (id, user) = {
        let st = session.state();
        if let Some(e) = refuse(st.standing()) {
            return Err(e);
        }
        (st.id().cloned(), st.user_id().map(str::to_owned))
    };
    if let Some(id) = &id {
        let manager = session.manager();
        let store = manager.store();
        let snapshot = manager.snapshot(id).await;
        let outcome = manager.call(store.logout(id, manager.timeouts())).await?;
        if outcome == LogoutOutcome::Superseded {
            // A login or explicit rotation in another request replaced the
            // token (before this one ended it): its successor is not this
            // request's to end, and its new cookie must stay.
            session.state().supersede();
            return Err(Error::Superseded);
        }
        tracing::debug!(session = %id, "logged out");
        session.state().end();
        if outcome == LogoutOutcome::Ended {
            manager
                .note_ended(snapshot.into_iter().collect(), Ending::LoggedOut)
                .await;
            manager
                .emit(|| NewEvent {
                    kind: EventKind::LoggedOut,
                    session: Some(id.clone()),
                    user,
                })
                .await;
        }
        return Ok(());
    }
    session.state().end();
    Ok(())
}

/// [`Session::logout_everywhere`].
pub(crate) async fn logout_everywhere(session: &Session) -> Result<u64> {
    let (id, user) = {
        let st = session.state();
        if let Some(e) = refuse(st.standing()) {
            return Err(e);
        }
        (st.id().cloned(), st.user_id().map(str::to_owned))
    };
    let manager = session.manager();
    let store = manager.store();
    let snapshots = match (&user, &id) {
        (Some(user), _) => manager.snapshots_of(user, None).await,
        (None, Some(id)) => manager.snapshot(id).await.into_iter().collect(),
        (None, None) => Vec::new(),
    };
    let ended = match (&user, &id) {
        (Some(user), _) => manager.call(store.revoke_user(user, None)).await?,
        (None, Some(id)) => u64::from(manager.call(store.revoke(id)).await?),
        (None, None) => 0,
    };
    if ended > 0 {
        manager.note_ended(snapshots, Ending::Revoked).await;
    }
    tracing::debug!(session = ?id, ended, "logged out everywhere");
    session.state().end();
    match (&user, &id) {
        (Some(user), _) => manager.emit_revoked_many(user, None, ended).await,
        (None, Some(id)) if ended > 0 => {
            manager
                .emit(|| NewEvent {
                    kind: EventKind::Revoked {
                        scope: RevokeScope::One,
                    },
                    session: Some(id.clone()),
                    user: None,
                })
                .await;
        }
        _ => {}
    }
    Ok(ended)
}

/// [`Session::rotate`].
pub(crate) async fn rotate(session: &Session) -> Result<()> {
    let id = {
        let st = session.state();
        if let Some(e) = refuse(st.standing()) {
            return Err(e);
        }
        if st.is_ended() {
            return Err(Error::SessionEnded);
        }
        match st.id() {
            // Not stored yet: its first write gets a fresh token anyway.
            None => return Ok(()),
            Some(id) => id.clone(),
        }
    };
    let manager = session.manager();
    let new = Token::generate(&Tag::of_id(&id));
    let new_id = new.id();
    let retire = Retire::Moved(manager.config().rotation_grace);
    let outcome = manager
        .call(
            manager
                .store()
                .rotate(&id, &new_id, retire, manager.timeouts()),
        )
        .await;
    let outcome = match outcome {
        Err(e @ Error::StoreTimeout(_)) => match landed(manager, &new_id).await {
            Some(l) => {
                tracing::debug!(session = %new_id, "rotation timed out but landed");
                RotateOutcome::Rotated(written_of(&l))
            }
            None => return Err(e),
        },
        other => other?,
    };
    let user = {
        let mut st = session.state();
        match outcome {
            RotateOutcome::Rotated(written) => {
                // The store dropped the lock with the old token; as after a
                // login, the new token is known to this request only.
                st.rotated(new, written, true);
                st.user_id().map(str::to_owned)
            }
            // Another request replaced the token first. Its writes still go
            // through at commit if that was a periodic rotation (an alias), and
            // are dropped if it was a login or explicit rotation.
            RotateOutcome::Superseded => return Err(Error::Superseded),
            RotateOutcome::Gone => {
                st.end();
                return Err(Error::SessionEnded);
            }
        }
    };
    manager.note_changed(&new_id).await;
    emit_rotated(manager, id, new_id, user, RotationReason::Explicit).await;
    Ok(())
}

/// The event of a rotation from `previous` to `new_id`.
pub(crate) async fn emit_rotated(
    manager: &SessionManager,
    previous: SessionId,
    new_id: SessionId,
    user: Option<String>,
    reason: RotationReason,
) {
    manager
        .emit(|| NewEvent {
            kind: EventKind::Rotated { previous, reason },
            session: Some(new_id),
            user,
        })
        .await;
}
