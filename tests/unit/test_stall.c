/* stall.c's rules against fakes of its narrow interfaces (struct stall_ops, struct
 * stall_watch): what a watcher of a quiet run does for each row, each answer of
 * the stream and each verdict of the owner's probe. (The watcher applying the
 * verdict, with its hub and its connection, is tested end to end.) */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "recovery.h"
#include "stall.h"
#include "store.h"

#define RUN "11111111-2222-3333-4444-555555555555"

struct fake {
	/* the world */
	int state_rc;
	struct run_state rs;
	int last_rc;
	uint64_t last_sseq;
	enum recover_rc probe_rc;
	/* the watcher */
	uint64_t seen;
	int attempt;
	int64_t last_event_ms;
	/* what the rules asked */
	int states, lasts, probes;
	long probed_owner;
	int probed_attempt;
	int64_t probed_silence;
	char probed_run[UUID_LEN + 1];
};

static int
f_run_state(void *arg, const char *run, struct run_state *rs)
{
	struct fake *f = arg;

	f->states++;
	CU_ASSERT_STRING_EQUAL(run, RUN);
	if (f->state_rc == TE_OK)
		*rs = f->rs;
	return f->state_rc;
}

static int
f_last_sseq(void *arg, const char *run, uint64_t *sseq)
{
	struct fake *f = arg;

	f->lasts++;
	CU_ASSERT_STRING_EQUAL(run, RUN);
	if (f->last_rc == TE_OK)
		*sseq = f->last_sseq;
	return f->last_rc;
}

static enum recover_rc
f_probe(void *arg, const char *run, long owner, int attempt, int64_t silence_ms)
{
	struct fake *f = arg;

	f->probes++;
	snprintf(f->probed_run, sizeof f->probed_run, "%s", run);
	f->probed_owner = owner;
	f->probed_attempt = attempt;
	f->probed_silence = silence_ms;
	return f->probe_rc;
}

static uint64_t
w_seen(void *arg)
{
	return ((struct fake *)arg)->seen;
}

static int
w_attempt(void *arg)
{
	return ((struct fake *)arg)->attempt;
}

static int64_t
w_last_event(void *arg)
{
	return ((struct fake *)arg)->last_event_ms;
}

static void
row(struct fake *f, const char *status, int attempt, long owner)
{
	memset(f, 0, sizeof *f);
	snprintf(f->rs.id, sizeof f->rs.id, "%s", RUN);
	snprintf(f->rs.status, sizeof f->rs.status, "%s", status);
	f->rs.attempt = attempt;
	f->rs.owner = owner;
	f->rs.terminal = !strcmp(status, "completed") || !strcmp(status, "failed") ||
	    !strcmp(status, "cancelled");
	f->attempt = attempt;
	f->seen = 10;
	f->last_event_ms = 1000;
}

/* Run the rules at now = 1500; returns stall_check's result. */
static int
run_check(struct fake *f, struct stall_verdict *v)
{
	const struct stall_ops o = { f, f_run_state, f_last_sseq, f_probe };
	const struct stall_watch w = { f, w_seen, w_attempt, w_last_event };
	struct run_state rs;
	int rc;

	v->next = (enum stall_next)-1;
	v->repair = -1;
	rc = stall_check(&o, &w, RUN, 1500, &rs, v);
	if (rc == TE_OK) {
		CU_ASSERT_STRING_EQUAL(rs.status, f->rs.status);
		CU_ASSERT_EQUAL(rs.attempt, f->rs.attempt);
	}
	return rc;
}

static void
test_unreadable_row_backs_off(void)
{
	struct fake f;
	struct stall_verdict v;

	row(&f, "running", 1, 3);
	f.state_rc = TE_DB;
	CU_ASSERT_EQUAL(run_check(&f, &v), TE_DB);
	CU_ASSERT_EQUAL(f.lasts, 0);
	CU_ASSERT_EQUAL(f.probes, 0);
	/* nothing written on failure */
	CU_ASSERT_EQUAL((int)v.next, -1);
	CU_ASSERT_EQUAL(v.repair, -1);
}

/* Each row: the run's row, what the stream and the probe answer, what the watcher
 * holds; the verdict and what the rules asked for. */
static const struct verdict_row {
	const char *why;
	const char *status;
	int attempt;                    /* the row's */
	long owner;
	int watching;                   /* the attempt the watcher follows */
	int last_rc;                    /* the stream's last event */
	uint64_t last_sseq;             /* the watcher has seen 10 */
	enum recover_rc probe_rc;
	enum stall_next next;
	int repair, lasts, probes;
} rows[] = {
	{ "completed, the watcher saw the last event: finish",
	  "completed", 2, 0, 2, TE_OK, 10, 0, STALL_FINISH, 0, 1, 0 },
	{ "failed, the same", "failed", 2, 0, 2, TE_OK, 10, 0, STALL_FINISH, 0, 1, 0 },
	{ "cancelled, the same", "cancelled", 1, 0, 1, TE_OK, 10, 0, STALL_FINISH, 0, 1, 0 },
	{ "terminal, nothing in the stream (purged, never published): finish from PostgreSQL",
	  "completed", 1, 0, 1, TE_NOTFOUND, 0, 0, STALL_FINISH, 0, 1, 0 },
	{ "terminal, the stream holds more (done in flight, lost copies): read it first",
	  "completed", 1, 0, 1, TE_OK, 11, 0, STALL_SOON, 1, 1, 0 },
	{ "terminal, NATS cannot say whether more is coming: never finish on a guess",
	  "failed", 1, 0, 1, TE_BUS, 0, 0, STALL_BACKOFF, 0, 1, 0 },
	{ "running, owner alive but silent (a live copy lost looks the same): repair",
	  "running", 1, 5, 1, 0, 0, RECOVER_ALIVE, STALL_BACKOFF_LONGER, 1, 0, 1 },
	{ "running, another probe of the run in flight here",
	  "running", 1, 5, 1, 0, 0, RECOVER_BUSY, STALL_BACKOFF_LONGER, 0, 0, 1 },
	{ "running, the probe failed (PostgreSQL)",
	  "running", 1, 5, 1, 0, 0, RECOVER_ERROR, STALL_BACKOFF_LONGER, 0, 0, 1 },
	{ "running, owner dead and claimed here: the reset is on its way",
	  "running", 1, 5, 1, 0, 0, RECOVER_CLAIMED, STALL_SOON, 0, 0, 1 },
	{ "running, owner dead and claimed by another worker first",
	  "running", 1, 5, 1, 0, 0, RECOVER_LOST, STALL_SOON, 0, 0, 1 },
	{ "running, too many attempts: failed, its done on its way",
	  "running", 1, 5, 1, 0, 0, RECOVER_FAILED, STALL_SOON, 0, 0, 1 },
	{ "running at an attempt newer than the watcher's: its reset is on its way",
	  "running", 2, 5, 1, 0, 0, RECOVER_ALIVE, STALL_BACKOFF, 0, 0, 0 },
	{ "running at an attempt older than the watcher's: probed",
	  "running", 1, 5, 2, 0, 0, RECOVER_ALIVE, STALL_BACKOFF_LONGER, 1, 0, 1 },
	{ "claimed, no owner yet (its reset not published): wait",
	  "running", 1, 0, 1, 0, 0, RECOVER_ALIVE, STALL_BACKOFF, 0, 0, 0 },
	{ "queued: nobody to probe yet", "queued", 1, 0, 1, 0, 0, RECOVER_ALIVE, STALL_BACKOFF, 0, 0, 0 },
};

static void
test_verdicts(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		const struct verdict_row *t = &rows[i];
		struct fake f;
		struct stall_verdict v;
		int ok;

		row(&f, t->status, t->attempt, t->owner);
		f.attempt = t->watching;
		f.last_rc = t->last_rc;
		f.last_sseq = t->last_sseq;
		f.probe_rc = t->probe_rc;
		ok = run_check(&f, &v) == TE_OK && v.next == t->next && v.repair == t->repair &&
		    f.lasts == t->lasts && f.probes == t->probes && f.states == 1;
		if (!ok)
			fprintf(stderr, "row %zu (%s): next %d repair %d lasts %d probes %d\n", i, t->why,
			    (int)v.next, v.repair, f.lasts, f.probes);
		CU_ASSERT(ok);
	}
}

static void
test_running_owner_is_probed_with_the_silence(void)
{
	struct fake f;
	struct stall_verdict v;

	row(&f, "running", 2, 5);
	f.probe_rc = RECOVER_ALIVE;
	CU_ASSERT_EQUAL(run_check(&f, &v), TE_OK);
	CU_ASSERT_EQUAL(f.probes, 1);
	CU_ASSERT_STRING_EQUAL(f.probed_run, RUN);
	CU_ASSERT_EQUAL(f.probed_owner, 5);
	CU_ASSERT_EQUAL(f.probed_attempt, 2);
	CU_ASSERT_EQUAL(f.probed_silence, 500);        /* now 1500, last event at 1000 */
}

static const struct unit_case cases[] = {
	{ "row unreadable: backs off, nothing written", test_unreadable_row_backs_off },
	{ "verdicts by row, stream and probe", test_verdicts },
	{ "the owner probed with the silence", test_running_owner_is_probed_with_the_silence },
};

UNIT_MAIN("stall", cases)
