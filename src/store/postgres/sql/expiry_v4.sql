-- sessionkit PostgreSQL schema, version 4: expiry events.
-- `{schema}` and `{prefix}` are replaced as in the version 1 files.
--
-- The purge of a store whose events are on: each expired session it
-- deletes records an `expired` event with its user and data, in the same
-- transaction as the delete. Rows are claimed with SKIP LOCKED, so
-- instances purging together each delete (and report) different sessions:
-- one event per expiry.

CREATE OR REPLACE FUNCTION {schema}.{prefix}purge_events(p_batch int, p_retain bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    n bigint := 0;
    m bigint;
    s record;
BEGIN
    FOR s IN
        WITH doomed AS (
            SELECT sid, id, user_id, expires_ms, absolute_ms FROM {schema}.{prefix}sessions
                WHERE expires_ms <= now_ms
                ORDER BY expires_ms LIMIT p_batch FOR UPDATE SKIP LOCKED)
        SELECT d.*,
            -- Values are JSON text already: the object is spliced, not
            -- re-encoded, so they round-trip exactly (the `json` type keeps
            -- its text).
            (SELECT '{' || coalesce(string_agg(to_json(x.key)::text || ':' || x.value, ','
                    ORDER BY x.key), '') || '}'
                FROM {schema}.{prefix}data x WHERE x.sid = d.sid) AS data
        FROM doomed d
    LOOP
        PERFORM {schema}.{prefix}publish_event(json_build_object(
            'kind', 'expired',
            'reason', CASE WHEN s.expires_ms >= s.absolute_ms THEN 'absolute' ELSE 'idle' END,
            'data', s.data::json,
            'session', s.id,
            'user', s.user_id)::text, p_retain);
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
