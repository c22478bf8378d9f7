/* tail.c - see tail.h. */
#include "tail.h"
#include "err.h"

void
tail_init(struct tail *t)
{
	t->applied = 0;
}

enum tail_verdict
tail_judge(const struct tail *t, uint64_t sseq, uint64_t prev)
{
	if (sseq <= t->applied)
		return TAIL_DROP;
	if (prev >= sseq)
		return TAIL_BROKEN;
	if (prev == t->applied)
		return TAIL_APPEND;
	return prev > t->applied ? TAIL_GAP : TAIL_BROKEN;
}

int
tail_fetched(struct tail *t, uint64_t sseq)
{
	if (sseq <= t->applied)
		return -1;
	t->applied = sseq;
	return 0;
}

int
tail_apply(struct tail *t, const struct tail_copy *c, size_t n, tail_fetch_fn fetch,
    tail_emit_fn emit, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		int rc;

		switch (tail_judge(t, c[i].sseq, c[i].prev)) {
		case TAIL_DROP:
			continue;
		case TAIL_BROKEN:
			return TE_BUS;
		case TAIL_GAP:
			if ((rc = fetch(arg, t, c[i].prev)) != TE_OK)
				return rc;
			if (t->applied >= c[i].sseq)
				continue;       /* the fetch brought this one too */
			/* Else the fetch must have stopped at prev exactly: anything else means
			 * the subject does not hold what the copy says. */
			if (t->applied != c[i].prev)
				return TE_BUS;
			/* fall through */
		case TAIL_APPEND:
			if ((rc = emit(arg, i)) != TE_OK)
				return rc;
			t->applied = c[i].sseq;
			break;
		}
	}
	return TE_OK;
}
