/* watcher.h - the watcher engine: one run's event stream to one client, once the
 * handler (handlers/events.c) has parsed, authorized and opened it.
 *
 * A stream catches up in its request thread (the hub's copy of the run, written
 * with blocking writes), then subscribes to the hub and LEAVES the request thread:
 * its connection moves to the worker's stream loop (libuv, one thread), which
 * holds every open stream, writes what the client is slow to take, pings, and
 * runs the stall checks (PostgreSQL, recovery.c) on libuv's thread pool. New events
 * are written by the hub's delivery thread without blocking (http_wire_*). So an
 * open stream costs memory, not a thread: a worker holds TETHER_MAX_WATCHERS of
 * them (16 384 by default).
 *
 * A stream that falls behind the hub's window reads JetStream with its own
 * consumer and stays in its request thread (bounded by the request threads). */
#ifndef TETHER_WATCHER_H
#define TETHER_WATCHER_H

#include "err.h"

#include <stdint.h>

struct app;
struct req;
struct wloop;

/* Start the stream loop of this worker. */
TE_MUST_CHECK int wloop_open(struct wloop **out, struct app *a);
/* End every stream (as a drain does: the clients resume elsewhere) and stop. */
void wloop_close(struct wloop *l);
/* A key was revoked (auth_revoke): the loop ends the streams it opened. Any thread. */
void wloop_revoked(struct wloop *l);
/* Streams held by the loop now. */
int wloop_streams(struct wloop *l);

/* Serve one opened stream (after http_sse_start); hr is a hub reference the
 * engine now owns. aisdk: frame it as the AI SDK's UI message stream (aisdk.h).
 * Returns when the request thread may go. */
struct hub_run;
void watcher_serve(struct req *r, struct hub_run *hr, const char *run_id,
    const char *thread_id, int attempt, int last_attempt, int64_t last_seq, int aisdk);

#endif
