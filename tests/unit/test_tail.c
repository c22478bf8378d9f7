/* The live tail's rules (app/tail.c): each verdict by table, tail_apply with a fake
 * stream, and the model of tail_sim.h over many random scenarios. */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>

#include "tail.h"
#include "tail_sim.h"

static void
test_judge_table(void)
{
	static const struct { uint64_t applied, sseq, prev; enum tail_verdict want; } rows[] = {
		{ 0, 1, 0, TAIL_APPEND },       /* the subject's first event */
		{ 0, 7, 0, TAIL_APPEND },       /* other subjects before it */
		{ 5, 9, 5, TAIL_APPEND },       /* chained to the last held */
		{ 5, 5, 3, TAIL_DROP },         /* the last held, again */
		{ 5, 4, 3, TAIL_DROP },         /* older */
		{ 9, 2, 0, TAIL_DROP },         /* a recreated stream restarts low: dropped,
		                                 * and the quiet-run check finishes the run */
		{ 5, 9, 7, TAIL_GAP },          /* 7 was missed */
		{ 0, 9, 7, TAIL_GAP },          /* attached late, nothing held */
		{ 5, 9, 3, TAIL_BROKEN },       /* chained before what we hold */
		{ 5, 9, 9, TAIL_BROKEN },       /* a copy cannot precede itself */
		{ 5, 9, 12, TAIL_BROKEN },
	};

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct tail t = { rows[i].applied };
		enum tail_verdict v = tail_judge(&t, rows[i].sseq, rows[i].prev);

		if (v != rows[i].want)
			fprintf(stderr, "\nrow %zu: verdict %d, want %d\n", i, v, rows[i].want);
		CU_ASSERT_EQUAL(v, rows[i].want);
	}
}

static void
test_fetched_only_forward(void)
{
	struct tail t;

	tail_init(&t);
	CU_ASSERT_EQUAL(tail_fetched(&t, 3), 0);
	CU_ASSERT_EQUAL(tail_fetched(&t, 3), -1);
	CU_ASSERT_EQUAL(tail_fetched(&t, 2), -1);
	CU_ASSERT_EQUAL(t.applied, 3);
	CU_ASSERT_EQUAL(tail_fetched(&t, 10), 0);
	CU_ASSERT_EQUAL(t.applied, 10);
}

/* A fixed stream: subject events at 2, 4, 5, 9, 10. */
static void
subject(struct tail_sim *s)
{
	static const uint64_t seqs[] = { 2, 4, 5, 9, 10 };

	memset(s, 0, sizeof *s);
	memcpy(s->subj, seqs, sizeof seqs);
	s->nsubj = 5;
}

static void
held_is(const struct tail_sim *s, const uint64_t *want, size_t n)
{
	CU_ASSERT_EQUAL(s->nheld, n);
	for (size_t i = 0; i < n && i < s->nheld; i++)
		CU_ASSERT_EQUAL(s->held[i], want[i]);
}

static void
test_apply_in_order(void)
{
	static const uint64_t all[] = { 2, 4, 5, 9, 10 };
	struct tail_sim s;
	struct tail t;
	const struct tail_copy c[] = { { 2, 0 }, { 4, 2 }, { 5, 4 }, { 9, 5 }, { 10, 9 } };

	subject(&s);
	memcpy(s.copies, c, sizeof c);
	tail_init(&t);
	CU_ASSERT_EQUAL(tail_apply(&t, s.copies, 5, sim_fetch, sim_emit, &s), TE_OK);
	held_is(&s, all, 5);
	CU_ASSERT_EQUAL(s.fetches, 0);
	CU_ASSERT_EQUAL(t.applied, 10);
}

static void
test_apply_fills_gaps(void)
{
	static const uint64_t all[] = { 2, 4, 5, 9, 10 };
	struct tail_sim s;
	struct tail t;
	/* 4 and 5 lost (a reconnect), 9 delivered twice, 2 after a catch-up held it */
	const struct tail_copy c[] = { { 2, 0 }, { 9, 5 }, { 9, 5 }, { 10, 9 } };

	subject(&s);
	memcpy(s.copies, c, sizeof c);
	tail_init(&t);
	CU_ASSERT_EQUAL(sim_fetch(&s, &t, 2), TE_OK);   /* the catch-up at attach */
	CU_ASSERT_EQUAL(tail_apply(&t, s.copies, 4, sim_fetch, sim_emit, &s), TE_OK);
	held_is(&s, all, 5);
	CU_ASSERT_EQUAL(s.fetches, 2);
}

static void
test_apply_broken_stream(void)
{
	struct tail_sim s;
	struct tail t;
	const struct tail_copy c[] = { { 12, 3 } };     /* 3 is not on the subject */

	subject(&s);
	memcpy(s.copies, c, sizeof c);
	tail_init(&t);
	CU_ASSERT_EQUAL(sim_fetch(&s, &t, 10), TE_OK);
	CU_ASSERT_EQUAL(tail_apply(&t, s.copies, 1, sim_fetch, sim_emit, &s), TE_BUS);
	/* A gap whose fetch cannot reach prev: the subject lacks what the copy says. */
	tail_init(&t);
	s.nheld = 0;
	s.copies[0].sseq = 14;
	s.copies[0].prev = 11;
	CU_ASSERT_EQUAL(tail_apply(&t, s.copies, 1, sim_fetch, sim_emit, &s), TE_BUS);
}

static void
test_model_random(void)
{
	uint8_t in[1024];
	struct tail_sim *s = malloc(sizeof *s);
	unsigned seed = 20261129;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (int round = 0; round < 5000; round++) {
		int rc;

		for (size_t i = 0; i < sizeof in; i++)
			in[i] = (uint8_t)(rand_r(&seed) >> 7);
		rc = tail_sim_run(s, in, sizeof in);
		if (rc != TE_OK)
			fprintf(stderr, "\nround %d: %d (held %zu of %zu)\n", round, rc, s->nheld,
			    s->nsubj);
		CU_ASSERT_EQUAL_FATAL(rc, TE_OK);
	}
	free(s);
}

static const struct unit_case cases[] = {
	{ "verdicts", test_judge_table },
	{ "fetched only forward", test_fetched_only_forward },
	{ "apply in order", test_apply_in_order },
	{ "apply fills gaps, drops duplicates", test_apply_fills_gaps },
	{ "a contradicting stream breaks the tail", test_apply_broken_stream },
	{ "model: 5000 random scenarios", test_model_random },
};

UNIT_MAIN("tail", cases)
