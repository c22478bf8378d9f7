/* hub.c - see hub.h. Locking: hub.mu guards the list of runs and their refs;
 * hub_run.mu guards the events and the state; hub_run.dmu guards the subscribers
 * and is held while the consumer thread delivers (lock order: dmu, then mu). A run's
 * consumer thread owns the run once the last reference is gone: it stops and frees
 * everything. */
#include "hub.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 200
#define STACK_SIZE (256 * 1024)


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
	int failed;
	int stop;
	pthread_mutex_t dmu;            /* guards subs; held while delivering */
	struct hub_sub *subs;
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
	for (size_t i = r->base; i < r->count; i++)
		hub_event_put(r->ev[i - r->base]);
	free(r->ev);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->dmu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

static int
run_stopped(struct hub_run *r)
{
	int s;

	pthread_mutex_lock(&r->mu);
	s = r->stop;
	pthread_mutex_unlock(&r->mu);
	return s;
}

/* Hand the event to every subscriber waiting for it. */
static void
deliver(struct hub_run *r, struct hub_event *e, size_t idx)
{
	pthread_mutex_lock(&r->dmu);
	for (struct hub_sub *s = r->subs; s; s = s->next)
		if (s->idx == idx) {
			s->idx++;
			s->fn(s->arg, e);
		}
	pthread_mutex_unlock(&r->dmu);
}

static void *
consumer(void *arg)
{
	struct hub_run *r = arg;
	struct bus_sub *sub = NULL;
	int rc = bus_sub_open(r->hub->bus, r->run_id, &sub);

	while (rc == TE_OK && !run_stopped(r)) {
		struct bus_event ev;
		struct hub_event *e;
		size_t idx;

		rc = bus_sub_next(sub, POLL_MS, &ev);
		if (rc == TE_TIMEOUT) {
			rc = TE_OK;
			continue;
		}
		if (rc != TE_OK)
			break;
		e = event_copy(&ev);
		bus_event_release(&ev);
		if (!e) {
			rc = TE_NOMEM;
			break;
		}
		atomic_fetch_add(&e->refs, 1);  /* held while delivering */
		pthread_mutex_lock(&r->mu);
		idx = r->count;
		run_append_locked(r, e);
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		deliver(r, e, idx);
		hub_event_put(e);
	}
	bus_sub_close(sub);
	pthread_mutex_lock(&r->mu);
	if (!r->stop) {
		tlog_run(LOG_WARN, r->run_id, 0, "event consumer stopped: %s", te_strerror(rc));
		r->failed = 1;
		pthread_cond_broadcast(&r->cv);
	}
	/* Wait for the last watcher to leave; then this thread owns the run. */
	while (!r->stop)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	run_free(r);
	return NULL;
}

int
hub_attach(struct hub *h, const char *run_id, struct hub_run **out)
{
	struct hub_run *r;
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
	pthread_mutex_init(&r->dmu, NULL);
	pthread_cond_init(&r->cv, NULL);
	{
		pthread_attr_t attr;
		pthread_t th;
		int err;

		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, STACK_SIZE);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		err = pthread_create(&th, &attr, consumer, r);
		pthread_attr_destroy(&attr);
		if (err) {
			pthread_mutex_unlock(&h->mu);
			run_free(r);
			return TE_NOMEM;
		}
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
	if (last) {
		pthread_mutex_lock(&r->mu);
		r->stop = 1;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
	}
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
	int rc = TE_TIMEOUT;

	pthread_mutex_lock(&r->mu);
	if (idx >= r->count && !r->failed && timeout_ms > 0) {
		struct timespec dl;

		deadline_in(&dl, timeout_ms);
		while (idx >= r->count && !r->failed)
			if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0)
				break;
	}
	if (idx < r->base) {
		rc = TE_NOTFOUND;
	} else if (idx < r->count) {
		*ev = r->ev[idx - r->base];
		atomic_fetch_add(&(*ev)->refs, 1);
		rc = TE_OK;
	} else if (r->failed) {
		rc = TE_BUS;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int
hub_subscribe(struct hub_run *r, size_t idx, struct hub_sub *s, hub_deliver_fn fn, void *arg)
{
	int rc;

	pthread_mutex_lock(&r->dmu);
	pthread_mutex_lock(&r->mu);
	if (r->failed) {
		rc = TE_BUS;
	} else if (idx != r->count) {
		rc = TE_AGAIN;
	} else {
		s->fn = fn;
		s->arg = arg;
		s->idx = idx;
		s->next = r->subs;
		r->subs = s;
		rc = TE_OK;
	}
	pthread_mutex_unlock(&r->mu);
	pthread_mutex_unlock(&r->dmu);
	return rc;
}

void
hub_unsubscribe(struct hub_run *r, struct hub_sub *s)
{
	pthread_mutex_lock(&r->dmu);
	for (struct hub_sub **p = &r->subs; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	pthread_mutex_unlock(&r->dmu);
}

int
hub_failed(struct hub_run *r)
{
	int f;

	pthread_mutex_lock(&r->mu);
	f = r->failed;
	pthread_mutex_unlock(&r->mu);
	return f;
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
