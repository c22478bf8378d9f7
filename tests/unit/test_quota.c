/* quota.c: one worker's counts per tenant, and the others' added in. */
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "quota.h"

#define TA "11111111-1111-4111-8111-111111111111"
#define TB "22222222-2222-4222-8222-222222222222"

static void
test_streams(void)
{
	struct quota *q;

	CU_ASSERT_EQUAL_FATAL(quota_new(&q), TE_OK);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 3), 1);
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 3), 0);
	CU_ASSERT_EQUAL(quota_stream_enter(q, TB, 3), 1);       /* another tenant's own */
	quota_stream_leave(q, TA);
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 3), 1);
	quota_stream_leave(q, TA);
	/* The other workers hold 2 of A's: one slot left here. */
	quota_others_set(q, "{\"" TA "\":[2,0]}");
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 3), 0);
	quota_others_set(q, "{}");
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 3), 1);
	/* Garbage from the database changes nothing and is not trusted. */
	quota_others_set(q, "not json");
	quota_others_set(q, "{\"x\":[1,1],\"" TB "\":\"no\"}");
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 3), 0);
	quota_free(q);
	quota_free(NULL);
}

static void
test_usage_json(void)
{
	struct quota *q;
	char *j;

	CU_ASSERT_EQUAL_FATAL(quota_new(&q), TE_OK);
	j = quota_usage_json(q);
	CU_ASSERT_STRING_EQUAL(j, "{}");
	free(j);
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 10), 1);
	CU_ASSERT_EQUAL(quota_stream_enter(q, TA, 10), 1);
	j = quota_usage_json(q);
	CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"" TA "\":[2,"));
	CU_ASSERT_PTR_NULL(strstr(j, TB));
	free(j);
	quota_free(q);
}

static void
test_requests(void)
{
	struct quota *q;
	int ok = 0;

	CU_ASSERT_EQUAL_FATAL(quota_new(&q), TE_OK);
	/* Within one sync interval a worker takes its share of the second only:
	 * 1000/s over 100 ms is 100. */
	for (int i = 0; i < 1000; i++)
		ok += quota_request(q, TA, 1000);
	CU_ASSERT(ok >= 100 && ok <= 200);      /* one interval, or two if it rolled */
	/* The others used the whole second: nothing for this worker. */
	quota_others_set(q, "{\"" TA "\":[0,1000]}");
	CU_ASSERT_EQUAL(quota_request(q, TA, 1000), 0);
	CU_ASSERT_EQUAL(quota_request(q, TB, 1000), 1);
	/* A quota of 0 admits nothing. */
	CU_ASSERT_EQUAL(quota_request(q, TB, 0), 0);
	quota_free(q);
}

static const struct unit_case cases[] = {
	{ "streams", test_streams },
	{ "usage json", test_usage_json },
	{ "requests", test_requests },
};

UNIT_MAIN("quota", cases)
