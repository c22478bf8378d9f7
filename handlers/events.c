/* GET /v1/runs/{id}/events, GET /v1/threads/{id}/events, and the stream of
 * POST /v1/threads/{id}/runs with Accept: text/event-stream: parse the resume point,
 * check the run and the limits, open the stream and hand it to the watcher engine
 * (app/watcher.c). */
#include "routes.h"
#include "aisdk.h"
#include "app.h"
#include "bus.h"
#include "config.h"
#include "hub.h"
#include "sse.h"
#include "store.h"
#include "watcher.h"

#include <stdio.h>
#include <string.h>

int
events_format(struct req *r, int *aisdk)
{
	char v[16];
	int n = http_query_get(r->query, "format", v, sizeof v);

	if (n == -1) {
		*aisdk = 0;
		return 0;
	}
	if (n >= 0 && !strcmp(v, "ai-sdk")) {
		*aisdk = 1;
		return 0;
	}
	http_error_field(r, "format", "format must be ai-sdk (or absent, for tether's own events)");
	return -1;
}

void
events_serve(struct req *r, const char *run_id, struct run_state *given)
{
	struct app *a = r->app;
	const struct config *cfg = a->cfg;
	struct run_state local, *rs = given;
	struct hub_run *hr = NULL;
	int last_attempt = 0, aisdk, rc;
	int64_t last_seq = -1;
	char after[64];
	const char *lei = r->last_event_id;
	int n;

	if (events_format(r, &aisdk) < 0)
		return;
	if (!rs) {
		rc = store_run_state(a->store, r->tenant, run_id, &local);
		if (rc == TE_NOTFOUND) {
			http_error(r, API_NOT_FOUND, "no run %s", run_id);
			return;
		}
		if (rc != TE_OK) {
			http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
			    "could not read the run: PostgreSQL is unavailable");
			return;
		}
		rs = &local;
	}
	n = http_query_get(r->query, "after", after, sizeof after);
	if (n == -2) {
		http_error(r, API_BAD_REQUEST, "after must be an event id: <attempt>:<seq>");
		goto out;
	}
	if (n >= 0)
		lei = after;
	if (lei && event_id_parse(lei, strlen(lei), &last_attempt, &last_seq) < 0) {
		http_error(r, API_BAD_REQUEST, "%s must be an event id: <attempt>:<seq>",
		    n >= 0 ? "after" : "Last-Event-ID");
		goto out;
	}
	if (last_attempt > rs->attempt) {
		http_error(r, API_BAD_REQUEST, "event id %d:%lld names attempt %d; the run is at attempt %d",
		    last_attempt, (long long)last_seq, last_attempt, rs->attempt);
		goto out;
	}
	if (atomic_fetch_add(&a->ctr.watchers, 1) >= cfg->max_watchers) {
		atomic_fetch_sub(&a->ctr.watchers, 1);
		http_error_ex(r, API_AT_CAPACITY, NULL, NULL, "Retry-After: 1\r\n",
		    "this worker has as many open event streams as it may (max_watchers)");
		goto out;
	}
	if (!quota_stream_enter(a->quota, r->tenant, r->limits.max_streams)) {
		atomic_fetch_sub(&a->ctr.watchers, 1);
		http_error_quota(r, "max_streams", 1,
		    "this tenant has as many open event streams as its quota allows (max_streams)");
		goto out;
	}
	atomic_fetch_add(&a->ctr.watchers_total, 1);
	if (!bus_connected(a->bus) || hub_attach(a->hub, run_id, &hr) != TE_OK) {
		atomic_fetch_sub(&a->ctr.watchers, 1);
		quota_stream_leave(a->quota, r->tenant);
		http_error_ex(r, API_UNAVAILABLE, NULL, NULL, "Retry-After: 1\r\n",
		    "NATS is unavailable: cannot read the run's events");
		goto out;
	}
	if (http_sse_start_ex(r, aisdk ? AISDK_HEADER : NULL) != TE_OK) {
		hub_detach(a->hub, hr);
		atomic_fetch_sub(&a->ctr.watchers, 1);
		quota_stream_leave(a->quota, r->tenant);
		goto out;
	}
	/* From here the engine owns hr, the watcher count and the tenant's stream slot. */
	watcher_serve(a->wloop, r, hr, run_id, rs->thread_id, rs->attempt, last_attempt, last_seq, aisdk);
out:
	if (rs == &local)
		store_run_state_free(&local);
}

void
h_run_events(struct req *r)
{
	events_serve(r, r->id, NULL);
}

void
h_thread_events(struct req *r)
{
	char run_id[UUID_LEN + 1];
	struct run_state rs;
	int aisdk, rc;

	if (events_format(r, &aisdk) < 0)
		return;
	rc = store_thread_run(r->app->store, r->tenant, r->id, run_id);

	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no thread %s", r->id);
		return;
	}
	if (rc != TE_OK) {
		http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
		    "could not read the thread: PostgreSQL is unavailable");
		return;
	}
	if (!run_id[0]) {
		http_respond(r, 204, NULL, NULL, "", 0);
		return;
	}
	if (!aisdk) {
		events_serve(r, run_id, NULL);
		return;
	}
	/* The AI SDK resumes a chat here: 204 unless a run is active (API.md). */
	rc = store_run_state(r->app->store, r->tenant, run_id, &rs);
	if (rc == TE_NOTFOUND || (rc == TE_OK && rs.terminal))
		http_respond(r, 204, NULL, NULL, "", 0);
	else if (rc != TE_OK)
		http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
		    "could not read the run: PostgreSQL is unavailable");
	else
		events_serve(r, run_id, &rs);
	if (rc == TE_OK)
		store_run_state_free(&rs);
}
