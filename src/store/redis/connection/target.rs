//! Where a [`Link`](super::link::Link) connects: a fixed server, or the
//! current master of a Sentinel-monitored set, asked of the sentinels each
//! time the link (re)connects.

use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{Client, ProtocolVersion};

use crate::{Error, Result};

/// The server a link connects to.
pub(crate) enum Target {
    /// One server (standalone, or one Cluster primary).
    Fixed(Client),
    /// The master of `name`, as the sentinels say now. redis-rs has no
    /// connection that follows a failover by itself (redis-rs#1438), so the
    /// link asks again whenever it connects.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        /// For logs: the master's name.
        name: String,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The connection info may hold a password.
            Target::Fixed(c) => write!(f, "Fixed({})", c.get_connection_info().addr()),
            Target::Sentinel { name, .. } => write!(f, "Sentinel({name})"),
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
        Ok(Target::Sentinel {
            client: tokio::sync::Mutex::new(client),
            name: name.to_owned(),
        })
    }

    /// A client for the server to connect to now, in RESP3 when `resp3`.
    pub(crate) async fn client(&self, resp3: bool) -> Result<Client> {
        let client = match self {
            Target::Fixed(c) => c.clone(),
            Target::Sentinel { client, name } => {
                client.lock().await.async_get_client().await.map_err(|e| {
                    Error::store(format!(
                        "Redis Sentinel: no reachable master for {name:?}: {e}"
                    ))
                })?
            }
        };
        if !resp3 {
            return Ok(client);
        }
        let info = client.get_connection_info().clone();
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        Client::open(info.set_redis_settings(redis)).map_err(Error::store)
    }
}
