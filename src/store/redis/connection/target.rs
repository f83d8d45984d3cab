//! Where a [`Link`](super::link::Link) connects: a fixed server, or the
//! current master of a Sentinel-monitored set, asked of the sentinels each
//! time the link (re)connects.

use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Client, ProtocolVersion};

use crate::{Error, Result};

/// The server a link connects to.
pub(crate) enum Target {
    /// One server (standalone, or one Cluster primary).
    Fixed(Box<Client>),
    /// The master of `name`, as the sentinels say now. redis-rs has no
    /// connection that follows a failover by itself (redis-rs#1438), so the
    /// link asks again whenever it connects.
    Sentinel(Box<Sentinel>),
}

/// A Sentinel target's state.
pub(crate) struct Sentinel {
    client: tokio::sync::Mutex<SentinelClient>,
    /// The master's name.
    name: String,
    /// The sentinels' URLs, and a connection to one of them kept for the
    /// heartbeat's question (see [`Target::named_master`]).
    sentinels: Vec<String>,
    watch: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The connection info may hold a password.
            Target::Fixed(c) => write!(f, "Fixed({})", c.get_connection_info().addr()),
            Target::Sentinel(s) => write!(f, "Sentinel({})", s.name),
        }
    }
}

impl Target {
    /// A target asking `sentinels` (their URLs) for master `name`. The
    /// master connection uses `node` (password, database, TLS).
    pub(crate) fn sentinel(
        name: &str,
        sentinels: &[String],
        node: SentinelNodeConnectionInfo,
    ) -> Result<Self> {
        // `build` takes a `String` without TLS and `impl AsRef<str>` with it.
        let service: String = name.into();
        let client = SentinelClient::build(
            sentinels.to_vec(),
            service,
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|e| Error::store(format!("invalid Redis Sentinel configuration: {e}")))?;
        Ok(Target::Sentinel(Box::new(Sentinel {
            client: tokio::sync::Mutex::new(client),
            name: name.to_owned(),
            sentinels: sentinels.to_vec(),
            watch: tokio::sync::Mutex::new(None),
        })))
    }

    /// For a Sentinel target: the address (`host:port`) the sentinels name
    /// as master now (`SENTINEL GET-MASTER-ADDR-BY-NAME`, one command on a
    /// kept connection), `None` for a fixed target or when no sentinel
    /// answers within `limit`. The heartbeat compares it with the link's:
    /// after a failover the old master may still call itself master for
    /// seconds (until the sentinels reconfigure it), and writes it takes
    /// then are lost when it is demoted.
    pub(crate) async fn named_master(&self, limit: Duration) -> Option<String> {
        let Target::Sentinel(sentinel) = self else {
            return None;
        };
        let Sentinel {
            name,
            sentinels,
            watch,
            ..
        } = &**sentinel;
        let mut watch = watch.lock().await;
        for _ in 0..2 {
            if watch.is_none() {
                *watch = first_reachable(sentinels, limit).await;
            }
            let conn = watch.as_mut()?;
            let mut cmd = ::redis::cmd("SENTINEL");
            cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(name);
            let asked = cmd.query_async::<Option<(String, u16)>>(conn);
            match tokio::time::timeout(limit, asked).await {
                Ok(Ok(Some((host, port)))) => return Some(format!("{host}:{port}")),
                // This sentinel is gone or does not know the master: ask
                // another one.
                _ => *watch = None,
            }
        }
        None
    }

    /// A client (RESP3) for the server to connect to now.
    pub(crate) async fn client(&self) -> Result<Client> {
        let client = match self {
            Target::Fixed(c) => (**c).clone(),
            Target::Sentinel(s) => {
                let name = &s.name;
                s.client
                    .lock()
                    .await
                    .async_get_client()
                    .await
                    .map_err(|e| {
                        Error::store(format!(
                            "Redis Sentinel: no reachable master for {name:?}: {e}"
                        ))
                    })?
            }
        };
        resp3(&client)
    }
}

/// `client`'s settings speaking RESP3 (pushes: Pub/Sub notices).
pub(crate) fn resp3(client: &Client) -> Result<Client> {
    let info = client.get_connection_info().clone();
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(redis)).map_err(Error::store)
}

/// A connection to the first of `sentinels` that accepts one within `limit`.
async fn first_reachable(sentinels: &[String], limit: Duration) -> Option<MultiplexedConnection> {
    for url in sentinels {
        let Ok(client) = Client::open(url.as_str()) else {
            continue;
        };
        if let Ok(Ok(conn)) =
            tokio::time::timeout(limit, client.get_multiplexed_async_connection()).await
        {
            return Some(conn);
        }
    }
    None
}
