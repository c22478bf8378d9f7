/* The OpenAI-compatible provider's pure parts: the streamed chunk parser on
 * adversarial input, the model table, error excerpts. No network. */
#include "unit.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "provider.h"
#include "provider_openai.h"
#include "toolcall.h"
#include "util.h"

#define MAX_LINE 4096
#define MAX_TEXT 65536

/* A stream as OpenAI sends it: role chunk, three content chunks (one with
 * escapes and multi-byte UTF-8), a finish chunk, the usage chunk, [DONE]. */
static const char STREAM[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\", \\\"w\\u00f6rld\\\"\\n\"},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xe2\x82\xac\xf0\x9f\x98\x80!\"}}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":4,"
    "\"total_tokens\":16}}\n\n"
    "data: [DONE]\n\n";
static const char TEXT[] = "Hello, \"w\xc3\xb6rld\"\n\xe2\x82\xac\xf0\x9f\x98\x80!";
static const char USAGE[] = "{\"prompt_tokens\":12,\"completion_tokens\":4,\"total_tokens\":16}";

/* Feed s in pieces cut at the given offsets (ascending, within len), taking the
 * text after every piece as the provider does. Returns the final rc. */
static int
feed_cuts(struct openai_stream *st, const char *s, size_t len, const size_t *cuts, size_t ncuts,
    struct buf *out)
{
	size_t at = 0;
	int rc = TE_OK;

	for (size_t i = 0; i <= ncuts && rc == TE_OK; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		rc = openai_stream_feed(st, s + at, end - at);
		CU_ASSERT_EQUAL(openai_stream_take(st, out), TE_OK);
		at = end;
	}
	return rc;
}

static void
check_full(const char *s, size_t len, const size_t *cuts, size_t ncuts)
{
	struct openai_stream st;
	struct buf out;

	buf_init(&out, MAX_TEXT);
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(feed_cuts(&st, s, len, cuts, ncuts, &out), TE_OK);
	CU_ASSERT_EQUAL(out.len, sizeof TEXT - 1);
	CU_ASSERT(out.data && !memcmp(out.data, TEXT, sizeof TEXT - 1));
	CU_ASSERT_STRING_EQUAL(st.usage, USAGE);
	CU_ASSERT_STRING_EQUAL(st.finish, "stop");
	CU_ASSERT_EQUAL(st.done, 1);
	CU_ASSERT_EQUAL(st.deltas, 3);
	CU_ASSERT_EQUAL(st.events, 6);
	openai_stream_free(&st);
	buf_free(&out);
}

static void
test_whole_stream(void)
{
	check_full(STREAM, sizeof STREAM - 1, NULL, 0);
}

static void
test_split_every_offset(void)
{
	size_t len = sizeof STREAM - 1;

	for (size_t i = 0; i <= len; i++)
		check_full(STREAM, len, &i, 1);
	/* two cuts: every offset paired with a cut a few bytes on (CRLF, UTF-8 halves) */
	for (size_t i = 0; i + 3 <= len; i++) {
		size_t cuts[2] = { i, i + 3 };
		check_full(STREAM, len, cuts, 2);
	}
}

static void
test_byte_at_a_time_crlf(void)
{
	struct buf crlf;
	size_t *cuts;

	/* The same stream with CRLF line ends, then with bare CR. */
	for (int variant = 0; variant < 2; variant++) {
		buf_init(&crlf, 1 << 16);
		for (const char *p = STREAM; *p; p++) {
			int rc = *p == '\n' ? buf_puts(&crlf, variant ? "\r" : "\r\n")
			    : buf_append(&crlf, p, 1);

			CU_ASSERT_EQUAL(rc, TE_OK);
		}
		cuts = calloc(crlf.len, sizeof *cuts);
		for (size_t i = 0; i < crlf.len; i++)
			cuts[i] = i;
		check_full(crlf.data, crlf.len, cuts, crlf.len);
		for (size_t i = 0; i <= crlf.len; i++)
			check_full(crlf.data, crlf.len, &i, 1);
		free(cuts);
		buf_free(&crlf);
	}
}

static void
test_random_cuts(void)
{
	unsigned seed = 12345;
	size_t len = sizeof STREAM - 1;

	for (int round = 0; round < 500; round++) {
		size_t cuts[12], n = 0, at = 0;

		while (n < 12) {
			seed = seed * 1103515245u + 12345u;
			at += 1 + (seed >> 16) % 60;
			if (at >= len)
				break;
			cuts[n++] = at;
		}
		check_full(STREAM, len, cuts, n);
	}
}

static int
feed_str(struct openai_stream *st, const char *s)
{
	return openai_stream_feed(st, s, strlen(s));
}

static void
test_giant_line(void)
{
	struct openai_stream st;
	char *big = malloc(MAX_LINE * 2 + 16);

	memset(big, 'x', MAX_LINE * 2);
	memcpy(big, "data: ", 6);
	big[MAX_LINE * 2] = '\0';
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	/* no line end yet: the bound still holds while the line grows */
	CU_ASSERT_EQUAL(openai_stream_feed(&st, big, MAX_LINE / 2), TE_OK);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, big + MAX_LINE / 2, MAX_LINE * 2 - MAX_LINE / 2),
	    TE_TOOLARGE);
	CU_ASSERT(strstr(st.err, "provider_max_line") != NULL);
	/* sticky */
	CU_ASSERT_EQUAL(feed_str(&st, "\n\ndata: [DONE]\n\n"), TE_TOOLARGE);
	CU_ASSERT_EQUAL(st.done, 0);
	openai_stream_free(&st);
	/* a comment line is bounded too */
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	big[0] = ':';
	CU_ASSERT_EQUAL(openai_stream_feed(&st, big, MAX_LINE * 2), TE_TOOLARGE);
	openai_stream_free(&st);
	free(big);
}

static void
test_text_bound(void)
{
	struct openai_stream st;
	struct buf ev;
	char content[1001];

	memset(content, 'a', 1000);
	content[1000] = '\0';
	buf_init(&ev, 1 << 16);
	CU_ASSERT_EQUAL(buf_printf(&ev, "data: {\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}\n\n", content), TE_OK);
	openai_stream_init(&st, MAX_LINE, 2500);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, ev.data, ev.len), TE_OK);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, ev.data, ev.len), TE_OK);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, ev.data, ev.len), TE_TOOLARGE);
	CU_ASSERT(strstr(st.err, "max_output") != NULL);
	CU_ASSERT_EQUAL(st.text.len, 2000);
	openai_stream_free(&st);
	/* taking the text makes room again */
	openai_stream_init(&st, MAX_LINE, 2500);
	for (int i = 0; i < 10; i++) {
		struct buf out;

		buf_init(&out, 4096);
		CU_ASSERT_EQUAL(openai_stream_feed(&st, ev.data, ev.len), TE_OK);
		CU_ASSERT_EQUAL(openai_stream_take(&st, &out), TE_OK);
		CU_ASSERT_EQUAL(out.len, 1000);
		buf_free(&out);
	}
	openai_stream_free(&st);
	buf_free(&ev);
}

static void
expect_invalid(const char *stream, const char *needle)
{
	struct openai_stream st;

	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(feed_str(&st, stream), TE_PROVIDER);
	CU_ASSERT_EQUAL(st.rc, TE_PROVIDER);
	if (!strstr(st.err, needle))
		fprintf(stderr, "\nerr \"%s\" lacks \"%s\"\n", st.err, needle);
	CU_ASSERT(strstr(st.err, needle) != NULL);
	CU_ASSERT_EQUAL(utf8_valid(st.err, strlen(st.err)), 1);
	/* sticky: nothing more is parsed */
	CU_ASSERT_EQUAL(feed_str(&st, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"),
	    TE_PROVIDER);
	openai_stream_free(&st);
}

static void
test_invalid_json(void)
{
	expect_invalid("data: {\"choices\":[\n\n", "not a JSON object");
	expect_invalid("data: [1,2]\n\n", "not a JSON object");
	expect_invalid("data: \"str\"\n\n", "not a JSON object");
	expect_invalid("data: 42\n\n", "not a JSON object");
	expect_invalid("data: {\"a\":1} trailing\n\n", "not a JSON object");
	expect_invalid("data: {\"a\":1}{\"b\":2}\n\n", "not a JSON object");
	expect_invalid("data: \n\n", "not a JSON object");
	expect_invalid("data: hello\n\n", "\"hello\"");
	/* the excerpt is escaped: control bytes and invalid UTF-8 as \xNN */
	expect_invalid("data: {\x01\xff\n\n", "{\\x01\\xff");
	/* split data lines join with \n: still one JSON value */
	{
		struct openai_stream st;

		openai_stream_init(&st, MAX_LINE, MAX_TEXT);
		CU_ASSERT_EQUAL(feed_str(&st, "data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"ok\"}}]}\n\n"),
		    TE_OK);
		CU_ASSERT_STRING_EQUAL(st.text.data, "ok");
		openai_stream_free(&st);
	}
}

static void
test_deep_json(void)
{
	struct buf b;
	struct openai_stream st;

	buf_init(&b, 1 << 16);
	CU_ASSERT_EQUAL(buf_puts(&b, "data: "), TE_OK);
	for (int i = 0; i < 200; i++)
		CU_ASSERT_EQUAL(buf_puts(&b, "{\"a\":"), TE_OK);
	CU_ASSERT_EQUAL(buf_puts(&b, "1"), TE_OK);
	for (int i = 0; i < 200; i++)
		CU_ASSERT_EQUAL(buf_puts(&b, "}"), TE_OK);
	CU_ASSERT_EQUAL(buf_puts(&b, "\n\n"), TE_OK);
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, b.data, b.len), TE_PROVIDER);
	openai_stream_free(&st);
	buf_free(&b);
}

static void
test_missing_fields(void)
{
	static const char *const events[] = {
		"{}",
		"{\"choices\":null}",
		"{\"choices\":\"x\"}",
		"{\"choices\":[]}",
		"{\"choices\":[1,\"a\",null]}",
		"{\"choices\":[{}]}",
		"{\"choices\":[{\"delta\":null}]}",
		"{\"choices\":[{\"delta\":\"x\"}]}",
		"{\"choices\":[{\"delta\":{}}]}",
		"{\"choices\":[{\"delta\":{\"content\":null}}]}",
		"{\"choices\":[{\"delta\":{\"content\":5}}]}",
		"{\"choices\":[{\"delta\":{\"content\":[\"a\"]}}]}",
		"{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}",
		"{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other choice\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"\"}}]}",
		"{\"usage\":\"x\"}",
		"{\"usage\":{\"prompt_tokens\":\"a\"}}",
		"{\"usage\":{\"prompt_tokens\":-1}}",
		"{\"error\":null}",
	};
	struct openai_stream st;
	struct buf b;

	buf_init(&b, 1 << 16);
	for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
		CU_ASSERT_EQUAL(buf_printf(&b, "data: %s\n\n", events[i]), TE_OK);
	CU_ASSERT_EQUAL(buf_puts(&b, "event: ping\ndata: whatever\n\nid: 7\nretry: 10\nunknown: x\nnocolon\n\n"), TE_OK);
	CU_ASSERT_EQUAL(buf_puts(&b, "data:{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"B\"}},"
	    "{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\n\n"), TE_OK);
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, b.data, b.len), TE_OK);
	CU_ASSERT_STRING_EQUAL(st.text.data, "A");
	CU_ASSERT_EQUAL(st.deltas, 1);
	CU_ASSERT_EQUAL(st.usage[0], '\0');
	CU_ASSERT_EQUAL(st.done, 0);
	CU_ASSERT_EQUAL(st.events, (long)(sizeof events / sizeof events[0]) + 1);
	openai_stream_free(&st);
	buf_free(&b);
}

static void
test_non_utf8(void)
{
	struct openai_stream st;
	static const char s[] =
	    "data: {\"choices\":[{\"delta\":{\"content\":\"a\xff" "b\xc3(\xe2\x82" "c\xed\xa0\x80" "d\"}}]}\n\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"nul\\u0000x\"}}]}\n\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"sur\\ud800x\"}}]}\n\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"pair\\ud83d\\ude00\"}}]}\n\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"over\xc0\xaf\xf4\x90\x80\x80\"}}]}\n\n";

	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(openai_stream_feed(&st, s, sizeof s - 1), TE_OK);
	CU_ASSERT_EQUAL(st.deltas, 5);
	CU_ASSERT_EQUAL(utf8_valid(st.text.data, st.text.len), 1);
	CU_ASSERT(memchr(st.text.data, '\0', st.text.len) == NULL);
	CU_ASSERT(!strncmp(st.text.data, "a\xef\xbf\xbd" "b\xef\xbf\xbd(", 9));
	CU_ASSERT(strstr(st.text.data, "nul\xef\xbf\xbdx") != NULL);
	CU_ASSERT(strstr(st.text.data, "pair\xf0\x9f\x98\x80") != NULL);
	CU_ASSERT(strstr(st.text.data, "over\xef\xbf\xbd\xef\xbf\xbd") != NULL);
	openai_stream_free(&st);
}

static void
test_error_events(void)
{
	struct openai_stream st;

	expect_invalid("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
	    "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\","
	    "\"code\":500}}\n\n", "upstream error in the stream: server_error/500: The server had an error");
	expect_invalid("data: {\"error\":\"overloaded\"}\n\n", "overloaded");
	expect_invalid("event: error\ndata: {\"message\":\"bad \\u0001 thing\"}\n\n",
	    "bad \\x01 thing");
	/* text before the error in the same read stays available */
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(feed_str(&st, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
	    "data: {\"error\":{\"message\":\"m\"}}\n\n"), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(st.text.data, "x");
	openai_stream_free(&st);
}

static void
test_after_done(void)
{
	struct openai_stream st;

	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(feed_str(&st, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\n\r\n"
	    "data: [DONE]  \r\n\r\ndata: {not json\n\n"), TE_OK);
	CU_ASSERT_EQUAL(st.done, 1);
	CU_ASSERT_EQUAL(feed_str(&st, "garbage\n\n"), TE_OK);
	CU_ASSERT_STRING_EQUAL(st.text.data, "x");
	openai_stream_free(&st);
	/* [DONE] split across reads */
	openai_stream_init(&st, MAX_LINE, MAX_TEXT);
	CU_ASSERT_EQUAL(feed_str(&st, "data: [DO"), TE_OK);
	CU_ASSERT_EQUAL(st.done, 0);
	CU_ASSERT_EQUAL(feed_str(&st, "NE]\n"), TE_OK);
	CU_ASSERT_EQUAL(st.done, 0);
	CU_ASSERT_EQUAL(feed_str(&st, "\n"), TE_OK);
	CU_ASSERT_EQUAL(st.done, 1);
	openai_stream_free(&st);
}

static void
test_model_lookup(void)
{
	char out[64];

	strcpy(out, "untouched");
	CU_ASSERT_EQUAL(openai_model_lookup("", "a", out, sizeof out), 0);
	CU_ASSERT_STRING_EQUAL(out, "untouched");
	CU_ASSERT_EQUAL(openai_model_lookup("a,b=upstream-b", "a", out, sizeof out), 1);
	CU_ASSERT_STRING_EQUAL(out, "a");
	CU_ASSERT_EQUAL(openai_model_lookup("a,b=upstream-b", "b", out, sizeof out), 1);
	CU_ASSERT_STRING_EQUAL(out, "upstream-b");
	CU_ASSERT_EQUAL(openai_model_lookup(" fast = gpt-4o-mini , smart=gpt-4o ", "smart", out,
	    sizeof out), 1);
	CU_ASSERT_STRING_EQUAL(out, "gpt-4o");
	CU_ASSERT_EQUAL(openai_model_lookup(" fast = gpt-4o-mini , smart=gpt-4o ", "fast", out,
	    sizeof out), 1);
	CU_ASSERT_STRING_EQUAL(out, "gpt-4o-mini");
	CU_ASSERT_EQUAL(openai_model_lookup("a,b=upstream-b", "upstream-b", out, sizeof out), 0);
	CU_ASSERT_EQUAL(openai_model_lookup("ab,b", "a", out, sizeof out), 0);
	CU_ASSERT_EQUAL(openai_model_lookup("a,,b,", "b", out, sizeof out), 1);
	CU_ASSERT_EQUAL(openai_model_lookup("x=", "x", out, sizeof out), 1);
	CU_ASSERT_STRING_EQUAL(out, "x");
	CU_ASSERT_EQUAL(openai_model_lookup("x=qwen2.5:7b-instruct", "x", out, 5), -1);
	CU_ASSERT_EQUAL(openai_model_lookup("a", "", out, sizeof out), 0);
}

static void
test_model_check(void)
{
	struct config cfg;
	char err[512];

	config_defaults(&cfg);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "mock", err, sizeof err), 0);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "gpt-4o", err, sizeof err), -1);
	CU_ASSERT(strstr(err, "TETHER_PROVIDER_URL") != NULL);
	CU_ASSERT_STRING_EQUAL(provider_default_model(&cfg), "mock");
	strcpy(cfg.provider_url, "http://127.0.0.1:1/v1");
	/* The allow-list defaults to the configured model: none here, so nothing. */
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "anything", err, sizeof err), -1);
	CU_ASSERT(strstr(err, "not configured") != NULL);
	CU_ASSERT_STRING_EQUAL(provider_default_model(&cfg), "mock");
	strcpy(cfg.provider_model, "llama3");
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "llama3", err, sizeof err), 0);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "anything", err, sizeof err), -1);
	CU_ASSERT(strstr(err, "configured models: llama3") != NULL);
	strcpy(cfg.provider_models, "*");       /* any name, by choice */
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "anything", err, sizeof err), 0);
	strcpy(cfg.provider_model, "llama3");
	strcpy(cfg.provider_models, "fast=gpt-4o-mini,local");
	CU_ASSERT_STRING_EQUAL(provider_default_model(&cfg), "llama3");
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "fast", err, sizeof err), 0);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "local", err, sizeof err), 0);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "llama3", err, sizeof err), 0);
	/* With a provider, mock only where TETHER_MOCK=1 (API.md). */
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "mock", err, sizeof err), -1);
	cfg.mock = 1;
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "mock", err, sizeof err), 0);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "gpt-4o-mini", err, sizeof err), -1);
	CU_ASSERT(strstr(err, "not configured") != NULL);
	CU_ASSERT(strstr(err, "fast=gpt-4o-mini,local") != NULL);
}

static void
test_excerpt(void)
{
	char out[64];
	const char *euro = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";

	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, sizeof out, "plain \"q\"", 9, 200), "plain \"q\"");
	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, sizeof out, "a\nb\x7f\xff", 5, 200),
	    "a\\x0ab\\x7f\\xff");
	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, sizeof out, "abcdefghij", 10, 4), "abcd...");
	/* cut on a character boundary, never inside a UTF-8 sequence */
	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, sizeof out, euro, 9, 7), "\xe2\x82\xac\xe2\x82\xac...");
	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, sizeof out, "a\0b", 3, 200), "a\\x00b");
	/* the destination bounds it too */
	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, 8, "abcdefghij", 10, 200), "abcd...");
	CU_ASSERT_STRING_EQUAL(openai_excerpt(out, 1, "abc", 3, 200), "");
	{
		char big[1000];
		memset(big, 'z', sizeof big);
		openai_excerpt(out, sizeof out, big, sizeof big, 200);
		CU_ASSERT_EQUAL(strlen(out), 63);
	}
}

static void
test_error_text(void)
{
	char out[512];
	const char *b1 = "{\"error\":{\"message\":\"Incorrect API key provided: sk-***\","
	    "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
	const char *b2 = "<html>Bad\tGateway</html>";

	openai_error_text(out, sizeof out, b1, strlen(b1));
	CU_ASSERT_STRING_EQUAL(out, "invalid_request_error/invalid_api_key: Incorrect API key "
	    "provided: sk-***");
	openai_error_text(out, sizeof out, b2, strlen(b2));
	CU_ASSERT_STRING_EQUAL(out, "<html>Bad\\x09Gateway</html>");
	openai_error_text(out, sizeof out, NULL, 0);
	CU_ASSERT_STRING_EQUAL(out, "(empty body)");
	openai_error_text(out, sizeof out, "{\"message\":\"x\"}", 15);
	CU_ASSERT_STRING_EQUAL(out, "x");
	openai_error_text(out, sizeof out, "{\"error\":\"model not found\"}", 27);
	CU_ASSERT_STRING_EQUAL(out, "model not found");
}

/* ---- the call machinery against loopback sockets (no server needed) ---- */

/* A listening socket that never accepts: connects succeed, nothing ever answers. */
static int
listener(int *port)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
	CU_ASSERT_FATAL(listen(fd, 8) == 0);
	CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

struct call_env {
	struct config cfg;
	struct provider_msg msg;
	struct provider_req req;
};

static void
call_env_init(struct call_env *e, int port)
{
	config_defaults(&e->cfg);
	snprintf(e->cfg.provider_url, sizeof e->cfg.provider_url, "http://127.0.0.1:%d/v1/", port);
	strcpy(e->cfg.provider_key, "sk-unit");
	e->cfg.provider_first_token_ms = 300;
	e->cfg.provider_retries = 1;
	memset(&e->msg, 0, sizeof e->msg);
	e->msg.role = "user";
	e->msg.content = "hi";
	memset(&e->req, 0, sizeof e->req);
	e->req.cfg = &e->cfg;
	e->req.run_id = "00000000-0000-0000-0000-000000000000";
	e->req.attempt = 1;
	e->req.model = "m";
	e->req.msgs = &e->msg;
	e->req.nmsgs = 1;
}

static int
call_once(struct call_env *e, char *err, size_t errlen, int64_t *took_ms)
{
	struct provider_call *c = NULL;
	struct buf chunk;
	int64_t t0 = now_ms();
	int eof = 0, rc;

	buf_init(&chunk, 1 << 20);
	rc = provider_start(&e->req, &c, err, errlen);
	CU_ASSERT_EQUAL_FATAL(rc, TE_OK);
	rc = provider_next(c, &chunk, &eof, err, errlen);
	CU_ASSERT_EQUAL(chunk.len, 0);
	*took_ms = now_ms() - t0;
	provider_free(c);
	buf_free(&chunk);
	return rc;
}

static void
test_call_connect_refused(void)
{
	struct call_env e;
	char err[1024] = "";
	int64_t took;
	int port, fd = listener(&port);

	close(fd);      /* nothing listens there now: connection refused */
	call_env_init(&e, port);
	CU_ASSERT_EQUAL(call_once(&e, err, sizeof err, &took), TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "could not reach the provider: Couldn't connect to server "
	    "(after 1 retry)");
	CU_ASSERT(took >= 250 && took < 5000);  /* one backoff of 250-500 ms */
}

static void
test_call_first_token_timeout(void)
{
	struct call_env e;
	char err[1024] = "";
	int64_t took;
	int port, fd = listener(&port);

	call_env_init(&e, port);
	e.cfg.provider_retries = 0;
	CU_ASSERT_EQUAL(call_once(&e, err, sizeof err, &took), TE_TIMEOUT);
	CU_ASSERT_STRING_EQUAL(err, "no first token from the provider within 300 ms "
	    "(provider_first_token_ms)");
	CU_ASSERT(took >= 300 && took < 5000);
	close(fd);
}

static void *
cancel_later(void *arg)
{
	usleep(200 * 1000);
	provider_cancel(arg);
	return NULL;
}

static void
test_call_cancel_wakes_next(void)
{
	struct call_env e;
	struct provider_call *c = NULL;
	struct buf chunk;
	char err[256];
	pthread_t th;
	int64_t t0;
	int eof = 0, port, fd = listener(&port);

	call_env_init(&e, port);
	e.cfg.provider_first_token_ms = 60000;
	buf_init(&chunk, 1024);
	CU_ASSERT_EQUAL_FATAL(provider_start(&e.req, &c, err, sizeof err), TE_OK);
	t0 = now_ms();
	pthread_create(&th, NULL, cancel_later, c);
	CU_ASSERT_EQUAL(provider_next(c, &chunk, &eof, err, sizeof err), TE_CLOSED);
	CU_ASSERT(now_ms() - t0 < 2000);
	pthread_join(th, NULL);
	/* and again: a cancelled call stays cancelled */
	CU_ASSERT_EQUAL(provider_next(c, &chunk, &eof, err, sizeof err), TE_CLOSED);
	provider_free(c);
	buf_free(&chunk);
	close(fd);
}

static void
test_call_bad_params(void)
{
	struct call_env e;
	struct provider_call *c = NULL;
	char err[256] = "";

	call_env_init(&e, 9);
	e.req.params_json = "[1]";
	CU_ASSERT_EQUAL(provider_start(&e.req, &c, err, sizeof err), TE_INVAL);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_STRING_EQUAL(err, "the run's params are not a JSON object");
}

/* ---- tools: what goes upstream, what comes back (a canned server thread) ---- */

/* Answers one connection per entry of answers (raw HTTP, the connection closed after
 * it), keeping the body of the first request. */
struct canned {
	int fd;
	const char *const *answers;
	int nanswers;
	atomic_int served;
	atomic_int stop;
	char body[16384];
};

static void
canned_read_request(int cfd, char *body, size_t cap, int keep)
{
	char req[32768];
	size_t n = 0, need = 0;
	char *hdr_end = NULL;

	while (n < sizeof req - 1) {
		ssize_t k;

		if (hdr_end && n >= need)
			break;
		if ((k = read(cfd, req + n, sizeof req - 1 - n)) <= 0)
			break;
		n += (size_t)k;
		req[n] = '\0';
		if (!hdr_end && (hdr_end = strstr(req, "\r\n\r\n"))) {
			const char *cl = strcasestr(req, "\r\nContent-Length:");

			need = (size_t)(hdr_end + 4 - req) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
		}
	}
	if (keep && hdr_end)
		snprintf(body, cap, "%s", hdr_end + 4);
}

static void *
canned_serve(void *arg)
{
	struct canned *c = arg;

	while (atomic_load(&c->served) < c->nanswers && !atomic_load(&c->stop)) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		const char *a;
		int cfd, i;

		if (poll(&p, 1, 50) <= 0)
			continue;
		if ((cfd = accept(c->fd, NULL, NULL)) < 0)
			continue;
		i = atomic_load(&c->served);
		canned_read_request(cfd, c->body, sizeof c->body, i == 0);
		for (a = c->answers[i]; *a;) {
			ssize_t k = write(cfd, a, strlen(a));

			if (k <= 0)
				break;
			a += k;
		}
		atomic_fetch_add(&c->served, 1);
		close(cfd);
	}
	return NULL;
}

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
#define TC_CHUNK(delta) "data: {\"choices\":[{\"index\":0,\"delta\":{" delta "}}]}\n\n"

static const char *const TOOL_ANSWER[] = {
	SSE_HEAD
	TC_CHUNK("\"role\":\"assistant\",\"content\":null")
	TC_CHUNK("\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\","
	    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]")
	TC_CHUNK("\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\","
	    "\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]")
	TC_CHUNK("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]")
	TC_CHUNK("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]")
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
	"data: [DONE]\n\n",
};

/* What a canned call asks (NULL fields: none). */
struct ask {
	const struct provider_msg *msgs;
	size_t nmsgs;
	const char *tools, *choice;
};

/* Run a whole call against the canned answers: the rc, the text, the calls' JSON. */
static int
canned_call(struct call_env *e, const struct ask *ask, struct canned *srv,
    const char *const *answers, int nanswers, struct buf *text, struct buf *calls, char *err,
    size_t errlen)
{
	struct provider_call *c = NULL;
	pthread_t th;
	struct buf chunk;
	int eof = 0, port, rc;

	memset(srv, 0, sizeof *srv);
	srv->fd = listener(&port);
	srv->answers = answers;
	srv->nanswers = nanswers;
	call_env_init(e, port);
	e->cfg.provider_first_token_ms = 5000;
	e->req.msgs = ask->msgs;
	e->req.nmsgs = ask->nmsgs;
	e->req.tools_json = ask->tools;
	e->req.tool_choice_json = ask->choice;
	CU_ASSERT_FATAL(pthread_create(&th, NULL, canned_serve, srv) == 0);
	buf_init(&chunk, 1 << 20);
	rc = provider_start(&e->req, &c, err, errlen);
	while (rc == TE_OK && !eof) {
		CU_ASSERT_PTR_NULL(provider_tool_calls(c));     /* nothing before eof */
		buf_reset(&chunk);
		rc = provider_next(c, &chunk, &eof, err, errlen);
		if (rc == TE_OK && buf_append(text, chunk.data ? chunk.data : "", chunk.len) != TE_OK)
			rc = TE_NOMEM;
	}
	if (rc == TE_OK) {
		const struct toolcalls *t = provider_tool_calls(c);

		CU_ASSERT_PTR_NOT_NULL_FATAL(t);
		rc = toolcalls_json(t, 1, calls, err, errlen);
	}
	atomic_store(&srv->stop, 1);
	pthread_join(th, NULL);
	provider_free(c);
	close(srv->fd);
	buf_free(&chunk);
	return rc;
}

/* The value of key in the JSON object text s, serialized, or "" (static buffer). */
static const char *
json_member(const char *s, const char *key)
{
	static char out[4096];
	struct json_object *o = json_tokener_parse(s), *v;

	out[0] = '\0';
	if (o && json_object_object_get_ex(o, key, &v))
		snprintf(out, sizeof out, "%s", json_object_to_json_string_ext(v,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}

static void
test_call_tools(void)
{
	static const struct provider_msg msgs[] = {
		{ .role = "user", .content = "weather in Paris?" },
		{ .role = "assistant", .content = "",
		  .tool_calls_json = "[{\"id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":"
		  "{\"city\":\"Par\xc3\xads \\\"q\\\"\",\"n\":[1,2.50]}},{\"id\":\"call_2\",\"name\":\"f\","
		  "\"arguments\":{}}]" },
		{ .role = "tool", .content = "18 \xc2\xb0""C", .tool_call_id = "call_1" },
		{ .role = "tool", .content = "", .tool_call_id = "call_2" },
		{ .role = "assistant", .content = "Let me see.", .tool_calls_json = "[{\"id\":\"c3\","
		  "\"name\":\"g\",\"arguments\":{\"x\":null}}]" },
		{ .role = "tool", .content = "ok", .tool_call_id = "c3" },
		{ .role = "assistant", .content = "It is 18 \xc2\xb0""C.", .tool_calls_json = "[]" },
		{ .role = "user", .content = "and the time?" },
	};
	struct ask ask = {
		.msgs = msgs,
		.nmsgs = sizeof msgs / sizeof msgs[0],
		.tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
		    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
		    "\"string\"}}}}}]",
		.choice = "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}",
	};
	struct call_env e;
	struct canned srv;
	struct buf text, calls;
	char err[512] = "";

	buf_init(&text, 1 << 20);
	buf_init(&calls, 1 << 20);
	CU_ASSERT_EQUAL(canned_call(&e, &ask, &srv, TOOL_ANSWER, 1, &text, &calls, err,
	    sizeof err), TE_OK);
	CU_ASSERT_EQUAL(text.len, 0);
	CU_ASSERT_STRING_EQUAL(calls.data, "[{\"id\":\"call_a\",\"name\":\"get_weather\",\"arguments\":"
	    "{\"city\":\"Paris\"}},{\"id\":\"call_b\",\"name\":\"get_time\",\"arguments\":{}}]");
	/* upstream got the tools, the choice, and the history in OpenAI's form */
	CU_ASSERT_STRING_EQUAL(json_member(srv.body, "tools"), ask.tools);
	CU_ASSERT_STRING_EQUAL(json_member(srv.body, "tool_choice"), ask.choice);
	CU_ASSERT_STRING_EQUAL(json_member(srv.body, "messages"),
	    "[{\"role\":\"user\",\"content\":\"weather in Paris?\"},"
	    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
	    "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	    "\"arguments\":\"{\\\"city\\\":\\\"Par\xc3\xads \\\\\\\"q\\\\\\\"\\\",\\\"n\\\":[1,2.50]}\"}},"
	    "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
	    "{\"role\":\"tool\",\"content\":\"18 \xc2\xb0""C\",\"tool_call_id\":\"call_1\"},"
	    "{\"role\":\"tool\",\"content\":\"\",\"tool_call_id\":\"call_2\"},"
	    "{\"role\":\"assistant\",\"content\":\"Let me see.\",\"tool_calls\":[{\"id\":\"c3\","
	    "\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"x\\\":null}\"}}]},"
	    "{\"role\":\"tool\",\"content\":\"ok\",\"tool_call_id\":\"c3\"},"
	    "{\"role\":\"assistant\",\"content\":\"It is 18 \xc2\xb0""C.\"},"
	    "{\"role\":\"user\",\"content\":\"and the time?\"}]");
	buf_free(&text);
	buf_free(&calls);
}

static void
test_call_tools_omitted(void)
{
	struct call_env e;
	struct canned srv;
	struct buf text, calls;
	char err[512] = "";

	/* no tools: neither key is sent; an empty list (OpenAI refuses one): neither */
	for (int empty = 0; empty < 2; empty++) {
		struct ask ask = { .tools = empty ? " [ ] " : NULL, .choice = "\"auto\"" };

		buf_init(&text, 1 << 20);
		buf_init(&calls, 1 << 20);
		CU_ASSERT_EQUAL(canned_call(&e, &ask, &srv, TOOL_ANSWER, 1, &text, &calls, err,
		    sizeof err), TE_OK);
		CU_ASSERT_STRING_EQUAL(json_member(srv.body, "tools"), "");
		CU_ASSERT_STRING_EQUAL(json_member(srv.body, "tool_choice"), "");
		CU_ASSERT_STRING_EQUAL(json_member(srv.body, "messages"), "[]");
		buf_free(&text);
		buf_free(&calls);
	}
}

static void
test_call_tools_invalid(void)
{
	static const struct {
		const char *tools, *choice, *tool_calls, *err;
	} cases[] = {
		{ "{}", NULL, NULL, "the run's tools are not a JSON array" },
		{ "[1", NULL, NULL, "the run's tools are not a JSON array" },
		{ "[{\"type\":\"function\"}]", "5", NULL,
		  "the run's tool_choice is neither a string nor an object" },
		{ "[{\"type\":\"function\"}]", "\"auto\" x", NULL,
		  "the run's tool_choice is neither a string nor an object" },
		{ NULL, NULL, "{}", "an assistant message's tool calls are not a JSON array" },
		{ NULL, NULL, "[{\"id\":\"a\"}]", "tool call 0 of an assistant message has no id or name" },
		{ NULL, NULL, "[{\"id\":\"a\",\"name\":\"f\"},{\"name\":\"f\"}]",
		  "tool call 1 of an assistant message has no id or name" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct call_env e;
		struct provider_msg m = { .role = "assistant", .content = "" };
		struct provider_call *c = NULL;
		char err[256] = "";

		call_env_init(&e, 9);
		e.req.tools_json = cases[i].tools;
		e.req.tool_choice_json = cases[i].choice;
		if (cases[i].tool_calls) {
			m.tool_calls_json = cases[i].tool_calls;
			e.req.msgs = &m;
		}
		CU_ASSERT_EQUAL(provider_start(&e.req, &c, err, sizeof err), TE_INVAL);
		CU_ASSERT_PTR_NULL(c);
		CU_ASSERT_STRING_EQUAL(err, cases[i].err);
	}
}

/* A reply that sent tool-call fragments has started: a failure then is not retried
 * (while one that sent only its role chunk is). */
static void
test_call_tool_fragments_not_retried(void)
{
	static const char *const cut_after_fragment[] = {
		SSE_HEAD
		TC_CHUNK("\"role\":\"assistant\",\"content\":null")
		TC_CHUNK("\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\","
		    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"ci\"}}]"),
		NULL,   /* filled with TOOL_ANSWER[0] */
	};
	static const char *const cut_after_role[] = {
		SSE_HEAD
		TC_CHUNK("\"role\":\"assistant\",\"content\":null"),
		NULL,
	};
	const char *answers[2];
	struct ask ask = { 0 };
	struct call_env e;
	struct canned srv;
	struct buf text, calls;
	char err[512] = "";

	answers[0] = cut_after_fragment[0];
	answers[1] = TOOL_ANSWER[0];
	buf_init(&text, 1 << 20);
	buf_init(&calls, 1 << 20);
	CU_ASSERT_EQUAL(canned_call(&e, &ask, &srv, answers, 2, &text, &calls, err, sizeof err),
	    TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "the provider's stream ended without [DONE] after 2 events "
	    "(after 0 chunks and 1 tool call fragment)");
	CU_ASSERT_EQUAL(atomic_load(&srv.served), 1);

	answers[0] = cut_after_role[0];
	buf_reset(&calls);
	CU_ASSERT_EQUAL(canned_call(&e, &ask, &srv, answers, 2, &text, &calls, err, sizeof err),
	    TE_OK);
	CU_ASSERT_EQUAL(atomic_load(&srv.served), 2);
	CU_ASSERT_STRING_EQUAL(calls.data, "[{\"id\":\"call_a\",\"name\":\"get_weather\",\"arguments\":"
	    "{\"city\":\"Paris\"}},{\"id\":\"call_b\",\"name\":\"get_time\",\"arguments\":{}}]");
	CU_ASSERT_EQUAL(text.len, 0);
	buf_free(&text);
	buf_free(&calls);
}

static const struct unit_case cases[] = {
	{ "whole stream", test_whole_stream },
	{ "split at every byte offset", test_split_every_offset },
	{ "byte at a time, CRLF and CR", test_byte_at_a_time_crlf },
	{ "random cuts", test_random_cuts },
	{ "giant line", test_giant_line },
	{ "text bound", test_text_bound },
	{ "invalid JSON", test_invalid_json },
	{ "deeply nested JSON", test_deep_json },
	{ "missing fields", test_missing_fields },
	{ "non-UTF-8 content", test_non_utf8 },
	{ "error events", test_error_events },
	{ "after [DONE]", test_after_done },
	{ "model table lookup", test_model_lookup },
	{ "model check", test_model_check },
	{ "excerpt", test_excerpt },
	{ "error text", test_error_text },
	{ "call: connection refused, retried", test_call_connect_refused },
	{ "call: first-token timeout", test_call_first_token_timeout },
	{ "call: cancel wakes next", test_call_cancel_wakes_next },
	{ "call: params not an object", test_call_bad_params },
	{ "call: tools, tool_choice and the history sent; calls back", test_call_tools },
	{ "call: no tools, no tools key", test_call_tools_omitted },
	{ "call: invalid tools, tool_choice or history", test_call_tools_invalid },
	{ "call: tool-call fragments start the reply", test_call_tool_fragments_not_retried },
};

int
main(void)
{
	int rc;

	log_init("unit", LOG_ERROR);   /* the retry warnings are expected here */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = unit_run("openai", cases, sizeof cases / sizeof cases[0]);
	curl_global_cleanup();
	return rc;
}
