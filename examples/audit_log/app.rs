//! The two halves of `examples/audit_log.rs`, written once: the example
//! runs them as two processes, and `tests/audit_log.rs` includes this file
//! and tests the very same code on its own Redis and PostgreSQL.
//!
//! - [`router`]: the service. `POST /login/{user}`, `POST /note/{text}`
//!   (kept in the session, so that an expiry shows data), `GET /whoami`,
//!   `POST /logout`, and `POST /admin/revoke/{user}` (ends every session of
//!   the user: an admin's "log out everywhere").
//! - [`watch`]: the auditor. It serves no request: it subscribes to the
//!   store's events and writes one [`line`] per login, logout, revocation,
//!   eviction and expiry, whichever instance caused it, and expiries that
//!   no request caused at all.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sessionkit::axum::SessionLayer;
use sessionkit::events::{EventFeed, EventKind, FeedError, RevokeScope, SessionEvent};
use sessionkit::{Session, SessionConfig, SessionManager};

/// The longest user name or note accepted, in characters.
const MAX_LEN: usize = 64;

/// The configuration of both processes: a short idle timeout, so that an
/// expiry is seen within a minute of trying the example.
pub fn config(idle: Duration) -> SessionConfig {
    SessionConfig::default().idle_timeout(idle)
}

/// A text answer, or why not.
type Answer = Result<String, Refusal>;

/// Why a route did not do what it was asked.
enum Refusal {
    /// A user name or note that is empty or too long.
    Input,
    /// The session layer's error: it answers with its status, and no
    /// internals.
    Session(sessionkit::Error),
}

impl From<sessionkit::Error> for Refusal {
    fn from(e: sessionkit::Error) -> Self {
        Refusal::Session(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Input => (
                StatusCode::BAD_REQUEST,
                format!("expected 1 to {MAX_LEN} characters\n"),
            )
                .into_response(),
            Refusal::Session(e) => e.into_response(),
        }
    }
}

/// The service's routes, on `manager` (which must have events on).
pub fn router(manager: SessionManager) -> axum::Router {
    fn checked(text: &str) -> Result<&str, Refusal> {
        if text.is_empty() || text.chars().count() > MAX_LEN {
            return Err(Refusal::Input);
        }
        Ok(text)
    }
    async fn login(session: Session, Path(user): Path<String>) -> Answer {
        session.login(checked(&user)?).await?;
        Ok(format!("logged in as {user}\n"))
    }
    async fn note(session: Session, Path(text): Path<String>) -> Answer {
        session.insert("note", checked(&text)?)?;
        Ok("noted\n".to_owned())
    }
    async fn whoami(session: Session) -> String {
        format!("{}\n", session.user_id().as_deref().unwrap_or("anonymous"))
    }
    async fn logout(session: Session) -> Answer {
        session.logout().await?;
        Ok("logged out\n".to_owned())
    }
    async fn revoke(State(manager): State<SessionManager>, Path(user): Path<String>) -> Answer {
        let ended = manager.revoke_user(checked(&user)?).await?;
        Ok(format!("ended {ended} sessions of {user}\n"))
    }

    axum::Router::new()
        .route("/login/{user}", post(login))
        .route("/note/{text}", post(note))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .route("/admin/revoke/{user}", post(revoke))
        .with_state(manager.clone())
        .layer(SessionLayer::new(manager))
}

/// The audit line of an event: its time (the store's clock), what
/// happened, the user and the session's public id (never a token); `None`
/// for what an audit log leaves out (anonymous sessions' first writes,
/// rotations).
pub fn line(event: &SessionEvent) -> Option<String> {
    let user = event.user.as_deref().unwrap_or("anonymous");
    let session = event
        .session
        .as_ref()
        .map(|s| format!(" session={s}"))
        .unwrap_or_default();
    let what = match &event.kind {
        EventKind::LoggedIn { .. } => "login".to_owned(),
        EventKind::LoggedOut => "logout".to_owned(),
        EventKind::Revoked { scope } => match scope {
            RevokeScope::One => "revoked".to_owned(),
            RevokeScope::AllOfUser { count } => format!("revoked all ({count})"),
            RevokeScope::AllButOne { kept, count } => {
                format!("revoked all but {kept} ({count})")
            }
        },
        EventKind::Evicted { by } => format!("evicted by {by}"),
        EventKind::Expired { reason, data } => {
            let data = serde_json::Value::Object(data.clone());
            let reason = format!("{reason:?}").to_lowercase();
            format!("expired ({reason}) data={data}")
        }
        _ => return None,
    };
    let at = event
        .at()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| event.at_ms.to_string());
    Some(format!("{at} {what} user={user}{session}"))
}

/// Writes the line of every event `feed` delivers to `out`, until the feed
/// ends.
pub async fn watch(mut feed: EventFeed, mut out: impl FnMut(String)) {
    loop {
        match feed.recv().await {
            Ok(event) => {
                if let Some(line) = line(&event) {
                    out(line);
                }
            }
            Err(FeedError::Lagged { missed }) => out(format!("(missed {missed} events)")),
            Err(_) => return,
        }
    }
}
