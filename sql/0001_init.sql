-- 0001: the whole model of DESIGN.md "Data (PostgreSQL)".
-- Applied by `tetherctl migrate` in one transaction under an advisory lock.

CREATE FUNCTION tether_ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Keys are stored only as sha256 of the key text; the key is shown once.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    prefix      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at  timestamptz
);

CREATE TABLE threads (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title       text,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX threads_tenant_created ON threads (tenant_id, created_at DESC, id DESC);

-- One row per live worker identity. The row is inserted only after the worker
-- holds pg_advisory_lock(1952805748, id) on its liveness connection.
CREATE SEQUENCE worker_seq AS integer;
CREATE TABLE workers (
    id            bigint PRIMARY KEY,
    pod           text NOT NULL,
    pid           integer NOT NULL,
    backend_pid   integer NOT NULL,
    pg_start      timestamptz NOT NULL,      -- pg_postmaster_start_time() when the lock was taken
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    counters      jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    thread_id       uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    status          text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    owner           bigint,                  -- workers.id; no FK: dead workers' rows are deleted
    owner_pod       text,
    owner_pid       integer,
    attempt         integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),   -- the fencing token
    takeovers       integer NOT NULL DEFAULT 0,
    idempotency_key text,
    request_hash    bytea,
    request         jsonb NOT NULL,
    model           text NOT NULL,
    output          text,
    error           jsonb,
    usage           jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    finished_at     timestamptz
);
-- One active run per thread, enforced here and nowhere else.
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_owner_running ON runs (owner) WHERE status = 'running';
CREATE INDEX runs_tenant_active ON runs (tenant_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_thread_created ON runs (thread_id, created_at DESC);
CREATE INDEX runs_active_created ON runs (created_at) WHERE status IN ('queued', 'running');

CREATE TABLE messages (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq         bigserial NOT NULL UNIQUE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    thread_id   uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content     text NOT NULL,
    run_id      uuid REFERENCES runs (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_thread_seq ON messages (thread_id, seq);
CREATE INDEX messages_run ON messages (run_id);
