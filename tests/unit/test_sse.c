/* SSE framing and event-id parsing. */
#include "unit.h"

#include <string.h>

#include "buf.h"
#include "err.h"
#include "sse.h"

static void
test_format_single_line(void)
{
	struct buf b;

	buf_init(&b, 1024);
	CU_ASSERT_EQUAL(sse_format(&b, "1:2", "delta", "{\"text\":\"hi\"}", 13), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "id: 1:2\nevent: delta\ndata: {\"text\":\"hi\"}\n\n");
	buf_free(&b);
}

static void
test_format_multi_line(void)
{
	struct buf b;

	buf_init(&b, 1024);
	CU_ASSERT_EQUAL(sse_format(&b, NULL, NULL, "a\nb\r\nc\rd", 8), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "data: a\ndata: b\ndata: c\ndata: d\n\n");
	buf_reset(&b);
	CU_ASSERT_EQUAL(sse_format(&b, NULL, "x", "end\n", 4), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "event: x\ndata: end\ndata: \n\n");
	buf_reset(&b);
	CU_ASSERT_EQUAL(sse_format(&b, NULL, NULL, "", 0), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "data: \n\n");
	buf_free(&b);
}

static void
test_format_bounded(void)
{
	struct buf b;

	buf_init(&b, 16);
	CU_ASSERT_EQUAL(sse_format(&b, "1:1", "delta", "0123456789abcdef", 16), TE_TOOLARGE);
	buf_free(&b);
}

static void
test_comment(void)
{
	struct buf b;

	buf_init(&b, 64);
	CU_ASSERT_EQUAL(sse_comment(&b, "ping"), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, ": ping\n\n");
	buf_free(&b);
}

static void
test_event_id_valid(void)
{
	int a;
	int64_t s;

	CU_ASSERT_EQUAL(event_id_parse("1:0", 3, &a, &s), 0);
	CU_ASSERT_EQUAL(a, 1);
	CU_ASSERT_EQUAL(s, 0);
	CU_ASSERT_EQUAL(event_id_parse("12:345", 6, &a, &s), 0);
	CU_ASSERT_EQUAL(a, 12);
	CU_ASSERT_EQUAL(s, 345);
	CU_ASSERT_EQUAL(event_id_parse("1000000:1000000000000", 21, &a, &s), 0);
	CU_ASSERT_EQUAL(a, 1000000);
	CU_ASSERT_EQUAL(s, 1000000000000LL);
}

static void
test_event_id_garbage(void)
{
	static const char *const bad[] = {
		"", ":", "1:", ":1", "0:1", "a:1", "1:b", "1:1:1", "-1:1", "1:-1", "+1:1", " 1:1",
		"1:1 ", "01:1", "1:01", "1000001:1", "1:1000000000001", "99999999999999:1",
		"1;1", "1.0:1", "1:1\n", "\xff:1", "1:0x10",
	};
	int a = -7;
	int64_t s = -7;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CU_ASSERT_EQUAL(event_id_parse(bad[i], strlen(bad[i]), &a, &s), -1);
	}
	/* out-parameters are written only on success */
	CU_ASSERT_EQUAL(a, -7);
	CU_ASSERT_EQUAL(s, -7);
	CU_ASSERT_EQUAL(event_id_parse(NULL, 0, &a, &s), -1);
	/* embedded NUL: the length decides */
	CU_ASSERT_EQUAL(event_id_parse("1:1\0", 4, &a, &s), -1);
}

static const struct unit_case cases[] = {
	{ "format single line", test_format_single_line },
	{ "format multi line", test_format_multi_line },
	{ "format bounded", test_format_bounded },
	{ "comment", test_comment },
	{ "event id valid", test_event_id_valid },
	{ "event id garbage", test_event_id_garbage },
};

UNIT_MAIN("sse", cases)
