/* hub.c - see hub.h. No thread of its own: the watcher that finds nothing new takes
 * the reader's role, reads the run's consumer itself, appends and wakes the others.
 * With one watcher that is the direct path (one wakeup per event); with many, one
 * reads and the rest wake on the broadcast.
 * Locking: hub.mu guards the list of runs and their refs; hub_run.mu guards the
 * events, the reader role and the state. The last reference closes and frees. */
#include "hub.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


struct hub_run {
	struct hub *hub;
	struct hub_run *next;
	char run_id[UUID_LEN + 1];
	int refs;                       /* guarded by hub.mu */
	pthread_mutex_t mu;             /* guards everything below */
	pthread_cond_t cv;
	struct hub_event **ev;          /* ev[i - base] for base <= i < count */
	size_t base, count, cap;
	size_t bytes;
	struct bus_sub *sub;            /* the run's one consumer */
	int reading;                    /* a watcher is in bus_sub_next on sub */
	int failed;
};

struct hub {
	struct bus *bus;
	size_t cap_bytes;
	pthread_mutex_t mu;             /* guards runs and each run's refs */
	struct hub_run *runs;
	int nruns;
};

int
hub_new(struct hub **out, struct bus *bus, size_t cap_bytes)
{
	struct hub *h = calloc(1, sizeof *h);

	if (!h)
		return TE_NOMEM;
	h->bus = bus;
	h->cap_bytes = cap_bytes;
	pthread_mutex_init(&h->mu, NULL);
	*out = h;
	return TE_OK;
}

void
hub_free(struct hub *h)
{
	/* Every run is freed by its last detach. */
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

void
hub_event_put(struct hub_event *e)
{
	if (e && atomic_fetch_sub(&e->refs, 1) == 1)
		free(e);
}

static struct hub_event *
event_copy(const struct bus_event *src)
{
	struct hub_event *e = malloc(sizeof *e + src->len + 1);

	if (!e)
		return NULL;
	e->ev = *src;
	e->ev.msg = NULL;
	memcpy(e->text, src->data, src->len);
	e->text[src->len] = '\0';
	e->ev.data = e->text;
	atomic_init(&e->refs, 1);
	return e;
}

/* Caller holds r->mu. An allocation failure drops the event and fails the run. */
static void
run_append_locked(struct hub_run *r, struct hub_event *e)
{
	if (r->count - r->base == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct hub_event **v = realloc(r->ev, cap * sizeof *v);

		if (!v) {
			hub_event_put(e);
			r->failed = 1;
			return;
		}
		r->ev = v;
		r->cap = cap;
	}
	r->ev[r->count - r->base] = e;
	r->count++;
	r->bytes += e->ev.len;
	/* Over the bound: drop the oldest events (late watchers read JetStream). */
	while (r->bytes > r->hub->cap_bytes && r->count - r->base > 1) {
		struct hub_event *old = r->ev[0];

		r->bytes -= old->ev.len;
		memmove(r->ev, r->ev + 1, (r->count - r->base - 1) * sizeof *r->ev);
		r->base++;
		hub_event_put(old);
	}
}

static void
run_free(struct hub_run *r)
{
	bus_sub_close(r->sub);
	for (size_t i = r->base; i < r->count; i++)
		hub_event_put(r->ev[i - r->base]);
	free(r->ev);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

int
hub_attach(struct hub *h, const char *run_id, struct hub_run **out)
{
	struct hub_run *r;
	int rc;

	pthread_mutex_lock(&h->mu);
	for (r = h->runs; r; r = r->next) {
		if (!strcmp(r->run_id, run_id)) {
			int failed;

			pthread_mutex_lock(&r->mu);
			failed = r->failed;
			pthread_mutex_unlock(&r->mu);
			if (failed)
				continue;       /* a broken consumer: start a new one below */
			r->refs++;
			pthread_mutex_unlock(&h->mu);
			*out = r;
			return TE_OK;
		}
	}
	if (!(r = calloc(1, sizeof *r))) {
		pthread_mutex_unlock(&h->mu);
		return TE_NOMEM;
	}
	r->hub = h;
	memcpy(r->run_id, run_id, UUID_LEN + 1);
	r->refs = 1;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if ((rc = bus_sub_open(h->bus, run_id, &r->sub)) != TE_OK) {
		pthread_mutex_unlock(&h->mu);
		run_free(r);
		return rc;
	}
	r->next = h->runs;
	h->runs = r;
	h->nruns++;
	pthread_mutex_unlock(&h->mu);
	*out = r;
	return TE_OK;
}

void
hub_detach(struct hub *h, struct hub_run *r)
{
	int last;

	if (!r)
		return;
	pthread_mutex_lock(&h->mu);
	last = --r->refs == 0;
	if (last) {
		for (struct hub_run **p = &h->runs; *p; p = &(*p)->next)
			if (*p == r) {
				*p = r->next;
				h->nruns--;
				break;
			}
	}
	pthread_mutex_unlock(&h->mu);
	/* Nobody else holds it, so nobody is reading its consumer. */
	if (last)
		run_free(r);
}

static void
deadline_in(struct timespec *dl, int timeout_ms)
{
	clock_gettime(CLOCK_REALTIME, dl);
	dl->tv_sec += timeout_ms / 1000;
	dl->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (dl->tv_nsec >= 1000000000) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000;
	}
}

int
hub_get(struct hub_run *r, size_t idx, int timeout_ms, struct hub_event **ev)
{
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int rc = TE_TIMEOUT;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		int64_t left;

		if (idx < r->base) {
			rc = TE_NOTFOUND;
			break;
		}
		if (idx < r->count) {
			*ev = r->ev[idx - r->base];
			atomic_fetch_add(&(*ev)->refs, 1);
			rc = TE_OK;
			break;
		}
		if (r->failed) {
			rc = TE_BUS;
			break;
		}
		left = deadline - now_ms();
		if (left <= 0 && timeout_ms > 0)
			break;
		if (!r->reading) {
			/* Take the reader's role: read the consumer without the lock. */
			struct bus_event bev;
			struct hub_event *e = NULL;
			int brc;

			r->reading = 1;
			pthread_mutex_unlock(&r->mu);
			brc = bus_sub_next(r->sub, timeout_ms > 0 && left > 0 ? (int)left : 0, &bev);
			if (brc == TE_OK) {
				e = event_copy(&bev);
				bus_event_release(&bev);
				if (!e)
					brc = TE_NOMEM;
			}
			pthread_mutex_lock(&r->mu);
			r->reading = 0;
			if (e)
				run_append_locked(r, e);
			else if (brc != TE_TIMEOUT) {
				tlog_run(LOG_WARN, r->run_id, 0, "event consumer failed: %s", te_strerror(brc));
				r->failed = 1;
			}
			/* Wake the others: for the new event, or for one of them to read next. */
			pthread_cond_broadcast(&r->cv);
			if (brc == TE_TIMEOUT && idx >= r->count)
				break;
			continue;
		}
		if (timeout_ms <= 0)
			break;
		{
			struct timespec dl;

			deadline_in(&dl, (int)left);
			if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0 && idx >= r->count &&
			    !r->reading)
				break;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int
hub_runs(struct hub *h)
{
	int n;

	pthread_mutex_lock(&h->mu);
	n = h->nruns;
	pthread_mutex_unlock(&h->mu);
	return n;
}
