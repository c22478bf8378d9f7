/* hub.c - see hub.h. Locking, in this order:
 *  - hub.mu guards the list of runs and their refs;
 *  - hub_run.fmu ("the appender") is held by whoever adds events: the live tail's
 *    delivery thread (one copy at a time), the catch-up at attach, a repair. It owns
 *    the tail (tail.h). Copies that arrive during a catch-up wait on it in nats.c's
 *    queue, then are dropped as already held or appended;
 *  - hub_run.dmu guards the subscribers and is held while delivering to them;
 *  - hub_run.mu guards the events and the state (readers: hub_get).
 * The last detach closes the live subscription (waiting for its callback) and frees
 * the run. */
#include "hub.h"
#include "err.h"
#include "log.h"
#include "tail.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A catch-up reads up to this many events by direct get, then opens an ordered
 * consumer for the rest (one round trip each vs a consumer's setup). */
#define DIRECT_MAX 32

struct hub_run {
	struct hub *hub;
	struct hub_run *next;
	char run_id[UUID_LEN + 1];
	int refs;                       /* guarded by hub.mu */
	pthread_mutex_t fmu;            /* the appender: guards tail, live */
	struct tail tail;
	struct bus_live *live;
	pthread_mutex_t mu;             /* guards everything below */
	pthread_cond_t cv;
	struct hub_event **ev;          /* ev[i - base] for base <= i < count */
	size_t base, count, cap;
	size_t bytes;
	int failed;
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
	pthread_mutex_destroy(&r->fmu);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->dmu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

static void
run_fail(struct hub_run *r, int rc)
{
	pthread_mutex_lock(&r->mu);
	if (!r->failed)
		tlog_run(LOG_WARN, r->run_id, 0, "live tail stopped: %s", te_strerror(rc));
	r->failed = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* The appender (fmu held): add one event and hand it to every subscriber. Appends
 * are serialized by fmu and each is delivered before the next, so a subscriber is
 * always waiting for exactly this one (hub_subscribe joins at the end). */
static int
append(struct hub_run *r, const struct bus_event *ev)
{
	struct hub_event *e = event_copy(ev);
	size_t idx;
	int appended;

	if (!e)
		return TE_NOMEM;
	atomic_fetch_add(&e->refs, 1);  /* held while delivering */
	pthread_mutex_lock(&r->dmu);
	pthread_mutex_lock(&r->mu);
	idx = r->count;
	run_append_locked(r, e);
	appended = r->count > idx;      /* else out of memory: the run failed */
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (struct hub_sub *s = r->subs; s && appended; s = s->next)
		if (s->idx == idx) {
			s->idx++;
			s->fn(s->arg, e);
		}
	pthread_mutex_unlock(&r->dmu);
	hub_event_put(e);
	return TE_OK;
}

/* tail_fetch_fn: read the subject after t->applied until t->applied >= upto
 * (upto 0: the subject's last event now). fmu held. */
static int
fetch(void *arg, struct tail *t, uint64_t upto)
{
	struct hub_run *r = arg;
	struct bus *bus = r->hub->bus;
	struct bus_sub *sub = NULL;
	struct bus_event ev;
	int rc = TE_OK, n = 0;

	if (upto == 0) {
		if ((rc = bus_last(bus, r->run_id, &ev)) == TE_NOTFOUND)
			return TE_OK;
		if (rc != TE_OK)
			return rc;
		upto = ev.sseq;
		bus_event_release(&ev);
	}
	while (rc == TE_OK && t->applied < upto) {
		if (n++ < DIRECT_MAX) {
			rc = bus_next(bus, r->run_id, t->applied + 1, &ev);
		} else {
			if (!sub && (rc = bus_sub_open_at(bus, r->run_id, t->applied + 1, &sub)) != TE_OK)
				break;
			rc = bus_sub_next(sub, 5000, &ev);
		}
		if (rc == TE_NOTFOUND) {
			/* Gone (max age) or never stored: nothing more to read up to upto. */
			rc = TE_OK;
			break;
		}
		if (rc != TE_OK)
			break;
		if (ev.sseq > t->applied) {
			tail_fetched(t, ev.sseq);
			rc = append(r, &ev);
		}
		bus_event_release(&ev);
	}
	bus_sub_close(sub);
	return rc;
}

struct emit_ctx {
	struct hub_run *r;
	const struct bus_event *ev;
};

static int
emit(void *arg, size_t i)
{
	struct emit_ctx *c = arg;

	(void)i;
	return append(c->r, c->ev);
}

static int
fetch_ctx(void *arg, struct tail *t, uint64_t upto)
{
	return fetch(((struct emit_ctx *)arg)->r, t, upto);
}

/* The live tail's delivery thread: one republished copy. */
static void
on_copy(void *arg, struct bus_event *ev)
{
	struct hub_run *r = arg;
	struct tail_copy c = { ev->sseq, ev->prev };
	struct emit_ctx ctx = { r, ev };
	int rc;

	pthread_mutex_lock(&r->fmu);
	if (!hub_failed(r) && (rc = tail_apply(&r->tail, &c, 1, fetch_ctx, emit, &ctx)) != TE_OK)
		run_fail(r, rc);
	pthread_mutex_unlock(&r->fmu);
	bus_event_release(ev);
}

int
hub_repair(struct hub_run *r)
{
	int rc = TE_BUS;

	pthread_mutex_lock(&r->fmu);
	if (!hub_failed(r) && (rc = fetch(r, &r->tail, 0)) != TE_OK)
		run_fail(r, rc);
	pthread_mutex_unlock(&r->fmu);
	return rc;
}

int
hub_attach(struct hub *h, const char *run_id, struct hub_run **out)
{
	struct hub_run *r;
	int rc;

	pthread_mutex_lock(&h->mu);
	for (r = h->runs; r; r = r->next) {
		if (!strcmp(r->run_id, run_id) && !hub_failed(r)) {
			r->refs++;
			pthread_mutex_unlock(&h->mu);
			*out = r;
			return TE_OK;
		}
	}
	/* A failed run stays listed until its last watcher leaves; a new one is made. */
	if (!(r = calloc(1, sizeof *r))) {
		pthread_mutex_unlock(&h->mu);
		return TE_NOMEM;
	}
	r->hub = h;
	memcpy(r->run_id, run_id, UUID_LEN + 1);
	r->refs = 1;
	tail_init(&r->tail);
	pthread_mutex_init(&r->fmu, NULL);
	pthread_mutex_init(&r->mu, NULL);
	pthread_mutex_init(&r->dmu, NULL);
	cond_init_monotonic(&r->cv);
	/* The appender is ours until the catch-up is done: watchers attaching meanwhile
	 * wait in hub_get, copies wait in nats.c. */
	pthread_mutex_lock(&r->fmu);
	r->next = h->runs;
	h->runs = r;
	h->nruns++;
	pthread_mutex_unlock(&h->mu);
	/* Subscribe first, then catch up: every event is in one or the other. */
	rc = bus_live_open(h->bus, run_id, on_copy, r, &r->live);
	if (rc == TE_OK)
		rc = fetch(r, &r->tail, 0);
	if (rc != TE_OK)
		run_fail(r, rc);
	pthread_mutex_unlock(&r->fmu);
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
		/* No watcher is left to hold the appender; its callback may still run. */
		bus_live_close(r->live);
		run_free(r);
	}
}

int
hub_get(struct hub_run *r, size_t idx, int timeout_ms, struct hub_event **ev)
{
	int rc = TE_TIMEOUT;

	pthread_mutex_lock(&r->mu);
	if (idx >= r->count && !r->failed && timeout_ms > 0) {
		struct timespec dl;

		deadline_ts(&dl, timeout_ms);
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
