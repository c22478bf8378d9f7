/* tail_sim.h - a model of one run's subject in a shared stream, for testing the
 * tail rules (tests/unit/test_tail.c and tests/fuzz/fuzz_tail.c). The choices
 * (interleaving with other subjects, copies lost, duplicated, when the hub
 * attaches) come from a byte source; the property: the hub ends holding exactly
 * the subject's events, in order, each once. Header-only, test code. */
#ifndef TETHER_TAIL_SIM_H
#define TETHER_TAIL_SIM_H

#include <stdint.h>
#include <string.h>

#include "err.h"
#include "tail.h"

#define SIM_MAX 256

struct tail_sim {
	const uint8_t *in;
	size_t n, pos;
	uint64_t subj[SIM_MAX];         /* the subject's stream sequences, in order */
	size_t nsubj;
	uint64_t held[SIM_MAX];         /* what the hub appended, in order */
	size_t nheld;
	struct tail_copy copies[SIM_MAX * 2];
	size_t ncopies;
	size_t fetches;
	int overflow;
};

static inline unsigned
sim_byte(struct tail_sim *s)
{
	return s->pos < s->n ? s->in[s->pos++] : 0;
}

static inline int
sim_hold(struct tail_sim *s, uint64_t sseq)
{
	if (s->nheld == SIM_MAX) {
		s->overflow = 1;
		return TE_NOMEM;
	}
	s->held[s->nheld++] = sseq;
	return TE_OK;
}

/* The stream: every stored event of the subject after t->applied, until upto. */
static inline int
sim_fetch(void *arg, struct tail *t, uint64_t upto)
{
	struct tail_sim *s = arg;

	s->fetches++;
	for (size_t i = 0; i < s->nsubj && t->applied < upto; i++) {
		if (s->subj[i] <= t->applied)
			continue;
		if (tail_fetched(t, s->subj[i]) != 0 || sim_hold(s, s->subj[i]) != TE_OK)
			return TE_BUS;
	}
	return TE_OK;
}

static inline int
sim_emit(void *arg, size_t i)
{
	struct tail_sim *s = arg;

	return sim_hold(s, s->copies[i].sseq);
}

/* Run one scenario from the byte source. Returns TE_OK when the property holds,
 * TE_INVAL when it does not (a bug in tail.c), anything else from the rules. */
static inline int
tail_sim_run(struct tail_sim *s, const uint8_t *in, size_t n)
{
	struct tail t;
	uint64_t seq = 0;
	size_t events, attach, caught;
	int rc;

	memset(s, 0, sizeof *s);
	s->in = in;
	s->n = n;
	events = 1 + sim_byte(s) % (SIM_MAX - 1);
	attach = sim_byte(s) % (events + 1);    /* copies before it are not seen */
	tail_init(&t);
	for (size_t i = 0; i < events; i++) {
		unsigned b = sim_byte(s);
		struct tail_copy c;

		seq += 1 + (b & 3);                     /* other subjects in between */
		c.sseq = seq;
		c.prev = s->nsubj ? s->subj[s->nsubj - 1] : 0;
		s->subj[s->nsubj++] = seq;
		if (i < attach || (b & 0x30) == 0x30)   /* not subscribed yet, or lost */
			continue;
		s->copies[s->ncopies++] = c;
		if ((b & 0xc0) == 0xc0)                 /* delivered twice */
			s->copies[s->ncopies++] = c;
	}
	/* Attach: catch up to the subject's last event as it was then (at least every
	 * event before the subscription; later ones were buffered meanwhile), then
	 * apply the buffered copies in order. */
	caught = attach + sim_byte(s) % (events - attach + 1);
	if (caught && (rc = sim_fetch(s, &t, s->subj[caught - 1])) != TE_OK)
		return rc;
	if ((rc = tail_apply(&t, s->copies, s->ncopies, sim_fetch, sim_emit, s)) != TE_OK)
		return rc;
	/* A quiet run repairs from the subject's last event. */
	if ((rc = sim_fetch(s, &t, s->subj[s->nsubj - 1])) != TE_OK)
		return rc;
	if (s->overflow || s->nheld != s->nsubj ||
	    memcmp(s->held, s->subj, s->nsubj * sizeof *s->subj) != 0)
		return TE_INVAL;
	return TE_OK;
}

#endif
