/* store_tenants.c - tenants and API keys: creation, lookup, listing, revocation. */
#include "store_int.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char key_id[UUID_LEN + 1])
{
	static const char sql[] =
	    "SELECT tenant_id, id FROM api_keys"
	    " WHERE key_hash = sha256(convert_to($1, 'UTF8')) AND revoked_at IS NULL";
	const char *p[] = { key };
	PGresult *res;
	int rc;

	if ((rc = st_query_row(st, sql, 1, p, &res)) != TE_OK)
		return rc;
	snprintf(tenant_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	snprintf(key_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	return TE_OK;
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
