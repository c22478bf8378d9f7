/* store_metrics.c - the cluster-wide figures of /metrics, from PostgreSQL. Whichever
 * worker answers, the figures are the cluster's. */
#include "store_int.h"
#include "err.h"

#include <stdlib.h>
#include <string.h>

int
store_metrics(struct store *st, struct metrics *m)
{
	static const char sql[] =
	    "SELECT r.q, r.ru, r.co, r.fa, r.ca, r.at, r.tk,"
	    " (SELECT count(*) FROM workers),"
	    " (SELECT count(DISTINCT pod) FROM workers),"
	    " (SELECT tether_counters_add(r.counters, (SELECT tether_counters_sum(w.counters)"
	    "    FROM workers w)) FROM counters_retired r WHERE r.id = 1)::text,"
	    " (SELECT COALESCE(jsonb_object_agg(pod, jsonb_build_object('watchers', w, 'generators', g)),"
	    "    '{}'::jsonb) FROM (SELECT pod,"
	    "    sum(COALESCE((counters -> 'gauges' ->> 'watchers')::bigint, 0)) AS w,"
	    "    sum(COALESCE((counters -> 'gauges' ->> 'generators')::bigint, 0)) AS g"
	    "    FROM workers GROUP BY pod) p)::text"
	    /* One scan of runs for every run figure. */
	    " FROM (SELECT count(*) FILTER (WHERE status = 'queued') AS q,"
	    "  count(*) FILTER (WHERE status = 'running') AS ru,"
	    "  count(*) FILTER (WHERE status = 'completed') AS co,"
	    "  count(*) FILTER (WHERE status = 'failed') AS fa,"
	    "  count(*) FILTER (WHERE status = 'cancelled') AS ca,"
	    "  COALESCE(sum(attempt), 0) AS at, COALESCE(sum(takeovers), 0) AS tk FROM runs) r";
	PGresult *res;
	int rc;

	memset(m, 0, sizeof *m);
	if ((rc = st_query(st, sql, 0, NULL, &res)) != TE_OK)
		return rc;
	for (int i = 0; i < 5; i++)
		m->runs[i] = atol(PQgetvalue(res, 0, i));
	m->attempts = atol(PQgetvalue(res, 0, 5));
	m->takeovers = atol(PQgetvalue(res, 0, 6));
	m->workers = atol(PQgetvalue(res, 0, 7));
	m->pods = atol(PQgetvalue(res, 0, 8));
	m->counters_json = pg_strdup(res, 0, 9);
	m->watchers_json = pg_strdup(res, 0, 10);
	PQclear(res);
	return TE_OK;
}

void
store_metrics_free(struct metrics *m)
{
	if (!m)
		return;
	free(m->counters_json);
	free(m->watchers_json);
	m->counters_json = m->watchers_json = NULL;
}
