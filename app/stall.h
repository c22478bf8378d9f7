/* stall.h - a watched run gone quiet: read its row and decide what the watcher
 * does next (complete from PostgreSQL, read the stream's rest, look again later,
 * or have recovery.c probe the owner). The rules see only the narrow interfaces
 * below, so tests/unit/test_stall.c runs them against fakes; app/watcher.c
 * applies the verdict, app/watcher_ops.c wires the real store, bus and recovery. */
#ifndef TETHER_STALL_H
#define TETHER_STALL_H

#include "err.h"
#include "recovery.h"
#include "store.h"

#include <stdint.h>

/* What the check may ask of this worker, and nothing else. */
struct stall_ops {
	void *arg;
	/* the run's row (store_run_state, any tenant) */
	int (*run_state)(void *arg, const char *run, struct run_state *rs);
	/* the stream sequence of the run's last stored event; TE_NOTFOUND: none */
	int (*last_sseq)(void *arg, const char *run, uint64_t *sseq);
	/* the owner looks dead after silence_ms: probe it, claim when dead
	 * (recovery_check_run) */
	enum recover_rc (*probe)(void *arg, const char *run, long owner, int attempt,
	    int64_t silence_ms);
};

/* What the check reads of the watcher (under its lock), when the rules need it. */
struct stall_watch {
	void *arg;
	uint64_t (*seen_sseq)(void *arg);      /* the last stream sequence it handled */
	int (*attempt)(void *arg);             /* the attempt it follows */
	int64_t (*last_event_ms)(void *arg);   /* when its last event came (now_ms) */
};

enum stall_next {
	STALL_BACKOFF = 0,      /* look again after the backoff (queued, a claimed run
	                         * whose reset is not out yet, NATS trouble) */
	STALL_BACKOFF_LONGER,   /* the owner is alive (or being probed): look again after
	                         * the backoff, then double it */
	STALL_SOON,             /* more is on its way (the stream holds more, or someone
	                         * owns the run now): look again in a moment */
	STALL_FINISH,           /* terminal, and the stream holds nothing more: complete
	                         * the watcher from the row */
};

struct stall_verdict {
	enum stall_next next;
	int repair;             /* first read what the stream has (hub_repair) */
};

/* Check run at now (now_ms). TE_OK: *rs holds the row (the caller frees it with
 * store_run_state_free) and *v what to do. Otherwise the row could not be read:
 * *rs is untouched and the watcher looks again after its backoff. */
TE_MUST_CHECK int stall_check(const struct stall_ops *o, const struct stall_watch *w,
    const char *run, int64_t now, struct run_state *rs, struct stall_verdict *v);

#endif
