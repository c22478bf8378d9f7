/* GET /metrics - Prometheus text (version 0.0.4). Run figures come from the runs
 * table; worker counters are what every worker wrote with its heartbeat, summed
 * over live workers plus those that left (counters_retired): the same answer from
 * every worker, and counters that never go backwards. */
#include "routes.h"
#include "app.h"
#include "buf.h"
#include "store.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static const char *const run_status[5] = { "queued", "running", "completed", "failed", "cancelled" };

static long long
counter(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static void
worker_counter(struct buf *b, struct json_object *c, const char *key, const char *name,
    const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", name, help, name, name,
	    counter(c, key));
}

void
h_metrics(struct req *r)
{
	struct metrics m;
	struct json_object *c = NULL, *w = NULL, *le;
	struct buf b;
	int rc = store_metrics(r->app->store, &m);

	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not read the metrics: %s", te_strerror(rc));
		return;
	}
	c = json_tokener_parse(m.counters_json ? m.counters_json : "{}");
	w = json_tokener_parse(m.watchers_json ? m.watchers_json : "{}");
	buf_init(&b, 1 << 20);
	buf_puts(&b, "# HELP tether_runs Runs by status.\n# TYPE tether_runs gauge\n");
	for (int i = 0; i < 5; i++)
		buf_printf(&b, "tether_runs{status=\"%s\"} %ld\n", run_status[i], m.runs[i]);
	buf_printf(&b, "# HELP tether_runs_active Runs queued or running.\n# TYPE tether_runs_active gauge\n"
	    "tether_runs_active %ld\n", m.runs[0] + m.runs[1]);
	buf_printf(&b, "# HELP tether_run_attempts_total Attempts over all runs (1 per run plus one per "
	    "takeover).\n# TYPE tether_run_attempts_total counter\ntether_run_attempts_total %ld\n",
	    m.attempts);
	buf_printf(&b, "# HELP tether_run_takeovers_total Takeovers of runs from dead owners.\n"
	    "# TYPE tether_run_takeovers_total counter\ntether_run_takeovers_total %ld\n", m.takeovers);
	buf_printf(&b, "# HELP tether_workers Live worker processes (rows holding a liveness lock).\n"
	    "# TYPE tether_workers gauge\ntether_workers %ld\n", m.workers);
	buf_printf(&b, "# HELP tether_pods Pods with live workers.\n# TYPE tether_pods gauge\n"
	    "tether_pods %ld\n", m.pods);
	worker_counter(&b, c, "runs_started", "tether_generations_started_total",
	    "Generator threads started (fresh runs and resumed attempts).");
	worker_counter(&b, c, "chunks_published", "tether_chunks_published_total",
	    "Deltas published to JetStream.");
	worker_counter(&b, c, "fenced_publishes", "tether_fenced_publishes_total",
	    "Publishes rejected by fencing (a zombie or a cancelled run's owner stopped).");
	worker_counter(&b, c, "provider_errors", "tether_provider_errors_total",
	    "Runs that ended with a provider error.");
	worker_counter(&b, c, "watchers_total", "tether_watchers_opened_total",
	    "Event streams opened.");
	buf_puts(&b, "# HELP tether_watchers Open event streams, by pod.\n# TYPE tether_watchers gauge\n");
	if (w) {
		json_object_object_foreach(w, pod, v)
			buf_printf(&b, "tether_watchers{pod=\"%s\"} %lld\n", pod, counter(v, "watchers"));
	}
	buf_puts(&b, "# HELP tether_generators Runs being generated now, by pod.\n"
	    "# TYPE tether_generators gauge\n");
	if (w) {
		json_object_object_foreach(w, pod, v)
			buf_printf(&b, "tether_generators{pod=\"%s\"} %lld\n", pod, counter(v, "generators"));
	}
	buf_puts(&b, "# HELP tether_takeover_seconds Claim to reset published, per resumed run.\n"
	    "# TYPE tether_takeover_seconds histogram\n");
	le = NULL;
	if (c)
		json_object_object_get_ex(c, "takeover_le", &le);
	for (int i = 0; i < TAKEOVER_BUCKETS; i++) {
		long long n = le && (size_t)i < json_object_array_length(le)
		    ? json_object_get_int64(json_object_array_get_idx(le, i)) : 0;

		if (i == TAKEOVER_BUCKETS - 1)
			buf_printf(&b, "tether_takeover_seconds_bucket{le=\"+Inf\"} %lld\n", n);
		else
			buf_printf(&b, "tether_takeover_seconds_bucket{le=\"%g\"} %lld\n",
			    takeover_bucket_ms[i] / 1000.0, n);
	}
	buf_printf(&b, "tether_takeover_seconds_sum %g\ntether_takeover_seconds_count %lld\n",
	    counter(c, "takeover_ms_sum") / 1000.0, counter(c, "takeovers"));
	http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data, b.len);
	buf_free(&b);
	json_object_put(c);
	json_object_put(w);
	store_metrics_free(&m);
}
