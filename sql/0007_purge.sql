-- 0007: a finished run's events leave JetStream once its final state is here and
-- TETHER_PURGE_GRACE_S has passed (it replays from PostgreSQL). purged_at records
-- that the subject was purged; the index finds the runs still to purge.
ALTER TABLE runs ADD COLUMN purged_at timestamptz;
CREATE INDEX runs_to_purge ON runs (finished_at)
    WHERE purged_at IS NULL AND status IN ('completed', 'failed', 'cancelled');
