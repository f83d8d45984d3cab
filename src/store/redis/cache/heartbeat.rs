//! The heartbeat: every interval (default 1 s, see
//! [`RedisStoreBuilder::heartbeat_interval`]) a `ROLE` on each live link,
//! on its own schedule — not after the touch queue drains, which under
//! steady load could wait a whole flush.
//!
//! - An answer `master` confirms the link: the server is alive, and every
//!   invalidation it sent before the answer has been applied.
//! - For Sentinel, the sentinels are asked too which master they name
//!   (one `SENTINEL GET-MASTER-ADDR-BY-NAME` on a kept connection): after a
//!   failover the old master calls itself master until the sentinels
//!   reconfigure it (seconds later), and writes it took meanwhile would be
//!   lost.
//! - Any other role (a failover demoted it), another master named by the
//!   sentinels, an error, or no answer within one interval drops the
//!   link's connection and empties its cache; the
//!   next call connects again (to the new master, for Sentinel) and, on a
//!   Cluster, fetches the slot map first.
//!
//! Independently of the heartbeat, a cache hit is served only if its link
//! was confirmed (by a reply or a heartbeat) within two intervals, so a
//! partitioned instance — a `SIGSTOP`ped server, a network that drops
//! packets without a reset — stops serving copies within two intervals
//! even when the heartbeat itself is stuck.
//!
//! On a Cluster the slot map is fetched again every
//! [`REFRESH_EVERY`] beats even when nothing said it changed.
//!
//! [`RedisStoreBuilder::heartbeat_interval`]: crate::redis::RedisStoreBuilder::heartbeat_interval

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::Role;

use crate::store::redis::connection::link::Link;
use crate::store::redis::connection::timed;
use crate::store::redis::{Inner, RedisStore};

/// Beats between slot-map refreshes on a Cluster.
const REFRESH_EVERY: u32 = 5;

/// Starts the heartbeat of a store; it ends when the store is dropped.
pub(crate) fn spawn_heartbeat(inner: Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats: u32 = 0;
        loop {
            ticker.tick().await;
            let Some(store) = inner.upgrade().map(|inner| RedisStore { inner }) else {
                return;
            };
            let links = store.heartbeat_links();
            let beat: Vec<_> = links
                .into_iter()
                .map(|link| tokio::spawn(beat(link, every)))
                .collect();
            let mut demoted = false;
            for b in beat {
                demoted |= b.await.unwrap_or(false);
            }
            beats = beats.wrapping_add(1);
            if let Some(nodes) = &store.inner.cache {
                if demoted {
                    nodes.mark_stale();
                }
                if demoted || beats % REFRESH_EVERY == 0 {
                    if let Err(e) = nodes.refresh().await {
                        tracing::warn!(error = %e, "Redis Cluster: could not refresh the slot map");
                    }
                }
            }
        }
    });
}

impl RedisStore {
    /// The links the heartbeat watches: the cache's, and the Sentinel link.
    fn heartbeat_links(&self) -> Vec<Arc<Link>> {
        let mut links = self.inner.cache.as_ref().map_or_else(Vec::new, |n| n.all());
        if let crate::store::redis::connection::Backend::Sentinel(link) = &self.inner.backend {
            links.push(link.clone());
        }
        links
    }
}

/// One `ROLE` on `link`'s live connection; `true` if the link was dropped.
async fn beat(link: Arc<Link>, limit: Duration) -> bool {
    let Some((mut conn, epoch)) = link.live() else {
        return false;
    };
    let sent = link.stamp();
    let role = timed(limit, ::redis::cmd("ROLE").query_async::<Role>(&mut conn)).await;
    match role {
        Ok(Ok(Role::Primary { .. })) => {
            // A Sentinel master that still calls itself master may already
            // be replaced: the sentinels decide.
            if let Some(named) = link.target().named_master(limit).await {
                if link.addr().is_some_and(|addr| addr != named) {
                    tracing::warn!(link = ?link, master = %named, "Redis Sentinel: the sentinels name another master; the connection to the old one was dropped and its cached sessions emptied");
                    link.lost(epoch);
                    return true;
                }
            }
            link.answered(sent);
            false
        }
        Ok(Ok(_)) => {
            tracing::warn!(link = ?link, "Redis: the server is no longer a primary (failover); its connection was dropped and its cached sessions emptied");
            link.lost(epoch);
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(link = ?link, error = %e, "Redis: the heartbeat failed; the connection was dropped and its cached sessions emptied");
            link.lost(epoch);
            true
        }
        Err(_) => {
            tracing::warn!(link = ?link, "Redis: no heartbeat answer within one interval; the connection was dropped and its cached sessions emptied");
            link.lost(epoch);
            true
        }
    }
}
