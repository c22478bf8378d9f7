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
 * consumer and stays in its request thread (bounded by the request threads).
 *
 * The engine sees only struct watcher_env; app/watcher_ops.c wires it to this
 * worker, and the stall check's rules (stall.h) are unit-tested with fakes. */
#ifndef TETHER_WATCHER_H
#define TETHER_WATCHER_H

#include "err.h"
#include "stall.h"

#include <stdatomic.h>
#include <stdint.h>

struct authcache;
struct bus;
struct hub;
struct quota;
struct req;
struct wloop;

/* What the engine uses of its worker, and nothing else. */
struct watcher_env {
	int stall_ms;                   /* quiet this long: a stall check */
	int heartbeat_s;                /* a ping after this long without a write */
	struct hub *hub;                /* the runs' events, shared by the watchers */
	struct bus *bus;                /* read by a stream behind the hub's window */
	struct authcache *auth;         /* a revoked key ends the streams it opened */
	struct quota *quota;            /* the tenant's stream slot, given back at the end */
	atomic_int *closing;            /* set: end every stream now (drain) */
	atomic_int *watchers;           /* this worker's open streams: one given back at the end */
	struct stall_ops stall;         /* the stall check's store, bus and recovery */
};

/* The real one (app/watcher_ops.c): a's hub, bus, keys, quotas, flags and checks. */
struct app;
void watcher_env_for_app(struct watcher_env *e, struct app *a);

/* Start the stream loop of this worker; env is copied. */
TE_MUST_CHECK int wloop_open(struct wloop **out, const struct watcher_env *env);
/* End every stream (as a drain does: the clients resume elsewhere) and stop. */
void wloop_close(struct wloop *l);
/* A key was revoked (auth_revoke): the loop ends the streams it opened. Any thread. */
void wloop_revoked(struct wloop *l);
/* Streams held by the loop now. */
int wloop_streams(struct wloop *l);

/* Serve one opened stream (after http_sse_start) with loop l's engine; hr is a
 * hub reference the engine now owns, with one of env->watchers and the tenant's
 * stream slot. aisdk: frame it as the AI SDK's UI message stream (aisdk.h).
 * Returns when the request thread may go. */
struct hub_run;
void watcher_serve(struct wloop *l, struct req *r, struct hub_run *hr, const char *run_id,
    const char *thread_id, int attempt, int last_attempt, int64_t last_seq, int aisdk);

#endif
