/* watcher_ops.c - the watcher engine's narrow interface (watcher.h, stall.h),
 * wired to this worker's hub, bus, key cache, quotas, store and recovery. The only
 * place the engine meets struct app. */
#include "watcher.h"
#include "app.h"
#include "bus.h"
#include "config.h"
#include "recovery.h"
#include "stall.h"
#include "store.h"

static int
op_run_state(void *arg, const char *run, struct run_state *rs)
{
	return store_run_state(((struct app *)arg)->store, NULL, run, rs);
}

static int
op_last_sseq(void *arg, const char *run, uint64_t *sseq)
{
	struct bus_event last;
	int rc = bus_last(((struct app *)arg)->bus, run, &last);

	if (rc != TE_OK)
		return rc;
	*sseq = last.sseq;
	bus_event_release(&last);
	return TE_OK;
}

static enum recover_rc
op_probe(void *arg, const char *run, long owner, int attempt, int64_t silence_ms)
{
	return recovery_check_run(((struct app *)arg)->recovery, run, owner, attempt, silence_ms);
}

void
watcher_env_for_app(struct watcher_env *e, struct app *a)
{
	*e = (struct watcher_env){
		.stall_ms = a->cfg->stall_ms,
		.heartbeat_s = a->cfg->heartbeat_s,
		.hub = a->hub,
		.bus = a->bus,
		.auth = a->auth,
		.quota = a->quota,
		.closing = &a->closing,
		.watchers = &a->ctr.watchers,
		.stall = { a, op_run_state, op_last_sseq, op_probe },
	};
}
