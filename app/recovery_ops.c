/* recovery_ops.c - recovery's narrow interface (recovery.h), wired to this worker's
 * store, runner and terminal publishes. The only place recovery meets struct app. */
#include "recovery.h"
#include "app.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "run.h"
#include "store.h"

#include <string.h>

static int
op_probe_claim(void *arg, long owner, const char *run_id, int attempt, int max_claim,
    enum probe_result *pr, struct claim_set *claimed, struct claim_set *failed)
{
	struct app *a = arg;

	return store_probe_claim(a->store, a->worker, a->pod, a->pid, owner, run_id, attempt,
	    max_claim, a->cfg->max_attempts, a->cfg->pg_grace_s, pr, claimed, failed);
}

static int
op_workers_list(void *arg, struct worker_ref **v, size_t *n)
{
	return store_workers_list(((struct app *)arg)->store, v, n);
}

static int
op_claim_orphans(void *arg, int max_claim, struct claim_set *claimed, struct claim_set *failed)
{
	struct app *a = arg;

	return store_claim_orphans(a->store, a->worker, a->pod, a->pid, max_claim,
	    a->cfg->max_attempts, claimed, failed);
}

static int
op_start_queued(void *arg, int max_start, struct claim_set *started)
{
	struct app *a = arg;

	return store_start_queued(a->store, a->worker, a->pod, a->pid, max_start, started);
}

static int
op_reap(void *arg, struct claim_set *failed)
{
	struct app *a = arg;

	return store_reap(a->store, a->cfg->max_run_s, failed);
}

static int
op_release(void *arg, const char *run_id, int attempt)
{
	struct app *a = arg;

	return store_run_release(a->store, run_id, attempt, a->worker);
}

static int
op_free_slots(void *arg)
{
	return runner_free_slots(((struct app *)arg)->runner);
}

/* A claimed run always gets a slot (past the limit if need be): it was claimed
 * because a slot looked free, and handing it back costs another takeover. */
static int
op_spawn(void *arg, const char *run_id, int attempt, enum resume_kind kind, int64_t claimed_us)
{
	struct app *a = arg;
	int rc;

	runner_reserve_force(a->runner);
	rc = runner_spawn(a->runner, run_id, attempt, kind == RESUME_TAKEOVER ? RUN_TAKEOVER
	    : RUN_FRESH, claimed_us);
	if (rc != TE_OK)
		runner_unreserve(a->runner);
	return rc;
}

static void
op_publish_failed(void *arg, const char *run_id)
{
	struct app *a = arg;
	struct run_state rs;

	if (store_run_state(a->store, NULL, run_id, &rs) != TE_OK)
		return;
	tlog_run(LOG_WARN, rs.id, rs.attempt, "run failed by the sweep: %s",
	    rs.error_json ? rs.error_json : "-");
	if (!strcmp(rs.status, "failed"))
		run_announce_terminal(a->runner, rs.id, rs.attempt, "failed", rs.error_json, "final");
	store_run_state_free(&rs);
}

void
recovery_ops_for_app(struct recovery_ops *o, struct app *a)
{
	memset(o, 0, sizeof *o);
	o->arg = a;
	o->probe_claim = op_probe_claim;
	o->workers_list = op_workers_list;
	o->claim_orphans = op_claim_orphans;
	o->start_queued = op_start_queued;
	o->reap = op_reap;
	o->release = op_release;
	o->free_slots = op_free_slots;
	o->spawn = op_spawn;
	o->publish_failed = op_publish_failed;
	o->worker = a->worker;
	o->stall_ms = a->cfg->stall_ms;
}
