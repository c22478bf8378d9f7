/* POST /v1/admin/tenants/{name}/keys and POST /v1/admin/recover (the cron's sweep). */
#include "routes.h"
#include "app.h"
#include "auth.h"
#include "buf.h"
#include "log.h"
#include "recovery.h"
#include "store.h"

#include <stdio.h>

void
h_admin_keys(struct req *r)
{
	char key[API_KEY_LEN + 1], body[256];
	int rc;

	if ((rc = auth_key_generate(key)) != TE_OK) {
		http_error(r, API_INTERNAL, "could not generate a key");
		return;
	}
	if ((rc = store_key_create(r->app->store, r->name, key)) != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not store the key: %s", te_strerror(rc));
		return;
	}
	tlog(LOG_INFO, "created an API key for tenant %s (prefix %.7s)", r->name, key);
	snprintf(body, sizeof body, "{\"tenant\":\"%s\",\"key\":\"%s\"}", r->name, key);
	http_json_str(r, 201, body);
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
