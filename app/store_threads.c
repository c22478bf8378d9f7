/* store_threads.c - threads (tenants and keys: store_tenants.c). */
#include "store_int.h"
#include "buf.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The thread document of API.md; shared by create, list and get. */
#define THREAD_JSON \
	"json_build_object('id', t.id, 'title', t.title, 'metadata', t.metadata," \
	" 'created_at', tether_ts(t.created_at)," \
	" 'status', CASE WHEN r.id IS NULL THEN 'idle' ELSE 'running' END," \
	" 'active_run_id', r.id)"
#define THREAD_ACTIVE_JOIN \
	" LEFT JOIN runs r ON r.thread_id = t.id AND r.status IN ('queued', 'running', 'requires_action')"

static int
one_json(struct store *st, const char *sql, int n, const char *const *p, char **json)
{
	PGresult *res;
	int rc;

	if ((rc = st_query(st, sql, n, p, &res)) != TE_OK)
		return rc;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		PQclear(res);
		return TE_NOTFOUND;
	}
	*json = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return *json ? TE_OK : TE_NOMEM;
}

int
store_thread_create(struct store *st, const char *tenant, const char *title,
    const char *metadata_json, char **json)
{
	static const char sql[] =
	    "WITH t AS (INSERT INTO threads (tenant_id, title, metadata)"
	    "  VALUES ($1, $2, COALESCE($3::jsonb, '{}')) RETURNING *)"
	    " SELECT json_build_object('id', t.id, 'title', t.title, 'metadata', t.metadata,"
	    "  'created_at', tether_ts(t.created_at), 'status', 'idle', 'active_run_id', NULL)"
	    " FROM t";
	const char *p[] = { tenant, title, metadata_json };

	return one_json(st, sql, 3, p, json);
}

int
store_thread_get(struct store *st, const char *tenant, const char *id, char **json)
{
	static const char sql[] =
	    "SELECT (" THREAD_JSON "::jsonb || jsonb_build_object('messages', COALESCE(("
	    "   SELECT jsonb_agg(jsonb_build_object('id', m.id, 'role', m.role, 'content', m.content,"
	    "     'run_id', m.run_id, 'created_at', tether_ts(m.created_at))"
	    "     || CASE WHEN m.tool_calls IS NULL THEN '{}'::jsonb"
	    "        ELSE jsonb_build_object('tool_calls', m.tool_calls) END"
	    "     || CASE WHEN m.tool_call_id IS NULL THEN '{}'::jsonb"
	    "        ELSE jsonb_build_object('tool_call_id', m.tool_call_id) END ORDER BY m.seq)"
	    "   FROM messages m WHERE m.thread_id = t.id), '[]'::jsonb)))::text"
	    " FROM threads t" THREAD_ACTIVE_JOIN
	    " WHERE t.id = $1 AND t.tenant_id = $2";
	const char *p[] = { id, tenant };

	return one_json(st, sql, 2, p, json);
}

int
store_thread_list(struct store *st, const char *tenant, int limit, const char *before,
    char **json)
{
	static const char sql[] =
	    "SELECT t.id, " THREAD_JSON
	    " FROM threads t" THREAD_ACTIVE_JOIN
	    " WHERE t.tenant_id = $1 AND ($3::uuid IS NULL OR (t.created_at, t.id) <"
	    "   (SELECT b.created_at, b.id FROM threads b WHERE b.id = $3 AND b.tenant_id = $1))"
	    " ORDER BY t.created_at DESC, t.id DESC LIMIT $2";
	static const char exists_sql[] = "SELECT 1 FROM threads WHERE id = $1 AND tenant_id = $2";
	char lim[16];
	const char *p[] = { tenant, lim, before };
	PGresult *res = NULL;
	struct pgc *c;
	struct buf b;
	int rc, n;

	snprintf(lim, sizeof lim, "%d", limit + 1);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if (before) {
		const char *q[] = { before, tenant };

		if ((rc = st_exec(st, c, exists_sql, 2, q, &res, NULL)) == TE_OK &&
		    PQntuples(res) == 0)
			rc = TE_NOTFOUND;
		PQclear(res);
		res = NULL;
	}
	if (rc == TE_OK)
		rc = st_exec(st, c, sql, 3, p, &res, NULL);
	pgc_release(st, c);
	if (rc != TE_OK)
		return rc;
	n = PQntuples(res);
	buf_init(&b, 64 << 20);
	rc = buf_puts(&b, "{\"items\":[");
	for (int i = 0; i < n && i < limit && rc == TE_OK; i++) {
		if (i)
			rc = buf_puts(&b, ",");
		if (rc == TE_OK)
			rc = buf_puts(&b, PQgetvalue(res, i, 1));
	}
	if (rc == TE_OK)
		rc = buf_puts(&b, "]");
	if (rc == TE_OK && n > limit)
		rc = buf_printf(&b, ",\"next\":\"%s\"", PQgetvalue(res, limit - 1, 0));
	if (rc == TE_OK)
		rc = buf_puts(&b, "}");
	PQclear(res);
	if (rc != TE_OK) {
		buf_free(&b);
		return rc;
	}
	*json = buf_steal(&b);
	return TE_OK;
}

int
store_thread_run(struct store *st, const char *tenant, const char *thread_id,
    char run_id[UUID_LEN + 1])
{
	static const char sql[] =
	    "SELECT (SELECT r.id FROM runs r WHERE r.thread_id = t.id"
	    "   ORDER BY (r.status IN ('queued', 'running', 'requires_action')) DESC,"
	    "   r.created_at DESC LIMIT 1)"
	    " FROM threads t WHERE t.id = $1 AND t.tenant_id = $2";
	const char *p[] = { thread_id, tenant };
	PGresult *res;
	int rc;

	if ((rc = st_query_row(st, sql, 2, p, &res)) != TE_OK)
		return rc;
	snprintf(run_id, UUID_LEN + 1, "%s", PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
	PQclear(res);
	return TE_OK;
}
