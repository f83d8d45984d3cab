-- sessionkit PostgreSQL store functions, version 1: one function per store
-- operation, so that each is one round trip and one transaction. Every
-- time is the database's clock (`clock_timestamp()`), in ms since the
-- epoch. `{schema}` and `{prefix}` are replaced as in the schema file.
--
-- Row locks order writers of one session; logins and `revoke_user` of one
-- user also take a per-user advisory lock first, so that concurrent logins
-- count the user's sessions one after another (the limit holds) and never
-- deadlock with each other over the rows they evict.

CREATE OR REPLACE FUNCTION {schema}.{prefix}now() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
$$;

-- Where `p_id` leads: 'live' (a session under p_id itself), 'alias' (a
-- live session reached through rotation aliases: real_id), 'superseded'
-- (a moved marker, or more than 4 aliases) or 'gone'.
CREATE OR REPLACE FUNCTION {schema}.{prefix}find(p_id text, p_now bigint,
    OUT status text, OUT real_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur text := p_id;
    m record;
    hops int := 0;
BEGIN
    LOOP
        PERFORM 1 FROM {schema}.{prefix}sessions WHERE id = cur AND expires_ms > p_now;
        IF FOUND THEN
            status := CASE WHEN hops = 0 THEN 'live' ELSE 'alias' END;
            real_id := cur;
            RETURN;
        END IF;
        SELECT moved, target, until_ms INTO m FROM {schema}.{prefix}markers WHERE id = cur;
        IF NOT FOUND OR m.until_ms <= p_now THEN
            status := 'gone';
            RETURN;
        END IF;
        IF m.moved THEN
            status := 'superseded';
            RETURN;
        END IF;
        hops := hops + 1;
        IF hops > 4 THEN
            status := 'superseded';
            RETURN;
        END IF;
        cur := m.target;
    END LOOP;
END
$$;

-- `find`, then the live row locked FOR UPDATE. A row that changed between
-- the two (rotated, ended) is looked up again: a concurrent rotation leaves
-- an alias, which leads to the new id.
CREATE OR REPLACE FUNCTION {schema}.{prefix}take(p_id text, p_now bigint,
    OUT status text, OUT s {schema}.{prefix}sessions)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    f record;
BEGIN
    FOR attempt IN 1..8 LOOP
        SELECT * INTO f FROM {schema}.{prefix}find(p_id, p_now);
        status := f.status;
        IF f.status NOT IN ('live', 'alias') THEN
            RETURN;
        END IF;
        SELECT * INTO s FROM {schema}.{prefix}sessions
            WHERE id = f.real_id AND expires_ms > p_now FOR UPDATE;
        IF FOUND THEN
            RETURN;
        END IF;
    END LOOP;
    status := 'gone';
END
$$;

-- A reply carrying only a status.
CREATE OR REPLACE FUNCTION {schema}.{prefix}bare(p_status text, p_now bigint)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r {schema}.{prefix}reply;
BEGIN
    r.status := p_status;
    r.now_ms := p_now;
    RETURN r;
END
$$;

-- A reply carrying a session row and its data.
CREATE OR REPLACE FUNCTION {schema}.{prefix}full(s {schema}.{prefix}sessions,
    p_status text, p_now bigint, p_touched boolean)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r {schema}.{prefix}reply;
BEGIN
    r.status := p_status;
    r.id := s.id;
    r.user_id := s.user_id;
    r.created_ms := s.created_ms;
    r.last_seen_ms := s.last_seen_ms;
    r.token_issued_ms := s.token_issued_ms;
    r.absolute_ms := s.absolute_ms;
    r.expires_ms := s.expires_ms;
    r.version := s.version;
    r.user_agent := s.user_agent;
    r.client_ip := s.client_ip;
    r.now_ms := p_now;
    r.touched := p_touched;
    r.fence := s.fence;
    SELECT coalesce(array_agg(key), '{}'), coalesce(array_agg(value), '{}')
        INTO r.keys, r.vals
        FROM {schema}.{prefix}data WHERE sid = s.sid;
    RETURN r;
END
$$;

-- Tells every instance's cache that these ids changed, in NOTIFY payloads
-- of comma-separated ids kept under PostgreSQL's 8000-byte limit.
CREATE OR REPLACE FUNCTION {schema}.{prefix}notify(p_on boolean, p_ids text[])
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    chunk text := '';
    i text;
BEGIN
    IF NOT p_on OR p_ids IS NULL THEN
        RETURN;
    END IF;
    FOREACH i IN ARRAY array_remove(p_ids, NULL) LOOP
        IF chunk <> '' AND octet_length(chunk) + octet_length(i) + 1 > 7900 THEN
            PERFORM pg_notify('{schema}.{prefix}changes', chunk);
            chunk := '';
        END IF;
        chunk := CASE WHEN chunk = '' THEN i ELSE chunk || ',' || i END;
    END LOOP;
    IF chunk <> '' THEN
        PERFORM pg_notify('{schema}.{prefix}changes', chunk);
    END IF;
END
$$;

-- Applies a delta to a session's data rows: clear, then remove, then set.
CREATE OR REPLACE FUNCTION {schema}.{prefix}apply(p_sid bigint, p_clear boolean,
    p_remove text[], p_keys text[], p_vals text[])
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_clear THEN
        DELETE FROM {schema}.{prefix}data WHERE sid = p_sid;
    ELSIF cardinality(p_remove) > 0 THEN
        DELETE FROM {schema}.{prefix}data WHERE sid = p_sid AND key = ANY (p_remove);
    END IF;
    IF cardinality(p_keys) > 0 THEN
        INSERT INTO {schema}.{prefix}data (sid, key, value)
            SELECT p_sid, k, v FROM unnest(p_keys, p_vals) AS t(k, v)
            ON CONFLICT (sid, key) DO UPDATE SET value = excluded.value;
    END IF;
END
$$;

-- Replaces whatever stands under `p_id` (a stale row or marker).
CREATE OR REPLACE FUNCTION {schema}.{prefix}clear_id(p_id text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM {schema}.{prefix}sessions WHERE id = p_id;
    DELETE FROM {schema}.{prefix}markers WHERE id = p_id;
END
$$;

-- Leaves a marker where a token used to be.
CREATE OR REPLACE FUNCTION {schema}.{prefix}mark(p_id text, p_moved boolean,
    p_target text, p_until bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO {schema}.{prefix}markers (id, moved, target, until_ms)
        VALUES (p_id, p_moved, p_target, p_until)
        ON CONFLICT (id) DO UPDATE
        SET moved = excluded.moved, target = excluded.target, until_ms = excluded.until_ms;
END
$$;
