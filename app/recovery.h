/* recovery.h - finding dead owners and taking their runs over. It sees only the
 * narrow interface below (struct recovery_ops): "probe and claim" (the store),
 * "start a generator" (the runner) and "publish the end of a run the sweep
 * failed" (the generator's terminal publish). app/recovery_ops.c wires them to
 * the real modules; tests/unit/test_recovery.c to fakes. */
#ifndef TETHER_RECOVERY_H
#define TETHER_RECOVERY_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct recovery;

enum resume_kind {
	RESUME_FRESH = 0,       /* attempt 1 of a queued run: publish start */
	RESUME_TAKEOVER,        /* a claimed orphan: publish reset, regenerate */
};

/* What recovery may do, and nothing else. Each returns TE_OK or an error. */
struct recovery_ops {
	void *arg;
	/* probe worker owner (its liveness lock) and, when dead, claim up to max_claim
	 * of its running runs (only run_id at attempt when run_id is given) */
	int (*probe_claim)(void *arg, long owner, const char *run_id, int attempt, int max_claim,
	    enum probe_result *pr, struct claim_set *claimed, struct claim_set *failed);
	int (*workers_list)(void *arg, struct worker_ref **v, size_t *n);
	int (*claim_orphans)(void *arg, int max_claim, struct claim_set *claimed,
	    struct claim_set *failed);
	int (*start_queued)(void *arg, int max_start, struct claim_set *started);
	int (*reap)(void *arg, struct claim_set *failed);
	/* hand a claimed run back (owner NULL), fenced by attempt */
	int (*release)(void *arg, const char *run_id, int attempt);
	/* start a generator: slots free now, reserve one past the limit, spawn */
	int (*free_slots)(void *arg);
	int (*spawn)(void *arg, const char *run_id, int attempt, enum resume_kind kind,
	    int64_t claimed_us);
	/* the sweep failed this run in PostgreSQL: tell its watchers (done) */
	void (*publish_failed)(void *arg, const char *run_id);
	long worker;            /* this worker: its own runs are alive by definition */
	int stall_ms;           /* the first probe backoff */
};

enum recover_rc {
	RECOVER_ALIVE = 0,      /* the owner holds its lock: nothing to do */
	RECOVER_CLAIMED,        /* this worker owns the run now and is resuming it */
	RECOVER_LOST,           /* the owner was dead but someone else claimed it first */
	RECOVER_BUSY,           /* another probe of this run is in flight in this worker */
	RECOVER_FAILED,         /* the run ended failed (too many attempts) */
	RECOVER_ERROR,          /* PostgreSQL trouble */
};

/* ops is copied. */
TE_MUST_CHECK int recovery_new(struct recovery **out, const struct recovery_ops *ops);
/* The real ones (app/recovery_ops.c): a's store, runner and publishes. */
struct app;
void recovery_ops_for_app(struct recovery_ops *o, struct app *a);
void recovery_free(struct recovery *r);

/* A watcher saw run (owner, attempt) silent for silence_ms: probe the owner and,
 * when it is dead, claim the run (compare-and-swap) and resume it here. */
enum recover_rc recovery_check_run(struct recovery *r, const char *run_id, long owner,
    int attempt, int64_t silence_ms);

struct sweep_result {
	int probed;
	long *dead;
	size_t ndead;
	struct claim_set claimed;
	struct claim_set started;
	struct claim_set failed;
};

/* The cron sweep: probe every registered worker, claim and resume the runs of dead
 * ones and orphans, start queued runs, fail runs past max_attempts or max_run_s. */
TE_MUST_CHECK int recovery_sweep(struct recovery *r, struct sweep_result *out);
void sweep_result_free(struct sweep_result *s);

#endif
