/* recovery.c - DESIGN.md "Who notices": watchers (stall probe) and the cron sweep.
 * The decisions are here and in the store's probe-and-claim transaction; every
 * effect goes through struct recovery_ops. */
#include "recovery.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROBED 512
#define MAX_BACKOFF_MS 5000
#define FORGET_MS 60000

/* Per run this worker watches: when its owner may be probed next. One probe per
 * run per worker at a time; the backoff doubles while the owner stays alive and
 * starts over once the run has spoken again (a shorter silence than last time). */
struct probed {
	char run_id[UUID_LEN + 1];
	int inflight;
	int64_t next_ms;
	int64_t backoff_ms;
	int64_t silence_ms;
	int64_t used_ms;
};

struct recovery {
	struct recovery_ops ops;
	pthread_mutex_t mu;             /* guards probed */
	struct probed probed[MAX_PROBED];
};

int
recovery_new(struct recovery **out, const struct recovery_ops *ops)
{
	struct recovery *r = calloc(1, sizeof *r);

	if (!r)
		return TE_NOMEM;
	r->ops = *ops;
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	return TE_OK;
}

void
recovery_free(struct recovery *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* May this watcher probe run_id now? Marks the probe in flight when yes. */
static int
probe_enter(struct recovery *r, const char *run_id, int64_t silence_ms)
{
	int64_t now = now_ms();
	struct probed *p = NULL, *victim = NULL;
	int ok = 0;

	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < MAX_PROBED; i++) {
		struct probed *e = &r->probed[i];

		if (e->run_id[0] && !strcmp(e->run_id, run_id)) {
			p = e;
			break;
		}
		if (!e->inflight && (!victim || e->used_ms < victim->used_ms))
			victim = e;
	}
	if (!p && victim && (!victim->run_id[0] || now - victim->used_ms > FORGET_MS ||
	    victim->next_ms <= now)) {
		p = victim;
		memset(p, 0, sizeof *p);
		memcpy(p->run_id, run_id, UUID_LEN + 1);
		p->backoff_ms = r->ops.stall_ms;
	}
	if (p && !p->inflight) {
		if (silence_ms < p->silence_ms) {
			/* The run spoke since the last probe: start the backoff over. */
			p->backoff_ms = r->ops.stall_ms;
			p->next_ms = 0;
		}
		if (now >= p->next_ms) {
			p->inflight = 1;
			p->silence_ms = silence_ms;
			ok = 1;
		}
		p->used_ms = now;
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
}

static void
probe_leave(struct recovery *r, const char *run_id, int alive)
{
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < MAX_PROBED; i++) {
		struct probed *e = &r->probed[i];

		if (!e->run_id[0] || strcmp(e->run_id, run_id))
			continue;
		e->inflight = 0;
		if (alive) {
			e->next_ms = now_ms() + e->backoff_ms;
			e->backoff_ms = e->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
			    : e->backoff_ms * 2;
		} else {
			e->run_id[0] = '\0';
		}
		break;
	}
	pthread_mutex_unlock(&r->mu);
}

static void
resume(struct recovery *r, const struct claimed *c, enum resume_kind kind, const char *via,
    int64_t claimed_us, int64_t silence_ms)
{
	const struct recovery_ops *o = &r->ops;
	int rc;

	if (kind == RESUME_TAKEOVER)
		tlog_run(LOG_INFO, c->run_id, c->attempt,
		    "takeover via=%s old_owner=%ld new_owner=%ld silence_ms=%lld", via, c->old_owner,
		    o->worker, (long long)silence_ms);
	else
		tlog_run(LOG_INFO, c->run_id, c->attempt, "starting queued run via=%s", via);
	if (o->spawn(o->arg, c->run_id, c->attempt, kind, claimed_us) == TE_OK)
		return;
	/* Claimed but not generated: a live owner's runs are never taken over, so hand
	 * it back (fenced by attempt) for the sweep to resume elsewhere. */
	rc = o->release(o->arg, c->run_id, c->attempt);
	if (rc == TE_OK)
		tlog_run(LOG_WARN, c->run_id, c->attempt, "could not start a generator; handed "
		    "the run back for another worker to resume");
	else if (rc != TE_FENCED)
		tlog_run(LOG_ERROR, c->run_id, c->attempt, "could not start a generator, nor "
		    "hand the run back: %s; the sweep fails it after max_run_s", te_strerror(rc));
}

static void
publish_failures(struct recovery *r, const struct claim_set *failed)
{
	for (size_t i = 0; i < failed->n; i++)
		r->ops.publish_failed(r->ops.arg, failed->v[i].run_id);
}

static int
free_slots(struct recovery *r)
{
	int slots = r->ops.free_slots(r->ops.arg);

	return slots > 0 ? slots : 0;
}

enum recover_rc
recovery_check_run(struct recovery *r, const char *run_id, long owner, int attempt,
    int64_t silence_ms)
{
	const struct recovery_ops *o = &r->ops;
	struct claim_set claimed = { 0 }, failed = { 0 };
	enum probe_result pr = PROBE_ALIVE;
	enum recover_rc out;
	int rc;

	if (owner == o->worker)
		return RECOVER_ALIVE;   /* our own generator: alive by definition */
	if (!probe_enter(r, run_id, silence_ms))
		return RECOVER_BUSY;
	rc = o->probe_claim(o->arg, owner, run_id, attempt, 1, &pr, &claimed, &failed);
	if (rc != TE_OK) {
		out = RECOVER_ERROR;
	} else if (pr == PROBE_ALIVE) {
		out = RECOVER_ALIVE;
	} else if (claimed.n == 1) {
		resume(r, &claimed.v[0], RESUME_TAKEOVER, "watch", now_us(), silence_ms);
		out = RECOVER_CLAIMED;
	} else if (failed.n == 1) {
		publish_failures(r, &failed);
		out = RECOVER_FAILED;
	} else {
		out = RECOVER_LOST;
	}
	probe_leave(r, run_id, out == RECOVER_ALIVE || out == RECOVER_ERROR);
	claim_set_free(&claimed);
	claim_set_free(&failed);
	return out;
}

int
recovery_sweep(struct recovery *r, struct sweep_result *out)
{
	const struct recovery_ops *o = &r->ops;
	struct worker_ref *ws = NULL;
	size_t nws = 0;
	int rc;

	memset(out, 0, sizeof *out);
	if ((rc = o->workers_list(o->arg, &ws, &nws)) != TE_OK)
		return rc;
	if (nws && !(out->dead = calloc(nws, sizeof *out->dead))) {
		free(ws);
		return TE_NOMEM;
	}
	for (size_t i = 0; i < nws; i++) {
		enum probe_result pr = PROBE_ALIVE;
		size_t before = out->claimed.n;

		if (ws[i].id == o->worker)
			continue;
		out->probed++;
		rc = o->probe_claim(o->arg, ws[i].id, NULL, 0, free_slots(r), &pr, &out->claimed,
		    &out->failed);
		if (rc != TE_OK)
			goto out;
		if (pr == PROBE_DEAD) {
			out->dead[out->ndead++] = ws[i].id;
			tlog(LOG_WARN, "worker %ld (pod %s pid %d) is dead; claimed %zu of its runs",
			    ws[i].id, ws[i].pod, (int)ws[i].pid, out->claimed.n - before);
		}
		for (size_t k = before; k < out->claimed.n; k++)
			resume(r, &out->claimed.v[k], RESUME_TAKEOVER, "sweep", now_us(), 0);
	}
	{
		size_t before = out->claimed.n;

		rc = o->claim_orphans(o->arg, free_slots(r), &out->claimed, &out->failed);
		if (rc != TE_OK)
			goto out;
		for (size_t k = before; k < out->claimed.n; k++)
			resume(r, &out->claimed.v[k], out->claimed.v[k].attempt > 1 ? RESUME_TAKEOVER
			    : RESUME_FRESH, "sweep", now_us(), 0);
	}
	rc = o->start_queued(o->arg, free_slots(r), &out->started);
	if (rc != TE_OK)
		goto out;
	for (size_t k = 0; k < out->started.n; k++)
		resume(r, &out->started.v[k], out->started.v[k].attempt > 1 ? RESUME_TAKEOVER
		    : RESUME_FRESH, "sweep", 0, 0);
	rc = o->reap(o->arg, &out->failed);
out:
	publish_failures(r, &out->failed);
	free(ws);
	return rc;
}

void
sweep_result_free(struct sweep_result *s)
{
	if (!s)
		return;
	free(s->dead);
	claim_set_free(&s->claimed);
	claim_set_free(&s->started);
	claim_set_free(&s->failed);
}
