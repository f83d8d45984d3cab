-- sessionkit PostgreSQL store functions, version 1: reads and writes of one
-- session (load, create, save, rotate, revoke, logout, touches).

CREATE OR REPLACE FUNCTION {schema}.{prefix}load(p_id text, p_idle bigint, p_touch bigint)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    f record;
    s {schema}.{prefix}sessions;
BEGIN
    FOR attempt IN 1..8 LOOP
        SELECT * INTO f FROM {schema}.{prefix}find(p_id, now_ms);
        IF f.status NOT IN ('live', 'alias') THEN
            RETURN {schema}.{prefix}bare(f.status, now_ms);
        END IF;
        -- A read writes only when the touch is due (rate-limited).
        UPDATE {schema}.{prefix}sessions
            SET last_seen_ms = now_ms, expires_ms = least(now_ms + p_idle, absolute_ms)
            WHERE id = f.real_id AND expires_ms > now_ms AND now_ms - last_seen_ms >= p_touch
            RETURNING * INTO s;
        IF FOUND THEN
            RETURN {schema}.{prefix}full(s, f.status, now_ms, true);
        END IF;
        SELECT * INTO s FROM {schema}.{prefix}sessions
            WHERE id = f.real_id AND expires_ms > now_ms;
        IF FOUND THEN
            RETURN {schema}.{prefix}full(s, f.status, now_ms, false);
        END IF;
    END LOOP;
    RETURN {schema}.{prefix}bare('gone', now_ms);
END
$$;

CREATE OR REPLACE FUNCTION {schema}.{prefix}create(p_id text, p_keys text[], p_vals text[],
    p_user_agent text, p_client_ip text, p_idle bigint, p_absolute bigint)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    s {schema}.{prefix}sessions;
    r {schema}.{prefix}reply;
BEGIN
    PERFORM {schema}.{prefix}clear_id(p_id);
    INSERT INTO {schema}.{prefix}sessions (id, created_ms, last_seen_ms, token_issued_ms,
            absolute_ms, expires_ms, version, user_agent, client_ip)
        VALUES (p_id, now_ms, now_ms, now_ms, now_ms + p_absolute,
            least(now_ms + p_idle, now_ms + p_absolute), 1, p_user_agent, p_client_ip)
        RETURNING * INTO s;
    PERFORM {schema}.{prefix}apply(s.sid, false, '{}', p_keys, p_vals);
    r := {schema}.{prefix}bare('live', now_ms);
    r.expires_ms := s.expires_ms;
    RETURN r;
END
$$;

-- Applies a delta (clear, remove, set) to the session `p_id` leads to. A
-- fence that is not the session's latest writes nothing ('fenced').
CREATE OR REPLACE FUNCTION {schema}.{prefix}save(p_id text, p_clear boolean, p_remove text[],
    p_keys text[], p_vals text[], p_fence bigint, p_idle bigint, p_notify boolean)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
    r {schema}.{prefix}reply;
BEGIN
    SELECT * INTO t FROM {schema}.{prefix}take(p_id, now_ms);
    IF t.status NOT IN ('live', 'alias') THEN
        RETURN {schema}.{prefix}bare(t.status, now_ms);
    END IF;
    IF p_fence IS NOT NULL AND p_fence <> (t.s).fence THEN
        RETURN {schema}.{prefix}bare('fenced', now_ms);
    END IF;
    PERFORM {schema}.{prefix}apply((t.s).sid, p_clear, p_remove, p_keys, p_vals);
    r := {schema}.{prefix}bare(t.status, now_ms);
    r.id := (t.s).id;
    UPDATE {schema}.{prefix}sessions
        SET version = version + 1, last_seen_ms = now_ms,
            expires_ms = least(now_ms + p_idle, absolute_ms)
        WHERE sid = (t.s).sid
        RETURNING expires_ms INTO r.expires_ms;
    PERFORM {schema}.{prefix}notify(p_notify, ARRAY[(t.s).id]);
    RETURN r;
END
$$;

-- Moves a live session to `p_new`, keeping its data rows, user, lifetime
-- and fence counter; `p_old` becomes an alias (`p_alias`, the lock moves
-- along) or a moved marker (the lock is dropped).
CREATE OR REPLACE FUNCTION {schema}.{prefix}rotate(p_old text, p_new text, p_alias boolean,
    p_grace bigint, p_idle bigint, p_notify boolean)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
    r {schema}.{prefix}reply;
BEGIN
    SELECT * INTO t FROM {schema}.{prefix}take(p_old, now_ms);
    IF t.status = 'gone' THEN
        RETURN {schema}.{prefix}bare('gone', now_ms);
    ELSIF t.status <> 'live' THEN
        RETURN {schema}.{prefix}bare('superseded', now_ms);
    END IF;
    PERFORM {schema}.{prefix}clear_id(p_new);
    r := {schema}.{prefix}bare('rotated', now_ms);
    UPDATE {schema}.{prefix}sessions
        SET id = p_new, token_issued_ms = now_ms, last_seen_ms = now_ms,
            version = version + 1, expires_ms = least(now_ms + p_idle, absolute_ms),
            lock_fence = CASE WHEN p_alias THEN lock_fence END,
            lock_until_ms = CASE WHEN p_alias THEN lock_until_ms END
        WHERE sid = (t.s).sid
        RETURNING expires_ms INTO r.expires_ms;
    PERFORM {schema}.{prefix}mark(p_old, NOT p_alias, CASE WHEN p_alias THEN p_new END,
        now_ms + p_grace);
    PERFORM {schema}.{prefix}notify(p_notify, ARRAY[p_old]);
    RETURN r;
END
$$;

-- Ends one session, or forgets a marker. 'ended' if a live session ended.
CREATE OR REPLACE FUNCTION {schema}.{prefix}revoke(p_id text, p_notify boolean)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    live boolean;
BEGIN
    DELETE FROM {schema}.{prefix}markers WHERE id = p_id;
    DELETE FROM {schema}.{prefix}sessions WHERE id = p_id RETURNING expires_ms > now_ms INTO live;
    IF NOT FOUND THEN
        RETURN {schema}.{prefix}bare('missing', now_ms);
    END IF;
    PERFORM {schema}.{prefix}notify(p_notify, ARRAY[p_id]);
    RETURN {schema}.{prefix}bare(CASE WHEN live THEN 'ended' ELSE 'missing' END, now_ms);
END
$$;

-- Ends the session a token leads to (through aliases); a superseded token
-- is left alone.
CREATE OR REPLACE FUNCTION {schema}.{prefix}logout(p_id text, p_notify boolean)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
    r {schema}.{prefix}reply;
BEGIN
    SELECT * INTO t FROM {schema}.{prefix}take(p_id, now_ms);
    IF t.status = 'superseded' THEN
        RETURN {schema}.{prefix}bare('superseded', now_ms);
    ELSIF t.status = 'gone' THEN
        RETURN {schema}.{prefix}bare('missing', now_ms);
    END IF;
    DELETE FROM {schema}.{prefix}sessions WHERE sid = (t.s).sid;
    PERFORM {schema}.{prefix}notify(p_notify, ARRAY[(t.s).id]);
    r := {schema}.{prefix}bare('ended', now_ms);
    r.id := (t.s).id;
    RETURN r;
END
$$;

-- The batched idle-expiry touches of cache hits: each session still live
-- gets last_seen = now and its idle deadline moved.
CREATE OR REPLACE FUNCTION {schema}.{prefix}touch(p_ids text[], p_idles bigint[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    n bigint;
BEGIN
    UPDATE {schema}.{prefix}sessions AS s
        SET last_seen_ms = now_ms, expires_ms = least(now_ms + t.idle, s.absolute_ms)
        FROM unnest(p_ids, p_idles) AS t(id, idle)
        WHERE s.id = t.id AND s.expires_ms > now_ms AND s.last_seen_ms < now_ms;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Deletes up to `p_batch` expired sessions and as many run-out markers
-- (the oldest first; rows another transaction holds are skipped).
CREATE OR REPLACE FUNCTION {schema}.{prefix}purge(p_batch int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    n bigint;
    m bigint;
BEGIN
    DELETE FROM {schema}.{prefix}sessions WHERE sid IN (
        SELECT sid FROM {schema}.{prefix}sessions WHERE expires_ms <= now_ms
            ORDER BY expires_ms LIMIT p_batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM {schema}.{prefix}markers WHERE id IN (
        SELECT id FROM {schema}.{prefix}markers WHERE until_ms <= now_ms
            ORDER BY until_ms LIMIT p_batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS m = ROW_COUNT;
    RETURN n + m;
END
$$;
