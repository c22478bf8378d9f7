-- 0008: one cached answer for /metrics, shared by every worker of every pod.
-- A cache per worker made answers from different workers disagree by up to its
-- age, so a scrape through the load balancer could see a counter go backwards
-- (Prometheus reads that as a counter reset). Here every answer is the row's
-- latest version: at most one scan of runs per max_age cluster-wide, and answers
-- read one after another never go back in time, whichever worker gives them.

CREATE TABLE metrics_cache (
    id         integer PRIMARY KEY CHECK (id = 1),
    built      timestamptz NOT NULL DEFAULT '-infinity',
    queued     bigint NOT NULL DEFAULT 0,
    running    bigint NOT NULL DEFAULT 0,
    requires_action bigint NOT NULL DEFAULT 0,
    completed  bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    cancelled  bigint NOT NULL DEFAULT 0,
    attempts   bigint NOT NULL DEFAULT 0,
    takeovers  bigint NOT NULL DEFAULT 0,
    workers    bigint NOT NULL DEFAULT 0,
    pods       bigint NOT NULL DEFAULT 0,
    counters   jsonb NOT NULL DEFAULT '{}',
    watchers   jsonb NOT NULL DEFAULT '{}'
);
INSERT INTO metrics_cache (id) VALUES (1);

-- The cached figures if younger than max_age; otherwise one caller (under an
-- advisory lock; the others wait for it and take its answer) computes them in one
-- scan of runs and stores them.
CREATE FUNCTION tether_metrics(max_age interval) RETURNS metrics_cache
LANGUAGE plpgsql AS $$
DECLARE
    c metrics_cache;
BEGIN
    SELECT * INTO c FROM metrics_cache WHERE id = 1;
    IF c.built > clock_timestamp() - max_age THEN
        RETURN c;
    END IF;
    PERFORM pg_advisory_xact_lock(8387236093787712883);  -- 'tethmigr' + 1
    SELECT * INTO c FROM metrics_cache WHERE id = 1;      -- a new snapshot: another may have built it
    IF c.built > clock_timestamp() - max_age THEN
        RETURN c;
    END IF;
    UPDATE metrics_cache m SET built = clock_timestamp(),
        queued = r.q, running = r.ru, requires_action = r.ra, completed = r.co, failed = r.fa, cancelled = r.ca,
        attempts = r.at, takeovers = r.tk,
        workers = (SELECT count(*) FROM workers),
        pods = (SELECT count(DISTINCT pod) FROM workers),
        counters = (SELECT tether_counters_add(cr.counters,
                        (SELECT tether_counters_sum(w.counters) FROM workers w))
                    FROM counters_retired cr WHERE cr.id = 1),
        watchers = (SELECT COALESCE(jsonb_object_agg(pod, jsonb_build_object('watchers', w, 'generators', g)),
                                    '{}'::jsonb)
                    FROM (SELECT pod,
                                 sum(COALESCE((counters -> 'gauges' ->> 'watchers')::bigint, 0)) AS w,
                                 sum(COALESCE((counters -> 'gauges' ->> 'generators')::bigint, 0)) AS g
                          FROM workers GROUP BY pod) p)
    FROM (SELECT count(*) FILTER (WHERE status = 'queued') AS q,
                 count(*) FILTER (WHERE status = 'running') AS ru,
                 count(*) FILTER (WHERE status = 'requires_action') AS ra,
                 count(*) FILTER (WHERE status = 'completed') AS co,
                 count(*) FILTER (WHERE status = 'failed') AS fa,
                 count(*) FILTER (WHERE status = 'cancelled') AS ca,
                 COALESCE(sum(attempt), 0) AS at, COALESCE(sum(takeovers), 0) AS tk
          FROM runs) r
    WHERE m.id = 1
    RETURNING m.* INTO c;
    RETURN c;
END
$$;
