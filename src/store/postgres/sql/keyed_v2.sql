-- sessionkit PostgreSQL schema, version 2: keyed sessions (the tracker).
-- `{schema}` and `{prefix}` are replaced as in the version 1 files.
--
-- One row per record, and one function (`{prefix}keyed`) that applies one
-- operation to it in one transaction: the SQL twin of `apply` in
-- `src/store/memory/keyed.rs`, which is the reference for every reply.

CREATE TABLE {schema}.{prefix}keyed (
    -- The KeyedId (22 characters): the tracker's name and key, hashed.
    id            text   PRIMARY KEY,
    state         text   NOT NULL CHECK (state IN ('active', 'finished')),
    -- JSON as text, which round-trips every value exactly (as `data`).
    value         text   NOT NULL,
    version       bigint NOT NULL,
    -- The latest lock fence issued (only grows) and the current holder.
    fence         bigint NOT NULL,
    lock_fence    bigint,
    lock_until_ms bigint,
    started_ms    bigint NOT NULL,
    since_ms      bigint NOT NULL,
    -- since + the state's absolute limit: use never moves it.
    deadline_ms   bigint NOT NULL,
    -- min(last use + sliding, deadline): a row is live while this is ahead
    -- of the database clock.
    expires_ms    bigint NOT NULL
);
-- The purge takes the oldest expired rows first, in bounded batches.
CREATE INDEX {prefix}keyed_expires ON {schema}.{prefix}keyed (expires_ms);

-- What `{prefix}keyed` answers: one row, decoded by column name. `status`
-- names the reply: 'record', 'missing', 'active', 'finished', 'conflict'
-- (with `version`), 'fenced', 'held' (with `lease_left_ms`) or 'done'
-- (with `done`). `released` says a lock ended and waiters were told.
CREATE TYPE {schema}.{prefix}keyed_reply AS (
    status        text,
    state         text,
    value         text,
    version       bigint,
    started_ms    bigint,
    since_ms      bigint,
    expires_ms    bigint,
    now_ms        bigint,
    fence         bigint,
    lease_left_ms bigint,
    done          boolean,
    released      boolean
);

-- `Expiry::deadline_ms`: a record entering a state at `p_now`, whose
-- absolute limit is `p_absolute` ms (NULL: none). 4503599627370496 is
-- NEVER_MS (2^52), the "no deadline" every store keeps.
CREATE OR REPLACE FUNCTION {schema}.{prefix}keyed_deadline(p_now bigint, p_absolute bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_absolute IS NULL THEN 4503599627370496
        ELSE least(p_now + p_absolute, 4503599627370496) END
$$;

-- `Expiry::expires_ms`: a record used at `p_now`, whose sliding limit is
-- `p_sliding` ms (NULL: none) and whose deadline is `p_deadline`.
CREATE OR REPLACE FUNCTION {schema}.{prefix}keyed_expires(p_now bigint, p_sliding bigint,
    p_deadline bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_sliding IS NULL THEN p_deadline
        ELSE least(p_now + p_sliding, p_deadline) END
$$;

-- A record entering `p_state` at `p_now` (finish, resume): the state's
-- deadline and expiry from now, the version bumped, the lock ended.
CREATE OR REPLACE FUNCTION {schema}.{prefix}keyed_enter(k {schema}.{prefix}keyed, p_state text,
    p_now bigint, p_absolute bigint, p_sliding bigint)
RETURNS {schema}.{prefix}keyed
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    k.version := k.version + 1;
    k.state := p_state;
    k.since_ms := p_now;
    k.deadline_ms := {schema}.{prefix}keyed_deadline(p_now, p_absolute);
    k.lock_fence := NULL;
    k.lock_until_ms := NULL;
    k.expires_ms := {schema}.{prefix}keyed_expires(p_now, p_sliding, k.deadline_ms);
    RETURN k;
END
$$;

-- Applies the operation `p_op` ('start', 'get', 'lock', 'renew_lock',
-- 'unlock', 'update', 'finish', 'resume', 'remove') to the record `p_id`.
-- Its arguments: `p_value` (start, update), the guard `p_guard` ('version',
-- 'fence' or NULL) and its number `p_guard_n` (renew_lock and unlock pass
-- their fence as a 'fence' guard), `p_lease` ms (lock, renew_lock; at least
-- 1), the state asked for and the touch flag (get), the four limits of the
-- two states in ms (NULL: none), and `p_origin`, the calling instance's
-- tag, so that its listener skips the release notices it sent itself.
CREATE OR REPLACE FUNCTION {schema}.{prefix}keyed(p_id text, p_op text, p_value text,
    p_guard text, p_guard_n bigint, p_lease bigint, p_state text, p_touch boolean,
    p_active_absolute bigint, p_active_sliding bigint,
    p_finished_absolute bigint, p_finished_sliding bigint, p_origin text)
RETURNS {schema}.{prefix}keyed_reply
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    k {schema}.{prefix}keyed;
    r {schema}.{prefix}keyed_reply;
    seed bigint;
    ours boolean;
    -- Whether a live row was found, or this Start inserted one.
    live boolean := false;
    started boolean := false;
    -- A get's touch, when due (Expiry::touch_due).
    slide bigint;
    touched boolean := false;
BEGIN
    r.now_ms := now_ms;
    -- The row lock orders every operation on one record. A Start that
    -- finds no row inserts with ON CONFLICT DO NOTHING: when a concurrent
    -- Start wins, the next turn finds its row (committed by then) locked.
    FOR attempt IN 1..8 LOOP
        SELECT * INTO k FROM {schema}.{prefix}keyed WHERE id = p_id FOR UPDATE;
        IF FOUND AND k.expires_ms > now_ms THEN
            live := true;
            EXIT;
        END IF;
        IF FOUND THEN
            -- Expired is absent, purged or not; a Start replaces it.
            DELETE FROM {schema}.{prefix}keyed WHERE id = p_id;
        END IF;
        IF p_op IN ('renew_lock', 'unlock', 'remove') THEN
            r.status := 'done';
            r.done := false;
            RETURN r;
        ELSIF p_op <> 'start' THEN
            r.status := 'missing';
            RETURN r;
        END IF;
        -- The clock in microseconds: a restarted record's versions and
        -- fences do not meet its earlier life's.
        seed := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
        k.deadline_ms := {schema}.{prefix}keyed_deadline(now_ms, p_active_absolute);
        INSERT INTO {schema}.{prefix}keyed AS t (id, state, value, version, fence,
                lock_fence, lock_until_ms, started_ms, since_ms, deadline_ms, expires_ms)
            VALUES (p_id, 'active', p_value, seed, seed, NULL, NULL, now_ms, now_ms,
                k.deadline_ms,
                {schema}.{prefix}keyed_expires(now_ms, p_active_sliding, k.deadline_ms))
            ON CONFLICT (id) DO NOTHING
            RETURNING t.* INTO k;
        IF FOUND THEN
            started := true;
            EXIT;
        END IF;
    END LOOP;
    IF NOT (live OR started) THEN
        RAISE EXCEPTION 'sessionkit keyed %: the record kept changing under a start', p_id;
    END IF;

    -- Each branch either sets `r.status` (a reply without the record) or
    -- leaves it NULL, having changed `k`, which is then written back.
    IF started THEN
        NULL;
    ELSIF p_op = 'start' THEN
        r.status := k.state;
    ELSIF p_op = 'get' THEN
        IF p_state IS DISTINCT FROM k.state THEN
            r.status := k.state;
        ELSIF p_touch THEN
            -- Only when it moves the expiry by a tenth of the window (at
            -- most a second): a read right after another writes nothing.
            slide := CASE k.state WHEN 'active' THEN p_active_sliding
                ELSE p_finished_sliding END;
            IF slide IS NOT NULL AND least(now_ms + slide, k.deadline_ms) - k.expires_ms
                    >= greatest(least(slide / 10, 1000), 1) THEN
                k.expires_ms := least(now_ms + slide, k.deadline_ms);
                touched := true;
            END IF;
        END IF;
    ELSIF p_op = 'lock' THEN
        IF k.state <> 'active' THEN
            r.status := 'finished';
        ELSIF k.lock_until_ms > now_ms THEN
            r.status := 'held';
            r.lease_left_ms := k.lock_until_ms - now_ms;
        ELSE
            k.fence := k.fence + 1;
            k.lock_fence := k.fence;
            k.lock_until_ms := now_ms + greatest(p_lease, 1);
            k.expires_ms := {schema}.{prefix}keyed_expires(now_ms, p_active_sliding,
                k.deadline_ms);
            r.fence := k.fence;
        END IF;
    ELSIF p_op = 'renew_lock' THEN
        ours := coalesce(k.state = 'active' AND k.lock_fence = p_guard_n
            AND k.lock_until_ms > now_ms, false);
        IF ours THEN
            UPDATE {schema}.{prefix}keyed SET lock_until_ms = now_ms + greatest(p_lease, 1)
                WHERE id = p_id;
        END IF;
        r.status := 'done';
        r.done := ours;
    ELSIF p_op = 'unlock' THEN
        ours := coalesce(k.lock_fence = p_guard_n, false);
        IF ours THEN
            UPDATE {schema}.{prefix}keyed SET lock_fence = NULL, lock_until_ms = NULL
                WHERE id = p_id;
        END IF;
        r.status := 'done';
        r.done := ours;
        r.released := ours;
    ELSIF p_op IN ('update', 'finish') AND k.state <> 'active' THEN
        r.status := 'finished';
    ELSIF p_op IN ('update', 'finish') THEN
        -- A version guard also refuses while another holder's lease is
        -- live: its next fenced write would undo this one.
        IF p_guard = 'version' AND k.lock_until_ms > now_ms THEN
            r.status := 'held';
            r.lease_left_ms := k.lock_until_ms - now_ms;
        ELSIF p_guard = 'version' AND p_guard_n IS DISTINCT FROM k.version THEN
            r.status := 'conflict';
            r.version := k.version;
        ELSIF p_guard = 'fence' AND p_guard_n IS DISTINCT FROM k.fence THEN
            r.status := 'fenced';
        ELSIF p_op = 'update' THEN
            k.version := k.version + 1;
            k.value := p_value;
            k.expires_ms := {schema}.{prefix}keyed_expires(now_ms, p_active_sliding,
                k.deadline_ms);
        ELSE
            r.released := k.lock_fence IS NOT NULL;
            k := {schema}.{prefix}keyed_enter(k, 'finished', now_ms, p_finished_absolute,
                p_finished_sliding);
        END IF;
    ELSIF p_op = 'resume' THEN
        IF k.state = 'active' THEN
            r.status := 'active';
        ELSE
            k := {schema}.{prefix}keyed_enter(k, 'active', now_ms, p_active_absolute,
                p_active_sliding);
        END IF;
    ELSIF p_op = 'remove' THEN
        DELETE FROM {schema}.{prefix}keyed WHERE id = p_id;
        r.status := 'done';
        r.done := true;
        r.released := k.lock_fence IS NOT NULL;
    ELSE
        RAISE EXCEPTION 'sessionkit keyed: unknown operation %', p_op;
    END IF;

    IF r.status IS NULL THEN
        IF NOT started AND (p_op <> 'get' OR touched) THEN
            -- `value` is written only by an update, so that a large value
            -- is not rewritten by every lock and touch.
            UPDATE {schema}.{prefix}keyed SET state = k.state,
                    value = CASE WHEN p_op = 'update' THEN p_value ELSE value END,
                    version = k.version, fence = k.fence, lock_fence = k.lock_fence,
                    lock_until_ms = k.lock_until_ms, since_ms = k.since_ms,
                    deadline_ms = k.deadline_ms, expires_ms = k.expires_ms
                WHERE id = p_id;
        END IF;
        r.status := 'record';
        r.state := k.state;
        r.value := k.value;
        r.version := k.version;
        r.started_ms := k.started_ms;
        r.since_ms := k.since_ms;
        r.expires_ms := k.expires_ms;
    END IF;
    -- Waiters on every instance try again; the caller's own are woken by
    -- the caller, which is why the payload names it.
    IF r.released THEN
        PERFORM pg_notify('{schema}.{prefix}unlocked', 'k:' || p_origin || ':' || p_id);
    END IF;
    RETURN r;
END
$$;

-- Deletes up to `p_batch` expired keyed records, the oldest first (rows
-- another transaction holds are skipped).
CREATE OR REPLACE FUNCTION {schema}.{prefix}keyed_purge(p_batch int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := {schema}.{prefix}now();
    n bigint;
BEGIN
    DELETE FROM {schema}.{prefix}keyed WHERE id IN (
        SELECT id FROM {schema}.{prefix}keyed WHERE expires_ms <= now_ms
            ORDER BY expires_ms LIMIT p_batch FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
