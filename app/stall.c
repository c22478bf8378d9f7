/* stall.c - see stall.h. */
#include "stall.h"

#include <string.h>

/* Terminal: finished once the stream holds nothing past what the watcher saw. */
static void
check_terminal(const struct stall_ops *o, const struct stall_watch *w, const char *run,
    struct stall_verdict *v)
{
	uint64_t last = 0;
	int rc = o->last_sseq(o->arg, run, &last);

	if (rc == TE_OK && last > w->seen_sseq(w->arg)) {
		/* The stream has more for us (done in flight, or copies of the live tail
		 * lost to a reconnect): fetch it, keep reading. */
		v->repair = 1;
		v->next = STALL_SOON;
	} else if (rc == TE_OK || rc == TE_NOTFOUND) {
		v->next = STALL_FINISH;
	}
}

/* Running at the watcher's attempt (or an older one): probe the owner. */
static void
check_running(const struct stall_ops *o, const struct stall_watch *w, const char *run,
    const struct run_state *rs, int64_t now, struct stall_verdict *v)
{
	enum recover_rc rr = o->probe(o->arg, run, rs->owner, rs->attempt,
	    now - w->last_event_ms(w->arg));

	if (rr == RECOVER_CLAIMED || rr == RECOVER_LOST || rr == RECOVER_FAILED) {
		/* Someone owns it now: the reset (or done) is on its way. */
		v->next = STALL_SOON;
	} else {
		/* Alive (or another watcher here is probing): look again later, less often
		 * while the run stays silent; recovery.c also paces the probes of this run
		 * across this worker's watchers. A live copy lost to a reconnect would
		 * also look like silence: read what the stream has. */
		v->repair = rr == RECOVER_ALIVE;
		v->next = STALL_BACKOFF_LONGER;
	}
}

int
stall_check(const struct stall_ops *o, const struct stall_watch *w, const char *run,
    int64_t now, struct run_state *rs, struct stall_verdict *v)
{
	struct stall_verdict out = { STALL_BACKOFF, 0 };
	int rc = o->run_state(o->arg, run, rs);

	if (rc != TE_OK)
		return rc;
	if (rs->terminal)
		check_terminal(o, w, run, &out);
	else if (!strcmp(rs->status, "running") && rs->attempt <= w->attempt(w->arg) && rs->owner)
		check_running(o, w, run, rs, now, &out);
	/* else queued, or claimed and its reset not yet published: STALL_BACKOFF */
	*v = out;
	return TE_OK;
}
