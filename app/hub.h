/* hub.h - per-worker fan-out of run events. The first watcher of a run in this
 * worker subscribes to the run's live tail (the stream's republished copies, one
 * core NATS subscription, no JetStream consumer) and catches up from the stream;
 * tail.c's rules keep the in-memory copy exact (gaps fetched by direct get). Every
 * local watcher of the run shares that copy. A watcher first catches up by reading
 * it (hub_get), then subscribes: from then on the tail's delivery thread hands it
 * each new event (one wakeup per event per worker, whatever the number of watchers). */
#ifndef TETHER_HUB_H
#define TETHER_HUB_H

#include "err.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"

struct hub;
struct hub_run;

/* One stored event, shared by the watchers (refcounted; read-only). */
struct hub_event {
	struct bus_event ev;            /* data points into text below; msg is NULL */
	atomic_int refs;
	char text[];
};

/* Called by the live tail's delivery thread for each new event, in order; must not
 * block long (a watcher's write has a send timeout). */
typedef void (*hub_deliver_fn)(void *arg, const struct hub_event *e);

struct hub_sub {
	struct hub_sub *next;
	hub_deliver_fn fn;
	void *arg;
	size_t idx;                     /* the next event number it gets */
};

/* cap_bytes bounds the events one run keeps in memory; older ones are dropped
 * and a watcher that needs them reads JetStream itself (hub_get -> TE_NOTFOUND). */
TE_MUST_CHECK int hub_new(struct hub **out, struct bus *bus, size_t cap_bytes);
void hub_free(struct hub *h);

/* Take a reference to the run's hub (subscribing and catching up when new). */
TE_MUST_CHECK int hub_attach(struct hub *h, const char *run_id, struct hub_run **out);
void hub_detach(struct hub *h, struct hub_run *r);

/* Event number idx (0 = the first on the subject). TE_OK with *ev (release it with
 * hub_event_put), TE_TIMEOUT, TE_BUS when the tail failed, TE_NOTFOUND when idx
 * was dropped to keep the hub within its bound. */
TE_MUST_CHECK int hub_get(struct hub_run *r, size_t idx, int timeout_ms, struct hub_event **ev);
void hub_event_put(struct hub_event *e);

/* Become a subscriber at event number idx: TE_OK when idx is the next event (from
 * now on fn gets every event), TE_AGAIN when events up to the end must be read with
 * hub_get first, TE_BUS when the tail failed. */
TE_MUST_CHECK int hub_subscribe(struct hub_run *r, size_t idx, struct hub_sub *s, hub_deliver_fn fn, void *arg);
/* After it returns, fn is not running and will not run again for s. */
void hub_unsubscribe(struct hub_run *r, struct hub_sub *s);
/* Has the live tail failed (subscribers get nothing more)? */
int hub_failed(struct hub_run *r);
/* Read the stream up to the subject's last event now (a quiet run whose copies may
 * have been lost). TE_OK, or the error that failed the tail. */
TE_MUST_CHECK int hub_repair(struct hub_run *r);
/* Runs with a live tail in this worker (tests, metrics). */
int hub_runs(struct hub *h);

#endif
