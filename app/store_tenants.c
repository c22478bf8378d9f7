/* store_tenants.c - tenants and API keys: creation, lookup, listing, revocation. */
#include "store_int.h"
#include "config.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The effective quotas: the tenant's row l (may be absent), else $2..$5. */
#define LIMITS_COLS \
	"COALESCE(l.max_active_runs, $2::integer), COALESCE(l.max_streams, $3::integer)," \
	" COALESCE(l.max_output_bytes, $4::bigint), COALESCE(l.requests_per_s, $5::integer)"

static void
limits_defaults(struct store *st, char d[4][24])
{
	snprintf(d[0], 24, "%d", st->cfg->tenant_max_active_runs);
	snprintf(d[1], 24, "%d", st->cfg->tenant_max_streams);
	snprintf(d[2], 24, "%d", st->cfg->tenant_max_output_bytes);
	snprintf(d[3], 24, "%d", st->cfg->tenant_requests_per_s);
}

static void
limits_read(const PGresult *res, int col, struct tenant_limits *out)
{
	out->max_active_runs = atoi(PQgetvalue(res, 0, col));
	out->max_streams = atoi(PQgetvalue(res, 0, col + 1));
	out->max_output_bytes = atol(PQgetvalue(res, 0, col + 2));
	out->requests_per_s = atoi(PQgetvalue(res, 0, col + 3));
}

int
store_key_create(struct store *st, const char *tenant_name, const char *key,
    char key_id[UUID_LEN + 1])
{
	static const char sql[] =
	    "WITH t AS (INSERT INTO tenants (name) VALUES ($1)"
	    "  ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id)"
	    " INSERT INTO api_keys (tenant_id, key_hash, prefix)"
	    " SELECT t.id, sha256(convert_to($2, 'UTF8')), left($2, 7) FROM t RETURNING id";
	const char *p[] = { tenant_name, key };
	PGresult *res;
	int rc;

	if ((rc = st_query_row(st, sql, 2, p, &res)) != TE_OK)
		return rc == TE_NOTFOUND ? TE_DB : rc;
	snprintf(key_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return TE_OK;
}

int
store_auth(struct store *st, const char *key, char tenant_id[UUID_LEN + 1],
    char key_id[UUID_LEN + 1], struct tenant_limits *lim)
{
	static const char sql[] =
	    "SELECT k.tenant_id, k.id, " LIMITS_COLS " FROM api_keys k"
	    " LEFT JOIN tenant_limits l ON l.tenant_id = k.tenant_id"
	    " WHERE k.key_hash = sha256(convert_to($1, 'UTF8')) AND k.revoked_at IS NULL";
	char d[4][24];
	const char *p[] = { key, d[0], d[1], d[2], d[3] };
	PGresult *res;
	int rc;

	limits_defaults(st, d);
	if ((rc = st_query_row(st, sql, 5, p, &res)) != TE_OK)
		return rc;
	snprintf(tenant_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	snprintf(key_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 1));
	limits_read(res, 2, lim);
	PQclear(res);
	return TE_OK;
}

int
store_limits_get(struct store *st, const char *tenant_name, struct tenant_limits *out)
{
	static const char sql[] =
	    "SELECT " LIMITS_COLS " FROM tenants t LEFT JOIN tenant_limits l ON l.tenant_id = t.id"
	    " WHERE t.name = $1";
	char d[4][24];
	const char *p[] = { tenant_name, d[0], d[1], d[2], d[3] };
	PGresult *res;
	int rc;

	limits_defaults(st, d);
	if ((rc = st_query_row(st, sql, 5, p, &res)) != TE_OK)
		return rc;
	limits_read(res, 0, out);
	PQclear(res);
	return TE_OK;
}

int
store_limits_set(struct store *st, const char *tenant_name, const int set[4], const long val[4])
{
	/* $2..$5: the values (NULL: the default), $6..$9: whether each is given. */
	static const char sql[] =
	    "INSERT INTO tenant_limits AS l (tenant_id, max_active_runs, max_streams,"
	    "  max_output_bytes, requests_per_s)"
	    " SELECT t.id, $2::integer, $3::integer, $4::bigint, $5::integer FROM tenants t"
	    " WHERE t.name = $1"
	    " ON CONFLICT (tenant_id) DO UPDATE SET"
	    "  max_active_runs = CASE WHEN $6::boolean THEN EXCLUDED.max_active_runs"
	    "   ELSE l.max_active_runs END,"
	    "  max_streams = CASE WHEN $7::boolean THEN EXCLUDED.max_streams ELSE l.max_streams END,"
	    "  max_output_bytes = CASE WHEN $8::boolean THEN EXCLUDED.max_output_bytes"
	    "   ELSE l.max_output_bytes END,"
	    "  requests_per_s = CASE WHEN $9::boolean THEN EXCLUDED.requests_per_s"
	    "   ELSE l.requests_per_s END"
	    " RETURNING l.tenant_id";
	char v[4][24];
	const char *p[9] = { tenant_name };
	PGresult *res;
	int rc;

	for (int i = 0; i < 4; i++) {
		snprintf(v[i], sizeof v[i], "%ld", val[i]);
		p[1 + i] = set[i] == 1 ? v[i] : NULL;
		p[5 + i] = set[i] ? "true" : "false";
	}
	if ((rc = st_query_row(st, sql, 9, p, &res)) != TE_OK)
		return rc;
	PQclear(res);
	return TE_OK;
}

int
store_tenant_usage_sync(struct store *st, long worker, const char *usage_json, char **others_json)
{
	static const char sql[] =
	    "WITH u AS (UPDATE workers SET tenant_usage = $2::jsonb WHERE id = $1)"
	    " SELECT COALESCE(jsonb_object_agg(key, jsonb_build_array(s, r)), '{}'::jsonb)::text"
	    " FROM (SELECT e.key, sum((e.value ->> 0)::bigint) AS s, sum((e.value ->> 1)::bigint) AS r"
	    "  FROM workers w, jsonb_each(w.tenant_usage) e"
	    "  WHERE w.id <> $1 AND jsonb_typeof(e.value) = 'array' GROUP BY e.key) x";
	char id[24];
	const char *p[] = { id, usage_json };
	PGresult *res;
	int rc;

	snprintf(id, sizeof id, "%ld", worker);
	if ((rc = st_query_row(st, sql, 2, p, &res)) != TE_OK)
		return rc;
	*others_json = pg_strdup(res, 0, 0);
	PQclear(res);
	return *others_json ? TE_OK : TE_NOMEM;
}

/* One row, one non-NULL JSON column, duplicated (caller frees). */
static int
json_row(struct store *st, const char *sql, int n, const char *const *p, char **json)
{
	PGresult *res;
	int rc;

	if ((rc = st_query_row(st, sql, n, p, &res)) != TE_OK)
		return rc;
	if (PQgetisnull(res, 0, 0)) {
		PQclear(res);
		return TE_NOTFOUND;
	}
	*json = pg_strdup(res, 0, 0);
	PQclear(res);
	return *json ? TE_OK : TE_NOMEM;
}

int
store_key_list(struct store *st, const char *tenant_name, char **json)
{
	static const char sql[] =
	    "SELECT json_build_object('items', COALESCE((SELECT json_agg(json_build_object("
	    "   'id', k.id, 'created_at', tether_ts(k.created_at),"
	    "   'revoked_at', tether_ts(k.revoked_at)) ORDER BY k.created_at, k.id)"
	    "  FROM api_keys k WHERE k.tenant_id = t.id), '[]'::json))"
	    " FROM tenants t WHERE t.name = $1";
	const char *p[] = { tenant_name };

	return json_row(st, sql, 1, p, json);
}

int
store_key_revoke(struct store *st, const char *key_id, char **json)
{
	static const char sql[] =
	    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, clock_timestamp())"
	    " WHERE id = $1"
	    " RETURNING json_build_object('id', id, 'revoked_at', tether_ts(revoked_at))";
	const char *p[] = { key_id };

	return json_row(st, sql, 1, p, json);
}
