/* GET /metrics - Prometheus text (version 0.0.4), for internal addresses only (nginx,
 * like the admin routes). The figures are one row cached in PostgreSQL for
 * METRICS_CACHE_MS, shared by every worker (sql/0008_metrics_cache.sql): a scrape
 * costs one cheap statement, the cluster at most one scan of runs per interval, and
 * answers read one after another never go back in time whichever worker gives them
 * (a cache per worker let a counter seem to drop between two workers' answers). Run
 * figures come from the runs table; worker counters are what every worker wrote with
 * its heartbeat, summed over live workers plus those that left (counters_retired). */
#include "routes.h"
#include "app.h"
#include "buf.h"
#include "store.h"

#include <stdarg.h>
#include <stdlib.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define METRICS_CACHE_MS 1000

static const char *const run_status[6] = { "queued", "running", "requires_action", "completed",
    "failed", "cancelled" };

static long long
counter(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

/* The exposition, written with one sticky error: the first failed append is kept
 * and the rest are skipped. */
struct out {
	struct buf b;
	int rc;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
emit(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->rc != TE_OK)
		return;
	va_start(ap, fmt);
	o->rc = buf_vprintf(&o->b, fmt, ap);
	va_end(ap);
}

static void
worker_counter(struct out *o, struct json_object *c, const char *key, const char *name,
    const char *help)
{
	emit(o, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", name, help, name, name,
	    counter(c, key));
}

void
h_metrics(struct req *r)
{
	struct metrics m;
	struct json_object *c = NULL, *w = NULL, *le;
	struct out o;
	int rc = store_metrics(r->app->store, METRICS_CACHE_MS, &m);

	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not read the metrics: %s", te_strerror(rc));
		return;
	}
	c = json_tokener_parse(m.counters_json ? m.counters_json : "{}");
	w = json_tokener_parse(m.watchers_json ? m.watchers_json : "{}");
	buf_init(&o.b, 1 << 20);
	o.rc = TE_OK;
	emit(&o, "%s", "# HELP tether_runs Runs by status.\n# TYPE tether_runs gauge\n");
	for (int i = 0; i < 6; i++)
		emit(&o, "tether_runs{status=\"%s\"} %ld\n", run_status[i], m.runs[i]);
	emit(&o, "# HELP tether_runs_active Runs queued or running.\n# TYPE tether_runs_active gauge\n"
	    "tether_runs_active %ld\n", m.runs[0] + m.runs[1]);
	emit(&o, "# HELP tether_run_attempts_total Attempts over all runs (1 per run plus one per "
	    "takeover).\n# TYPE tether_run_attempts_total counter\ntether_run_attempts_total %ld\n",
	    m.attempts);
	emit(&o, "# HELP tether_run_takeovers_total Takeovers of runs from dead owners.\n"
	    "# TYPE tether_run_takeovers_total counter\ntether_run_takeovers_total %ld\n", m.takeovers);
	emit(&o, "# HELP tether_workers Live worker processes (rows holding a liveness lock).\n"
	    "# TYPE tether_workers gauge\ntether_workers %ld\n", m.workers);
	emit(&o, "# HELP tether_pods Pods with live workers.\n# TYPE tether_pods gauge\n"
	    "tether_pods %ld\n", m.pods);
	worker_counter(&o, c, "runs_started", "tether_generations_started_total",
	    "Generator threads started (fresh runs and resumed attempts).");
	worker_counter(&o, c, "chunks_published", "tether_chunks_published_total",
	    "Deltas published to JetStream.");
	worker_counter(&o, c, "fenced_publishes", "tether_fenced_publishes_total",
	    "Publishes rejected by fencing (a zombie or a cancelled run's owner stopped).");
	worker_counter(&o, c, "provider_errors", "tether_provider_errors_total",
	    "Runs that ended with a provider error.");
	worker_counter(&o, c, "watchers_total", "tether_watchers_opened_total",
	    "Event streams opened.");
	worker_counter(&o, c, "auth_lookups", "tether_auth_lookups_total",
	    "API keys looked up in PostgreSQL (not in a worker's caches).");
	worker_counter(&o, c, "auth_unknown", "tether_auth_unknown_total",
	    "Requests refused for a malformed or unknown API key.");
	emit(&o, "%s", "# HELP tether_watchers Open event streams, by pod.\n# TYPE tether_watchers gauge\n");
	if (w) {
		json_object_object_foreach(w, pod, v)
			emit(&o, "tether_watchers{pod=\"%s\"} %lld\n", pod, counter(v, "watchers"));
	}
	emit(&o, "%s", "# HELP tether_generators Runs being generated now, by pod.\n"
	    "# TYPE tether_generators gauge\n");
	if (w) {
		json_object_object_foreach(w, pod, v)
			emit(&o, "tether_generators{pod=\"%s\"} %lld\n", pod, counter(v, "generators"));
	}
	emit(&o, "%s", "# HELP tether_takeover_seconds Claim to reset published, per resumed run.\n"
	    "# TYPE tether_takeover_seconds histogram\n");
	le = NULL;
	if (c)
		json_object_object_get_ex(c, "takeover_le", &le);
	for (int i = 0; i < TAKEOVER_BUCKETS; i++) {
		long long n = le && (size_t)i < json_object_array_length(le)
		    ? json_object_get_int64(json_object_array_get_idx(le, i)) : 0;

		if (i == TAKEOVER_BUCKETS - 1)
			emit(&o, "tether_takeover_seconds_bucket{le=\"+Inf\"} %lld\n", n);
		else
			emit(&o, "tether_takeover_seconds_bucket{le=\"%g\"} %lld\n",
			    takeover_bucket_ms[i] / 1000.0, n);
	}
	emit(&o, "tether_takeover_seconds_sum %g\ntether_takeover_seconds_count %lld\n",
	    counter(c, "takeover_ms_sum") / 1000.0, counter(c, "takeovers"));
	if (o.rc == TE_OK)
		http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, o.b.data,
		    o.b.len);
	else
		http_error(r, API_INTERNAL, "could not write the metrics: %s", te_strerror(o.rc));
	buf_free(&o.b);
	json_object_put(c);
	json_object_put(w);
	store_metrics_free(&m);
}
