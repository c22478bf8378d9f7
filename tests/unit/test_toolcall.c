/* Tool calls assembled from streamed fragments (app/toolcall.c), directly and
 * through the OpenAI stream parser (choices[0].delta.tool_calls): split at every
 * byte, interleaved and sparse indexes, every bound, arguments that are not one
 * JSON object, and exact round trips of what they hold. */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "provider_openai.h"
#include "toolcall.h"

#define MAX_LINE 4096
#define MAX_TEXT 65536

/* OpenAI's way: the first fragment of a call has its id, type and name with empty
 * arguments; the arguments follow in pieces; two calls interleave; the second
 * call's name comes in two pieces; the first's arguments hold an escaped é, quotes
 * and raw UTF-8. */
static const char STREAM[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"name\":\"time\",\"arguments\":\"{\\\"tz\\\": \\\"Europe/Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\"Par\\\\u00eds \\\\\\\"\xc2\xabq\xc2\xbb\\\\\\\"\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: [DONE]\n\n";
static const char CALLS[] =
    "[{\"id\":\"call_a\",\"name\":\"get_weather\",\"arguments\":{\"city\":\"Par\xc3\xads "
    "\\\"\xc2\xabq\xc2\xbb\\\"\"}},{\"id\":\"call_b\",\"name\":\"get_time\",\"arguments\":"
    "{\"tz\":\"Europe/Paris\"}}]";

static int
feed(struct toolcalls *t, long index, const char *id, const char *name, const char *args,
    char *err, size_t errlen)
{
	return toolcalls_feed(t, index, id, name, args, args ? strlen(args) : 0, err, errlen);
}

/* The calls as JSON (attempt 3), or "" with the error in err. */
static int
calls_json(const struct toolcalls *t, char *out, size_t outlen, char *err, size_t errlen)
{
	struct buf b;
	int rc;

	buf_init(&b, 1 << 20);
	err[0] = '\0';
	rc = toolcalls_json(t, 3, &b, err, errlen);
	snprintf(out, outlen, "%s", rc == TE_OK && b.data ? b.data : "");
	if (rc == TE_OK) {
		CU_ASSERT_STRING_EQUAL(err, "");
	} else {
		CU_ASSERT(b.len == 0);  /* nothing written on failure */
	}
	buf_free(&b);
	return rc;
}

/* One call whose arguments are args: the toolcalls_json result. */
static int
one_call(const char *args, char *out, size_t outlen, char *err, size_t errlen)
{
	struct toolcalls t;
	int rc;

	toolcalls_init(&t);
	CU_ASSERT_EQUAL_FATAL(toolcalls_feed(&t, 0, "c", "f", args, strlen(args), err, errlen),
	    TE_OK);
	rc = calls_json(&t, out, outlen, err, errlen);
	toolcalls_free(&t);
	return rc;
}

static void
check_stream(const char *s, size_t len, const size_t *cuts, size_t ncuts)
{
	struct openai_stream st;
	struct buf text;
	char out[1024], err[512];
	size_t at = 0;

	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	buf_init(&text, MAX_TEXT);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		CU_ASSERT_EQUAL(openai_stream_feed(&st, s + at, end - at), TE_OK);
		CU_ASSERT_EQUAL(openai_stream_take(&st, &text), TE_OK);
		at = end;
	}
	CU_ASSERT_EQUAL(text.len, 0);
	CU_ASSERT_EQUAL(st.done, 1);
	CU_ASSERT_STRING_EQUAL(st.finish, "tool_calls");
	CU_ASSERT_EQUAL(st.tool_deltas, 5);
	CU_ASSERT_EQUAL(st.deltas, 0);
	CU_ASSERT_EQUAL(toolcalls_count(&st.calls), 2);
	CU_ASSERT_EQUAL(calls_json(&st.calls, out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, CALLS);
	openai_stream_free(&st);
	buf_free(&text);
}

static void
test_stream_whole(void)
{
	check_stream(STREAM, sizeof STREAM - 1, NULL, 0);
}

static void
test_stream_split_every_byte(void)
{
	size_t len = sizeof STREAM - 1;

	for (size_t i = 0; i <= len; i++)
		check_stream(STREAM, len, &i, 1);
	for (size_t i = 0; i + 5 <= len; i++) {
		size_t cuts[2] = { i, i + 5 };

		check_stream(STREAM, len, cuts, 2);
	}
	{       /* one byte at a time */
		size_t cuts[sizeof STREAM];

		for (size_t i = 0; i < len - 1; i++)
			cuts[i] = i + 1;
		check_stream(STREAM, len, cuts, len - 1);
	}
}

/* Feed a whole stream; the stream's rc, and its calls as JSON or its error. */
static int
stream_calls(const char *s, char *out, size_t outlen, char *err, size_t errlen)
{
	struct openai_stream st;
	int rc;

	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	rc = openai_stream_feed(&st, s, strlen(s));
	out[0] = '\0';
	if (rc == TE_OK)
		rc = calls_json(&st.calls, out, outlen, err, errlen);
	else
		snprintf(err, errlen, "%s", st.err);
	openai_stream_free(&st);
	return rc;
}

static void
test_stream_forms(void)
{
	char out[1024], err[512];

	/* the whole call in one chunk, arguments as an object (some servers), no index */
	CU_ASSERT_EQUAL(stream_calls("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"x\","
	    "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":[1,2.50]}}},{\"id\":\"y\",\"function\":"
	    "{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n", out, sizeof out, err, sizeof err),
	    TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"x\",\"name\":\"f\",\"arguments\":{\"a\":[1,2.50]}},"
	    "{\"id\":\"y\",\"name\":\"g\",\"arguments\":{}}]");
	/* text before the calls, in the same chunk as the first fragment, and nulls */
	{
		struct openai_stream st;
		struct buf text;

		static const char s[] = "data: {\"choices\":[{\"index\":0,\"delta\":"
		    "{\"content\":\"Let me look.\",\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"type\":"
		    "\"function\",\"function\":{\"name\":\"f\",\"arguments\":null}}]}}]}\n\n"
		    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"tool_calls\":null}}]}\n\n"
		    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[]}}]}\n\n";

		openai_stream_init(&st, MAX_LINE, MAX_TEXT);
		buf_init(&text, MAX_TEXT);
		CU_ASSERT_EQUAL(openai_stream_feed(&st, s, sizeof s - 1), TE_OK);
		CU_ASSERT_EQUAL(openai_stream_take(&st, &text), TE_OK);
		CU_ASSERT_STRING_EQUAL(text.data, "Let me look.");
		CU_ASSERT_EQUAL(st.deltas, 1);
		CU_ASSERT_EQUAL(st.tool_deltas, 1);
		CU_ASSERT_EQUAL(calls_json(&st.calls, out, sizeof out, err, sizeof err), TE_OK);
		CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"c\",\"name\":\"f\",\"arguments\":{}}]");
		buf_free(&text);
		openai_stream_free(&st);
	}
	/* a stream without tool calls has none */
	CU_ASSERT_EQUAL(stream_calls("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
	    out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[]");
}

static void
test_stream_refused(void)
{
	static const struct {
		const char *delta;
		const char *err;
	} cases[] = {
		{ "\"tool_calls\":{}", "upstream sent delta.tool_calls that is not an array" },
		{ "\"tool_calls\":[1]", "upstream sent a tool call delta that is not an object" },
		{ "\"tool_calls\":[{\"index\":\"0\"}]",
		  "upstream sent a tool call index that is not an integer" },
		{ "\"tool_calls\":[{\"index\":1024}]",
		  "upstream sent tool call index 1024; an index must be between 0 and 1023" },
		{ "\"tool_calls\":[{\"index\":-1}]",
		  "upstream sent tool call index -1; an index must be between 0 and 1023" },
		{ "\"tool_calls\":[{\"index\":99999999999999}]",
		  "upstream sent tool call index 99999999999999; an index must be between 0 and 1023" },
		{ "\"tool_calls\":[{\"index\":0,\"type\":\"custom\"}]",
		  "upstream sent tool call 0 of type \"custom\"; only \"function\" is supported" },
		{ "\"tool_calls\":[{\"index\":0,\"function\":\"f\"}]",
		  "upstream sent tool call 0 with a function that is not an object" },
		{ "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":1}}]",
		  "upstream sent arguments for tool call 0 that are neither a string nor an object" },
		{ "\"tool_calls\":[{\"index\":0,\"id\":\"a\\u0000b\"}]",
		  "upstream sent an id or name for tool call 0 with a NUL byte" },
		{ "\"tool_calls\":[{\"index\":2,\"id\":\"a\"},{\"index\":2,\"id\":\"b\"}]",
		  "upstream changed the id of tool call 2 from \"a\" to \"b\"" },
		{ "\"tool_calls\":[{\"index\":0,\"id\":\"caf\\u00e9\"}]",
		  "upstream sent an id for tool call 0 with byte 0xc3; an id must be visible ASCII" },
		{ "\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"a b\"}}]",
		  "upstream sent a name for tool call 0 with byte 0x20; a tool name must match "
		  "^[A-Za-z0-9_-]{1,64}$" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char s[512], out[256], err[512];

		snprintf(s, sizeof s, "data: {\"choices\":[{\"index\":0,\"delta\":{%s}}]}\n\n"
		    "data: [DONE]\n\n", cases[i].delta);
		CU_ASSERT_EQUAL(stream_calls(s, out, sizeof out, err, sizeof err), TE_PROVIDER);
		if (strcmp(err, cases[i].err))
			fprintf(stderr, "\ncase %zu: %s\n", i, err);
		CU_ASSERT_STRING_EQUAL(err, cases[i].err);
	}
}

static void
test_interleaved(void)
{
	struct toolcalls t;
	char out[1024], err[256];

	toolcalls_init(&t);
	/* call 0 fragment, call 1 fragment, ... in 1-byte argument pieces */
	{
		const char *a = "{\"q\":\"one\"}", *b = "{\"q\":[2]}";
		size_t la = strlen(a), lb = strlen(b);

		CU_ASSERT_EQUAL(feed(&t, 0, "ca", "first", "", err, sizeof err), TE_OK);
		CU_ASSERT_EQUAL(feed(&t, 1, "cb", "second", "", err, sizeof err), TE_OK);
		for (size_t i = 0; i < la || i < lb; i++) {
			if (i < la)
				CU_ASSERT_EQUAL(toolcalls_feed(&t, 0, NULL, NULL, a + i, 1, err,
				    sizeof err), TE_OK);
			if (i < lb)
				CU_ASSERT_EQUAL(toolcalls_feed(&t, 1, "", "", b + i, 1, err,
				    sizeof err), TE_OK);
		}
	}
	CU_ASSERT_EQUAL(toolcalls_count(&t), 2);
	CU_ASSERT_EQUAL(t.total, 20);
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"ca\",\"name\":\"first\",\"arguments\":{\"q\":\"one\"}},"
	    "{\"id\":\"cb\",\"name\":\"second\",\"arguments\":{\"q\":[2]}}]");
	toolcalls_free(&t);
	toolcalls_free(&t);     /* twice: a no-op */
	toolcalls_free(NULL);
	CU_ASSERT_EQUAL(toolcalls_count(NULL), 0);
}

static void
test_sparse_indexes(void)
{
	struct toolcalls t;
	char out[1024], err[256];

	toolcalls_init(&t);
	/* first seen 1023, then 5, then 0: written in index order; ids generated */
	CU_ASSERT_EQUAL(feed(&t, 1023, NULL, "c", "{}", err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 5, "id5", "b", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "a", " ", err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(t.calls[0].index, 1023);        /* kept in order of appearance */
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"call_3_0\",\"name\":\"a\",\"arguments\":{}},"
	    "{\"id\":\"id5\",\"name\":\"b\",\"arguments\":{}},"
	    "{\"id\":\"call_3_1023\",\"name\":\"c\",\"arguments\":{}}]");
	toolcalls_free(&t);
}

static void
test_ids(void)
{
	struct toolcalls t;
	char out[1024], err[256], id[TOOLCALL_MAX_ID + 2];

	toolcalls_init(&t);
	CU_ASSERT_EQUAL(feed(&t, 0, "call_x", "f", NULL, err, sizeof err), TE_OK);
	/* the same id again is fine (some servers repeat it); a change is refused */
	CU_ASSERT_EQUAL(feed(&t, 0, "call_x", NULL, NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 0, "call_y", NULL, "{}", err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream changed the id of tool call 0 from \"call_x\" to "
	    "\"call_y\"");
	CU_ASSERT_EQUAL(t.total, 0);    /* the refused fragment left nothing */
	/* an id given after the first fragment is taken */
	CU_ASSERT_EQUAL(feed(&t, 1, NULL, "g", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 1, "late", NULL, NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"call_x\",\"name\":\"f\",\"arguments\":{}},"
	    "{\"id\":\"late\",\"name\":\"g\",\"arguments\":{}}]");
	/* two calls with one id, given or generated, are refused */
	CU_ASSERT_EQUAL(feed(&t, 2, "call_x", "h", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream gave tool calls 0 and 2 the same id \"call_x\"");
	toolcalls_free(&t);
	toolcalls_init(&t);
	CU_ASSERT_EQUAL(feed(&t, 0, "call_3_1", "f", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 1, NULL, "f", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream gave tool calls 0 and 1 the same id \"call_3_1\"");
	/* bytes and length */
	CU_ASSERT_EQUAL(feed(&t, 2, "a\"b\\c{}", "f", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 3, "a b", "f", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream sent an id for tool call 3 with byte 0x20; an id "
	    "must be visible ASCII");
	CU_ASSERT_EQUAL(feed(&t, 3, "a\tb", "f", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_EQUAL(feed(&t, 3, "a\x7f", "f", NULL, err, sizeof err), TE_PROVIDER);
	memset(id, 'i', TOOLCALL_MAX_ID);
	id[TOOLCALL_MAX_ID] = '\0';
	CU_ASSERT_EQUAL(feed(&t, 3, id, "f", NULL, err, sizeof err), TE_OK);
	id[TOOLCALL_MAX_ID] = 'i';
	id[TOOLCALL_MAX_ID + 1] = '\0';
	CU_ASSERT_EQUAL(feed(&t, 4, id, "f", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream sent an id of 129 bytes for tool call 4; the limit "
	    "is 128");
	CU_ASSERT_EQUAL(toolcalls_count(&t), 4);
	toolcalls_free(&t);
	/* an id with quotes and backslashes is escaped in the JSON */
	toolcalls_init(&t);
	CU_ASSERT_EQUAL(feed(&t, 0, "a\"b\\c", "f", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"a\\\"b\\\\c\",\"name\":\"f\",\"arguments\":{}}]");
	toolcalls_free(&t);
}

static void
test_names(void)
{
	struct toolcalls t;
	char out[1024], err[256], name[TOOLCALL_MAX_NAME + 2];

	toolcalls_init(&t);
	CU_ASSERT_EQUAL(feed(&t, 0, "c", "get", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "_wea", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "ther-2", "{}", err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(t.calls[0].name, "get_weather-2");
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"c\",\"name\":\"get_weather-2\",\"arguments\":{}}]");
	/* no name at all */
	CU_ASSERT_EQUAL(feed(&t, 7, "d", NULL, "{}", err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream sent tool call 7 without a name");
	toolcalls_free(&t);

	toolcalls_init(&t);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "a.b", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream sent a name for tool call 0 with byte 0x2e; a tool "
	    "name must match ^[A-Za-z0-9_-]{1,64}$");
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "\xc3\xa9", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "x\"", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_EQUAL(toolcalls_count(&t), 0);
	/* 64 bytes in pieces: fine; one more: refused */
	memset(name, 'n', TOOLCALL_MAX_NAME);
	name[TOOLCALL_MAX_NAME - 1] = '\0';
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, name, NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "n", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(strlen(t.calls[0].name), TOOLCALL_MAX_NAME);
	CU_ASSERT_EQUAL(feed(&t, 0, NULL, "n", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "the name of tool call 0 is longer than 64 bytes");
	CU_ASSERT_EQUAL(strlen(t.calls[0].name), TOOLCALL_MAX_NAME);
	toolcalls_free(&t);
}

static void
test_bounds(void)
{
	struct toolcalls t;
	struct buf big;
	char err[256];

	toolcalls_init(&t);
	CU_ASSERT_EQUAL(feed(&t, -1, NULL, "f", NULL, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "upstream sent tool call index -1; an index must be between "
	    "0 and 1023");
	CU_ASSERT_EQUAL(feed(&t, TOOLCALL_MAX_INDEX + 1, NULL, "f", NULL, err, sizeof err),
	    TE_PROVIDER);
	CU_ASSERT_EQUAL(feed(&t, TOOLCALL_MAX_INDEX, NULL, "f", NULL, err, sizeof err), TE_OK);
	/* calls: 64, then the 65th is refused; fragments of known calls still go in */
	for (long i = 0; i < TOOLCALL_MAX_CALLS - 1; i++)
		CU_ASSERT_EQUAL(feed(&t, i * 3, NULL, "f", NULL, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(toolcalls_count(&t), TOOLCALL_MAX_CALLS);
	CU_ASSERT_EQUAL(feed(&t, 1000, NULL, "f", NULL, err, sizeof err), TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(err, "upstream asked for more than 64 tool calls in one reply");
	CU_ASSERT_EQUAL(feed(&t, 3, NULL, "g", "{}", err, sizeof err), TE_OK);
	toolcalls_free(&t);

	/* one call's arguments: exactly the bound, then a byte more */
	buf_init(&big, TOOLCALL_MAX_TOTAL + 16);
	for (size_t i = 0; i < TOOLCALL_MAX_TOTAL + 8; i++)
		CU_ASSERT_EQUAL_FATAL(buf_append(&big, " ", 1), TE_OK);
	toolcalls_init(&t);
	CU_ASSERT_EQUAL(toolcalls_feed(&t, 0, NULL, "f", big.data, TOOLCALL_MAX_ARGS - 1, err,
	    sizeof err), TE_OK);
	CU_ASSERT_EQUAL(toolcalls_feed(&t, 0, NULL, NULL, big.data, 1, err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(toolcalls_feed(&t, 0, NULL, NULL, big.data, 1, err, sizeof err),
	    TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(err, "the arguments of tool call 0 are longer than 65536 bytes");
	CU_ASSERT_EQUAL(t.calls[0].args.len, TOOLCALL_MAX_ARGS);
	CU_ASSERT_EQUAL(toolcalls_feed(&t, 1, NULL, NULL, big.data, TOOLCALL_MAX_ARGS + 1, err,
	    sizeof err), TE_TOOLARGE);
	CU_ASSERT_EQUAL(toolcalls_count(&t), 1);
	/* all calls' arguments: 4 full calls reach the total; a byte more is refused */
	for (long i = 1; i < 4; i++)
		CU_ASSERT_EQUAL(toolcalls_feed(&t, i, NULL, "f", big.data, TOOLCALL_MAX_ARGS, err,
		    sizeof err), TE_OK);
	CU_ASSERT_EQUAL(t.total, TOOLCALL_MAX_TOTAL);
	CU_ASSERT_EQUAL(toolcalls_feed(&t, 4, NULL, "f", big.data, 1, err, sizeof err),
	    TE_TOOLARGE);
	CU_ASSERT_STRING_EQUAL(err, "the arguments of the reply's tool calls are longer than "
	    "262144 bytes in all");
	CU_ASSERT_EQUAL(feed(&t, 4, NULL, "f", "", err, sizeof err), TE_OK);
	/* white space only, at the bounds: {} each */
	{
		struct buf out;

		buf_init(&out, 1 << 20);
		CU_ASSERT_EQUAL(toolcalls_json(&t, 1, &out, err, sizeof err), TE_OK);
		CU_ASSERT_EQUAL(out.len, 5 * strlen("{\"id\":\"call_1_0\",\"name\":\"f\",\"arguments\":{}}")
		    + 4 + 2);
		/* out's own bound: refused, out untouched */
		buf_free(&out);
		buf_init(&out, 40);
		CU_ASSERT_EQUAL(buf_puts(&out, "kept"), TE_OK);
		CU_ASSERT_EQUAL(toolcalls_json(&t, 1, &out, err, sizeof err), TE_TOOLARGE);
		CU_ASSERT_STRING_EQUAL(err, "the tool calls do not fit in 40 bytes");
		CU_ASSERT_STRING_EQUAL(out.data, "kept");
		buf_free(&out);
	}
	toolcalls_free(&t);
	buf_free(&big);
}

static void
test_args_empty(void)
{
	char out[256], err[256];

	CU_ASSERT_EQUAL(one_call("", out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"c\",\"name\":\"f\",\"arguments\":{}}]");
	CU_ASSERT_EQUAL(one_call(" \t\r\n", out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"c\",\"name\":\"f\",\"arguments\":{}}]");
	CU_ASSERT_EQUAL(one_call("\n { } \n", out, sizeof out, err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"c\",\"name\":\"f\",\"arguments\":{}}]");
}

static void
test_args_invalid(void)
{
	static const struct {
		const char *args;
		const char *err;
	} cases[] = {
		{ "{\"city\":", "are cut short: 8 bytes of JSON that do not end" },
		{ "{\"city\":\"Par", "are cut short: 12 bytes of JSON that do not end" },
		{ "{\"a\":1}}", "are not valid JSON (at byte 7: unexpected character)" },
		{ "{\"a\":1} {}", "are not valid JSON (at byte 8: unexpected character)" },
		{ "{\"a\" 1}", "are not valid JSON (at byte 5: object property name separator ':' expected)" },
		{ "{\"a\":1,}", "are not valid JSON (at byte 7: unexpected character)" },
		{ "{a:1}", "are not valid JSON (at byte 1: quoted object property name expected)" },
		{ "[1,2]", "are not a JSON object" },
		{ "\"x\"", "are not a JSON object" },
		{ "5", "are not a JSON object" },
		{ "null", "are not a JSON object" },
		{ "true", "are not a JSON object" },
		{ "{\"a\":\"\xff\"}", "are not valid UTF-8" },
		{ "{'a':1}", "hold a single-quoted string (at byte 1)" },
		{ "{\"a\":NaN}", "hold a word that is not true, false or null (at byte 5)" },
		{ "{\"a\":-Infinity}", "hold a number that is not a JSON number (at byte 5)" },
		{ "{\"a\":Infinity}", "hold a word that is not true, false or null (at byte 5)" },
		{ "{\"a\":1.}", "hold a number that is not a JSON number (at byte 5)" },
		{ "{\"a\":\"x\x01y\"}", "hold a control character not escaped in a string (at byte 7)" },
		{ "{\"a\":\"\\u0000\"}", "hold a NUL character (\\u0000), which cannot be stored (at byte 6)" },
		{ "{\"\\u0000\":1}", "hold a NUL character (\\u0000), which cannot be stored (at byte 2)" },
		{ "{\"a\":18446744073709551616}", "hold an integer outside the 64-bit range (at byte 5)" },
		{ "{\"a\":-9223372036854775809}", "hold an integer outside the 64-bit range (at byte 5)" },
		{ "{\"a\":1}/* c */", "are not valid JSON (at byte 7: unexpected character)" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[256], err[512], want[512];

		snprintf(want, sizeof want, "the arguments of tool call 0 (f) %s", cases[i].err);
		CU_ASSERT_EQUAL(one_call(cases[i].args, out, sizeof out, err, sizeof err), TE_PROVIDER);
		if (strcmp(err, want))
			fprintf(stderr, "\ncase %zu: %s\n", i, err);
		CU_ASSERT_STRING_EQUAL(err, want);
		CU_ASSERT_STRING_EQUAL(out, "");
	}
}

/* {"a":[[…]]} with levels arrays inside the object. */
static void
nested(char *args, size_t cap, int levels)
{
	size_t n = (size_t)snprintf(args, cap, "{\"a\":");

	for (int i = 0; i < levels; i++)
		args[n++] = '[';
	for (int i = 0; i < levels; i++)
		args[n++] = ']';
	args[n++] = '}';
	args[n] = '\0';
}

static void
test_args_depth(void)
{
	char args[256], out[1024], err[256];

	/* 32 levels inside the object: fine; one more: refused */
	nested(args, sizeof args, 32);
	CU_ASSERT_EQUAL(one_call(args, out, sizeof out, err, sizeof err), TE_OK);
	nested(args, sizeof args, 33);
	CU_ASSERT_EQUAL(one_call(args, out, sizeof out, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "the arguments of tool call 0 (f) nest deeper than 32 levels");
}

static void
test_args_round_trip(void)
{
	static const struct {
		const char *args, *out;
	} cases[] = {
		/* escapes decoded, raw UTF-8 kept, quotes and backslashes escaped again */
		{ "{\"s\": \"\xc2\xab\\\"q\\\"\xc2\xbb \\u00e9\\ud83d\\ude00 \\\\ \\/ \\n\\t\\u0001\"}",
		  "{\"s\":\"\xc2\xab\\\"q\\\"\xc2\xbb \xc3\xa9\xf0\x9f\x98\x80 \\\\ / \\n\\t\\u0001\"}" },
		{ "{\"\xe2\x82\xac\":\"\xe4\xb8\xad\xe6\x96\x87\"}",
		  "{\"\xe2\x82\xac\":\"\xe4\xb8\xad\xe6\x96\x87\"}" },
		/* numbers as written (json-c keeps a double's text; 64-bit integers exact) */
		{ "{\"a\":[0,-0.0,1.50,1e400,1E-2,-12,9223372036854775807,-9223372036854775808,"
		  "18446744073709551615]}",
		  "{\"a\":[0,-0.0,1.50,1e400,1E-2,-12,9223372036854775807,-9223372036854775808,"
		  "18446744073709551615]}" },
		{ "{ \"n\" : null , \"t\" : true , \"f\" : false , \"o\" : { } , \"l\" : [ ] }",
		  "{\"n\":null,\"t\":true,\"f\":false,\"o\":{},\"l\":[]}" },
		/* "'" and words inside strings are text */
		{ "{\"a\":\"it's NaN, 1. \\\\u0000\"}", "{\"a\":\"it's NaN, 1. \\\\u0000\"}" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[1024], err[256], want[1024];

		snprintf(want, sizeof want, "[{\"id\":\"c\",\"name\":\"f\",\"arguments\":%s}]",
		    cases[i].out);
		CU_ASSERT_EQUAL(one_call(cases[i].args, out, sizeof out, err, sizeof err), TE_OK);
		if (strcmp(out, want))
			fprintf(stderr, "\ncase %zu: %s (%s)\n", i, out, err);
		CU_ASSERT_STRING_EQUAL(out, want);
	}
}

/* The arguments split at every byte give the same calls (the bytes are only
 * concatenated, so this guards against a fragment being dropped or reordered). */
static void
test_args_split_every_byte(void)
{
	static const char args[] = "{\"city\":\"Par\\u00eds \\\"\xc2\xabq\xc2\xbb\\\"\",\"n\":[1,2]}";
	size_t len = sizeof args - 1;

	for (size_t i = 0; i <= len; i++) {
		struct toolcalls t;
		char out[512], err[256];

		toolcalls_init(&t);
		CU_ASSERT_EQUAL(toolcalls_feed(&t, 0, "c", "f", args, i, err, sizeof err), TE_OK);
		CU_ASSERT_EQUAL(toolcalls_feed(&t, 0, NULL, NULL, args + i, len - i, err, sizeof err),
		    TE_OK);
		CU_ASSERT_EQUAL(calls_json(&t, out, sizeof out, err, sizeof err), TE_OK);
		CU_ASSERT_STRING_EQUAL(out, "[{\"id\":\"c\",\"name\":\"f\",\"arguments\":{\"city\":"
		    "\"Par\xc3\xads \\\"\xc2\xabq\xc2\xbb\\\"\",\"n\":[1,2]}}]");
		toolcalls_free(&t);
	}
}

static const struct unit_case cases[] = {
	{ "stream: whole", test_stream_whole },
	{ "stream: split at every byte", test_stream_split_every_byte },
	{ "stream: other servers' forms", test_stream_forms },
	{ "stream: refused fragments", test_stream_refused },
	{ "interleaved calls", test_interleaved },
	{ "sparse indexes, generated ids", test_sparse_indexes },
	{ "ids", test_ids },
	{ "names in pieces", test_names },
	{ "bounds", test_bounds },
	{ "arguments: empty is {}", test_args_empty },
	{ "arguments: invalid", test_args_invalid },
	{ "arguments: depth", test_args_depth },
	{ "arguments: exact round trip", test_args_round_trip },
	{ "arguments: split at every byte", test_args_split_every_byte },
};

UNIT_MAIN("toolcall", cases)
