/* The incremental SSE parser: fields, line ends, bounds, and the property that
 * how the bytes are split across reads never changes the events. */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "sseparse.h"

/* Every callback appends one line to a transcript:
 *   E id=<id> event=<event> data=<data, \n shown as |>
 *   C <comment> */
struct log {
	struct buf out;
	int events;
	int comments;
	int stop_at;            /* return stop_rc from the stop_at-th event (1-based) */
	int stop_rc;
};

static void
log_bytes(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i] == '\n' ? '|' : s[i];
		CU_ASSERT_EQUAL_FATAL(buf_append(b, &c, 1), TE_OK);
	}
}

static int
on_event(void *arg, const struct sse_event *ev)
{
	struct log *l = arg;

	CU_ASSERT_EQUAL(strlen(ev->data), ev->data_len);
	CU_ASSERT_EQUAL(buf_printf(&l->out, "E id=%s event=%s data=", ev->id, ev->event), TE_OK);
	log_bytes(&l->out, ev->data, ev->data_len);
	CU_ASSERT_EQUAL(buf_puts(&l->out, "\n"), TE_OK);
	l->events++;
	if (l->stop_at && l->events == l->stop_at)
		return l->stop_rc;
	return 0;
}

static void
on_comment(void *arg, const char *text, size_t len)
{
	struct log *l = arg;

	CU_ASSERT_EQUAL(buf_puts(&l->out, "C "), TE_OK);
	log_bytes(&l->out, text, len);
	CU_ASSERT_EQUAL(buf_puts(&l->out, "\n"), TE_OK);
	l->comments++;
}

static void
tr_init(struct log *l)
{
	memset(l, 0, sizeof *l);
	buf_init(&l->out, 1 << 20);
	CU_ASSERT_EQUAL(buf_puts(&l->out, ""), TE_OK);
}

/* Feed s in pieces: cuts[] are the offsets where a new read begins. */
static int
feed_split(const char *s, size_t n, const size_t *cuts, size_t ncuts, size_t max_line,
    struct log *l)
{
	struct sseparse p;
	size_t at = 0;
	int rc = 0;

	sseparse_init(&p, max_line, 1 << 16, on_event, on_comment, l);
	for (size_t i = 0; i <= ncuts && rc == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		rc = sseparse_feed(&p, s + at, end - at);
		at = end;
	}
	sseparse_free(&p);
	return rc;
}

static void
parse_is(const char *s, const char *want)
{
	struct log l;

	tr_init(&l);
	CU_ASSERT_EQUAL(feed_split(s, strlen(s), NULL, 0, 4096, &l), 0);
	CU_ASSERT_STRING_EQUAL(l.out.data, want);
	if (strcmp(l.out.data, want) != 0)
		fprintf(stderr, "\n got: %s\nwant: %s\n", l.out.data, want);
	buf_free(&l.out);
}

static void
test_single_event(void)
{
	parse_is("data: hello\n\n", "E id= event=message data=hello\n");
	parse_is("id: 1:2\nevent: delta\ndata: {\"text\":\"hi\"}\n\n",
	    "E id=1:2 event=delta data={\"text\":\"hi\"}\n");
	/* No space after the colon; only one space is removed. */
	parse_is("data:x\n\n", "E id= event=message data=x\n");
	parse_is("data:  two\n\n", "E id= event=message data= two\n");
	/* A field without a colon has the empty value. */
	parse_is("data\n\n", "E id= event=message data=\n");
	/* Values may hold colons. */
	parse_is("data: a:b: c\n\n", "E id= event=message data=a:b: c\n");
	/* Nothing is dispatched before the blank line. */
	parse_is("data: never\n", "");
	parse_is("data: never", "");
}

static void
test_multi_line(void)
{
	parse_is("data: a\ndata: b\ndata:\ndata: c\n\n", "E id= event=message data=a|b||c\n");
	parse_is("data: a\n\ndata: b\n\n",
	    "E id= event=message data=a\nE id= event=message data=b\n");
	/* Extra blank lines dispatch nothing. */
	parse_is("\n\n\ndata: a\n\n\n\n", "E id= event=message data=a\n");
}

static void
test_fields(void)
{
	/* The id sticks until changed; the event name is per event. */
	parse_is("id: 7\nevent: x\ndata: 1\n\ndata: 2\n\nid: 8\ndata: 3\n\n",
	    "E id=7 event=x data=1\nE id=7 event=message data=2\nE id=8 event=message data=3\n");
	/* An event with no data is not dispatched, and its name does not leak. */
	parse_is("event: lonely\n\ndata: a\n\n", "E id= event=message data=a\n");
	/* "id" with no value resets the id. */
	parse_is("id: 5\ndata: a\n\nid\ndata: b\n\n",
	    "E id=5 event=message data=a\nE id= event=message data=b\n");
	/* Unknown fields and retry are ignored; field names are case-sensitive. */
	parse_is("retry: 10\nfoo: bar\nData: no\nDATA: no\ndata: yes\n\n",
	    "E id= event=message data=yes\n");
	/* An id holding a NUL is ignored, as the specification says. */
	{
		static const char s[] = "id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n";
		struct log l;

		tr_init(&l);
		CU_ASSERT_EQUAL(feed_split(s, sizeof s - 1, NULL, 0, 4096, &l), 0);
		CU_ASSERT_STRING_EQUAL(l.out.data,
		    "E id=1 event=message data=a\nE id=1 event=message data=b\n");
		buf_free(&l.out);
	}
}

static void
test_comments(void)
{
	parse_is(": ping\n\n", "C  ping\n");
	parse_is(":\n", "C \n");
	parse_is("data: a\n:comment inside\ndata: b\n\n",
	    "C comment inside\nE id= event=message data=a|b\n");
	/* Without a comment callback comments are dropped quietly. */
	{
		struct sseparse p;
		struct log l;

		tr_init(&l);
		sseparse_init(&p, 64, 64, on_event, NULL, &l);
		CU_ASSERT_EQUAL(sseparse_feed(&p, ": x\ndata: y\n\n", 13), 0);
		sseparse_free(&p);
		CU_ASSERT_STRING_EQUAL(l.out.data, "E id= event=message data=y\n");
		buf_free(&l.out);
	}
}

static void
test_line_ends(void)
{
	const char *want = "E id=1 event=e data=a|b\n";

	parse_is("id: 1\nevent: e\ndata: a\ndata: b\n\n", want);
	parse_is("id: 1\r\nevent: e\r\ndata: a\r\ndata: b\r\n\r\n", want);
	parse_is("id: 1\revent: e\rdata: a\rdata: b\r\r", want);
	parse_is("id: 1\revent: e\r\ndata: a\ndata: b\r\n\r", want);
	/* CR CR LF is two line ends (a CR, then a CRLF): the second ends the event. */
	parse_is("data: a\r\r\ndata: b\n\n",
	    "E id= event=message data=a\nE id= event=message data=b\n");
	/* LF CR is two line ends as well. */
	parse_is("data: a\n\rdata: b\n\n",
	    "E id= event=message data=a\nE id= event=message data=b\n");
}

/* The split property: for every way of cutting the stream in two or three, and
 * byte by byte, the transcript equals the one of a single read. */
static const char *const streams[] = {
	"id: 1:0\nevent: start\ndata: {\"run\":1}\n\nid: 1:1\nevent: delta\ndata: {\"text\":\"a\"}\n\n"
	": ping\n\nid: 1:2\nevent: done\ndata: {\"status\":\"completed\"}\n\n",
	"id: 1\r\nevent: e\r\ndata: a\r\ndata: b\r\n\r\n:c\r\n\r\ndata: z\r\n\r\n",
	"data: x\r\rdata: y\r\r\r\n\r\ndata: lf-cr\n\r\n\rid: 9\rdata: q\r\r",
	"data: one\n\ndata\n\n\n\n:\n\nevent: ev\nid\ndata:two\ndata:  three\n\nretry: 5\n\n",
	"data: {\"text\":\"caf\xc3\xa9 \\r\\n\"}\r\n\r\nid: 2:0\r\nevent: reset\r\ndata: {}\r\n\r\n",
};

static void
test_split_everywhere(void)
{
	for (size_t k = 0; k < sizeof streams / sizeof streams[0]; k++) {
		const char *s = streams[k];
		size_t n = strlen(s);
		struct log whole;

		tr_init(&whole);
		CU_ASSERT_EQUAL_FATAL(feed_split(s, n, NULL, 0, 4096, &whole), 0);
		CU_ASSERT(whole.events > 0);

		/* one cut, at every offset (0 and n give empty reads) */
		for (size_t i = 0; i <= n; i++) {
			struct log l;
			size_t cuts[1] = { i };

			tr_init(&l);
			CU_ASSERT_EQUAL(feed_split(s, n, cuts, 1, 4096, &l), 0);
			CU_ASSERT_STRING_EQUAL(l.out.data, whole.out.data);
			if (strcmp(l.out.data, whole.out.data) != 0)
				fprintf(stderr, "\nstream %zu cut at %zu differs\n", k, i);
			buf_free(&l.out);
		}
		/* two cuts, at every pair of offsets */
		for (size_t i = 0; i <= n; i++) {
			for (size_t j = i; j <= n; j++) {
				struct log l;
				size_t cuts[2] = { i, j };

				tr_init(&l);
				CU_ASSERT_EQUAL(feed_split(s, n, cuts, 2, 4096, &l), 0);
				if (strcmp(l.out.data, whole.out.data) != 0) {
					CU_FAIL("two cuts differ");
					fprintf(stderr, "\nstream %zu cut at %zu,%zu differs\n", k, i, j);
				}
				buf_free(&l.out);
			}
		}
		/* byte by byte */
		{
			struct log l;
			size_t cuts[512];

			CU_ASSERT_FATAL(n <= 512);
			for (size_t i = 0; i < n; i++)
				cuts[i] = i + 1;
			tr_init(&l);
			CU_ASSERT_EQUAL(feed_split(s, n, cuts, n, 4096, &l), 0);
			CU_ASSERT_STRING_EQUAL(l.out.data, whole.out.data);
			buf_free(&l.out);
		}
		buf_free(&whole.out);
	}
}

static void
test_line_bound(void)
{
	char line[64];
	struct sseparse p;
	struct log l;

	/* A line of exactly max_line bytes is fine, whole or split. */
	memcpy(line, "data: ", 6);
	memset(line + 6, 'x', 10);
	line[16] = '\n';
	line[17] = '\n';
	tr_init(&l);
	sseparse_init(&p, 16, 1024, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, line, 18), 0);
	CU_ASSERT_EQUAL(sseparse_feed(&p, line, 5), 0);
	CU_ASSERT_EQUAL(sseparse_feed(&p, line + 5, 13), 0);
	CU_ASSERT_EQUAL(l.events, 2);
	/* One more byte: -1, whether it arrives with the line end or before it ... */
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: xxxxxxxxxxx\n", 18), -1);
	/* ... and the parser stays in error, even for good input. */
	CU_ASSERT_EQUAL(sseparse_feed(&p, "\n", 1), -1);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: ok\n\n", 10), -1);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "", 0), -1);
	CU_ASSERT_EQUAL(l.events, 2);
	sseparse_free(&p);
	buf_free(&l.out);

	/* Split: the overlong line is caught before its line end ever arrives. */
	tr_init(&l);
	sseparse_init(&p, 16, 1024, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: xxxxx", 11), 0);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "xxxxx", 5), 0);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "x", 1), -1);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "\n\n", 2), -1);
	CU_ASSERT_EQUAL(l.events, 0);
	sseparse_free(&p);
	buf_free(&l.out);

	/* An overlong comment line counts too. */
	tr_init(&l);
	sseparse_init(&p, 16, 1024, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, ":0123456789abcdefg\n", 19), -1);
	CU_ASSERT_EQUAL(l.comments, 0);
	sseparse_free(&p);
	buf_free(&l.out);
}

static void
test_event_bound(void)
{
	struct sseparse p;
	struct log l;

	/* data is bounded too: "aaaa\nbbbb" is 9 bytes. */
	tr_init(&l);
	sseparse_init(&p, 64, 9, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: aaaa\ndata: bbbb\n\n", 23), 0);
	CU_ASSERT_EQUAL(l.events, 1);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: aaaa\ndata: bbbbb\n\n", 24), -1);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: a\n\n", 9), -1);
	CU_ASSERT_EQUAL(l.events, 1);
	sseparse_free(&p);
	buf_free(&l.out);
}

static void
test_callback_stops(void)
{
	static const char s[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
	struct sseparse p;
	struct log l;

	/* A non-zero return stops this feed at once and is returned as is. */
	tr_init(&l);
	l.stop_at = 2;
	l.stop_rc = 7;
	sseparse_init(&p, 64, 64, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, s, sizeof s - 1), 7);
	CU_ASSERT_EQUAL(l.events, 2);
	CU_ASSERT_STRING_EQUAL(l.out.data,
	    "E id= event=message data=1\nE id= event=message data=2\n");
	sseparse_free(&p);
	buf_free(&l.out);

	/* Negative values too: they are the callback's, not a bound error. */
	tr_init(&l);
	l.stop_at = 1;
	l.stop_rc = -5;
	sseparse_init(&p, 64, 64, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, s, sizeof s - 1), -5);
	CU_ASSERT_EQUAL(l.events, 1);
	CU_ASSERT_EQUAL(p.error, 0);
	sseparse_free(&p);
	buf_free(&l.out);

	/* Stopped on the last byte of a read: the next read goes on normally. */
	tr_init(&l);
	l.stop_at = 1;
	l.stop_rc = 1;
	sseparse_init(&p, 64, 64, on_event, on_comment, &l);
	CU_ASSERT_EQUAL(sseparse_feed(&p, s, 9), 1);
	CU_ASSERT_EQUAL(sseparse_feed(&p, s + 9, sizeof s - 1 - 9), 0);
	CU_ASSERT_EQUAL(l.events, 3);
	sseparse_free(&p);
	buf_free(&l.out);
}

static void
test_no_callback(void)
{
	struct sseparse p;

	sseparse_init(&p, 64, 64, NULL, NULL, NULL);
	CU_ASSERT_EQUAL(sseparse_feed(&p, "data: a\n\n: c\n\n", 14), 0);
	sseparse_free(&p);
	/* free of a parser that never allocated */
	sseparse_init(&p, 64, 64, NULL, NULL, NULL);
	sseparse_free(&p);
}

static const struct unit_case cases[] = {
	{ "single event", test_single_event },
	{ "multi-line data", test_multi_line },
	{ "fields", test_fields },
	{ "comments", test_comments },
	{ "line ends", test_line_ends },
	{ "split at every offset", test_split_everywhere },
	{ "line bound", test_line_bound },
	{ "event bound", test_event_bound },
	{ "callback stops the feed", test_callback_stops },
	{ "no callbacks", test_no_callback },
};

UNIT_MAIN("sseparse", cases)
