-- 0002: cluster-wide counters for /metrics.
-- Each worker writes its own counters to its workers row with the heartbeat.
-- When a row is deleted (a dead worker claimed, or a drained worker leaving) its
-- counters move into counters_retired, so cluster totals never go backwards.

CREATE TABLE counters_retired (
    id        integer PRIMARY KEY CHECK (id = 1),
    counters  jsonb NOT NULL DEFAULT '{}'
);
INSERT INTO counters_retired (id) VALUES (1);

-- a + b for counter objects: numbers add, arrays of numbers add element-wise.
-- Gauges (watchers) are not carried over.
CREATE FUNCTION tether_counters_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(k, v), '{}'::jsonb) FROM (
        SELECT k,
               CASE
                 WHEN jsonb_typeof(COALESCE(a -> k, b -> k)) = 'array' THEN (
                     SELECT COALESCE(jsonb_agg(COALESCE((a -> k ->> i)::numeric, 0)
                                               + COALESCE((b -> k ->> i)::numeric, 0) ORDER BY i), '[]'::jsonb)
                     FROM generate_series(0, GREATEST(jsonb_array_length(COALESCE(a -> k, '[]')),
                                                      jsonb_array_length(COALESCE(b -> k, '[]'))) - 1) AS i)
                 ELSE to_jsonb(COALESCE((a ->> k)::numeric, 0) + COALESCE((b ->> k)::numeric, 0))
               END AS v
        FROM (SELECT jsonb_object_keys(COALESCE(a, '{}')) UNION
              SELECT jsonb_object_keys(COALESCE(b, '{}'))) AS keys(k)
        WHERE k <> 'watchers'
          AND jsonb_typeof(COALESCE(a -> k, b -> k)) IN ('number', 'array')
    ) AS s
$$;

CREATE FUNCTION tether_retire_counters() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE counters_retired SET counters = tether_counters_add(counters, OLD.counters) WHERE id = 1;
    RETURN OLD;
END
$$;

CREATE TRIGGER workers_retire_counters AFTER DELETE ON workers
    FOR EACH ROW EXECUTE FUNCTION tether_retire_counters();

CREATE AGGREGATE tether_counters_sum(jsonb) (
    SFUNC = tether_counters_add, STYPE = jsonb, INITCOND = '{}'
);
