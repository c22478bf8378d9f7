/* hub.h - per-worker fan-out of run events. The first watcher of a run in this
 * worker starts ONE ordered JetStream consumer for it; every local watcher of that
 * run reads the same in-memory copy through its own cursor. N watchers of a run cost
 * one consumer and one copy of each event, not N. */
#ifndef TETHER_HUB_H
#define TETHER_HUB_H

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

/* cap_bytes bounds the events one run keeps in memory; older ones are dropped
 * and a watcher that needs them reads JetStream itself (hub_get -> TE_NOTFOUND). */
int hub_new(struct hub **out, struct bus *bus, size_t cap_bytes);
void hub_free(struct hub *h);

/* Take a reference to the run's hub (starting its consumer when new). */
int hub_attach(struct hub *h, const char *run_id, struct hub_run **out);
void hub_detach(struct hub *h, struct hub_run *r);

/* Event number idx (0 = the first on the subject). TE_OK with *ev (release it with
 * hub_event_put), TE_TIMEOUT, TE_BUS when the consumer failed, TE_NOTFOUND when idx
 * was dropped to keep the hub within its bound. */
int hub_get(struct hub_run *r, size_t idx, int timeout_ms, struct hub_event **ev);
void hub_event_put(struct hub_event *e);
/* Runs with a live consumer in this worker (tests, metrics). */
int hub_runs(struct hub *h);

#endif
