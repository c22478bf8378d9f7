#include "app.h"
#include "auth.h"
#include "buf.h"

#include <stdio.h>

const int takeover_bucket_ms[TAKEOVER_BUCKETS - 1] = { 50, 100, 250, 500, 1000, 2500, 5000, 10000 };

void
app_takeover_observe(struct app *a, long long ms)
{
	atomic_fetch_add(&a->ctr.takeovers, 1);
	atomic_fetch_add(&a->ctr.takeover_ms_sum, ms);
	for (int i = 0; i < TAKEOVER_BUCKETS; i++)
		if (i == TAKEOVER_BUCKETS - 1 || ms <= takeover_bucket_ms[i])
			atomic_fetch_add(&a->ctr.takeover_le[i], 1);
}

char *
app_counters_json(struct app *a, int generators)
{
	long long lookups = 0, unknown = 0;
	struct buf b;
	int rc;

	if (a->auth)
		auth_counts(a->auth, &lookups, &unknown);
	buf_init(&b, 4096);
	rc = buf_printf(&b, "{\"runs_started\":%lld,\"chunks_published\":%lld,"
	    "\"fenced_publishes\":%lld,\"provider_errors\":%lld,\"takeovers\":%lld,"
	    "\"takeover_ms_sum\":%lld,\"watchers_total\":%lld,\"auth_lookups\":%lld,"
	    "\"auth_unknown\":%lld,"
	    "\"gauges\":{\"watchers\":%d,\"generators\":%d},\"takeover_le\":[",
	    (long long)a->ctr.runs_started, (long long)a->ctr.chunks_published,
	    (long long)a->ctr.fenced_publishes, (long long)a->ctr.provider_errors,
	    (long long)a->ctr.takeovers, (long long)a->ctr.takeover_ms_sum,
	    (long long)a->ctr.watchers_total, lookups, unknown, (int)a->ctr.watchers,
	    generators);
	for (int i = 0; i < TAKEOVER_BUCKETS && rc == 0; i++)
		rc = buf_printf(&b, "%s%lld", i ? "," : "", (long long)a->ctr.takeover_le[i]);
	if (rc == 0)
		rc = buf_puts(&b, "]}");
	if (rc != 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}
