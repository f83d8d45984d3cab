-- sessionkit PostgreSQL store functions, version 1: logins and per-user
-- operations, serialized per user by an advisory lock taken first.

CREATE OR REPLACE FUNCTION {schema}.{prefix}lock_user(p_user text)
RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(hashtext('{schema}.{prefix}'), hashtext(p_user))
$$;

-- Creates the user's new session from the old session's latest data plus
-- the login's delta, enforces the per-user limit (`p_max` NULL: none;
-- `p_reject`: refuse instead of evicting the least recently used), and
-- retires the old session as moved, in one transaction.
CREATE OR REPLACE FUNCTION {schema}.{prefix}login(p_old text, p_new text, p_user text,
    p_clear boolean, p_remove text[], p_keys text[], p_vals text[],
    p_user_agent text, p_client_ip text, p_max int, p_reject boolean,
    p_grace bigint, p_idle bigint, p_absolute bigint, p_notify boolean)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
    old_sid bigint;
    old_id text;
    others int;
    evicted text[] := '{}';
    s {schema}.{prefix}sessions;
    r {schema}.{prefix}reply;
BEGIN
    PERFORM {schema}.{prefix}lock_user(p_user);
    IF p_old IS NOT NULL THEN
        SELECT * INTO t FROM {schema}.{prefix}take(p_old, now_ms);
        IF t.status IN ('live', 'alias') THEN
            old_sid := (t.s).sid;
            old_id := (t.s).id;
        END IF;
    END IF;
    IF p_max IS NOT NULL THEN
        SELECT count(*) INTO others FROM {schema}.{prefix}sessions
            WHERE user_id = p_user AND expires_ms > now_ms AND sid IS DISTINCT FROM old_sid;
        IF others > p_max - 1 THEN
            IF p_reject THEN
                RETURN {schema}.{prefix}bare('rejected', now_ms);
            END IF;
            WITH gone AS (
                DELETE FROM {schema}.{prefix}sessions WHERE sid IN (
                    SELECT sid FROM {schema}.{prefix}sessions
                        WHERE user_id = p_user AND expires_ms > now_ms
                            AND sid IS DISTINCT FROM old_sid
                        ORDER BY last_seen_ms, sid
                        LIMIT others - (p_max - 1)
                        FOR UPDATE)
                RETURNING id)
            SELECT coalesce(array_agg(id), '{}') INTO evicted FROM gone;
        END IF;
    END IF;
    IF old_sid IS NOT NULL THEN
        IF old_id <> p_new THEN
            PERFORM {schema}.{prefix}clear_id(p_new);
            PERFORM {schema}.{prefix}mark(old_id, true, NULL, now_ms + p_grace);
        END IF;
        -- The old row becomes the new session: its data rows stay where
        -- they are, everything else starts afresh.
        UPDATE {schema}.{prefix}sessions
            SET id = p_new, user_id = p_user, created_ms = now_ms, last_seen_ms = now_ms,
                token_issued_ms = now_ms, absolute_ms = now_ms + p_absolute,
                expires_ms = least(now_ms + p_idle, now_ms + p_absolute), version = 1,
                user_agent = p_user_agent, client_ip = p_client_ip,
                fence = 0, lock_fence = NULL, lock_until_ms = NULL
            WHERE sid = old_sid
            RETURNING * INTO s;
    ELSE
        PERFORM {schema}.{prefix}clear_id(p_new);
        INSERT INTO {schema}.{prefix}sessions (id, user_id, created_ms, last_seen_ms,
                token_issued_ms, absolute_ms, expires_ms, version, user_agent, client_ip)
            VALUES (p_new, p_user, now_ms, now_ms, now_ms, now_ms + p_absolute,
                least(now_ms + p_idle, now_ms + p_absolute), 1, p_user_agent, p_client_ip)
            RETURNING * INTO s;
    END IF;
    PERFORM {schema}.{prefix}apply(s.sid, p_clear, p_remove, p_keys, p_vals);
    PERFORM {schema}.{prefix}notify(p_notify, evicted || old_id);
    r := {schema}.{prefix}full(s, 'logged_in', now_ms, false);
    r.evicted := evicted;
    RETURN r;
END
$$;

-- Ends every live session of a user but `p_except`; returns their ids.
CREATE OR REPLACE FUNCTION {schema}.{prefix}revoke_user(p_user text, p_except text,
    p_notify boolean)
RETURNS text[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    ended text[];
BEGIN
    PERFORM {schema}.{prefix}lock_user(p_user);
    WITH gone AS (
        DELETE FROM {schema}.{prefix}sessions
            WHERE user_id = p_user AND id IS DISTINCT FROM p_except
            RETURNING id, expires_ms)
    SELECT coalesce(array_agg(id) FILTER (WHERE expires_ms > now_ms), '{}') INTO ended FROM gone;
    PERFORM {schema}.{prefix}notify(p_notify, ended);
    RETURN ended;
END
$$;

-- A user's live sessions, most recently used first.
CREATE OR REPLACE FUNCTION {schema}.{prefix}sessions_of(p_user text)
RETURNS SETOF {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    s {schema}.{prefix}sessions;
    r {schema}.{prefix}reply;
BEGIN
    FOR s IN SELECT * FROM {schema}.{prefix}sessions
            WHERE user_id = p_user AND expires_ms > now_ms
            ORDER BY last_seen_ms DESC, sid DESC LOOP
        r := {schema}.{prefix}bare('live', now_ms);
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
        RETURN NEXT r;
    END LOOP;
END
$$;
