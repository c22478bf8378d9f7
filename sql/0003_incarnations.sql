-- 0003: when did each PostgreSQL server incarnation first answer a prober?
-- A restart drops every advisory lock, and so does a failover to a standby (whose
-- pg_postmaster_start_time() is when the standby booted, not when it was promoted).
-- Probes give workers a grace period, counted from the first time anyone saw the
-- current incarnation, to take their liveness locks again before a free lock may
-- be read as death.
CREATE TABLE pg_incarnations (
    started     timestamptz PRIMARY KEY,            -- pg_postmaster_start_time()
    first_seen  timestamptz NOT NULL DEFAULT clock_timestamp()
);
