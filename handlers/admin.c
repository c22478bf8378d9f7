/* /v1/admin/tenants/{name}/keys (create, list), DELETE /v1/admin/keys/{id} (revoke)
 * and POST /v1/admin/recover (the cron's sweep). */
#include "routes.h"
#include "app.h"
#include "auth.h"
#include "buf.h"
#include "bus.h"
#include "log.h"
#include "recovery.h"
#include "store.h"
#include "watcher.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
h_admin_keys(struct req *r)
{
	char key[API_KEY_LEN + 1], key_id[UUID_LEN + 1], body[256];
	int rc;

	if ((rc = auth_key_generate(key)) != TE_OK) {
		http_error(r, API_INTERNAL, "could not generate a key");
		return;
	}
	if ((rc = store_key_create(r->app->store, r->name, key, key_id)) != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not store the key: %s", te_strerror(rc));
		return;
	}
	tlog(LOG_INFO, "created API key %s for tenant %s (prefix %.7s)", key_id, r->name, key);
	snprintf(body, sizeof body, "{\"tenant\":\"%s\",\"key\":\"%s\",\"id\":\"%s\"}", r->name,
	    key, key_id);
	http_json_str(r, 201, body);
}

void
h_admin_keys_list(struct req *r)
{
	char *json = NULL;
	int rc = store_key_list(r->app->store, r->name, &json);

	if (rc == TE_NOTFOUND)
		http_error(r, API_NOT_FOUND, "no tenant named %s", r->name);
	else if (rc != TE_OK)
		http_error(r, api_err_from_te(rc), "could not list the keys: %s", te_strerror(rc));
	else
		http_json_str(r, 200, json);
	free(json);
}

/* Revoke in PostgreSQL (from then on no worker's lookup finds the key), then tell
 * every worker of every pod to drop it from its cache and end its streams. This
 * worker applies it at once too, so its own streams do not wait for the bus. */
void
h_admin_key_revoke(struct req *r)
{
	char *json = NULL;
	int rc = store_key_revoke(r->app->store, r->id, &json);

	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no API key with id %s", r->id);
		return;
	}
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not revoke the key: %s", te_strerror(rc));
		return;
	}
	auth_revoke(r->app->auth, r->id);
	wloop_revoked(r->app->wloop);
	if ((rc = bus_ctl_broadcast(r->app->bus, "revoke", r->id)) != TE_OK)
		tlog(LOG_WARN, "could not broadcast the revocation of key %s: %s; other workers "
		    "refuse it when their key cache expires (auth_cache_ms), and its open streams "
		    "elsewhere stay open", r->id, te_strerror(rc));
	tlog(LOG_INFO, "revoked API key %s", r->id);
	http_json_str(r, 200, json);
	free(json);
}

static int
runs_json(struct buf *b, const char *name, const struct claim_set *s)
{
	int rc = buf_printf(b, ",\"%s\":[", name);

	for (size_t i = 0; i < s->n && rc == TE_OK; i++)
		rc = buf_printf(b, "%s\"%s\"", i ? "," : "", s->v[i].run_id);
	return rc == TE_OK ? buf_puts(b, "]") : rc;
}

void
h_admin_recover(struct req *r)
{
	struct sweep_result res;
	struct buf b;
	int rc;

	rc = recovery_sweep(r->app->recovery, &res);
	if (rc != TE_OK) {
		sweep_result_free(&res);
		http_error(r, api_err_from_te(rc), "the sweep could not finish: %s", te_strerror(rc));
		return;
	}
	buf_init(&b, 16 << 20);
	rc = buf_printf(&b, "{\"worker\":%ld,\"probed\":%d,\"dead_workers\":[", r->app->worker,
	    res.probed);
	for (size_t i = 0; i < res.ndead && rc == TE_OK; i++)
		rc = buf_printf(&b, "%s%ld", i ? "," : "", res.dead[i]);
	if (rc == TE_OK)
		rc = buf_puts(&b, "]");
	if (rc == TE_OK)
		rc = runs_json(&b, "claimed_runs", &res.claimed);
	if (rc == TE_OK)
		rc = runs_json(&b, "started_runs", &res.started);
	if (rc == TE_OK)
		rc = runs_json(&b, "failed_runs", &res.failed);
	if (rc == TE_OK)
		rc = buf_puts(&b, "}");
	if (rc == TE_OK)
		http_json_str(r, 200, b.data);
	else
		http_error(r, API_INTERNAL, "the sweep summary is too large");
	if (res.ndead || res.claimed.n || res.started.n || res.failed.n)
		tlog(LOG_INFO, "sweep: probed %d, dead %zu, claimed %zu, started %zu, failed %zu",
		    res.probed, res.ndead, res.claimed.n, res.started.n, res.failed.n);
	buf_free(&b);
	sweep_result_free(&res);
}

static void
limits_answer(struct req *r)
{
	struct tenant_limits l;
	char body[256];
	int rc = store_limits_get(r->app->store, r->name, &l);

	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no tenant named %s", r->name);
		return;
	}
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not read the limits: %s", te_strerror(rc));
		return;
	}
	snprintf(body, sizeof body, "{\"max_active_runs\":%d,\"max_streams\":%d,"
	    "\"max_output_bytes\":%ld,\"requests_per_s\":%d}", l.max_active_runs, l.max_streams,
	    l.max_output_bytes, l.requests_per_s);
	http_json_str(r, 200, body);
}

void
h_admin_limits_get(struct req *r)
{
	limits_answer(r);
}

/* The body's fields, in struct tenant_limits order, with their bounds. */
static const struct {
	const char *name;
	long max;
} limit_fields[4] = {
	{ "max_active_runs", 1000000 },
	{ "max_streams", 10000000 },
	{ "max_output_bytes", 256L << 20 },
	{ "requests_per_s", 1000000 },
};

void
h_admin_limits_put(struct req *r)
{
	struct json_object *body = NULL;
	int set[4] = { 0 }, rc;
	long val[4] = { 0 };

	if (http_json_body(r, 0, &body) < 0)
		return;
	json_object_object_foreach(body, k, v) {
		int i;

		for (i = 0; i < 4 && strcmp(k, limit_fields[i].name); i++)
			;
		if (i == 4) {
			http_error_field(r, k, "unknown field: the limits are max_active_runs, "
			    "max_streams, max_output_bytes and requests_per_s");
			goto out;
		}
		if (!v) {
			set[i] = 2;     /* null: back to the default */
			continue;
		}
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		    json_object_get_int64(v) > limit_fields[i].max) {
			http_error_field(r, k, "%s must be an integer from 0 to %ld, or null for the "
			    "default", k, limit_fields[i].max);
			goto out;
		}
		set[i] = 1;
		val[i] = (long)json_object_get_int64(v);
	}
	rc = store_limits_set(r->app->store, r->name, set, val);
	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no tenant named %s", r->name);
		goto out;
	}
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not store the limits: %s", te_strerror(rc));
		goto out;
	}
	tlog(LOG_INFO, "limits of tenant %s changed", r->name);
	limits_answer(r);
out:
	json_object_put(body);
}
