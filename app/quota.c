/* quota.c - see quota.h. One table per worker, open addressing on the tenant id;
 * a slot once given to a tenant stays its own (a worker serves a bounded number
 * of tenants: past QUOTA_SLOTS, further tenants are admitted uncounted and logged
 * once). */
#include "quota.h"
#include "buf.h"
#include "err.h"
#include "log.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUOTA_SLOTS 8192

struct tq {
	char tenant[UUID_LEN + 1];      /* "" : free */
	int streams;                    /* open on this worker */
	int64_t sec;                    /* the second reqs counts */
	int reqs;                       /* requests admitted in second sec */
	int prev_reqs;                  /* ... and in the second before */
	int64_t tick;                   /* the sync interval tick_reqs counts */
	int tick_reqs;
	int other_streams;              /* the other workers' last report */
	int other_reqs;
};

struct quota {
	pthread_mutex_t mu;             /* guards slots, full_logged */
	int full_logged;
	struct tq slots[QUOTA_SLOTS];
};

int
quota_new(struct quota **out)
{
	struct quota *q = calloc(1, sizeof *q);

	if (!q)
		return TE_NOMEM;
	pthread_mutex_init(&q->mu, NULL);
	*out = q;
	return TE_OK;
}

void
quota_free(struct quota *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->mu);
	free(q);
}

/* Under q->mu: the tenant's slot, made when new; NULL when the table is full. */
static struct tq *
slot(struct quota *q, const char *tenant)
{
	unsigned h = 2166136261u;

	for (const char *p = tenant; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (unsigned i = 0; i < QUOTA_SLOTS; i++) {
		struct tq *t = &q->slots[(h + i) % QUOTA_SLOTS];

		if (!strcmp(t->tenant, tenant))
			return t;
		if (!t->tenant[0]) {
			snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
			return t;
		}
	}
	if (!q->full_logged) {
		q->full_logged = 1;
		tlog(LOG_WARN, "quota table full (%d tenants on this worker): further tenants' "
		    "streams and requests are not counted", QUOTA_SLOTS);
	}
	return NULL;
}

/* Under q->mu: roll the request window to now. */
static void
roll(struct tq *t, int64_t sec)
{
	if (t->sec == sec)
		return;
	t->prev_reqs = t->sec == sec - 1 ? t->reqs : 0;
	t->reqs = 0;
	t->sec = sec;
}

int
quota_request(struct quota *q, const char *tenant, int limit)
{
	int64_t ms = now_ms(), sec = ms / 1000;
	struct tq *t;
	int ok = 1;

	pthread_mutex_lock(&q->mu);
	if ((t = slot(q, tenant))) {
		/* A sliding second: the previous second weighs what is left of it. */
		long est;

		long tick_max = ((long)limit * QUOTA_SYNC_MS + 999) / 1000;

		roll(t, sec);
		if (t->tick != ms / QUOTA_SYNC_MS) {
			t->tick = ms / QUOTA_SYNC_MS;
			t->tick_reqs = 0;
		}
		est = t->reqs + (long)t->prev_reqs * (1000 - ms % 1000) / 1000 + t->other_reqs;
		/* Within one sync interval no worker takes more than its share of the
		 * second: the others cannot see it yet. */
		if (est >= limit || t->tick_reqs >= tick_max) {
			ok = 0;
		} else {
			t->reqs++;
			t->tick_reqs++;
		}
	}
	pthread_mutex_unlock(&q->mu);
	return ok;
}

int
quota_stream_enter(struct quota *q, const char *tenant, int limit)
{
	struct tq *t;
	int ok = 1;

	pthread_mutex_lock(&q->mu);
	if ((t = slot(q, tenant))) {
		if (t->streams + t->other_streams >= limit)
			ok = 0;
		else
			t->streams++;
	}
	pthread_mutex_unlock(&q->mu);
	return ok;
}

void
quota_stream_leave(struct quota *q, const char *tenant)
{
	struct tq *t;

	pthread_mutex_lock(&q->mu);
	if ((t = slot(q, tenant)) && t->streams > 0)
		t->streams--;
	pthread_mutex_unlock(&q->mu);
}

char *
quota_usage_json(struct quota *q)
{
	int64_t ms = now_ms(), sec = ms / 1000;
	struct buf b;
	int rc = TE_OK, n = 0;

	buf_init(&b, 64 << 20);
	rc = buf_puts(&b, "{");
	pthread_mutex_lock(&q->mu);
	for (int i = 0; i < QUOTA_SLOTS && rc == TE_OK; i++) {
		struct tq *t = &q->slots[i];
		int reqs;

		if (!t->tenant[0])
			continue;
		roll(t, sec);
		/* The sliding second quota_request uses. */
		reqs = t->reqs + (int)((long)t->prev_reqs * (1000 - ms % 1000) / 1000);
		if (t->streams == 0 && reqs == 0)
			continue;
		rc = buf_printf(&b, "%s\"%s\":[%d,%d]", n++ ? "," : "", t->tenant, t->streams, reqs);
	}
	pthread_mutex_unlock(&q->mu);
	if (rc == TE_OK)
		rc = buf_puts(&b, "}");
	if (rc != TE_OK) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

void
quota_others_set(struct quota *q, const char *json)
{
	struct json_object *o = json_tokener_parse(json);

	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return;
	}
	pthread_mutex_lock(&q->mu);
	for (int i = 0; i < QUOTA_SLOTS; i++)
		q->slots[i].other_streams = q->slots[i].other_reqs = 0;
	json_object_object_foreach(o, tenant, v) {
		struct tq *t;

		if (!uuid_valid(tenant) || !json_object_is_type(v, json_type_array) ||
		    json_object_array_length(v) != 2 || !(t = slot(q, tenant)))
			continue;
		t->other_streams = json_object_get_int(json_object_array_get_idx(v, 0));
		t->other_reqs = json_object_get_int(json_object_array_get_idx(v, 1));
	}
	pthread_mutex_unlock(&q->mu);
	json_object_put(o);
}
