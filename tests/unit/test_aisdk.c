/* aisdk.c: tether's events as AI SDK UI message stream frames (table tests), and the
 * SDK's chat request body. */
#include "unit.h"

#include <json-c/json.h>
#include <string.h>

#include "aisdk.h"
#include "buf.h"
#include "err.h"
#include "jsonv.h"

#define RUN "0b9a7c1e-0000-4000-8000-000000000001"

struct ev {
	int attempt;
	long long seq;
	const char *event;
	const char *data;
};

/* Feed events to a fresh state (Last-Event-ID attempt last_attempt) and compare the
 * bytes written with want. */
static void
check(int last_attempt, const struct ev *evs, size_t n, const char *want)
{
	struct aisdk s;
	struct buf b;

	buf_init(&b, 1 << 20);
	aisdk_init(&s, RUN, last_attempt);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT_EQUAL(aisdk_event(&s, &b, evs[i].attempt, evs[i].seq, evs[i].event,
		    evs[i].data, strlen(evs[i].data)), TE_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b.data);
	CU_ASSERT_STRING_EQUAL(b.data, want);
	if (strcmp(b.data, want))
		fprintf(stderr, "\ngot:\n%s\nwant:\n%s\n", b.data, want);
	buf_free(&b);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define F(id, chunk) "id: " id "\ndata: " chunk "\n\n"

static void
test_completed(void)
{
	static const struct ev evs[] = {
		{ 1, 0, "start", "{\"run_id\":\"" RUN "\",\"thread_id\":\"t\",\"attempt\":1}" },
		{ 1, 1, "delta", "{\"text\":\"he said \\\"hi\\\"\\n\"}" },
		{ 1, 2, "delta", "{\"text\":\"\\u0001/\"}" },
		{ 1, 3, "done", "{\"status\":\"completed\"}" },
	};
	check(0, evs, N(evs),
	    F("1:0", "{\"type\":\"start\",\"messageId\":\"" RUN "\"}")
	    F("1:0", "{\"type\":\"start-step\"}")
	    F("1:0", "{\"type\":\"text-start\",\"id\":\"" RUN ":1\"}")
	    F("1:1", "{\"type\":\"text-delta\",\"id\":\"" RUN ":1\",\"delta\":\"he said \\\"hi\\\"\\n\"}")
	    F("1:2", "{\"type\":\"text-delta\",\"id\":\"" RUN ":1\",\"delta\":\"\\u0001/\"}")
	    F("1:3", "{\"type\":\"text-end\",\"id\":\"" RUN ":1\"}")
	    F("1:3", "{\"type\":\"finish-step\"}")
	    F("1:3", "{\"type\":\"finish\"}")
	    F("1:3", "[DONE]"));
}

static void
test_reset(void)
{
	static const struct ev evs[] = {
		{ 1, 0, "start", "{\"run_id\":\"" RUN "\",\"thread_id\":\"t\",\"attempt\":1}" },
		{ 1, 1, "delta", "{\"text\":\"a\"}" },
		{ 2, 0, "reset", "{\"attempt\":2,\"reason\":\"owner_lost\"}" },
		{ 2, 1, "delta", "{\"text\":\"b\"}" },
		{ 2, 2, "done", "{\"status\":\"requires_action\"}" },
	};
	check(0, evs, N(evs),
	    F("1:0", "{\"type\":\"start\",\"messageId\":\"" RUN "\"}")
	    F("1:0", "{\"type\":\"start-step\"}")
	    F("1:0", "{\"type\":\"text-start\",\"id\":\"" RUN ":1\"}")
	    F("1:1", "{\"type\":\"text-delta\",\"id\":\"" RUN ":1\",\"delta\":\"a\"}")
	    F("2:0", "{\"type\":\"text-end\",\"id\":\"" RUN ":1\"}")
	    F("2:0", "{\"type\":\"data-tether-reset\",\"data\":{\"attempt\":2,\"reason\":\"owner_lost\","
	        "\"abandoned\":\"" RUN ":1\"},\"transient\":true}")
	    F("2:0", "{\"type\":\"text-start\",\"id\":\"" RUN ":2\"}")
	    F("2:1", "{\"type\":\"text-delta\",\"id\":\"" RUN ":2\",\"delta\":\"b\"}")
	    F("2:2", "{\"type\":\"text-end\",\"id\":\"" RUN ":2\"}")
	    F("2:2", "{\"type\":\"finish-step\"}")
	    F("2:2", "{\"type\":\"finish\"}")
	    F("2:2", "[DONE]"));
}

/* Resumed with Last-Event-ID 1:4 after a takeover: the reset names the part the
 * client holds; this connection never opened it, so no text-end for it. */
static void
test_resumed_reset(void)
{
	static const struct ev evs[] = {
		{ 2, 0, "reset", "{\"attempt\":2,\"reason\":\"owner_lost\"}" },
		{ 2, 1, "delta", "{\"text\":\"b\"}" },
	};
	check(1, evs, N(evs),
	    F("2:0", "{\"type\":\"data-tether-reset\",\"data\":{\"attempt\":2,\"reason\":\"owner_lost\","
	        "\"abandoned\":\"" RUN ":1\"},\"transient\":true}")
	    F("2:0", "{\"type\":\"text-start\",\"id\":\"" RUN ":2\"}")
	    F("2:1", "{\"type\":\"text-delta\",\"id\":\"" RUN ":2\",\"delta\":\"b\"}"));
}

/* Resumed inside the attempt: the part is opened again for the SDK's reader. */
static void
test_resumed_delta(void)
{
	static const struct ev evs[] = {
		{ 1, 5, "delta", "{\"text\":\"c\"}" },
		{ 1, 6, "done", "{\"status\":\"completed\"}" },
	};
	check(1, evs, N(evs),
	    F("1:5", "{\"type\":\"text-start\",\"id\":\"" RUN ":1\"}")
	    F("1:5", "{\"type\":\"text-delta\",\"id\":\"" RUN ":1\",\"delta\":\"c\"}")
	    F("1:6", "{\"type\":\"text-end\",\"id\":\"" RUN ":1\"}")
	    F("1:6", "{\"type\":\"finish-step\"}")
	    F("1:6", "{\"type\":\"finish\"}")
	    F("1:6", "[DONE]"));
}

static void
test_failed_cancelled(void)
{
	static const struct ev failed[] = {
		{ 1, 0, "start", "{\"run_id\":\"" RUN "\",\"thread_id\":\"t\",\"attempt\":1}" },
		{ 1, 1, "done", "{\"status\":\"failed\",\"error\":{\"code\":\"provider_error\","
		    "\"message\":\"the \\\"mock\\\" failed\"}}" },
	};
	static const struct ev nomsg[] = {
		{ 1, 3, "done", "{\"status\":\"failed\",\"error\":{\"code\":\"timeout\"}}" },
	};
	static const struct ev cancelled[] = {
		{ 3, 7, "done", "{\"status\":\"cancelled\"}" },
	};

	check(0, failed, N(failed),
	    F("1:0", "{\"type\":\"start\",\"messageId\":\"" RUN "\"}")
	    F("1:0", "{\"type\":\"start-step\"}")
	    F("1:0", "{\"type\":\"text-start\",\"id\":\"" RUN ":1\"}")
	    F("1:1", "{\"type\":\"error\",\"errorText\":\"the \\\"mock\\\" failed\"}")
	    F("1:1", "[DONE]"));
	check(0, nomsg, N(nomsg),
	    F("1:3", "{\"type\":\"error\",\"errorText\":\"timeout\"}")
	    F("1:3", "[DONE]"));
	check(3, cancelled, N(cancelled),
	    F("3:7", "{\"type\":\"abort\"}")
	    F("3:7", "[DONE]"));
}

static void
test_bad_events(void)
{
	static const struct ev bad[] = {
		{ 1, 1, "delta", "{\"text\":1}" },
		{ 1, 1, "delta", "{}" },
		{ 1, 1, "delta", "not json" },
		{ 1, 1, "delta", "[\"text\"]" },
		{ 1, 1, "done", "{\"status\":\"weird\"}" },
		{ 1, 1, "done", "{}" },
	};
	struct aisdk s;
	struct buf b;

	for (size_t i = 0; i < N(bad); i++) {
		buf_init(&b, 4096);
		aisdk_init(&s, RUN, 0);
		CU_ASSERT_EQUAL(aisdk_event(&s, &b, bad[i].attempt, bad[i].seq, bad[i].event,
		    bad[i].data, strlen(bad[i].data)), TE_INVAL);
		buf_free(&b);
	}
	/* A tool call without its name is not what tether writes. */
	buf_init(&b, 4096);
	aisdk_init(&s, RUN, 0);
	CU_ASSERT_EQUAL(aisdk_event(&s, &b, 1, 1, "tool_call", "{\"id\":\"call_1\"}", 15), TE_INVAL);
	buf_free(&b);
	/* An event without a mapping is left out. */
	buf_init(&b, 4096);
	aisdk_init(&s, RUN, 0);
	CU_ASSERT_EQUAL(aisdk_event(&s, &b, 1, 1, "ping", "{}", 2), TE_OK);
	CU_ASSERT_EQUAL(b.len, 0);
	buf_free(&b);
	/* A tool call: tool-input-available with the attempt in providerMetadata. */
	{
		static const char call[] = "{\"id\":\"call_1\",\"name\":\"get_weather\","
		    "\"arguments\":{\"city\":\"Paris \\\"15e\\\"\"}}";
		static const char want[] = "id: 2:3\ndata: {\"type\":\"tool-input-available\","
		    "\"toolCallId\":\"call_1\",\"toolName\":\"get_weather\","
		    "\"input\":{\"city\":\"Paris \\\"15e\\\"\"},"
		    "\"providerMetadata\":{\"tether\":{\"attempt\":2}}}\n\n";

		buf_init(&b, 4096);
		aisdk_init(&s, RUN, 0);
		CU_ASSERT_EQUAL(aisdk_event(&s, &b, 2, 3, "tool_call", call, strlen(call)), TE_OK);
		CU_ASSERT_STRING_EQUAL(b.data, want);
		buf_free(&b);
	}
	/* A full buffer is an error, not a truncated frame. */
	buf_init(&b, 64);
	aisdk_init(&s, RUN, 0);
	CU_ASSERT_EQUAL(aisdk_event(&s, &b, 1, 1, "delta", "{\"text\":\"0123456789\"}", 21),
	    TE_TOOLARGE);
	buf_free(&b);
}

struct body_case {
	const char *body;
	int rc;
	const char *text_or_field;      /* the input, or the field named by the error */
};

static void
test_request_body(void)
{
	static const struct body_case cases[] = {
		{ "{\"id\":\"c\",\"messages\":[{\"id\":\"m1\",\"role\":\"user\",\"parts\":[{\"type\":\"text\","
		  "\"text\":\"hello\"}]}],\"trigger\":\"submit-message\"}", JV_OK, "hello" },
		/* the last user message; its text parts joined; other parts skipped */
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"old\"}]},"
		  "{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"text\":\"reply\"}]},"
		  "{\"role\":\"user\",\"parts\":[{\"type\":\"step-start\"},{\"type\":\"text\",\"text\":\"a \"},"
		  "{\"type\":\"file\",\"url\":\"x\"},{\"type\":\"text\",\"text\":\"b\"}]},"
		  "{\"role\":\"assistant\",\"parts\":[]}],\"trigger\":\"regenerate-message\","
		  "\"messageId\":\"m3\",\"model\":\"mock\"}", JV_OK, "a b" },
		{ "{\"messages\":[]}", JV_FIELD, "messages" },
		{ "{\"messages\":{}}", JV_FIELD, "messages" },
		{ "{\"messages\":[1]}", JV_FIELD, "messages" },
		{ "{\"messages\":[{\"role\":\"assistant\",\"parts\":[]}]}", JV_FIELD, "messages" },
		{ "{\"messages\":[{\"role\":\"user\"}]}", JV_FIELD, "messages[0].parts" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[]}]}", JV_FIELD, "messages[0].parts" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"type\":\"text\"}]}]}", JV_FIELD,
		  "messages[0].parts" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}]}", JV_FIELD,
		  "messages[0].parts" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"0123456789x\"}]}]}",
		  JV_FIELD, "messages[0]" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"x\"}]}],"
		  "\"trigger\":\"resume\"}", JV_FIELD, "trigger" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"x\"}]}],"
		  "\"id\":5}", JV_FIELD, "id" },
		{ "{\"messages\":[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"text\":\"x\"}]}],"
		  "\"input\":\"x\"}", JV_FIELD, "input" },
	};

	for (size_t i = 0; i < N(cases); i++) {
		struct json_object *body = json_tokener_parse(cases[i].body);
		struct jsonv_err e;
		struct buf text;
		int rc;

		CU_ASSERT_PTR_NOT_NULL_FATAL(body);
		buf_init(&text, 10);
		memset(&e, 0, sizeof e);
		rc = aisdk_request_input(body, 10, &text, &e);
		CU_ASSERT_EQUAL(rc, cases[i].rc);
		if (rc == JV_OK) {
			CU_ASSERT_PTR_NOT_NULL_FATAL(text.data);
			CU_ASSERT_STRING_EQUAL(text.data, cases[i].text_or_field);
		} else {
			CU_ASSERT_STRING_EQUAL(e.field, cases[i].text_or_field);
			CU_ASSERT(strlen(e.msg) > 0);
		}
		if (rc != cases[i].rc || (rc != JV_OK && strcmp(e.field, cases[i].text_or_field)))
			fprintf(stderr, "\ncase %zu: rc %d field %s msg %s\n", i, rc, e.field, e.msg);
		buf_free(&text);
		json_object_put(body);
	}
}

static const struct unit_case cases[] = {
	{ "completed", test_completed },
	{ "reset", test_reset },
	{ "resumed reset", test_resumed_reset },
	{ "resumed delta", test_resumed_delta },
	{ "failed and cancelled", test_failed_cancelled },
	{ "bad events", test_bad_events },
	{ "request body", test_request_body },
};

UNIT_MAIN("aisdk", cases)
