/* fuzz_sseparse.c - event streams read from upstream (app/sseparse.c, which tetherctl
 * and the OpenAI-compatible provider use). Properties:
 *   - the events and comments, and whether a bound was hit, are the same whether
 *     the bytes come in one read, in two or three reads split where the input says,
 *     or one byte at a time (small bounds, so the bound paths are exercised too);
 *   - with bounds that are never hit, they are what an independent reading of the
 *     WHATWG event-stream rules gives (with tether's 255-byte id, 63-byte event name
 *     cut at a NUL, and a leading BOM kept, as sseparse does);
 *   - every event is well formed: data NUL-terminated at data_len and free of CR,
 *     id and event name within their bounds and free of line ends;
 *   - a callback's non-zero return stops the feed with that value after exactly
 *     that event;
 *   - what sse_format (app/sse.c) writes parses back to its data, line ends made LF. */
#include "fuzz.h"
#include "err.h"
#include "sse.h"
#include "sseparse.h"

#define BIG ((size_t)1 << 30)
#define SMALL_LINE 64
#define SMALL_EVENT 200

struct log {
	struct buf out;
	long events;
	long stop_at;           /* return 7 from this event (1-based); 0: never */
};

/* Records are length-prefixed, so different streams never print alike. */
static void
put(struct buf *b, const char *s, size_t n)
{
	FUZZ_CHECK(buf_printf(b, "%zu:", n) == TE_OK && buf_append(b, s, n) == TE_OK);
}

static int
on_event(void *arg, const struct sse_event *ev)
{
	struct log *l = arg;
	size_t idn = strlen(ev->id), evn = strlen(ev->event);

	FUZZ_CHECK(ev->data[ev->data_len] == '\0' && !memchr(ev->data, '\r', ev->data_len));
	FUZZ_CHECK(idn <= 255 && !strpbrk(ev->id, "\r\n"));
	FUZZ_CHECK(evn >= 1 && evn <= 63 && !strpbrk(ev->event, "\r\n"));
	FUZZ_CHECK(buf_puts(&l->out, "E") == TE_OK);
	put(&l->out, ev->id, idn);
	put(&l->out, ev->event, evn);
	put(&l->out, ev->data, ev->data_len);
	l->events++;
	return l->events == l->stop_at ? 7 : 0;
}

static void
on_comment(void *arg, const char *text, size_t len)
{
	struct log *l = arg;

	FUZZ_CHECK(!memchr(text, '\r', len) && !memchr(text, '\n', len));
	FUZZ_CHECK(buf_puts(&l->out, "C") == TE_OK);
	put(&l->out, text, len);
}

/* Feed s in the pieces that cuts (ascending, each <= n) delimit; return the last
 * feed's result (the parser stays failed once a bound is hit). */
static int
run(const char *s, size_t n, const size_t *cuts, size_t ncuts, size_t max_line,
    size_t max_event, long stop_at, struct buf *out)
{
	struct log l = { .stop_at = stop_at };
	struct sseparse p;
	size_t at = 0;
	int rc = 0;

	buf_init(&l.out, BIG);
	sseparse_init(&p, max_line, max_event, on_event, on_comment, &l);
	for (size_t i = 0; i <= ncuts && rc == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		/* each piece in its own exact heap block */
		char *piece = fuzz_bytes((const uint8_t *)s + at, end - at);

		rc = sseparse_feed(&p, piece, end - at);
		free(piece);
		at = end;
	}
	FUZZ_CHECK(rc == 0 || rc == -1 || rc == 7);
	FUZZ_CHECK((rc == -1) == (p.error != 0));
	if (rc == -1)
		FUZZ_CHECK(sseparse_feed(&p, "\n\n", 2) == -1);
	FUZZ_CHECK(buf_printf(&l.out, "R%d", rc) == TE_OK);
	sseparse_free(&p);
	*out = l.out;
	return rc;
}

static int
same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

/* The event-stream rules, read straight from the specification, whole input at once. */
static long
reference(const char *s, size_t n, struct buf *out)
{
	char id[256] = "", event[64] = "";
	struct buf data;
	long events = 0;
	int have = 0;

	buf_init(out, BIG);
	buf_init(&data, BIG);
	for (size_t i = 0, j; i < n; i = j + 1 + (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n')) {
		const char *l = s + i, *colon, *val;
		size_t len, flen, vlen;

		for (j = i; j < n && s[j] != '\r' && s[j] != '\n'; j++)
			;
		if (j == n)
			break;          /* an unterminated last line is never processed */
		len = j - i;
		if (len == 0) {
			if (have) {
				FUZZ_CHECK(buf_puts(out, "E") == TE_OK);
				put(out, id, strlen(id));
				put(out, event[0] ? event : "message", strlen(event[0] ? event : "message"));
				put(out, data.data, data.len);
				events++;
			}
			buf_reset(&data);
			have = 0;
			event[0] = '\0';
			continue;
		}
		if (l[0] == ':') {
			FUZZ_CHECK(buf_puts(out, "C") == TE_OK);
			put(out, l + 1, len - 1);
			continue;
		}
		colon = memchr(l, ':', len);
		flen = colon ? (size_t)(colon - l) : len;
		val = colon ? colon + 1 : l + len;
		if (val < l + len && *val == ' ')
			val++;
		vlen = (size_t)(l + len - val);
		if (flen == 4 && !memcmp(l, "data", 4)) {
			if (have)
				FUZZ_CHECK(buf_append(&data, "\n", 1) == TE_OK);
			FUZZ_CHECK(buf_append(&data, val, vlen) == TE_OK);
			if (!data.data)
				FUZZ_CHECK(buf_append(&data, "", 0) == TE_OK);
			have = 1;
		} else if (flen == 5 && !memcmp(l, "event", 5)) {
			/* kept up to 63 bytes, as a C string */
			size_t k = strnlen(val, vlen < 63 ? vlen : 63);

			memcpy(event, val, k);
			event[k] = '\0';
		} else if (flen == 2 && !memcmp(l, "id", 2) && !memchr(val, '\0', vlen)) {
			size_t k = vlen < 255 ? vlen : 255;

			memcpy(id, val, k);
			id[k] = '\0';
		}
	}
	FUZZ_CHECK(buf_puts(out, "R0") == TE_OK);
	buf_free(&data);
	return events;
}

/* sse_format then parse: one event, its data the input with CRLF and CR made LF. */
static void
check_format(const char *s, size_t n)
{
	struct buf wire, norm, got, want;
	struct log l = { 0 };
	struct sseparse p;

	buf_init(&wire, BIG);
	buf_init(&norm, BIG);
	buf_init(&want, BIG);
	FUZZ_CHECK(sse_format(&wire, "3:14", "delta", s, n) == TE_OK);
	buf_init(&l.out, BIG);
	sseparse_init(&p, BIG, BIG, on_event, on_comment, &l);
	FUZZ_CHECK(sseparse_feed(&p, wire.data, wire.len) == 0);
	sseparse_free(&p);
	got = l.out;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		FUZZ_CHECK(buf_append(&norm, s[i] == '\r' ? "\n" : s + i, 1) == TE_OK);
	}
	FUZZ_CHECK(buf_puts(&want, "E") == TE_OK);
	put(&want, "3:14", 4);
	put(&want, "delta", 5);
	put(&want, norm.data ? norm.data : "", norm.len);
	FUZZ_CHECK(same(&got, &want));
	buf_free(&want);
	buf_free(&norm);
	buf_free(&got);
	buf_free(&wire);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	size_t c1 = fuzz_split(data, size, 1), c2 = fuzz_split(data, size, 2), cuts[2];
	struct buf whole, two, three, bytes, ref, big, stopped;
	long events;
	int rc;

	cuts[0] = c1 < c2 ? c1 : c2;
	cuts[1] = c1 < c2 ? c2 : c1;

	/* small bounds: every way of splitting agrees */
	run(s, size, NULL, 0, SMALL_LINE, SMALL_EVENT, 0, &whole);
	run(s, size, &c1, 1, SMALL_LINE, SMALL_EVENT, 0, &two);
	run(s, size, cuts, 2, SMALL_LINE, SMALL_EVENT, 0, &three);
	FUZZ_CHECK(same(&whole, &two));
	FUZZ_CHECK(same(&whole, &three));
	if (size <= 2048) {
		size_t *every = malloc((size ? size : 1) * sizeof *every);

		FUZZ_CHECK(every != NULL);
		for (size_t i = 0; i < size; i++)
			every[i] = i + 1;
		run(s, size, every, size ? size - 1 : 0, SMALL_LINE, SMALL_EVENT, 0, &bytes);
		FUZZ_CHECK(same(&whole, &bytes));
		buf_free(&bytes);
		free(every);
	}

	/* bounds never hit: the specification's reading */
	run(s, size, &c1, 1, BIG, BIG, 0, &big);
	events = reference(s, size, &ref);
	FUZZ_CHECK(same(&big, &ref));

	/* stopping at the first event: its record, then the callback's value */
	rc = run(s, size, &c2, 1, BIG, BIG, 1, &stopped);
	FUZZ_CHECK((rc == 7) == (events > 0));
	if (rc == 7) {
		FUZZ_CHECK(!memcmp(stopped.data + stopped.len - 2, "R7", 2));
		FUZZ_CHECK(stopped.len - 2 <= ref.len && !memcmp(stopped.data, ref.data, stopped.len - 2));
	} else {
		FUZZ_CHECK(same(&stopped, &ref));
	}

	check_format(s, size);
	buf_free(&stopped);
	buf_free(&big);
	buf_free(&ref);
	buf_free(&three);
	buf_free(&two);
	buf_free(&whole);
	return 0;
}
