/* fuzz_tail.c - the live tail's rules (app/tail.c) against the model of
 * tests/unit/tail_sim.h: the input chooses how events interleave with other subjects,
 * which republished copies are lost or duplicated, and when the hub attaches.
 * Property: the hub holds exactly the subject's events, in order, each once. */
#include "fuzz.h"
#include "../unit/tail_sim.h"

#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tail_sim s;
	int rc = tail_sim_run(&s, data, size);

	if (rc != TE_OK)
		abort();
	return 0;
}
