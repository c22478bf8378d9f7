/* Tool definitions, tool_choice and tool outputs, as clients send them. */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "tools.h"

/* tools_check on {"tools":…,"tool_choice":…} given as JSON text; the field named
 * by the error ("" when accepted). */
static void
check_is(const char *body, const char *want_field)
{
	struct json_object *o = json_tokener_parse(body), *tools = NULL, *choice = NULL;
	struct jsonv_err e;
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	json_object_object_get_ex(o, "tools", &tools);
	json_object_object_get_ex(o, "tool_choice", &choice);
	memset(&e, 0, sizeof e);
	rc = tools_check(tools, choice, &e);
	if (!want_field[0]) {
		CU_ASSERT_EQUAL(rc, JV_OK);
	} else {
		CU_ASSERT_EQUAL(rc, JV_FIELD);
		CU_ASSERT_STRING_EQUAL(e.field, want_field);
		CU_ASSERT(e.msg[0] != '\0');
	}
	if ((rc == JV_OK) != !want_field[0] || (want_field[0] && strcmp(e.field, want_field)))
		fprintf(stderr, "\n%s: field \"%s\" (%s)\n", body, e.field, e.msg);
	json_object_put(o);
}

#define FN(name) "{\"type\":\"function\",\"function\":{\"name\":\"" name "\"}}"

static void
test_names(void)
{
	CU_ASSERT(tool_name_ok("get_weather"));
	CU_ASSERT(tool_name_ok("a-B_9"));
	CU_ASSERT(tool_name_ok("x"));
	CU_ASSERT(tool_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));  /* 64 */
	CU_ASSERT(!tool_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
	CU_ASSERT(!tool_name_ok(""));
	CU_ASSERT(!tool_name_ok("a b"));
	CU_ASSERT(!tool_name_ok("a.b"));
	CU_ASSERT(!tool_name_ok("\xc3\xa9t\xc3\xa9"));
}

static void
test_definitions(void)
{
	check_is("{}", "");
	check_is("{\"tools\":[]}", "");
	check_is("{\"tools\":[" FN("a") "," FN("b") "]}", "");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"description\":\"d\","
	    "\"parameters\":{\"type\":\"object\"},\"strict\":true}}]}", "");
	check_is("{\"tools\":{}}", "tools");
	check_is("{\"tools\":\"a\"}", "tools");
	check_is("{\"tools\":[1]}", "tools[0]");
	check_is("{\"tools\":[" FN("a") ",{\"type\":\"x\",\"function\":{\"name\":\"b\"}}]}", "tools[1].type");
	check_is("{\"tools\":[{\"function\":{\"name\":\"b\"}}]}", "tools[0].type");
	check_is("{\"tools\":[{\"type\":\"function\"}]}", "tools[0].function");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":[]}]}", "tools[0].function");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{}}]}", "tools[0].function.name");
	check_is("{\"tools\":[" FN("a b") "]}", "tools[0].function.name");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":7}}]}", "tools[0].function.name");
	check_is("{\"tools\":[" FN("a") "," FN("a") "]}", "tools[1].function.name");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"description\":1}}]}",
	    "tools[0].function.description");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":\"s\"}}]}",
	    "tools[0].function.parameters");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"strict\":1}}]}",
	    "tools[0].function.strict");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"code\":1}}]}",
	    "tools[0].function.code");
	check_is("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"},\"x\":1}]}", "tools[0].x");
}

static void
test_bounds(void)
{
	char big[TOOL_PARAMETERS_MAX + 200], many[(TOOLS_MAX + 1) * 64];
	size_t n;

	/* 64 tools pass, 65 do not. */
	n = (size_t)snprintf(many, sizeof many, "{\"tools\":[");
	for (int i = 0; i < TOOLS_MAX; i++)
		n += (size_t)snprintf(many + n, sizeof many - n, "%s" FN("t%d"), i ? "," : "", i);
	snprintf(many + n, sizeof many - n, "]}");
	check_is(many, "");
	snprintf(many + n, sizeof many - n, "," FN("t64") "]}");
	check_is(many, "tools");
	/* A parameters schema over its bound. */
	n = (size_t)snprintf(big, sizeof big, "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
	    "\"a\",\"parameters\":{\"description\":\"");
	memset(big + n, 'x', TOOL_PARAMETERS_MAX);
	snprintf(big + n + TOOL_PARAMETERS_MAX, sizeof big - n - TOOL_PARAMETERS_MAX, "\"}}}]}");
	check_is(big, "tools[0].function.parameters");
}

static void
test_choice(void)
{
	check_is("{\"tool_choice\":\"auto\"}", "");
	check_is("{\"tool_choice\":\"none\"}", "");
	check_is("{\"tool_choice\":\"required\"}", "tool_choice");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":\"required\"}", "");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":\"always\"}", "tool_choice");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":3}", "tool_choice");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"a\"}}}",
	    "");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"b\"}}}",
	    "tool_choice.function.name");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":{\"type\":\"function\"}}", "tool_choice");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":{\"type\":\"x\",\"function\":{\"name\":\"a\"}}}",
	    "tool_choice");
	check_is("{\"tools\":[" FN("a") "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"a\"},"
	    "\"y\":1}}", "tool_choice.y");
	check_is("{\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"a\"}}}",
	    "tool_choice.function.name");
}

#define CALLS "[{\"id\":\"call_a\",\"name\":\"x\",\"arguments\":{}},{\"id\":\"call_b\",\"name\":\"y\",\"arguments\":{\"n\":1}}]"

/* tools_outputs on outputs given as JSON text: the field of the error, or "" and
 * the ordered outputs in want. */
static void
outputs_is(const char *outputs, const char *want_field, const char *want)
{
	struct json_object *o = json_tokener_parse(outputs);
	struct jsonv_err e;
	struct buf b;
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	buf_init(&b, 1 << 16);
	memset(&e, 0, sizeof e);
	rc = tools_outputs(o, CALLS, 16, &b, &e);
	if (!want_field[0]) {
		CU_ASSERT_EQUAL(rc, JV_OK);
		CU_ASSERT_STRING_EQUAL(b.data ? b.data : "", want);
	} else {
		CU_ASSERT_EQUAL(rc, JV_FIELD);
		CU_ASSERT_STRING_EQUAL(e.field, want_field);
		CU_ASSERT(e.msg[0] != '\0');
	}
	if ((rc == JV_OK) != !want_field[0] || (want_field[0] && strcmp(e.field, want_field)))
		fprintf(stderr, "\n%s: field \"%s\" (%s)\n", outputs, e.field, e.msg);
	buf_free(&b);
	json_object_put(o);
}

static void
test_outputs(void)
{
	static const char ordered[] = "[{\"tool_call_id\":\"call_a\",\"output\":\"A\"},"
	    "{\"tool_call_id\":\"call_b\",\"output\":\"B/\\\"\"}]";

	/* In the calls' order, whatever the given order; '/' not escaped. */
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"A\"},{\"tool_call_id\":\"call_b\","
	    "\"output\":\"B/\\\"\"}]", "", ordered);
	outputs_is("[{\"output\":\"B/\\\"\",\"tool_call_id\":\"call_b\"},{\"tool_call_id\":\"call_a\","
	    "\"output\":\"A\"}]", "", ordered);
	/* An empty output is an output. */
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"\"},{\"tool_call_id\":\"call_b\","
	    "\"output\":\"\"}]", "", "[{\"tool_call_id\":\"call_a\",\"output\":\"\"},"
	    "{\"tool_call_id\":\"call_b\",\"output\":\"\"}]");
	outputs_is("[]", "outputs", NULL);
	outputs_is("{}", "outputs", NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"A\"}]", "outputs", NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"A\"},{\"tool_call_id\":\"call_a\","
	    "\"output\":\"B\"}]", "outputs[1].tool_call_id", NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"A\"},{\"tool_call_id\":\"call_b\","
	    "\"output\":\"B\"},{\"tool_call_id\":\"call_c\",\"output\":\"C\"}]", "outputs[2].tool_call_id",
	    NULL);
	outputs_is("[1]", "outputs[0]", NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\"}]", "outputs[0].output", NULL);
	outputs_is("[{\"output\":\"A\"}]", "outputs[0].tool_call_id", NULL);
	outputs_is("[{\"tool_call_id\":\"\",\"output\":\"A\"}]", "outputs[0].tool_call_id", NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":[]}]", "outputs[0].output", NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"A\",\"z\":0}]", "outputs[0].z", NULL);
	/* Over max_output (16 here). */
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"0123456789abcdefX\"}]", "outputs[0].output",
	    NULL);
	outputs_is("[{\"tool_call_id\":\"call_a\",\"output\":\"a\\u0000b\"}]", "outputs[0].output", NULL);
}

static void
test_outputs_bad_calls(void)
{
	struct json_object *o = json_tokener_parse("[{\"tool_call_id\":\"a\",\"output\":\"A\"}]");
	struct jsonv_err e;
	struct buf b;

	buf_init(&b, 1024);
	CU_ASSERT_EQUAL(tools_outputs(o, "not json", 16, &b, &e), JV_FIELD);
	CU_ASSERT_EQUAL(tools_outputs(o, "{}", 16, &b, &e), JV_FIELD);
	CU_ASSERT_EQUAL(b.len, 0);
	buf_free(&b);
	json_object_put(o);
}

static const struct unit_case cases[] = {
	{ "tool names", test_names },
	{ "definitions", test_definitions },
	{ "bounds", test_bounds },
	{ "tool_choice", test_choice },
	{ "outputs", test_outputs },
	{ "outputs against unreadable calls", test_outputs_bad_calls },
};

UNIT_MAIN("tools", cases)
