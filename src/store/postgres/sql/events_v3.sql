-- sessionkit PostgreSQL schema, version 3: lifecycle events.
-- `{schema}` and `{prefix}` are replaced as in the version 1 files.
--
-- One row per event; feeds read "the rows after the last id I delivered".
-- That is only safe if ids become visible in id order, so publishers take
-- one advisory lock (held until their transaction commits) and number
-- rows from max(id) + 1 under it: no row with a smaller id can commit
-- after a reader saw a larger one. Events are rare (logins, logouts,
-- revocations), so one writer at a time costs nothing that matters.

CREATE TABLE {schema}.{prefix}events (
    id    bigint PRIMARY KEY,
    -- The database's clock, in ms since the epoch.
    at_ms bigint NOT NULL,
    -- The event's JSON, as text (it round-trips exactly).
    body  text   NOT NULL
);

CREATE OR REPLACE FUNCTION {schema}.{prefix}publish_event(p_body text, p_retain bigint,
    OUT id bigint, OUT at_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_at bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sessionkit.events'), hashtext('{schema}.{prefix}'));
    SELECT coalesce(max(e.id), 0) + 1 INTO v_id FROM {schema}.{prefix}events e;
    v_at := {schema}.{prefix}now();
    INSERT INTO {schema}.{prefix}events AS e (id, at_ms, body) VALUES (v_id, v_at, p_body);
    -- Keep the newest p_retain: an index range delete, at most one row
    -- per call once the table is full.
    DELETE FROM {schema}.{prefix}events e WHERE e.id <= v_id - p_retain;
    id := v_id;
    at_ms := v_at;
END
$$;
