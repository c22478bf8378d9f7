/* watch.h - what one watcher sends for each stored event: the exactly-once rules of
 * API.md as a pure state machine (unit-tested without NATS).
 *  - events of attempts older than the one being streamed are skipped;
 *  - seq 0 of an attempt is sent as `reset` when the client already holds text of an
 *    older attempt, else as `start` (a watcher attaching after a takeover sees no reset);
 *  - events up to the client's Last-Event-ID of the same attempt are skipped;
 *  - delta, tool_call and done are relayed (an attempt's tool calls follow its
 *    deltas); the tool calls of `cur` the client holds are counted, so that a
 *    completion from PostgreSQL sends only the others. */
#ifndef TETHER_WATCH_H
#define TETHER_WATCH_H

#include <stdint.h>

#include "bus.h"

struct watch {
	int cur;                /* attempt being streamed */
	int client_attempt;     /* newest attempt the client holds events of (0: none) */
	int64_t client_seq;     /* last seq of client_attempt the client holds */
	int64_t sent_end;       /* output bytes of `cur` the client holds (Tether-End) */
	int end_known;          /* sent_end is exact: client_seq was seen on the stream or sent */
	int sent_calls;         /* tool calls of `cur` the client holds */
	int64_t calls_seq;      /* seq of the last of them counted */
	uint64_t last_sseq;     /* stream sequence of the last event consumed */
	int done;
};

enum watch_action {
	W_SKIP = 0,
	W_SEND,                 /* relay as stored */
	W_SEND_START,           /* send as `start` (synthesised data) */
	W_SEND_RESET,           /* send as `reset` (synthesised data) */
	W_SEND_PREFIXED,        /* first a synthetic start/reset for `cur` (see prefix_reset), then relay */
};

/* attempt: the run's attempt in PostgreSQL at attach. last_attempt 0: no Last-Event-ID. */
void watch_init(struct watch *w, int attempt, int last_attempt, int64_t last_seq);
/* Decide for one event; *prefix_reset tells W_SEND_PREFIXED which kind to synthesise. */
enum watch_action watch_feed(struct watch *w, const struct bus_event *ev, int *prefix_reset);

/* Completing from PostgreSQL (terminal row, no done on the stream). */
struct watch_synth {
	int opener;             /* 0 none, 1 start, 2 reset: for attempt */
	int attempt;
	int64_t delta_seq;      /* id seq of the delta carrying the rest of the output */
	int64_t delta_from;     /* output byte offset the delta starts at (-1: no delta) */
	int calls_from;         /* index of the first tool call to send (calls_from..ncalls-1) */
	int64_t calls_seq;      /* id seq of that call; the next ones follow */
	int64_t done_seq;
};
/* completed: the row holds the attempt's whole output (completed, or ended asking
 * for its ncalls tool calls). */
void watch_synthesise(const struct watch *w, int attempt, int completed, int64_t output_len,
    int ncalls, struct watch_synth *s);

#endif
