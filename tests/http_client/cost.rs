//! The Redis commands one visit costs, step by step: the shared yardstick
//! of the cost suites (`redis_events.rs`, `redis_persist.rs`).

use std::collections::BTreeMap;

use sessionkit::SessionManager;

use super::{routes, with_layer, Framework};
use crate::support::browser::Browser;
use crate::support::redis_server::counted;

/// One visit: first write, read, write, login, read, logout.
pub const VISIT: [&str; 6] = [
    "/set/a/1",
    "/get/a",
    "/set/b/2",
    "/login/erin",
    "/get/a",
    "/logout",
];

/// The commands each step of [`VISIT`] ran on the server behind `con`, when
/// served by `manager` over HTTP (axum).
pub async fn one_visit(
    manager: SessionManager,
    con: &mut redis::aio::MultiplexedConnection,
) -> Vec<BTreeMap<String, u64>> {
    let srv = with_layer(Framework::Axum, routes(), manager).await;
    let b = Browser::new();
    let mut out = Vec::new();
    for path in VISIT {
        out.push(
            counted(con, async {
                b.send(&srv, path).await;
            })
            .await,
        );
    }
    out
}
