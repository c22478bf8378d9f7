/* unit.h - a thin CUnit runner shared by the unit test binaries.
 * Each test file defines `static const struct unit_case cases[]` and calls
 * UNIT_MAIN("suite", cases). Exit status 0 when every test passed, 1 otherwise. */
#ifndef TETHER_UNIT_H
#define TETHER_UNIT_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct unit_case {
	const char *name;
	void (*fn)(void);
};

/* Every test binary has a wall-clock bound (libuv's per-test timeout habit). */
#define UNIT_TIMEOUT_S 60

static inline int
unit_run(const char *suite, const struct unit_case *cases, size_t n)
{
	CU_pSuite s;
	unsigned failed;

	alarm(UNIT_TIMEOUT_S);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite(suite, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		CU_add_test(s, cases[i].name, cases[i].fn);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}

#define UNIT_MAIN(suite, cases) \
	int main(void) { return unit_run((suite), (cases), sizeof(cases) / sizeof((cases)[0])); }

#endif
