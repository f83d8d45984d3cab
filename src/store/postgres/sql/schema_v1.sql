-- sessionkit PostgreSQL schema, version 1. `{schema}` and `{prefix}` are
-- replaced by the store's validated schema name and table prefix.
--
-- A session is a row of `{prefix}sessions` keyed by a surrogate `sid` that
-- never changes: rotation and login move the token id (`id`), not the
-- data, so neither rewrites the session's data rows.

CREATE TABLE {schema}.{prefix}sessions (
    sid             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text   NOT NULL UNIQUE,
    user_id         text,
    created_ms      bigint NOT NULL,
    last_seen_ms    bigint NOT NULL,
    token_issued_ms bigint NOT NULL,
    absolute_ms     bigint NOT NULL,
    -- min(last_seen + idle, absolute): a row is live while this is ahead
    -- of the database clock.
    expires_ms      bigint NOT NULL,
    version         bigint NOT NULL,
    user_agent      text,
    client_ip       text,
    -- The latest lock fence issued (only grows) and the current holder.
    fence           bigint NOT NULL DEFAULT 0,
    lock_fence      bigint,
    lock_until_ms   bigint
);

-- Per-user operations go through this index, never a scan.
CREATE INDEX {prefix}sessions_user ON {schema}.{prefix}sessions (user_id)
    WHERE user_id IS NOT NULL;
-- The purge takes the oldest expired rows first, in bounded batches.
CREATE INDEX {prefix}sessions_expires ON {schema}.{prefix}sessions (expires_ms);

-- One row per data key, the value as JSON text: a save writes only the
-- keys it changes, and text round-trips every JSON value exactly (jsonb
-- refuses "\u0000" and rewrites numbers).
CREATE TABLE {schema}.{prefix}data (
    sid   bigint NOT NULL REFERENCES {schema}.{prefix}sessions (sid) ON DELETE CASCADE,
    key   text   NOT NULL,
    value text   NOT NULL,
    PRIMARY KEY (sid, key)
);

-- Where a token used to be: an alias (periodic rotation: `target` is the
-- successor's id) or a moved marker (login, explicit rotation).
CREATE TABLE {schema}.{prefix}markers (
    id       text    PRIMARY KEY,
    moved    boolean NOT NULL,
    target   text,
    until_ms bigint  NOT NULL
);
CREATE INDEX {prefix}markers_until ON {schema}.{prefix}markers (until_ms);

-- What every store function answers: one row, decoded by column name.
CREATE TYPE {schema}.{prefix}reply AS (
    status          text,
    id              text,
    user_id         text,
    created_ms      bigint,
    last_seen_ms    bigint,
    token_issued_ms bigint,
    absolute_ms     bigint,
    expires_ms      bigint,
    version         bigint,
    user_agent      text,
    client_ip       text,
    keys            text[],
    vals            text[],
    now_ms          bigint,
    touched         boolean,
    fence           bigint,
    lease_left_ms   bigint,
    evicted         text[]
);
