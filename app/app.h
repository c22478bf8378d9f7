/* app.h - the context of one worker process, passed to every handler.
 * Fields are set once at worker start (before request threads run); the
 * counters are atomics, written by any thread. */
#ifndef TETHER_APP_H
#define TETHER_APP_H

#include <stdatomic.h>
#include <sys/types.h>

struct config;
struct store;
struct bus;
struct runner;
struct recovery;
struct authcache;
struct quota;
struct hub;
struct wloop;

/* Takeover latency buckets (ms) for /metrics; the last is +Inf. */
#define TAKEOVER_BUCKETS 9
extern const int takeover_bucket_ms[TAKEOVER_BUCKETS - 1];

struct counters {
	atomic_llong runs_started;
	atomic_llong chunks_published;
	atomic_llong fenced_publishes;
	atomic_llong provider_errors;
	atomic_llong takeovers;
	atomic_llong takeover_ms_sum;
	atomic_llong takeover_le[TAKEOVER_BUCKETS];
	atomic_int watchers;            /* open event streams now */
	atomic_llong watchers_total;
	atomic_int requests;            /* requests being served now */
};

struct app {
	const struct config *cfg;
	struct store *store;
	struct bus *bus;
	struct runner *runner;
	struct recovery *recovery;
	struct authcache *auth;
	struct quota *quota;           /* per-tenant streams and requests */
	struct hub *hub;
	struct wloop *wloop;            /* open event streams (app/watcher.c) */
	long worker;
	pid_t pid;
	const char *pod;
	atomic_int draining;            /* SIGTERM: refuse new runs, readyz 503 */
	atomic_int closing;             /* close event streams now */
	struct counters ctr;
};

void app_takeover_observe(struct app *a, long long ms);
/* The counters as the JSON object the heartbeat stores, with generators (the
 * runner's reserved slots) beside them; caller frees. Gauges (open streams,
 * generators) sit under "gauges": they are not summed into the totals a dead
 * worker leaves behind. */
char *app_counters_json(struct app *a, int generators);

#endif
