//! The variants under test, each served by this binary re-executed as
//! `serve <variant> <port> <store-url> <threads>` (the store URL is Redis's,
//! or PostgreSQL's for the `postgres` variants).
//!
//! Every variant serves the same routes:
//! - `POST /login`: log a new user in (a fresh user id per request);
//! - `GET /read`: return the session's `user` value;
//! - `GET /write`: increment the session's counter `n` and return it;
//! - `POST /logout`: end the session (only probed for its Redis cost);
//! - `GET /locked-write` (sessionkit variants only): `/write` under the
//!   session's lock (the `LockedSession` extractor).
//!
//! The bare variants do the equivalent work without sessions.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sessionkit::postgres::PostgresStore;
use sessionkit::{MemoryStore, SessionConfig, SessionManager};

/// A server process lives at most this long, whatever happens to the
/// benchmark that started it.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Sessions the local cache may hold: the Redis client-side cache of the
/// `client-cache` variants, and `PostgresStore`'s of `postgres-cache`.
const CACHE_SESSIONS: usize = 10_000;

/// The framework a variant runs on; ratios compare with the bare variant of
/// the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Axum,
    Actix,
}

impl Family {
    pub fn bare(self) -> Variant {
        match self {
            Family::Axum => Variant::AxumBare,
            Family::Actix => Variant::ActixBare,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Axum => "axum",
            Family::Actix => "actix-web",
        }
    }
}

/// The session store of a sessionkit variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Memory,
    Redis,
    RedisCache,
    /// `PostgresStore` with the defaults (no cache), schema `bench_postgres`.
    Postgres,
    /// `PostgresStore` with `.cache(10_000)`, schema `bench_postgres_cache`.
    PostgresCache,
}

impl Store {
    pub fn is_postgres(self) -> bool {
        matches!(self, Store::Postgres | Store::PostgresCache)
    }

    /// How the reports name it.
    pub fn label(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Redis => "Redis",
            Store::RedisCache => "Redis + client cache",
            Store::Postgres => "PostgreSQL",
            Store::PostgresCache => "PostgreSQL + cache",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    AxumBare,
    SkAxum(Store),
    TowerSessionsRedis,
    ActixBare,
    SkActix(Store),
    ActixSessionRedis,
}

impl Variant {
    pub const ALL: [Variant; 10] = [
        Variant::AxumBare,
        Variant::SkAxum(Store::Memory),
        Variant::SkAxum(Store::Redis),
        Variant::SkAxum(Store::RedisCache),
        Variant::TowerSessionsRedis,
        Variant::ActixBare,
        Variant::SkActix(Store::Memory),
        Variant::SkActix(Store::Redis),
        Variant::SkActix(Store::RedisCache),
        Variant::ActixSessionRedis,
    ];

    /// The `postgres` variants: not in [`ALL`](Self::ALL) (the main
    /// table), they need a PostgreSQL server (the `postgres` cells run the
    /// axum ones).
    pub const POSTGRES: [Variant; 4] = [
        Variant::SkAxum(Store::Postgres),
        Variant::SkAxum(Store::PostgresCache),
        Variant::SkActix(Store::Postgres),
        Variant::SkActix(Store::PostgresCache),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::AxumBare => "axum-bare",
            Variant::SkAxum(Store::Memory) => "sk-axum-memory",
            Variant::SkAxum(Store::Redis) => "sk-axum-redis",
            Variant::SkAxum(Store::RedisCache) => "sk-axum-redis-cache",
            Variant::SkAxum(Store::Postgres) => "sk-axum-postgres",
            Variant::SkAxum(Store::PostgresCache) => "sk-axum-postgres-cache",
            Variant::TowerSessionsRedis => "tower-sessions-redis",
            Variant::ActixBare => "actix-bare",
            Variant::SkActix(Store::Memory) => "sk-actix-memory",
            Variant::SkActix(Store::Redis) => "sk-actix-redis",
            Variant::SkActix(Store::RedisCache) => "sk-actix-redis-cache",
            Variant::SkActix(Store::Postgres) => "sk-actix-postgres",
            Variant::SkActix(Store::PostgresCache) => "sk-actix-postgres-cache",
            Variant::ActixSessionRedis => "actix-session-redis",
        }
    }

    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL
            .into_iter()
            .chain(Variant::POSTGRES)
            .find(|v| v.name() == name)
    }

    pub fn family(self) -> Family {
        match self {
            Variant::AxumBare | Variant::SkAxum(_) | Variant::TowerSessionsRedis => Family::Axum,
            Variant::ActixBare | Variant::SkActix(_) | Variant::ActixSessionRedis => Family::Actix,
        }
    }

    pub fn is_bare(self) -> bool {
        matches!(self, Variant::AxumBare | Variant::ActixBare)
    }

    pub fn is_peer(self) -> bool {
        matches!(
            self,
            Variant::TowerSessionsRedis | Variant::ActixSessionRedis
        )
    }

    pub fn store(self) -> Option<Store> {
        match self {
            Variant::SkAxum(s) | Variant::SkActix(s) => Some(s),
            _ => None,
        }
    }

    pub fn uses_redis(self) -> bool {
        self.is_peer() || matches!(self.store(), Some(Store::Redis | Store::RedisCache))
    }

    pub fn uses_postgres(self) -> bool {
        self.store().is_some_and(Store::is_postgres)
    }

    /// Why this variant cannot run in this build, if it cannot.
    pub fn unavailable(self) -> Option<&'static str> {
        if self.store() == Some(Store::RedisCache) && !cfg!(feature = "client-cache") {
            return Some("not built: the bench's `client-cache` feature is off");
        }
        None
    }
}

// ------------------------------------------------------------------ serve

/// `serve <variant> <port> <store-url> <threads>`: runs one variant until
/// stdin closes (the benchmark holds the other end), or at most
/// [`MAX_LIFETIME`].
pub fn serve(args: &[String]) -> Result<(), String> {
    let [name, port, store_url, threads] = args else {
        return Err("usage: serve <variant> <port> <store-url> <threads>".into());
    };
    let variant = Variant::from_name(name).ok_or_else(|| format!("unknown variant {name:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let threads: usize = threads
        .parse()
        .map_err(|_| format!("bad thread count {threads:?}"))?;
    if let Some(why) = variant.unavailable() {
        return Err(format!("{name}: {why}"));
    }
    exit_when_orphaned();
    if std::env::var_os("RUST_LOG").is_some() {
        // e.g. RUST_LOG=sessionkit=debug: why a variant answers 503.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match variant.family() {
        Family::Axum => axum_servers::serve(variant, port, store_url, threads.max(1)),
        Family::Actix => actix_servers::serve(variant, port, store_url, threads.max(1)),
    }
}

/// Exits when stdin reaches EOF (the benchmark died or dropped us) and
/// after [`MAX_LIFETIME`].
pub(crate) fn exit_when_orphaned() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(MAX_LIFETIME);
        eprintln!("server: lived {MAX_LIFETIME:?}, exiting");
        std::process::exit(0);
    });
}

/// Fresh user ids for `/login`: a new user per request, as real logins are
/// (one user logging in 100,000 times would make every login scan that
/// user's ever-growing session list, in any store that keeps one).
static LOGINS: AtomicU64 = AtomicU64::new(0);
/// The bare variants' stand-in for a session counter.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_user() -> String {
    format!("user-{}", LOGINS.fetch_add(1, Ordering::Relaxed))
}

/// The sessionkit manager of a variant, built inside the server's runtime
/// (the memory and PostgreSQL stores start their background tasks there).
/// `url` is Redis's, or PostgreSQL's for the PostgreSQL stores.
async fn sk_manager(store: Store, url: &str) -> Result<SessionManager, String> {
    let config = SessionConfig::default();
    Ok(match store {
        Store::Memory => SessionManager::new(MemoryStore::new(), config),
        Store::Redis => {
            let store = sessionkit::redis::RedisStore::connect(url)
                .await
                .map_err(|e| format!("RedisStore::connect: {e}"))?;
            SessionManager::new(store, config)
        }
        Store::RedisCache => SessionManager::new(cached_store(url).await?, config),
        Store::Postgres | Store::PostgresCache => {
            // A schema per store (created by the build): each variant
            // starts from empty tables in the benchmark's fresh cluster.
            let cached = store == Store::PostgresCache;
            let builder = PostgresStore::builder().url(url).schema(if cached {
                "bench_postgres_cache"
            } else {
                "bench_postgres"
            });
            let builder = if cached {
                builder.cache(CACHE_SESSIONS)
            } else {
                builder
            };
            let store = builder
                .build()
                .await
                .map_err(|e| format!("PostgresStore ({}): {e}", store.label()))?;
            SessionManager::new(store, config)
        }
    })
}

#[cfg(feature = "client-cache")]
pub(crate) async fn cached_store(redis_url: &str) -> Result<sessionkit::redis::RedisStore, String> {
    sessionkit::redis::RedisStore::builder()
        .url(redis_url)
        .client_cache(CACHE_SESSIONS)
        .build()
        .await
        .map_err(|e| format!("RedisStore with client cache: {e}"))
}

#[cfg(not(feature = "client-cache"))]
pub(crate) async fn cached_store(
    _redis_url: &str,
) -> Result<sessionkit::redis::RedisStore, String> {
    Err("built without the client-cache feature".into())
}

/// Handlers shared by both frameworks: `sessionkit::Session` is an extractor
/// in axum and in actix-web, and `sessionkit::Error` a response in both.
pub(crate) mod handlers {
    use sessionkit::{Error, LazySession, LockedSession, Session};
    use std::sync::atomic::Ordering;

    pub async fn bare_login() -> String {
        super::next_user()
    }

    pub async fn bare_read() -> String {
        "user-0".to_owned()
    }

    pub async fn bare_write() -> String {
        (super::COUNTER.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    pub async fn bare_logout() -> &'static str {
        "bye"
    }

    /// Through `LazySession`: the login is one store call, with nothing
    /// read first. The user is bound to the session by the login itself
    /// (the peers, which have no such binding, store it as a key).
    pub async fn sk_login(session: LazySession) -> Result<String, Error> {
        let user = super::next_user();
        session.login(user.clone()).await?;
        Ok(user)
    }

    pub async fn sk_read(session: Session) -> Result<String, Error> {
        Ok(session.user_id().unwrap_or_default())
    }

    pub async fn sk_write(session: Session) -> Result<String, Error> {
        let n: u64 = session.get("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        Ok(n.to_string())
    }

    /// `/write` under the session's lock: the read-modify-write of `n`
    /// never loses an update, however many requests of the session race.
    pub async fn sk_locked_write(session: LockedSession) -> Result<String, Error> {
        let n: u64 = session.get("n")?.unwrap_or(0) + 1;
        session.insert("n", n)?;
        Ok(n.to_string())
    }

    pub async fn sk_logout(session: LazySession) -> Result<&'static str, Error> {
        session.logout().await?;
        Ok("bye")
    }
}

mod actix_servers;
mod axum_servers;
