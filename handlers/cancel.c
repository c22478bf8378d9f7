/* POST /v1/runs/{id}/cancel - from any pod. The row goes cancelled first (which fences
 * the owner's terminal write), then done{cancelled} is published (which fences its
 * next publish), then the owner is told to stop calling the provider. */
#include "routes.h"
#include "app.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "run.h"
#include "store.h"

#include <stdio.h>

void
h_run_cancel(struct req *r)
{
	struct app *a = r->app;
	struct run_cancel c;
	char body[160];
	int rc;

	if (http_body_read(r, (size_t)a->cfg->max_body) < 0)
		return;
	rc = store_run_cancel(a->store, r->tenant, r->id, &c);
	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no run %s", r->id);
		return;
	}
	if (rc != TE_OK) {
		http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
		    "could not cancel the run: PostgreSQL is unavailable");
		return;
	}
	if (c.changed) {
		tlog_run(LOG_INFO, r->id, c.attempt, "cancelled (owner %ld)", c.owner);
		run_announce_terminal(a->runner, r->id, c.attempt, "cancelled", NULL, "cancel");
		if (c.owner == a->worker)
			runner_cancel(a->runner, r->id, 0);
		else if (c.owner && bus_ctl_send(a->bus, c.owner, "cancel", r->id) != TE_OK)
			tlog_run(LOG_INFO, r->id, c.attempt, "could not tell worker %ld to stop; its "
			    "next publish is fenced by the done", c.owner);
	}
	snprintf(body, sizeof body, "{\"id\":\"%s\",\"status\":\"%s\"}", r->id, c.status);
	http_json_str(r, 200, body);
}
