/* recovery.c's decisions against fakes of its narrow interface (struct
 * recovery_ops): a dead, alive or racing owner, a PostgreSQL restart's grace, too
 * many attempts, a generator that cannot start, and the sweep's order and slots.
 * (The probe-and-claim transaction itself is SQL: the cluster suite tests it.) */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "recovery.h"
#include "store.h"

#define RUN "11111111-2222-3333-4444-555555555555"
#define RUN2 "22222222-2222-3333-4444-555555555555"
#define RUN3 "33333333-2222-3333-4444-555555555555"
#define ME 7

enum verdict { V_ALIVE, V_DEAD_WON, V_DEAD_LOST, V_DEAD_POISON, V_ERROR };

struct call {
	char run_id[UUID_LEN + 1];
	int attempt;
	enum resume_kind kind;
};

struct fake {
	enum verdict verdict;           /* what probing any owner finds */
	int spawn_rc;
	int slots;
	/* the sweep's world */
	struct worker_ref workers[4];
	size_t nworkers;
	long dead_worker;               /* probing it finds it dead with two runs */
	struct claimed orphans[2];
	size_t norphans;
	struct claimed queued[2];
	size_t nqueued;
	int reaped;                     /* the reaper fails RUN3 */
	/* what recovery did */
	int probes, last_max_claim;
	long probed[8];
	struct call spawns[8];
	int nspawns;
	struct call releases[4];
	int nreleases;
	char published[8][UUID_LEN + 1];
	int npublished;
};

static int
add(struct claim_set *s, const char *run_id, int attempt, long old_owner)
{
	return claim_set_add(s, run_id, attempt, old_owner);
}

static int
f_probe_claim(void *arg, long owner, const char *run_id, int attempt, int max_claim,
    enum probe_result *pr, struct claim_set *claimed, struct claim_set *failed)
{
	struct fake *f = arg;

	f->probed[f->probes++ % 8] = owner;
	f->last_max_claim = max_claim;
	if (run_id == NULL) {           /* the sweep: a whole worker */
		*pr = owner == f->dead_worker ? PROBE_DEAD : PROBE_ALIVE;
		if (*pr == PROBE_DEAD)
			for (int i = 0; i < 2 && i < max_claim; i++)
				add(claimed, i ? RUN2 : RUN, 2, owner);
		return TE_OK;
	}
	switch (f->verdict) {
	case V_ALIVE:
		*pr = PROBE_ALIVE;
		return TE_OK;
	case V_DEAD_WON:
		*pr = PROBE_DEAD;
		return add(claimed, run_id, attempt + 1, owner);
	case V_DEAD_LOST:
		*pr = PROBE_DEAD;       /* dead, but another worker's claim came first */
		return TE_OK;
	case V_DEAD_POISON:
		*pr = PROBE_DEAD;
		return add(failed, run_id, attempt, owner);
	case V_ERROR:
		return TE_DB;
	}
	return TE_OK;
}

static int
f_workers_list(void *arg, struct worker_ref **v, size_t *n)
{
	struct fake *f = arg;

	*v = malloc(sizeof **v * (f->nworkers ? f->nworkers : 1));
	memcpy(*v, f->workers, sizeof **v * f->nworkers);
	*n = f->nworkers;
	return TE_OK;
}

static int
f_claim_orphans(void *arg, int max_claim, struct claim_set *claimed, struct claim_set *failed)
{
	struct fake *f = arg;

	(void)failed;
	for (size_t i = 0; i < f->norphans && (int)i < max_claim; i++)
		add(claimed, f->orphans[i].run_id, f->orphans[i].attempt, 0);
	return TE_OK;
}

static int
f_start_queued(void *arg, int max_start, struct claim_set *started)
{
	struct fake *f = arg;

	for (size_t i = 0; i < f->nqueued && (int)i < max_start; i++)
		add(started, f->queued[i].run_id, f->queued[i].attempt, 0);
	return TE_OK;
}

static int
f_reap(void *arg, struct claim_set *failed)
{
	struct fake *f = arg;

	return f->reaped ? add(failed, RUN3, 1, 0) : TE_OK;
}

static int
f_release(void *arg, const char *run_id, int attempt)
{
	struct fake *f = arg;
	struct call *c = &f->releases[f->nreleases++ % 4];

	snprintf(c->run_id, sizeof c->run_id, "%s", run_id);
	c->attempt = attempt;
	return TE_OK;
}

static int
f_free_slots(void *arg)
{
	return ((struct fake *)arg)->slots;
}

static int
f_spawn(void *arg, const char *run_id, int attempt, enum resume_kind kind, int64_t claimed_us)
{
	struct fake *f = arg;
	struct call *c = &f->spawns[f->nspawns++ % 8];

	(void)claimed_us;
	snprintf(c->run_id, sizeof c->run_id, "%s", run_id);
	c->attempt = attempt;
	c->kind = kind;
	if (f->spawn_rc == TE_OK)
		f->slots--;
	return f->spawn_rc;
}

static void
f_publish_failed(void *arg, const char *run_id)
{
	struct fake *f = arg;

	snprintf(f->published[f->npublished++ % 8], UUID_LEN + 1, "%s", run_id);
}

static struct recovery *
make(struct fake *f)
{
	struct recovery_ops o = {
		.arg = f, .probe_claim = f_probe_claim, .workers_list = f_workers_list,
		.claim_orphans = f_claim_orphans, .start_queued = f_start_queued, .reap = f_reap,
		.release = f_release, .free_slots = f_free_slots, .spawn = f_spawn,
		.publish_failed = f_publish_failed, .worker = ME, .stall_ms = 250,
	};
	struct recovery *r = NULL;

	if (f->slots == 0)
		f->slots = 8;
	CU_ASSERT_EQUAL_FATAL(recovery_new(&r, &o), TE_OK);
	return r;
}

static void
test_own_run_is_alive_unprobed(void)
{
	struct fake f = { .verdict = V_DEAD_WON };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, ME, 1, 10000), RECOVER_ALIVE);
	CU_ASSERT_EQUAL(f.probes, 0);
	CU_ASSERT_EQUAL(f.nspawns, 0);
	recovery_free(r);
}

static void
test_alive_owner_is_left_and_paced(void)
{
	struct fake f = { .verdict = V_ALIVE };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 300), RECOVER_ALIVE);
	CU_ASSERT_EQUAL(f.probes, 1);
	CU_ASSERT_EQUAL(f.nspawns, 0);
	/* Still silent, asked again at once: not probed again before the backoff. */
	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 400), RECOVER_BUSY);
	CU_ASSERT_EQUAL(f.probes, 1);
	/* The run spoke since (a shorter silence): the backoff starts over. */
	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 260), RECOVER_ALIVE);
	CU_ASSERT_EQUAL(f.probes, 2);
	/* Another run is paced on its own. */
	CU_ASSERT_EQUAL(recovery_check_run(r, RUN2, 3, 1, 300), RECOVER_ALIVE);
	CU_ASSERT_EQUAL(f.probes, 3);
	recovery_free(r);
}

static void
test_postgres_grace_keeps_the_owner(void)
{
	/* After a PostgreSQL restart the store answers "alive" for workers it has not
	 * seen re-lock yet (the grace, in SQL): recovery must neither claim nor spawn,
	 * and must not probe again before its backoff. */
	struct fake f = { .verdict = V_ALIVE };
	struct recovery *r = make(&f);

	for (int i = 0; i < 5; i++)
		recovery_check_run(r, RUN, 3, 2, 1000 + i);
	CU_ASSERT_EQUAL(f.probes, 1);
	CU_ASSERT_EQUAL(f.nspawns, 0);
	CU_ASSERT_EQUAL(f.nreleases, 0);
	recovery_free(r);
}

static void
test_dead_owner_is_taken_over(void)
{
	struct fake f = { .verdict = V_DEAD_WON };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 4, 300), RECOVER_CLAIMED);
	CU_ASSERT_EQUAL(f.last_max_claim, 1);
	CU_ASSERT_EQUAL(f.nspawns, 1);
	CU_ASSERT_STRING_EQUAL(f.spawns[0].run_id, RUN);
	CU_ASSERT_EQUAL(f.spawns[0].attempt, 5);
	CU_ASSERT_EQUAL(f.spawns[0].kind, RESUME_TAKEOVER);
	CU_ASSERT_EQUAL(f.nreleases, 0);
	/* Claimed: the next watcher probes again at once (its new owner is us). */
	f.verdict = V_ALIVE;
	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 9, 5, 10), RECOVER_ALIVE);
	recovery_free(r);
}

static void
test_racing_claim_is_lost(void)
{
	struct fake f = { .verdict = V_DEAD_LOST };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 300), RECOVER_LOST);
	CU_ASSERT_EQUAL(f.nspawns, 0);
	CU_ASSERT_EQUAL(f.npublished, 0);
	recovery_free(r);
}

static void
test_too_many_attempts_fails_and_tells(void)
{
	struct fake f = { .verdict = V_DEAD_POISON };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 3, 300), RECOVER_FAILED);
	CU_ASSERT_EQUAL(f.nspawns, 0);
	CU_ASSERT_EQUAL(f.npublished, 1);
	CU_ASSERT_STRING_EQUAL(f.published[0], RUN);
	recovery_free(r);
}

static void
test_generator_that_cannot_start_hands_back(void)
{
	struct fake f = { .verdict = V_DEAD_WON, .spawn_rc = TE_NOMEM };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 300), RECOVER_CLAIMED);
	CU_ASSERT_EQUAL(f.nspawns, 1);
	CU_ASSERT_EQUAL(f.nreleases, 1);
	CU_ASSERT_STRING_EQUAL(f.releases[0].run_id, RUN);
	CU_ASSERT_EQUAL(f.releases[0].attempt, 2);      /* fenced by the claimed attempt */
	recovery_free(r);
}

static void
test_probe_error_backs_off(void)
{
	struct fake f = { .verdict = V_ERROR };
	struct recovery *r = make(&f);

	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 300), RECOVER_ERROR);
	CU_ASSERT_EQUAL(recovery_check_run(r, RUN, 3, 1, 400), RECOVER_BUSY);
	CU_ASSERT_EQUAL(f.probes, 1);
	recovery_free(r);
}

static void
test_sweep_order_kinds_and_slots(void)
{
	struct fake f = { .slots = 3, .dead_worker = 5, .reaped = 1 };
	struct sweep_result out;
	struct recovery *r;

	f.workers[0] = (struct worker_ref){ .id = ME, .pod = "p", .pid = 1 };
	f.workers[1] = (struct worker_ref){ .id = 4, .pod = "p", .pid = 2 };
	f.workers[2] = (struct worker_ref){ .id = 5, .pod = "q", .pid = 3 };
	f.nworkers = 3;
	snprintf(f.orphans[0].run_id, UUID_LEN + 1, "%s", RUN3);
	f.orphans[0].attempt = 1;       /* never started: fresh */
	f.norphans = 1;
	snprintf(f.queued[0].run_id, UUID_LEN + 1, "%s", "44444444-2222-3333-4444-555555555555");
	f.queued[0].attempt = 1;
	f.nqueued = 1;
	r = make(&f);
	CU_ASSERT_EQUAL(recovery_sweep(r, &out), TE_OK);
	/* Every other worker probed, never this one. */
	CU_ASSERT_EQUAL(out.probed, 2);
	CU_ASSERT_EQUAL(f.probed[0], 4);
	CU_ASSERT_EQUAL(f.probed[1], 5);
	CU_ASSERT_EQUAL(out.ndead, 1);
	CU_ASSERT_EQUAL(out.dead[0], 5);
	/* The dead worker's two runs taken over (3 slots), then the orphan as fresh
	 * with the last slot; the queued run finds none left. */
	CU_ASSERT_EQUAL(f.nspawns, 3);
	CU_ASSERT_STRING_EQUAL(f.spawns[0].run_id, RUN);
	CU_ASSERT_EQUAL(f.spawns[0].kind, RESUME_TAKEOVER);
	CU_ASSERT_STRING_EQUAL(f.spawns[1].run_id, RUN2);
	CU_ASSERT_STRING_EQUAL(f.spawns[2].run_id, RUN3);
	CU_ASSERT_EQUAL(f.spawns[2].kind, RESUME_FRESH);
	CU_ASSERT_EQUAL(out.started.n, 0);
	/* The reaper's failure is told to watchers. */
	CU_ASSERT_EQUAL(f.npublished, 1);
	CU_ASSERT_STRING_EQUAL(f.published[0], RUN3);
	sweep_result_free(&out);
	recovery_free(r);
}

static void
test_sweep_with_no_slots_claims_nothing(void)
{
	struct fake f = { .slots = -2, .dead_worker = 5 };
	struct sweep_result out;
	struct recovery *r;

	f.workers[0] = (struct worker_ref){ .id = 5, .pod = "q", .pid = 3 };
	f.nworkers = 1;
	snprintf(f.queued[0].run_id, UUID_LEN + 1, "%s", RUN);
	f.queued[0].attempt = 3;
	f.nqueued = 1;
	r = make(&f);
	CU_ASSERT_EQUAL(recovery_sweep(r, &out), TE_OK);
	CU_ASSERT_EQUAL(f.last_max_claim, 0);
	CU_ASSERT_EQUAL(out.ndead, 1);  /* found dead, its row goes; its runs wait */
	CU_ASSERT_EQUAL(out.claimed.n, 0);
	CU_ASSERT_EQUAL(f.nspawns, 0);
	sweep_result_free(&out);
	recovery_free(r);
}

static const struct unit_case cases[] = {
	{ "own run: alive, not probed", test_own_run_is_alive_unprobed },
	{ "alive owner: left alone, probes paced", test_alive_owner_is_left_and_paced },
	{ "PostgreSQL restart grace", test_postgres_grace_keeps_the_owner },
	{ "dead owner: taken over", test_dead_owner_is_taken_over },
	{ "racing claim: lost", test_racing_claim_is_lost },
	{ "too many attempts: failed and told", test_too_many_attempts_fails_and_tells },
	{ "generator cannot start: handed back", test_generator_that_cannot_start_hands_back },
	{ "probe error: backs off", test_probe_error_backs_off },
	{ "sweep: order, kinds, slots", test_sweep_order_kinds_and_slots },
	{ "sweep: no slots, no claims", test_sweep_with_no_slots_claims_nothing },
};

UNIT_MAIN("recovery", cases)
