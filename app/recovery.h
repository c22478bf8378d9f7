/* recovery.h - finding dead owners and taking their runs over. Sees only the store
 * and bus interfaces (and the runner to resume what it claims). */
#ifndef TETHER_RECOVERY_H
#define TETHER_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct app;
struct recovery;

enum recover_rc {
	RECOVER_ALIVE = 0,      /* the owner holds its lock: nothing to do */
	RECOVER_CLAIMED,        /* this worker owns the run now and is resuming it */
	RECOVER_LOST,           /* the owner was dead but someone else claimed it first */
	RECOVER_BUSY,           /* another probe of this run is in flight in this worker */
	RECOVER_FAILED,         /* the run ended failed (too many attempts) */
	RECOVER_ERROR,          /* PostgreSQL trouble */
};

int recovery_new(struct recovery **out, struct app *app);
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
int recovery_sweep(struct recovery *r, struct sweep_result *out);
void sweep_result_free(struct sweep_result *s);

#endif
