/* run.h - the generator: one thread per active run of this worker. It publishes
 * start/reset, each delta and done with fencing, and writes the terminal state
 * to PostgreSQL (fenced by attempt) before done. */
#ifndef TETHER_RUN_H
#define TETHER_RUN_H

#include "err.h"

#include <stdint.h>

struct app;
struct runner;

enum run_kind {
	RUN_FRESH = 0,          /* attempt 1: publish start */
	RUN_TAKEOVER,           /* a claimed orphan: publish reset, regenerate */
};

TE_MUST_CHECK int runner_new(struct runner **out, struct app *app, int max_runs);
void runner_free(struct runner *r);
/* Take a slot before creating a run (TE_CAPACITY when full). */
int runner_reserve(struct runner *r);
/* Take a slot even beyond the limit (runs already claimed in PostgreSQL). */
void runner_reserve_force(struct runner *r);
void runner_unreserve(struct runner *r);
int runner_free_slots(struct runner *r);
/* Slots taken: generators running plus those reserved for a run about to start
 * (the generators gauge, and what a drain waits for). */
int runner_reserved(struct runner *r);
/* Start generating in a new thread; uses a reserved slot. claimed_us is when the
 * claim committed (takeover latency), 0 for fresh runs. */
TE_MUST_CHECK int runner_spawn(struct runner *r, const char *run_id, int attempt, enum run_kind kind,
    int64_t claimed_us);
/* Stop a local generator at once (a cancel reached this worker). */
void runner_cancel(struct runner *r, const char *run_id, int attempt);
/* Abort every generator (drain deadline), without terminal writes. */
void runner_abort_all(struct runner *r);
/* Wait until no generator runs or the deadline (monotonic ms); returns how many remain. */
int runner_wait(struct runner *r, int64_t deadline_ms);

/* Publish done for a run this worker does not generate (cancel, sweep failures),
 * after the terminal state is in PostgreSQL. Nothing is published when the stream
 * already ended. why names the writer in the Nats-Msg-Id ("cancel", "final"). */
/* run_publish_terminal for callers that have nothing else to do when it fails (the
 * row is terminal already; watchers complete from PostgreSQL): logs why. */
void run_announce_terminal(struct app *a, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why);
TE_MUST_CHECK int run_publish_terminal(struct app *a, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why);

#endif
