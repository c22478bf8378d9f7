/* store_metrics.c - the cluster-wide figures of /metrics, from PostgreSQL. Whichever
 * worker answers, the figures are the cluster's: one cached row shared by all of them
 * (sql/0008_metrics_cache.sql), so answers never go back in time. */
#include "store_int.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
store_metrics(struct store *st, int max_age_ms, struct metrics *m)
{
	static const char sql[] =
	    "SELECT queued, running, requires_action, completed, failed, cancelled, attempts, takeovers,"
	    " workers, pods, counters::text, watchers::text"
	    " FROM tether_metrics($1::int * interval '1 ms')";
	char age[24];
	const char *params[1] = { age };
	PGresult *res;
	int rc;

	memset(m, 0, sizeof *m);
	snprintf(age, sizeof age, "%d", max_age_ms);
	if ((rc = st_query(st, sql, 1, params, &res)) != TE_OK)
		return rc;
	for (int i = 0; i < 6; i++)
		m->runs[i] = atol(PQgetvalue(res, 0, i));
	m->attempts = atol(PQgetvalue(res, 0, 6));
	m->takeovers = atol(PQgetvalue(res, 0, 7));
	m->workers = atol(PQgetvalue(res, 0, 8));
	m->pods = atol(PQgetvalue(res, 0, 9));
	m->counters_json = pg_strdup(res, 0, 10);
	m->watchers_json = pg_strdup(res, 0, 11);
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
