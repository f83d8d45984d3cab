-- sessionkit PostgreSQL store functions, version 1: session locks with
-- fencing. The lock is two columns of the session row (`lock_fence`,
-- `lock_until_ms`) beside the fence counter (`fence`), so it moves with
-- rotation and ends with the session.

CREATE OR REPLACE FUNCTION {schema}.{prefix}lock(p_id text, p_lease bigint, p_idle bigint,
    p_touch bigint)
RETURNS {schema}.{prefix}reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
    s {schema}.{prefix}sessions;
    r {schema}.{prefix}reply;
    touched boolean;
BEGIN
    SELECT * INTO t FROM {schema}.{prefix}take(p_id, now_ms);
    IF t.status NOT IN ('live', 'alias') THEN
        RETURN {schema}.{prefix}bare('gone', now_ms);
    END IF;
    s := t.s;
    IF s.lock_until_ms > now_ms THEN
        r := {schema}.{prefix}bare('held', now_ms);
        r.lease_left_ms := s.lock_until_ms - now_ms;
        RETURN r;
    END IF;
    touched := now_ms - s.last_seen_ms >= p_touch;
    UPDATE {schema}.{prefix}sessions
        SET fence = fence + 1, lock_fence = fence + 1, lock_until_ms = now_ms + p_lease,
            last_seen_ms = CASE WHEN touched THEN now_ms ELSE last_seen_ms END,
            expires_ms = CASE WHEN touched THEN least(now_ms + p_idle, absolute_ms)
                ELSE expires_ms END
        WHERE sid = s.sid
        RETURNING * INTO s;
    RETURN {schema}.{prefix}full(s, 'acquired', now_ms, touched);
END
$$;

CREATE OR REPLACE FUNCTION {schema}.{prefix}renew_lock(p_id text, p_fence bigint,
    p_lease bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
BEGIN
    SELECT * INTO t FROM {schema}.{prefix}take(p_id, now_ms);
    IF t.status NOT IN ('live', 'alias') THEN
        RETURN false;
    END IF;
    UPDATE {schema}.{prefix}sessions SET lock_until_ms = now_ms + p_lease
        WHERE sid = (t.s).sid AND lock_fence = p_fence AND lock_until_ms > now_ms;
    RETURN FOUND;
END
$$;

-- Releases the lock held with `p_fence`, and tells waiters on every
-- instance (NOTIFY with the session id).
CREATE OR REPLACE FUNCTION {schema}.{prefix}unlock(p_id text, p_fence bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    t record;
BEGIN
    SELECT * INTO t FROM {schema}.{prefix}take(p_id, now_ms);
    IF t.status NOT IN ('live', 'alias') THEN
        RETURN false;
    END IF;
    UPDATE {schema}.{prefix}sessions SET lock_fence = NULL, lock_until_ms = NULL
        WHERE sid = (t.s).sid AND lock_fence = p_fence;
    IF FOUND THEN
        PERFORM pg_notify('{schema}.{prefix}unlocked', (t.s).id);
    END IF;
    RETURN FOUND;
END
$$;
