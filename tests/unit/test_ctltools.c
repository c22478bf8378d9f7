/* tetherctl chat's tool answers (ctltools.c): the NAME=CMD map, a command run with
 * the arguments on its stdin under a deadline and an output bound, the body of
 * POST /v1/runs/{id}/tool_outputs. */
#include "unit.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "ctltools.h"
#include "util.h"

static void
test_map(void)
{
	struct ctltools_map m = { .n = 0 };
	char err[256];
	static const char *const bad[] = {
		"get_weather", "=echo", "get weather=echo", "get_weather=", "a.b=echo",
		"x2345678901234567890123456789012345678901234567890123456789012345=echo",
	};

	CU_ASSERT_EQUAL(ctltools_map_add(&m, "get_weather=echo sunny", err, sizeof err), TE_OK);
	CU_ASSERT_EQUAL(ctltools_map_add(&m, "Get-Time_2=date +%s | tr -d =", err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(ctltools_map_find(&m, "get_weather"), "echo sunny");
	CU_ASSERT_STRING_EQUAL(ctltools_map_find(&m, "Get-Time_2"), "date +%s | tr -d =");
	CU_ASSERT_PTR_NULL(ctltools_map_find(&m, "get"));
	CU_ASSERT_PTR_NULL(ctltools_map_find(&m, "get_weather2"));
	/* the later mapping of a name wins */
	CU_ASSERT_EQUAL(ctltools_map_add(&m, "get_weather=echo rainy", err, sizeof err), TE_OK);
	CU_ASSERT_STRING_EQUAL(ctltools_map_find(&m, "get_weather"), "echo rainy");
	CU_ASSERT_EQUAL(m.n, 2);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(ctltools_map_add(&m, bad[i], err, sizeof err), TE_INVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "NAME=CMD"));
	}
	CU_ASSERT_EQUAL(m.n, 2);
	while (m.n < CTLTOOLS_MAX_MAP) {
		static char specs[CTLTOOLS_MAX_MAP][24];

		snprintf(specs[m.n], sizeof specs[0], "t%d=true", m.n);
		CU_ASSERT_EQUAL_FATAL(ctltools_map_add(&m, specs[m.n], err, sizeof err), TE_OK);
	}
	CU_ASSERT_EQUAL(ctltools_map_add(&m, "one_more=true", err, sizeof err), TE_TOOLARGE);
	CU_ASSERT_EQUAL(ctltools_map_add(&m, "t5=false", err, sizeof err), TE_OK);     /* a replacement */
}

static void
test_exec_output_and_stdin(void)
{
	struct buf out;
	char why[256];
	const char *args = "{\"n\":1}";

	buf_init(&out, 1 << 20);
	CU_ASSERT_EQUAL(ctltools_exec("echo sunny", args, strlen(args), 5000, 1024, &out, why, sizeof why), 0);
	CU_ASSERT_STRING_EQUAL(out.data, "sunny");      /* trailing newline gone */
	/* the arguments arrive on stdin, exactly */
	CU_ASSERT_EQUAL(ctltools_exec("cat; echo; echo", args, strlen(args), 5000, 1024, &out, why, sizeof why), 0);
	CU_ASSERT_STRING_EQUAL(out.data, args);
	/* inner newlines stay */
	CU_ASSERT_EQUAL(ctltools_exec("printf 'a\\n\\nb\\n\\n\\n'", "", 0, 5000, 1024, &out, why, sizeof why), 0);
	CU_ASSERT_STRING_EQUAL(out.data, "a\n\nb");
	/* nothing printed */
	CU_ASSERT_EQUAL(ctltools_exec("true", args, strlen(args), 5000, 1024, &out, why, sizeof why), 0);
	CU_ASSERT_EQUAL(out.len, 0);
	/* a command that never reads a large stdin: no SIGPIPE for us, no hang */
	{
		static char big[1 << 20];

		memset(big, 'x', sizeof big);
		CU_ASSERT_EQUAL(ctltools_exec("exec 0<&-; echo ok", big, sizeof big, 5000, 1024, &out, why,
		    sizeof why), 0);
		CU_ASSERT_STRING_EQUAL(out.data, "ok");
		CU_ASSERT_EQUAL(ctltools_exec("wc -c", big, sizeof big, 5000, 1024, &out, why, sizeof why), 0);
		CU_ASSERT_STRING_EQUAL(out.data, "1048576");
	}
	buf_free(&out);
}

static void
test_exec_failures(void)
{
	struct buf out;
	char why[256];
	int64_t t0;

	buf_init(&out, 1 << 20);
	CU_ASSERT_EQUAL(ctltools_exec("echo half; exit 3", "", 0, 5000, 1024, &out, why, sizeof why), 1);
	CU_ASSERT_STRING_EQUAL(why, "exited with status 3");
	CU_ASSERT_STRING_EQUAL(out.data, "half");
	CU_ASSERT_EQUAL(ctltools_exec("no_such_command_here 2>/dev/null", "", 0, 5000, 1024, &out, why,
	    sizeof why), 1);
	CU_ASSERT_STRING_EQUAL(why, "exited with status 127");
	CU_ASSERT_EQUAL(ctltools_exec("kill -TERM $$", "", 0, 5000, 1024, &out, why, sizeof why), 1);
	CU_ASSERT_STRING_EQUAL(why, "was killed by signal 15");
	/* the deadline: the whole process group goes, a background child included */
	t0 = now_ms();
	CU_ASSERT_EQUAL(ctltools_exec("sleep 30 & echo started; wait", "", 0, 300, 1024, &out, why,
	    sizeof why), 1);
	CU_ASSERT(now_ms() - t0 < 3000);
	CU_ASSERT_STRING_EQUAL(why, "timed out after 300 ms");
	CU_ASSERT_STRING_EQUAL(out.data, "started");
	/* exits at once but leaves a child holding its stdout: bounded by the deadline too */
	t0 = now_ms();
	CU_ASSERT_EQUAL(ctltools_exec("sleep 30 &", "", 0, 2000, 1024, &out, why, sizeof why), 1);
	CU_ASSERT(now_ms() - t0 < 5000);
	CU_ASSERT_STRING_EQUAL(why, "timed out after 2 s");
	/* the output bound */
	CU_ASSERT_EQUAL(ctltools_exec("yes", "", 0, 5000, 1000, &out, why, sizeof why), 1);
	CU_ASSERT_STRING_EQUAL(why, "printed more than 1000 bytes");
	CU_ASSERT(out.len <= 1000);
	CU_ASSERT_EQUAL(ctltools_exec("head -c 1000 /dev/zero | tr '\\0' x", "", 0, 5000, 1000, &out, why,
	    sizeof why), 0);
	CU_ASSERT_EQUAL(out.len, 1000);
	/* not UTF-8 */
	CU_ASSERT_EQUAL(ctltools_exec("printf '\\377'", "", 0, 5000, 1000, &out, why, sizeof why), 1);
	CU_ASSERT_STRING_EQUAL(why, "printed bytes that are not UTF-8");
	buf_free(&out);
}

static void
test_outputs_json(void)
{
	const char *ids[] = { "call_1_0", "call_\"x\"" };
	const char *outs[] = { "sunny", "line\nwith \x01 control" };
	struct buf b;
	struct json_object *o, *a, *e, *v;

	buf_init(&b, 4096);
	CU_ASSERT_EQUAL_FATAL(ctltools_outputs_json(&b, ids, outs, 2), TE_OK);
	o = json_tokener_parse(b.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_FATAL(json_object_object_get_ex(o, "outputs", &a) && json_object_array_length(a) == 2);
	for (size_t i = 0; i < 2; i++) {
		e = json_object_array_get_idx(a, i);
		CU_ASSERT_EQUAL(json_object_object_length(e), 2);
		CU_ASSERT(json_object_object_get_ex(e, "tool_call_id", &v) &&
		    !strcmp(json_object_get_string(v), ids[i]));
		CU_ASSERT(json_object_object_get_ex(e, "output", &v) &&
		    !strcmp(json_object_get_string(v), outs[i]));
	}
	json_object_put(o);
	buf_reset(&b);
	CU_ASSERT_EQUAL(ctltools_outputs_json(&b, NULL, NULL, 0), TE_OK);
	CU_ASSERT_STRING_EQUAL(b.data, "{\"outputs\":[]}");
	/* the buffer's cap is an error, not a cut */
	b.max = 20;
	buf_reset(&b);
	CU_ASSERT_EQUAL(ctltools_outputs_json(&b, ids, outs, 2), TE_TOOLARGE);
	buf_free(&b);
}

static const struct unit_case cases[] = {
	{ "map", test_map },
	{ "exec_output_and_stdin", test_exec_output_and_stdin },
	{ "exec_failures", test_exec_failures },
	{ "outputs_json", test_outputs_json },
};

UNIT_MAIN("ctltools", cases)
