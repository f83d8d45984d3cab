//! The store's tables and functions: names (schema and table prefix,
//! validated), the versioned migrations that create them at start-up, and
//! the SQL text of every call.

use sqlx::{Executor, PgPool};

use super::pg_error;
use crate::{Error, Result};

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`. A version
/// that shipped is never edited; a change is a new version.
const MIGRATIONS: &[&[&str]] = &[
    &[
        include_str!("sql/schema_v1.sql"),
        include_str!("sql/functions_v1.sql"),
        include_str!("sql/sessions_v1.sql"),
        include_str!("sql/users_v1.sql"),
        include_str!("sql/locks_v1.sql"),
    ],
    &[include_str!("sql/keyed_v2.sql")],
    &[include_str!("sql/events_v3.sql")],
    &[include_str!("sql/expiry_v4.sql")],
    &[include_str!("sql/persist_v5.sql")],
];

/// The schema version this build of sessionkit installs.
pub(super) const VERSION: i32 = MIGRATIONS.len() as i32;

/// The longest schema name and table prefix accepted: the NOTIFY channels
/// (`<schema>.<prefix>changes`) must fit PostgreSQL's 63-byte identifiers.
const MAX_SCHEMA: usize = 30;
const MAX_PREFIX: usize = 20;

/// A validated schema name and table prefix. Both are plain lowercase SQL
/// identifiers, so they go into SQL text unquoted and need no escaping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Names {
    pub(super) schema: String,
    pub(super) prefix: String,
}

fn check(what: &str, s: &str, max: usize, may_be_empty: bool) -> Result<()> {
    let mut chars = s.chars();
    let starts_well = match chars.next() {
        None => may_be_empty,
        Some(c) => c.is_ascii_lowercase() || c == '_',
    };
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_well && rest_ok && s.len() <= max {
        Ok(())
    } else {
        Err(Error::Store(
            format!(
                "PostgresStore: the {what} {s:?} must be at most {max} characters of a-z, 0-9 \
                 and _, not starting with a digit"
            )
            .into(),
        ))
    }
}

impl Names {
    pub(super) fn new(schema: &str, prefix: &str) -> Result<Names> {
        check("schema name", schema, MAX_SCHEMA, false)?;
        check("table prefix", prefix, MAX_PREFIX, true)?;
        Ok(Names {
            schema: schema.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// `text` with `{schema}` and `{prefix}` filled in.
    pub(super) fn render(&self, text: &str) -> String {
        text.replace("{schema}", &self.schema)
            .replace("{prefix}", &self.prefix)
    }

    /// The channel of cache invalidations (and heartbeats).
    pub(super) fn changes_channel(&self) -> String {
        self.render("{schema}.{prefix}changes")
    }

    /// The channel of lock releases.
    pub(super) fn unlocked_channel(&self) -> String {
        self.render("{schema}.{prefix}unlocked")
    }
}

/// Creates the schema (if asked to) and brings its tables and functions up
/// to [`VERSION`], in one transaction under an advisory lock, so that
/// instances starting together migrate once.
pub(super) async fn migrate(pool: &PgPool, names: &Names, create_schema: bool) -> Result<()> {
    let mut tx = pool.begin().await.map_err(pg_error)?;
    // `IF NOT EXISTS` says "already exists, skipping" on every start-up;
    // those notices would reach the app's log at INFO.
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sessionkit.migrate'), hashtext($1))")
        .bind(&names.schema)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    if create_schema {
        tx.execute(
            names
                .render("CREATE SCHEMA IF NOT EXISTS {schema}")
                .as_str(),
        )
        .await
        .map_err(pg_error)?;
    } else {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&names.schema)
                .fetch_one(&mut *tx)
                .await
                .map_err(pg_error)?;
        if !exists {
            return Err(Error::Store(
                format!(
                    "PostgresStore: schema {:?} does not exist; create it, or build the store \
                     with .create_schema(true)",
                    names.schema
                )
                .into(),
            ));
        }
    }
    tx.execute(
        names
            .render(
                "CREATE TABLE IF NOT EXISTS {schema}.{prefix}schema_version (version int NOT NULL)",
            )
            .as_str(),
    )
    .await
    .map_err(pg_error)?;
    let current: i32 = sqlx::query_scalar(
        &names.render("SELECT coalesce(max(version), 0) FROM {schema}.{prefix}schema_version"),
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(pg_error)?;
    if current > VERSION {
        return Err(Error::Store(
            format!(
                "PostgresStore: {}.{}* is at schema version {current}, newer than this \
                 sessionkit's {VERSION}; upgrade sessionkit",
                names.schema, names.prefix
            )
            .into(),
        ));
    }
    for (i, parts) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        for part in *parts {
            sqlx::raw_sql(&names.render(part))
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
        }
        tx.execute(
            names
                .render("DELETE FROM {schema}.{prefix}schema_version")
                .as_str(),
        )
        .await
        .map_err(pg_error)?;
        sqlx::query(
            &names.render("INSERT INTO {schema}.{prefix}schema_version (version) VALUES ($1)"),
        )
        .bind(i as i32 + 1)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

/// The text of every call the store makes, rendered once at start-up.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) load: String,
    pub(super) create: String,
    pub(super) save: String,
    pub(super) login: String,
    pub(super) rotate: String,
    pub(super) revoke: String,
    pub(super) logout: String,
    pub(super) revoke_user: String,
    pub(super) sessions_of: String,
    pub(super) lock: String,
    pub(super) renew_lock: String,
    pub(super) unlock: String,
    pub(super) touch: String,
    pub(super) purge: String,
    /// The purge that records an expiry event and/or enqueues a
    /// persistence job per session (events or persistence on).
    pub(super) purge_recorded: String,
    pub(super) persist_enqueue: String,
    pub(super) persist_claim: String,
    pub(super) persist_settle: String,
    pub(super) persist_all: String,
    pub(super) keyed: String,
    pub(super) keyed_purge: String,
    pub(super) ping: String,
}

impl Sql {
    pub(super) fn new(n: &Names) -> Sql {
        let call = |f: &str, args: usize| {
            let params: Vec<String> = (1..=args).map(|i| format!("${i}")).collect();
            n.render(&format!(
                "SELECT * FROM {{schema}}.{{prefix}}{f}({})",
                params.join(", ")
            ))
        };
        Sql {
            load: call("load", 3),
            create: call("create", 7),
            save: call("save", 8),
            login: call("login", 15),
            rotate: call("rotate", 6),
            revoke: call("revoke", 2),
            logout: call("logout", 2),
            revoke_user: call("revoke_user", 3),
            sessions_of: call("sessions_of", 1),
            lock: call("lock", 4),
            renew_lock: call("renew_lock", 3),
            unlock: call("unlock", 2),
            touch: call("touch", 2),
            purge: call("purge", 1),
            purge_recorded: call("purge_recorded", 3),
            persist_enqueue: call("persist_enqueue", 3),
            persist_claim: call("persist_claim", 2),
            persist_settle: call("persist_settle", 4),
            persist_all: call("persist_all", 0),
            keyed: call("keyed", 13),
            keyed_purge: call("keyed_purge", 1),
            ping: format!("SELECT pg_notify('{}', '')", n.changes_channel()),
        }
    }
}
