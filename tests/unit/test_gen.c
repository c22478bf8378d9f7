/* run.c's generator against fakes of its narrow interface (gen_fake.h): a stream
 * fenced at a chosen publish (a taker's event slipped in before it, or the stream
 * lost), a row whose terminal write is fenced, a scripted provider (chunks, the
 * end, errors, tool calls, a cancel). Each case asserts the exact sequence of what
 * the generator did, as a log of lines like "send delta seq=3 end=12 expect=4
 * {...}"; nothing depends on timing. */
#include "unit.h"
#include "gen_fake.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "run.h"
#include "toolcall.h"
#include "util.h"

#define START1 "send start seq=0 end=0 expect=0 {\"run_id\":\"" RUN "\",\"thread_id\":\"" \
	THREAD "\",\"attempt\":1}"
#define PROVIDER(attempt) "provider start model=mock attempt=" #attempt " messages=1 first=user:hello"
/* A fresh run under way: its start stored, the provider called. */
#define OPENED START1, "ack start seq=0 sseq=1", PROVIDER(1)
/* ... then "a" sent and stored, "b" sent and fenced. */
#define B_FENCED OPENED, \
	"send delta seq=1 end=1 expect=1 {\"text\":\"a\"}", \
	"ack delta seq=1 sseq=2", \
	"send delta seq=2 end=2 expect=2 {\"text\":\"b\"}", \
	"fenced delta seq=2"

/* ---- cases ---- */

static void
test_fresh_run(void)
{
	FAKE({ ST_CHUNK, "Hel", 0 }, { ST_CHUNK, "lo", 0 }, { ST_EOF, NULL, 0 });
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=3 expect=1 {\"text\":\"Hel\"}",
	    "ack delta seq=1 sseq=2",
	    "send delta seq=2 end=5 expect=2 {\"text\":\"lo\"}",
	    "ack delta seq=2 sseq=3",
	    "finish completed attempt=1 owner=7 output=Hello error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> ok",
	    "send done seq=3 end=0 expect=3 {\"status\":\"completed\"}",
	    "ack done seq=3 sseq=4");
	CU_ASSERT_EQUAL(F.chunks_published, 2);
	CU_ASSERT_EQUAL(F.fenced_publishes, 0);
	CU_ASSERT_EQUAL(F.takeovers, 0);
}

/* A reply of "a", "b", "c" whose second delta (the third publish) meets act. */
static void
fence_second_delta(enum act act)
{
	FAKE({ ST_CHUNK, "a", 0 }, { ST_CHUNK, "b", 0 }, { ST_CHUNK, "c", 0 }, { ST_EOF, NULL, 0 });
	F.act_at = 3;
	F.act = act;
}

/* A taker's reset lands before our second delta: we stop, write nothing more. */
static void
test_fenced_mid_reply(void)
{
	fence_second_delta(ACT_INTRUDE);
	F.intruder = (struct ev){ 0, 2, 0, EV_RESET };
	F.row_attempt = 2;
	F.row_owner = TAKER;
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(B_FENCED,
	    "state -> running attempt=2 owner=9");
	CU_ASSERT_EQUAL(F.fenced_publishes, 1);
	CU_ASSERT_EQUAL(F.at, 3);       /* "c" was read, never sent */
}

/* Cancelled before the generator started: the cancel's done is in the stream and
 * the row is cancelled. The start expects nothing (a fresh subject) and is stored
 * after the done; the terminal write is fenced, so no second done. */
static void
test_cancelled_before_start(void)
{
	FAKE({ ST_CHUNK, "a", 0 }, { ST_EOF, NULL, 0 });
	stream_add(1, 1, EV_DONE);
	snprintf(F.status, sizeof F.status, "cancelled");
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(START1,
	    "ack start seq=0 sseq=2",
	    PROVIDER(1),
	    "send delta seq=1 end=1 expect=2 {\"text\":\"a\"}",
	    "ack delta seq=1 sseq=3",
	    "finish completed attempt=1 owner=7 output=a error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> fenced");
}

/* The publish is fenced but the row still says ours at this attempt: nobody took
 * the run, the stream itself was lost. The run ends failed (unavailable). */
static void
test_stream_lost(void)
{
	fence_second_delta(ACT_WIPE);
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(B_FENCED,
	    "state -> running attempt=1 owner=7",
	    "finish failed attempt=1 owner=7 output= error={\"code\":\"unavailable\",\"message\":"
	    "\"the run's event stream was lost (NATS lost its store); start the run again\"} "
	    "usage=- tool_calls=- -> ok",
	    "last -> none",
	    "publish done seq=1 end=0 expect=0 id=" RUN ":final {\"status\":\"failed\",\"error\":"
	    "{\"code\":\"unavailable\",\"message\":\"the run's event stream was lost (NATS lost its "
	    "store); start the run again\"}} -> sseq=1");
	CU_ASSERT_EQUAL(F.fenced_publishes, 1);
	CU_ASSERT_STRING_EQUAL(F.status, "failed");
}

/* The terminal write is fenced (a cancel or a taker got the row first): no done. */
static void
test_finish_fenced(void)
{
	FAKE({ ST_CHUNK, "ok", 0 }, { ST_EOF, NULL, 0 });
	snprintf(F.status, sizeof F.status, "cancelled");       /* a cancel got the row first */
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=2 expect=1 {\"text\":\"ok\"}",
	    "ack delta seq=1 sseq=2",
	    "finish completed attempt=1 owner=7 output=ok error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> fenced");
}

/* PostgreSQL away at the terminal write: retried, then done. */
static void
test_finish_retried(void)
{
	FAKE({ ST_CHUNK, "ok", 0 }, { ST_EOF, NULL, 0 });
	F.finish_db_errors = 1;
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=2 expect=1 {\"text\":\"ok\"}",
	    "ack delta seq=1 sseq=2",
	    "finish completed attempt=1 owner=7 output=ok error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> database unavailable",
	    "finish completed attempt=1 owner=7 output=ok error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> ok",
	    "send done seq=2 end=0 expect=2 {\"status\":\"completed\"}",
	    "ack done seq=2 sseq=3");
}

/* A takeover: reset at seq 0 expecting the subject's last sequence, then the reply. */
static void
test_takeover(void)
{
	FAKE({ ST_CHUNK, "Hi", 0 }, { ST_EOF, NULL, 0 });
	stream_fill(1, 11, 0);          /* attempt 1's start and 11 deltas: sseq 1..12 */
	F.row_attempt = 2;
	generate(2, RUN_TAKEOVER, now_us() - 5000);
	EXPECT_LOG("last -> sseq=12 delta attempt=1 seq=11",
	    "publish reset seq=0 end=0 expect=12 id=- {\"attempt\":2,\"reason\":\"owner_lost\"} "
	    "-> sseq=13",
	    "takeover observed",
	    PROVIDER(2),
	    "send delta seq=1 end=2 expect=13 {\"text\":\"Hi\"}",
	    "ack delta seq=1 sseq=14",
	    "finish completed attempt=2 owner=7 output=Hi error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> ok",
	    "send done seq=2 end=0 expect=14 {\"status\":\"completed\"}",
	    "ack done seq=2 sseq=15");
	CU_ASSERT_EQUAL(F.takeovers, 1);
	CU_ASSERT(F.takeover_ms >= 5);
}

/* A takeover of a run whose stream already ended (a cancel's done): nothing. */
static void
test_takeover_stream_ended(void)
{
	FAKE({ ST_EOF, NULL, 0 });
	stream_fill(1, 2, 1);
	F.row_attempt = 2;
	generate(2, RUN_TAKEOVER, now_us());
	EXPECT_LOG("last -> sseq=4 done attempt=1 seq=3");
	CU_ASSERT_EQUAL(F.takeovers, 0);
	CU_ASSERT_EQUAL(F.at, 0);
}

/* The old owner's late delta lands between our read and our reset; the row is
 * still ours: read again and reset after it. */
static void
test_takeover_race_retries(void)
{
	FAKE({ ST_CHUNK, "Hi", 0 }, { ST_EOF, NULL, 0 });
	stream_fill(1, 11, 0);
	F.act_at = 1;
	F.act = ACT_INTRUDE;
	F.intruder = (struct ev){ 0, 1, 12, EV_DELTA };
	F.row_attempt = 2;
	generate(2, RUN_TAKEOVER, 0);
	EXPECT_LOG("last -> sseq=12 delta attempt=1 seq=11",
	    "publish reset seq=0 end=0 expect=12 id=- {\"attempt\":2,\"reason\":\"owner_lost\"} "
	    "-> fenced",
	    "state -> running attempt=2 owner=7",
	    "last -> sseq=13 delta attempt=1 seq=12",
	    "publish reset seq=0 end=0 expect=13 id=- {\"attempt\":2,\"reason\":\"owner_lost\"} "
	    "-> sseq=14",
	    PROVIDER(2),
	    "send delta seq=1 end=2 expect=14 {\"text\":\"Hi\"}",
	    "ack delta seq=1 sseq=15",
	    "finish completed attempt=2 owner=7 output=Hi error=- usage={\"total_tokens\":5} "
	    "tool_calls=- -> ok",
	    "send done seq=2 end=0 expect=15 {\"status\":\"completed\"}",
	    "ack done seq=2 sseq=16");
	CU_ASSERT_EQUAL(F.takeovers, 0);        /* claimed_us 0: not measured */
}

/* The same race, but another worker claimed the run meanwhile: stop. */
static void
test_takeover_race_lost(void)
{
	FAKE({ ST_EOF, NULL, 0 });
	stream_fill(1, 11, 0);
	F.act_at = 1;
	F.act = ACT_INTRUDE;
	F.intruder = (struct ev){ 0, 3, 0, EV_RESET };
	F.row_attempt = 3;
	F.row_owner = TAKER;
	generate(2, RUN_TAKEOVER, now_us());
	EXPECT_LOG("last -> sseq=12 delta attempt=1 seq=11",
	    "publish reset seq=0 end=0 expect=12 id=- {\"attempt\":2,\"reason\":\"owner_lost\"} "
	    "-> fenced",
	    "state -> running attempt=3 owner=9");
	CU_ASSERT_EQUAL(F.at, 0);
	CU_ASSERT_EQUAL(F.takeovers, 0);
}

/* The provider fails after two deltas: the last delta is settled before the row
 * says failed (provider_error, a generic message: the detail is for the log), then
 * done. done takes the seq of the step that failed (3 is never published). */
static void
test_provider_error(void)
{
	FAKE({ ST_CHUNK, "a", 0 }, { ST_CHUNK, "b", 0 },
	    { ST_FAIL, "upstream returned HTTP 500: secret body", TE_PROVIDER });
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=1 expect=1 {\"text\":\"a\"}",
	    "ack delta seq=1 sseq=2",
	    "send delta seq=2 end=2 expect=2 {\"text\":\"b\"}",
	    "ack delta seq=2 sseq=3",
	    "finish failed attempt=1 owner=7 output= error={\"code\":\"provider_error\",\"message\":"
	    "\"the model provider failed; the server's log has the details\"} usage=- tool_calls=- "
	    "-> ok",
	    "send done seq=4 end=0 expect=3 {\"status\":\"failed\",\"error\":{\"code\":"
	    "\"provider_error\",\"message\":\"the model provider failed; the server's log has the "
	    "details\"}}",
	    "ack done seq=4 sseq=4");
	CU_ASSERT_EQUAL(F.provider_errors, 1);
}

/* The reply asks for tools: tool_call events after the deltas (end: the output's
 * length), the row says requires_action with the calls, then done. */
static void
test_tool_calls(void)
{
	char err[128];

	FAKE({ ST_CHUNK, "x", 0 }, { ST_EOF, NULL, 0 });
	CU_ASSERT_EQUAL_FATAL(toolcalls_feed(&F.tc, 0, "call_a", "lookup", "{\"q\":1}", 7, err,
	    sizeof err), TE_OK);
	CU_ASSERT_EQUAL_FATAL(toolcalls_feed(&F.tc, 1, "call_b", "now", "", 0, err, sizeof err),
	    TE_OK);
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=1 expect=1 {\"text\":\"x\"}",
	    "ack delta seq=1 sseq=2",
	    "send tool_call seq=2 end=1 expect=2 {\"id\":\"call_a\",\"name\":\"lookup\","
	    "\"arguments\":{\"q\":1}}",
	    "ack tool_call seq=2 sseq=3",
	    "send tool_call seq=3 end=1 expect=3 {\"id\":\"call_b\",\"name\":\"now\","
	    "\"arguments\":{}}",
	    "ack tool_call seq=3 sseq=4",
	    "finish requires_action attempt=1 owner=7 output=x error=- usage={\"total_tokens\":5} "
	    "tool_calls=[{\"id\":\"call_a\",\"name\":\"lookup\",\"arguments\":{\"q\":1}},"
	    "{\"id\":\"call_b\",\"name\":\"now\",\"arguments\":{}}] -> ok",
	    "send done seq=4 end=0 expect=4 {\"status\":\"requires_action\"}",
	    "ack done seq=4 sseq=5");
	CU_ASSERT_EQUAL(F.chunks_published, 1);
	toolcalls_free(&F.tc);
}

/* Tool calls that do not check out (arguments not JSON): failed provider_error. */
static void
test_tool_calls_invalid(void)
{
	char err[128];

	FAKE({ ST_CHUNK, "x", 0 }, { ST_EOF, NULL, 0 });
	CU_ASSERT_EQUAL_FATAL(toolcalls_feed(&F.tc, 0, "call_a", "lookup", "{\"q\":", 5, err,
	    sizeof err), TE_OK);
	generate(1, RUN_FRESH, 0);
	CU_ASSERT_EQUAL_FATAL(F.nlog, 8);
	CU_ASSERT_STRING_EQUAL(F.log[4], "ack delta seq=1 sseq=2");
	CU_ASSERT(strncmp(F.log[5], "finish failed attempt=1 owner=7 output= error={\"code\":"
	    "\"provider_error\",", 70) == 0);
	CU_ASSERT(strncmp(F.log[6], "send done seq=2 end=0 expect=2 {\"status\":\"failed\"", 49) == 0);
	CU_ASSERT_EQUAL(F.provider_errors, 1);
	toolcalls_free(&F.tc);
}

/* The job stops mid-reply: the call is cancelled, the generator stops, the text
 * that still arrives is not published; the canceller (or a taker, after a drain)
 * writes the end: no terminal write, no done here. */
static void
stopped(enum step_kind how)
{
	const struct step steps[] = { { ST_CHUNK, "a", 0 }, { how, "b", 0 } };

	fake_reset(steps, 2);
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=1 expect=1 {\"text\":\"a\"}",
	    "provider cancel",
	    "close with delta seq=1 in flight");
}

/* A cancel reaches this worker: the call ends TE_CLOSED. */
static void
test_cancel(void)
{
	stopped(ST_CANCEL);
}

/* A drain's abort while text still arrives. */
static void
test_abort(void)
{
	stopped(ST_ABORT);
}

/* A chunk whose event would pass max_payload goes out as several deltas, cut at
 * UTF-8 character boundaries, each with the output's length after it. */
static void
test_delta_split(void)
{
	FAKE({ ST_CHUNK, "abcd\x01\xc3\xa9\x02", 0 }, { ST_EOF, NULL, 0 });
	F.max_data = 28;                /* pieces of (28 - 16) / 6 = 2 bytes */
	generate(1, RUN_FRESH, 0);
	EXPECT_LOG(OPENED,
	    "send delta seq=1 end=2 expect=1 {\"text\":\"ab\"}",
	    "ack delta seq=1 sseq=2",
	    "send delta seq=2 end=4 expect=2 {\"text\":\"cd\"}",
	    "ack delta seq=2 sseq=3",
	    "send delta seq=3 end=5 expect=3 {\"text\":\"\\u0001\"}",
	    "ack delta seq=3 sseq=4",
	    "send delta seq=4 end=7 expect=4 {\"text\":\"\xc3\xa9\"}",
	    "ack delta seq=4 sseq=5",
	    "send delta seq=5 end=8 expect=5 {\"text\":\"\\u0002\"}",
	    "ack delta seq=5 sseq=6",
	    "finish completed attempt=1 owner=7 output=abcd\x01\xc3\xa9\x02 error=- "
	    "usage={\"total_tokens\":5} tool_calls=- -> ok",
	    "send done seq=6 end=0 expect=6 {\"status\":\"completed\"}",
	    "ack done seq=6 sseq=7");
	CU_ASSERT_EQUAL(F.chunks_published, 5);
}

/* No NATS publisher: the run ends failed (unavailable), done as an outsider would. */
static void
test_no_publisher(void)
{
	FAKE({ ST_EOF, NULL, 0 });
	F.pub_open_rc = TE_BUS;
	generate(1, RUN_FRESH, 0);
#define NO_PUB "{\"code\":\"unavailable\",\"message\":\"could not open a NATS publisher: " \
	"message bus unavailable\"}"
	EXPECT_LOG("finish failed attempt=1 owner=7 output= error=" NO_PUB " usage=- tool_calls=- -> ok",
	    "last -> none",
	    "publish done seq=1 end=0 expect=0 id=" RUN ":final {\"status\":\"failed\",\"error\":"
	    NO_PUB "} -> sseq=1");
#undef NO_PUB
}

/* A done for a run generated elsewhere (a cancel's, the sweep's): after the
 * subject's last event, at that attempt's next seq or, for a newer attempt, at 1;
 * nothing once the stream has ended. */
static void
test_publish_terminal(void)
{
	FAKE({ ST_EOF, NULL, 0 });
	F.r = runner_make();
	stream_fill(1, 2, 0);
	CU_ASSERT_EQUAL(run_publish_terminal(F.r, RUN, 1, "cancelled", NULL, "cancel"), TE_OK);
	CU_ASSERT_EQUAL(run_publish_terminal(F.r, RUN, 1, "cancelled", NULL, "cancel"), TE_OK);
	F.nstream = 0;
	F.next_sseq = 0;
	stream_fill(1, 2, 0);
	CU_ASSERT_EQUAL(run_publish_terminal(F.r, RUN, 2, "failed", "{\"code\":\"x\"}", "final"),
	    TE_OK);
	runner_free(F.r);
	F.r = NULL;
	EXPECT_LOG("last -> sseq=3 delta attempt=1 seq=2",
	    "publish done seq=3 end=0 expect=3 id=" RUN ":cancel {\"status\":\"cancelled\"} -> sseq=4",
	    "last -> sseq=4 done attempt=1 seq=3",
	    "last -> sseq=3 delta attempt=1 seq=2",
	    "publish done seq=1 end=0 expect=3 id=" RUN ":final {\"status\":\"failed\",\"error\":"
	    "{\"code\":\"x\"}} -> sseq=4");
}

static void
test_cleanup(void)
{
	toolcalls_free(&F.tc);
}

static const struct unit_case cases[] = {
	{ "a fresh run: start, deltas, done, each expecting the last", test_fresh_run },
	{ "fenced mid-reply: stop, no terminal write, no done", test_fenced_mid_reply },
	{ "cancelled before the start: no second done", test_cancelled_before_start },
	{ "fenced while the row is ours: failed unavailable", test_stream_lost },
	{ "terminal write fenced: no done", test_finish_fenced },
	{ "terminal write retried while PostgreSQL is away", test_finish_retried },
	{ "takeover: reset at seq 0 expecting the subject's last", test_takeover },
	{ "takeover of an ended stream: nothing", test_takeover_stream_ended },
	{ "takeover race, row still ours: retried", test_takeover_race_retries },
	{ "takeover race, row someone else's: stop", test_takeover_race_lost },
	{ "provider error: failed after the last delta settled", test_provider_error },
	{ "tool calls: events after the deltas, requires_action", test_tool_calls },
	{ "invalid tool calls: failed provider_error", test_tool_calls_invalid },
	{ "cancel: no terminal write", test_cancel },
	{ "drain abort: no terminal write", test_abort },
	{ "a delta over max_payload is split at characters", test_delta_split },
	{ "no NATS publisher: failed unavailable", test_no_publisher },
	{ "an outsider's done", test_publish_terminal },
	{ "cleanup", test_cleanup },
};

UNIT_MAIN("gen", cases)
