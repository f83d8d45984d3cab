-- sessionkit PostgreSQL schema, version 5: the persistence queue.
-- `{schema}` and `{prefix}` are replaced as in the version 1 files.
--
-- One row per job key (see `store/persist.rs`): a waiting job keeps the
-- earlier due time and takes the new payload; a leased one becomes a new
-- occurrence (next generation, no tries). Claims skip rows another
-- instance is claiming (SKIP LOCKED), so each job goes to one instance.

CREATE TABLE IF NOT EXISTS {schema}.{prefix}persist_jobs (
    key text PRIMARY KEY,
    payload text NOT NULL,
    due_ms bigint NOT NULL,
    generation bigint NOT NULL DEFAULT 1,
    tries int NOT NULL DEFAULT 0,
    leased boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS {prefix}persist_jobs_due ON {schema}.{prefix}persist_jobs (due_ms);

CREATE OR REPLACE FUNCTION {schema}.{prefix}persist_enqueue(p_key text, p_payload text, p_delay bigint)
RETURNS void
LANGUAGE sql VOLATILE AS $$
    INSERT INTO {schema}.{prefix}persist_jobs AS j (key, payload, due_ms)
        VALUES (p_key, p_payload, {schema}.{prefix}now() + p_delay)
    ON CONFLICT (key) DO UPDATE SET
        payload = excluded.payload,
        due_ms = CASE WHEN j.leased THEN excluded.due_ms ELSE least(j.due_ms, excluded.due_ms) END,
        generation = CASE WHEN j.leased THEN j.generation + 1 ELSE j.generation END,
        tries = CASE WHEN j.leased THEN 0 ELSE j.tries END,
        leased = false
$$;

CREATE OR REPLACE FUNCTION {schema}.{prefix}persist_claim(p_limit int, p_lease bigint)
RETURNS TABLE (key text, payload text, generation bigint, tries int)
LANGUAGE sql VOLATILE AS $$
    WITH due AS (
        SELECT d.key FROM {schema}.{prefix}persist_jobs d
            WHERE d.due_ms <= {schema}.{prefix}now()
            ORDER BY d.due_ms LIMIT p_limit FOR UPDATE SKIP LOCKED)
    UPDATE {schema}.{prefix}persist_jobs j
        SET leased = true, tries = j.tries + 1, due_ms = {schema}.{prefix}now() + p_lease
        FROM due WHERE j.key = due.key
        RETURNING j.key, j.payload, j.generation, j.tries
$$;

-- p_retry < 0: done (removed); else waiting again after p_retry ms. Only
-- while the job is still the claim's (same generation and tries, leased).
CREATE OR REPLACE FUNCTION {schema}.{prefix}persist_settle(p_key text, p_generation bigint, p_tries int, p_retry bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_retry < 0 THEN
        DELETE FROM {schema}.{prefix}persist_jobs
            WHERE key = p_key AND generation = p_generation AND tries = p_tries AND leased;
    ELSE
        UPDATE {schema}.{prefix}persist_jobs
            SET leased = false, due_ms = {schema}.{prefix}now() + p_retry
            WHERE key = p_key AND generation = p_generation AND tries = p_tries AND leased;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION {schema}.{prefix}persist_all()
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    WITH moved AS (
        UPDATE {schema}.{prefix}persist_jobs SET due_ms = {schema}.{prefix}now()
            WHERE NOT leased AND due_ms > {schema}.{prefix}now()
            RETURNING 1)
    SELECT count(*) FROM moved
$$;

-- The purge of a store whose events or persistence are on: each expired
-- session it deletes records an `expired` event (p_retain > 0) and
-- enqueues its persistence job (p_persist), with its user and data, in the
-- transaction of the delete.
CREATE OR REPLACE FUNCTION {schema}.{prefix}purge_recorded(p_batch int, p_retain bigint, p_persist boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    n bigint := 0;
    m bigint;
    s record;
    reason text;
BEGIN
    FOR s IN
        WITH doomed AS (
            SELECT sid, id, user_id, expires_ms, absolute_ms FROM {schema}.{prefix}sessions
                WHERE expires_ms <= now_ms
                ORDER BY expires_ms LIMIT p_batch FOR UPDATE SKIP LOCKED)
        SELECT d.*,
            -- Values are JSON text already: spliced, not re-encoded (as
            -- in version 4's purge_events).
            (SELECT '{' || coalesce(string_agg(to_json(x.key)::text || ':' || x.value, ','
                    ORDER BY x.key), '') || '}'
                FROM {schema}.{prefix}data x WHERE x.sid = d.sid) AS data
        FROM doomed d
    LOOP
        reason := CASE WHEN s.expires_ms >= s.absolute_ms THEN 'absolute' ELSE 'idle' END;
        IF p_retain > 0 THEN
            PERFORM {schema}.{prefix}publish_event(json_build_object(
                'kind', 'expired',
                'reason', reason,
                'data', s.data::json,
                'session', s.id,
                'user', s.user_id)::text, p_retain);
        END IF;
        IF p_persist THEN
            PERFORM {schema}.{prefix}persist_enqueue('e:' || s.id, json_build_object(
                'job', 'ended',
                'session', s.id,
                'user', s.user_id,
                'why', 'expired_' || reason,
                'data', s.data::json)::text, 0);
        END IF;
        DELETE FROM {schema}.{prefix}sessions WHERE sid = s.sid;
        n := n + 1;
    END LOOP;
    DELETE FROM {schema}.{prefix}markers WHERE id IN (
        SELECT id FROM {schema}.{prefix}markers WHERE until_ms <= now_ms
            ORDER BY until_ms LIMIT p_batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END
$$;
