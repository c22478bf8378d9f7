/* tail.h - the live tail of one run, as a worker's hub keeps it: the exactly-once
 * rules for the stream's republished copies (pure; table tests and a fuzz harness).
 *
 * JetStream republishes each event it has STORED on tether.live.<run> with its
 * stream sequence (Nats-Sequence) and the previous sequence on the same subject
 * (Nats-Last-Sequence), so a copy says exactly which event must come before it.
 * The hub subscribes first, catches up from the stream, then applies copies:
 *  - a copy at or below the last applied sequence is dropped (already held);
 *  - a copy whose previous sequence is the last applied one is appended;
 *  - a copy whose previous sequence is ahead means events were missed (a reconnect,
 *    a slow-consumer drop): the gap is fetched from the stream, then the copy applies;
 *  - a copy whose previous sequence is behind the last applied one contradicts the
 *    stream (it was recreated under the run): the tail is broken. */
#ifndef TETHER_TAIL_H
#define TETHER_TAIL_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

struct tail {
	uint64_t applied;       /* stream sequence of the last event held (0: none) */
};

enum tail_verdict { TAIL_DROP = 0, TAIL_APPEND, TAIL_GAP, TAIL_BROKEN };

/* One republished copy: its stream sequence and the previous one on its subject. */
struct tail_copy {
	uint64_t sseq;
	uint64_t prev;
};

void tail_init(struct tail *t);
enum tail_verdict tail_judge(const struct tail *t, uint64_t sseq, uint64_t prev);

/* Fetch from the stream the stored events after t->applied, in order, calling
 * tail_fetched for each, until t->applied >= upto: TE_OK, or an error. */
typedef int (*tail_fetch_fn)(void *arg, struct tail *t, uint64_t upto);
/* Hand copy i on (append it). */
typedef int (*tail_emit_fn)(void *arg, size_t i);

/* An event fetched from the stream (or emitted): it is now the last one held.
 * Returns -1 when it does not come after the last one (a caller bug or a broken
 * stream), 0 when taken. */
int tail_fetched(struct tail *t, uint64_t sseq);

/* Apply n copies in arrival order: drop, emit (then count as applied), or fetch the
 * gap before them. Returns TE_OK, TE_BUS when the stream contradicts itself, or what
 * fetch or emit returned. */
TE_MUST_CHECK int tail_apply(struct tail *t, const struct tail_copy *c, size_t n, tail_fetch_fn fetch,
    tail_emit_fn emit, void *arg);

#endif
