/* The exactly-once rules (API.md "Exactly-once invariant", DESIGN.md "The stream")
 * as a pure state machine: feed stored events, check every action exactly. */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "watch.h"

#define S W_SKIP
#define SEND W_SEND
#define START W_SEND_START
#define RESET W_SEND_RESET
#define PFX W_SEND_PREFIXED

/* One stored event and what the watcher must do with it. */
struct step {
	int attempt;
	int64_t seq;
	enum bus_ev type;
	int64_t end;            /* deltas: output bytes so far */
	enum watch_action want;
	int want_prefix_reset;  /* for W_SEND_PREFIXED */
};

/* Feed steps with stream sequences numbered from first_sseq; check each action. */
static void
run(struct watch *w, const struct step *steps, size_t n, uint64_t first_sseq)
{
	for (size_t i = 0; i < n; i++) {
		struct bus_event ev;
		int prefix = -1;
		enum watch_action act;

		memset(&ev, 0, sizeof ev);
		ev.sseq = first_sseq + i;
		ev.attempt = steps[i].attempt;
		ev.seq = steps[i].seq;
		ev.type = steps[i].type;
		ev.end = steps[i].end;
		act = watch_feed(w, &ev, &prefix);
		CU_ASSERT_EQUAL(act, steps[i].want);
		CU_ASSERT_EQUAL(prefix, steps[i].want == PFX ? steps[i].want_prefix_reset : 0);
		if (act != steps[i].want)
			fprintf(stderr, "\nstep %zu (%d:%lld type %d): action %d, want %d\n", i,
			    steps[i].attempt, (long long)steps[i].seq, steps[i].type, act,
			    steps[i].want);
		CU_ASSERT_EQUAL(w->last_sseq, first_sseq + i);
	}
}

#define RUN(w, steps, first) run((w), (steps), sizeof(steps) / sizeof((steps)[0]), (first))

static void
test_fresh_attempt_1(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 4, SEND, 0 },
		{ 1, 2, EV_DELTA, 9, SEND, 0 },
		{ 1, 3, EV_DELTA, 15, SEND, 0 },
		{ 1, 4, EV_DONE, 0, SEND, 0 },
		/* after done: nothing, whatever comes */
		{ 1, 5, EV_DELTA, 20, S, 0 },
		{ 2, 0, EV_RESET, 0, S, 0 },
		{ 2, 1, EV_DELTA, 3, S, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	CU_ASSERT_EQUAL(w.cur, 1);
	CU_ASSERT_EQUAL(w.client_attempt, 0);
	CU_ASSERT_EQUAL(w.client_seq, -1);
	CU_ASSERT_EQUAL(w.sent_end, 0);
	CU_ASSERT_EQUAL(w.done, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.done, 1);
	CU_ASSERT_EQUAL(w.cur, 1);
	CU_ASSERT_EQUAL(w.client_attempt, 1);
	CU_ASSERT_EQUAL(w.client_seq, 4);
	CU_ASSERT_EQUAL(w.sent_end, 15);
	CU_ASSERT_EQUAL(w.last_sseq, 8);
}

static void
test_duplicates_skipped(void)
{
	/* A re-delivered event (same attempt and seq) is never sent twice. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 4, SEND, 0 },
		{ 1, 1, EV_DELTA, 4, S, 0 },
		{ 1, 2, EV_DELTA, 8, SEND, 0 },
		{ 1, 1, EV_DELTA, 4, S, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 10);
	CU_ASSERT_EQUAL(w.client_seq, 2);
	CU_ASSERT_EQUAL(w.sent_end, 8);
}

static void
test_streaming_then_takeover(void)
{
	/* Attached during attempt 1; the owner dies; a taker publishes attempt 2. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
		{ 1, 2, EV_DELTA, 10, SEND, 0 },
		{ 2, 0, EV_RESET, 0, SEND, 0 },         /* relayed as stored: a reset */
		{ 1, 3, EV_DELTA, 15, S, 0 },           /* the zombie's late publish */
		{ 2, 1, EV_DELTA, 6, SEND, 0 },
		{ 1, 4, EV_DONE, 0, S, 0 },             /* the zombie again */
		{ 2, 2, EV_DELTA, 12, SEND, 0 },
		{ 2, 3, EV_DONE, 0, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.cur, 2);
	CU_ASSERT_EQUAL(w.client_attempt, 2);
	CU_ASSERT_EQUAL(w.client_seq, 3);
	CU_ASSERT_EQUAL(w.sent_end, 12);
	CU_ASSERT_EQUAL(w.done, 1);
}

static void
test_takeover_twice(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
		{ 2, 0, EV_RESET, 0, SEND, 0 },
		{ 2, 1, EV_DELTA, 3, SEND, 0 },
		{ 3, 0, EV_RESET, 0, SEND, 0 },
		{ 2, 2, EV_DELTA, 7, S, 0 },
		{ 1, 2, EV_DELTA, 9, S, 0 },
		{ 3, 1, EV_DELTA, 2, SEND, 0 },
		{ 3, 2, EV_DONE, 0, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.cur, 3);
	CU_ASSERT_EQUAL(w.sent_end, 2);
}

static void
test_attach_after_takeover(void)
{
	/* PostgreSQL says attempt 2 at attach: attempt 1 is never shown, and attempt 2's
	 * reset reaches this client as a start (it held nothing to reset). */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_DELTA, 10, S, 0 },
		{ 2, 0, EV_RESET, 0, START, 0 },
		{ 1, 3, EV_DELTA, 15, S, 0 },
		{ 2, 1, EV_DELTA, 6, SEND, 0 },
		{ 2, 2, EV_DONE, 0, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 2, 0, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.client_attempt, 2);
	CU_ASSERT_EQUAL(w.sent_end, 6);
	CU_ASSERT_EQUAL(w.done, 1);
}

static void
test_unclaimed_run_reset_at_attempt_1(void)
{
	/* A queued run started by the sweep opens attempt 1 with a reset: a fresh
	 * watcher gets a start. */
	static const struct step steps[] = {
		{ 1, 0, EV_RESET, 0, START, 0 },
		{ 1, 1, EV_DELTA, 2, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
}

static void
test_resume_same_attempt(void)
{
	/* Last-Event-ID 1:2: everything up to and including 1:2 is skipped, and the
	 * skipped deltas tell how much output the client holds. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_DELTA, 11, S, 0 },
		{ 1, 3, EV_DELTA, 17, SEND, 0 },
		{ 1, 4, EV_DONE, 0, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 1, 2);
	CU_ASSERT_EQUAL(w.client_attempt, 1);
	CU_ASSERT_EQUAL(w.client_seq, 2);
	run(&w, steps, 3, 1);
	CU_ASSERT_EQUAL(w.sent_end, 11);
	CU_ASSERT_EQUAL(w.client_seq, 2);
	run(&w, steps + 3, 2, 4);
	CU_ASSERT_EQUAL(w.sent_end, 17);
	CU_ASSERT_EQUAL(w.done, 1);
}

static void
test_resume_after_start_only(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 1, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.sent_end, 5);
}

static void
test_resume_then_takeover(void)
{
	/* Resumed at 1:1 during attempt 1; attempt 2 takes over while we stream. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_DELTA, 9, SEND, 0 },
		{ 2, 0, EV_RESET, 0, SEND, 0 },
		{ 2, 1, EV_DELTA, 4, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 1, 1);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.sent_end, 4);
}

static void
test_resume_current_attempt_after_takeover(void)
{
	/* The run is at attempt 2 and the client holds 2:1: attempt 1 and 2:0..2:1 skip. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 2, 0, EV_RESET, 0, S, 0 },
		{ 1, 2, EV_DELTA, 9, S, 0 },
		{ 2, 1, EV_DELTA, 3, S, 0 },
		{ 2, 2, EV_DELTA, 8, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 2, 2, 1);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.sent_end, 8);
}

static void
test_resume_older_attempt(void)
{
	/* The client holds 1:2 but the run is at attempt 2: it gets attempt 2's seq 0
	 * as a reset (relayed as stored) and never more of attempt 1. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_DELTA, 9, S, 0 },
		{ 1, 3, EV_DELTA, 14, S, 0 },
		{ 2, 0, EV_RESET, 0, SEND, 0 },
		{ 2, 1, EV_DELTA, 2, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 2, 1, 2);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.client_attempt, 2);
	CU_ASSERT_EQUAL(w.sent_end, 2);
}

static void
test_resume_older_attempt_start_opener(void)
{
	/* Seq 0 stored as a start but the client holds older text: synthesise a reset. */
	static const struct step steps[] = {
		{ 2, 0, EV_START, 0, RESET, 0 },
		{ 2, 1, EV_DELTA, 2, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 2, 1, 7);
	RUN(&w, steps, 1);
}

static void
test_opener_missing(void)
{
	/* No seq 0 on the stream for the attempt (its opener expired or was never
	 * published): the first event goes out prefixed by a synthetic opener. */
	static const struct step fresh[] = {
		{ 1, 3, EV_DELTA, 12, PFX, 0 },         /* prefixed by a start */
		{ 1, 4, EV_DELTA, 20, SEND, 0 },
		{ 1, 5, EV_DONE, 0, SEND, 0 },
	};
	static const struct step older[] = {
		{ 2, 2, EV_DELTA, 7, PFX, 1 },          /* client holds attempt 1: a reset */
		{ 2, 3, EV_DELTA, 9, SEND, 0 },
	};
	static const struct step done_only[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 3, SEND, 0 },
		{ 2, 1, EV_DONE, 0, PFX, 1 },           /* a cancel's done for attempt 2 */
		{ 2, 2, EV_DELTA, 5, S, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, fresh, 1);
	CU_ASSERT_EQUAL(w.client_seq, 5);
	CU_ASSERT_EQUAL(w.sent_end, 20);
	CU_ASSERT_EQUAL(w.done, 1);

	watch_init(&w, 2, 1, 9);
	RUN(&w, older, 1);
	CU_ASSERT_EQUAL(w.sent_end, 9);

	watch_init(&w, 1, 0, 0);
	RUN(&w, done_only, 1);
	CU_ASSERT_EQUAL(w.cur, 2);
	CU_ASSERT_EQUAL(w.done, 1);
}

static void
test_other_types_skipped(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_UNKNOWN, 0, S, 0 },
		{ 1, 1, EV_START, 0, S, 0 },            /* an opener at seq > 0 */
		{ 1, 1, EV_RESET, 0, S, 0 },
		{ 1, 1, EV_DELTA, 3, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
}

static void
test_last_sseq_is_max(void)
{
	struct watch w;
	struct bus_event ev;
	int prefix;

	watch_init(&w, 1, 0, 0);
	memset(&ev, 0, sizeof ev);
	ev.attempt = 1;
	ev.type = EV_START;
	ev.sseq = 40;
	CU_ASSERT_EQUAL(watch_feed(&w, &ev, &prefix), SEND);
	ev.sseq = 12;
	ev.seq = 1;
	ev.type = EV_DELTA;
	ev.end = 1;
	CU_ASSERT_EQUAL(watch_feed(&w, &ev, &prefix), SEND);
	CU_ASSERT_EQUAL(w.last_sseq, 40);
}

/* ---- completing from PostgreSQL ---- */

static void
synth_is(const struct watch *w, int attempt, int completed, int64_t output_len, int opener,
    int64_t delta_seq, int64_t delta_from, int64_t done_seq)
{
	struct watch_synth s;

	memset(&s, 0x5a, sizeof s);
	watch_synthesise(w, attempt, completed, output_len, 0, &s);
	CU_ASSERT_EQUAL(s.attempt, attempt);
	CU_ASSERT_EQUAL(s.opener, opener);
	CU_ASSERT_EQUAL(s.delta_from, delta_from);
	if (delta_from >= 0)
		CU_ASSERT_EQUAL(s.delta_seq, delta_seq);
	CU_ASSERT_EQUAL(s.done_seq, done_seq);
	if (s.opener != opener || s.delta_from != delta_from || s.done_seq != done_seq)
		fprintf(stderr, "\nsynth: opener %d delta %lld from %lld done %lld\n", s.opener,
		    (long long)s.delta_seq, (long long)s.delta_from, (long long)s.done_seq);
}

/* ---- tool calls ---- */

static void
synth_calls_is(const struct watch *w, int completed, int64_t output_len, int ncalls, int opener,
    int64_t delta_from, int calls_from, int64_t calls_seq, int64_t done_seq)
{
	struct watch_synth s;

	memset(&s, 0x5a, sizeof s);
	watch_synthesise(w, 1, completed, output_len, ncalls, &s);
	CU_ASSERT_EQUAL(s.opener, opener);
	CU_ASSERT_EQUAL(s.delta_from, delta_from);
	CU_ASSERT_EQUAL(s.calls_from, calls_from);
	CU_ASSERT_EQUAL(s.calls_seq, calls_seq);
	CU_ASSERT_EQUAL(s.done_seq, done_seq);
}

static void
test_tool_calls_relayed_and_counted(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
		{ 1, 2, EV_TOOL_CALL, 5, SEND, 0 },
		{ 1, 2, EV_TOOL_CALL, 5, S, 0 },        /* a redelivery: counted once */
		{ 1, 3, EV_TOOL_CALL, 5, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.sent_calls, 2);
	CU_ASSERT_EQUAL(w.sent_end, 5);
	/* Everything held: only done. */
	synth_calls_is(&w, 1, 5, 2, 0, -1, 2, 4, 4);
	/* The row has a third call the stream lost: it, then done. */
	synth_calls_is(&w, 1, 5, 3, 0, -1, 2, 4, 5);
	/* Cancelled (not completed): no calls, just done. */
	synth_calls_is(&w, 0, 5, 2, 0, -1, 0, 4, 4);
}

static void
test_tool_calls_resumed(void)
{
	/* Resumed at 1:2 (the first call): the skipped events measured both the text
	 * and the calls the client holds. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_TOOL_CALL, 5, S, 0 },
		{ 1, 3, EV_TOOL_CALL, 5, SEND, 0 },
	};
	static const struct step only_call[] = {
		{ 1, 2, EV_TOOL_CALL, 5, S, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 1, 2);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.sent_calls, 2);
	synth_calls_is(&w, 1, 5, 2, 0, -1, 2, 4, 4);
	/* Only the event at Last-Event-ID left on the stream (a call): its end says the
	 * text is all held, and the call is counted. */
	watch_init(&w, 1, 1, 2);
	RUN(&w, only_call, 1);
	CU_ASSERT_EQUAL(w.sent_end, 5);
	synth_calls_is(&w, 1, 5, 1, 0, -1, 1, 3, 3);
	/* Nothing seen (expired): start, the text, every call, done. */
	watch_init(&w, 1, 0, 0);
	synth_calls_is(&w, 1, 5, 2, 1, 0, 0, 2, 4);
	synth_calls_is(&w, 1, 0, 2, 1, -1, 0, 1, 3);
}

static void
test_tool_call_reset_forgets_calls(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_TOOL_CALL, 0, SEND, 0 },
		{ 2, 0, EV_RESET, 0, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	CU_ASSERT_EQUAL(w.sent_calls, 0);
	CU_ASSERT_EQUAL(w.cur, 2);
}

static void
test_synth_nothing_seen(void)
{
	struct watch w;

	/* Empty stream (expired): start, the whole output, done. */
	watch_init(&w, 1, 0, 0);
	synth_is(&w, 1, 1, 30, 1, 1, 0, 2);
	/* failed or cancelled: no text */
	synth_is(&w, 1, 0, 30, 1, 0, -1, 1);
	/* completed with an empty output: no delta */
	synth_is(&w, 1, 1, 0, 1, 0, -1, 1);
	/* Attached after a takeover, nothing of attempt 3 seen: a start, not a reset. */
	watch_init(&w, 3, 0, 0);
	synth_is(&w, 3, 1, 30, 1, 1, 0, 2);
}

static void
test_synth_partial(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
		{ 1, 2, EV_DELTA, 11, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	/* The rest of the output, from what the client holds, then done. */
	synth_is(&w, 1, 1, 30, 0, 3, 11, 4);
	/* Failed: just done. */
	synth_is(&w, 1, 0, 30, 0, 0, -1, 3);
}

static void
test_synth_partial_from_skipped(void)
{
	/* Resumed at 1:2: the skipped deltas measured the client's output. */
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_DELTA, 11, S, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 1, 2);
	RUN(&w, steps, 1);
	synth_is(&w, 1, 1, 30, 0, 3, 11, 4);
}

static void
test_synth_everything_seen(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
		{ 1, 2, EV_DELTA, 30, SEND, 0 },
	};
	struct watch w;

	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	synth_is(&w, 1, 1, 30, 0, 0, -1, 3);
	/* Only the start seen, empty output. */
	watch_init(&w, 1, 0, 0);
	run(&w, steps, 1, 1);
	synth_is(&w, 1, 1, 0, 0, 0, -1, 1);
}

static void
test_synth_older_attempt(void)
{
	static const struct step steps[] = {
		{ 1, 0, EV_START, 0, SEND, 0 },
		{ 1, 1, EV_DELTA, 5, SEND, 0 },
	};
	struct watch w;

	/* Streamed attempt 1; the row ended at attempt 2 with no attempt-2 event seen:
	 * a reset, the whole output of attempt 2, done. */
	watch_init(&w, 1, 0, 0);
	RUN(&w, steps, 1);
	synth_is(&w, 2, 1, 40, 2, 1, 0, 2);
	synth_is(&w, 2, 0, 40, 2, 0, -1, 1);
	/* Resumed with an id of attempt 1, run at attempt 2, stream empty. */
	watch_init(&w, 2, 1, 4);
	synth_is(&w, 2, 1, 40, 2, 1, 0, 2);
}

static void
test_synth_resume_unseen(void)
{
	struct watch w;
	static const struct step part[] = {
		{ 1, 0, EV_START, 0, S, 0 },
		{ 1, 1, EV_DELTA, 5, S, 0 },
		{ 1, 2, EV_DELTA, 11, S, 0 },
	};

	/* The client holds 1:3 of the current attempt, but the stream no longer has
	 * those events (expired): how much text it holds is unknown, so continuing at
	 * some offset would repeat or drop text. It must start over: reset, the whole
	 * output, done (DESIGN.md: an expired stream is served as reset + output + done). */
	watch_init(&w, 1, 1, 3);
	synth_is(&w, 1, 1, 30, 2, 1, 0, 2);
	synth_is(&w, 1, 0, 30, 2, 0, -1, 1);

	/* The client holds 1:3, a delta an earlier watcher synthesised after the stream's
	 * last event 1:2; the stream never had 1:3, so its extent is not known either. */
	watch_init(&w, 1, 1, 3);
	RUN(&w, part, 1);
	synth_is(&w, 1, 1, 30, 2, 1, 0, 2);

	/* The client holds only the start (1:0): it holds no text, continue at 0. */
	watch_init(&w, 1, 1, 0);
	synth_is(&w, 1, 1, 30, 0, 1, 0, 2);
}

static const struct unit_case cases[] = {
	{ "fresh watcher, attempt 1", test_fresh_attempt_1 },
	{ "duplicates skipped", test_duplicates_skipped },
	{ "streaming, then takeover", test_streaming_then_takeover },
	{ "two takeovers", test_takeover_twice },
	{ "attach after takeover", test_attach_after_takeover },
	{ "attempt 1 opened by a reset", test_unclaimed_run_reset_at_attempt_1 },
	{ "resume, same attempt", test_resume_same_attempt },
	{ "resume after the start only", test_resume_after_start_only },
	{ "resume, then takeover", test_resume_then_takeover },
	{ "resume current attempt after takeover", test_resume_current_attempt_after_takeover },
	{ "resume from an older attempt", test_resume_older_attempt },
	{ "resume older attempt, stored start", test_resume_older_attempt_start_opener },
	{ "opener missing", test_opener_missing },
	{ "other types skipped", test_other_types_skipped },
	{ "last_sseq is the maximum", test_last_sseq_is_max },
	{ "synthesise: nothing seen", test_synth_nothing_seen },
	{ "synthesise: partial", test_synth_partial },
	{ "synthesise: partial from skipped", test_synth_partial_from_skipped },
	{ "synthesise: everything seen", test_synth_everything_seen },
	{ "synthesise: older attempt", test_synth_older_attempt },
	{ "synthesise: resumed past the stream", test_synth_resume_unseen },
	{ "tool calls: relayed and counted", test_tool_calls_relayed_and_counted },
	{ "tool calls: resumed", test_tool_calls_resumed },
	{ "tool calls: a reset forgets them", test_tool_call_reset_forgets_calls },
};

UNIT_MAIN("watch", cases)
