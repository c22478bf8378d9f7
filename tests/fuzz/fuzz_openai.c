/* fuzz_openai.c - what the OpenAI-compatible provider reads from upstream
 * (app/provider_openai_parse.c): the streamed chat completion, error bodies, and
 * the excerpts error messages quote; plus the provider_models table. Properties:
 *   - the stream's outcome (text, result, message, counters, usage, finish reason,
 *     the tool calls assembled and their JSON or why it is refused) is the same
 *     whether the body comes in one read, two or three reads split where the input
 *     says, or one byte at a time; taking the text after every read adds up to the
 *     same text;
 *   - the tool calls' JSON, when written, is an array of as many
 *     {"id","name","arguments":{…}} as there are calls, in valid UTF-8;
 *   - the text is valid UTF-8 without NUL; a failure has a message, in valid UTF-8
 *     (it ends up in a JSON error PostgreSQL stores); usage is "" or a JSON object;
 *     [DONE] is only seen on a healthy stream;
 *   - openai_error_text and openai_excerpt write valid UTF-8 without control bytes,
 *     NUL-terminated within cap, and an excerpt quotes at most max input bytes;
 *   - openai_model_lookup agrees with an independent reading of the table
 *     ("a, b=upstream-b") and leaves out untouched unless it returns 1. */
#include "fuzz.h"
#include "err.h"
#include "provider_openai.h"
#include "toolcall.h"
#include "util.h"

#include <json-c/json.h>

#define MAX_LINE 1024           /* the minima of provider_max_line and max_output */
#define MAX_TEXT 1024
#define BIG ((size_t)1 << 24)

struct outcome {
	struct buf text;        /* all the text, taken after every read or at the end */
	int rc;
	char err[512];
	long events, deltas;
	char usage[192];
	char finish[32];
	int done;
	long tool_deltas;
	int ncalls;
	size_t calls_total;
	int calls_rc;           /* toolcalls_json's */
	struct buf calls;       /* its JSON, or its message */
};

/* The calls as toolcalls_json writes them, or the sentence why not. */
static void
take_calls(const struct toolcalls *t, struct outcome *o)
{
	char err[512] = "";

	buf_init(&o->calls, (size_t)4 << 20);
	o->ncalls = toolcalls_count(t);
	o->calls_total = t->total;
	o->calls_rc = toolcalls_json(t, 1, &o->calls, err, sizeof err);
	FUZZ_CHECK(o->calls_rc == TE_OK || o->calls_rc == TE_PROVIDER);
	if (o->calls_rc != TE_OK) {
		FUZZ_CHECK(o->calls.len == 0 && err[0] && utf8_valid(err, strlen(err)));
		FUZZ_CHECK(buf_puts(&o->calls, err) == TE_OK);
	}
}

static void
feed(const char *s, size_t n, const size_t *cuts, size_t ncuts, size_t max_text,
    int take_each, struct outcome *o)
{
	struct openai_stream st;
	size_t at = 0;
	int rc = TE_OK;

	openai_stream_init(&st, MAX_LINE, max_text);
	buf_init(&o->text, BIG);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		char *piece = fuzz_bytes((const uint8_t *)s + at, end - at);

		rc = openai_stream_feed(&st, piece, end - at);
		FUZZ_CHECK(rc == st.rc);
		free(piece);
		at = end;
		if (take_each)
			FUZZ_CHECK(openai_stream_take(&st, &o->text) == TE_OK);
	}
	FUZZ_CHECK(openai_stream_take(&st, &o->text) == TE_OK);
	FUZZ_CHECK(st.text.len == 0);
	o->rc = rc;
	memcpy(o->err, st.err, sizeof o->err);
	o->events = st.events;
	o->deltas = st.deltas;
	memcpy(o->usage, st.usage, sizeof o->usage);
	memcpy(o->finish, st.finish, sizeof o->finish);
	o->done = st.done;
	o->tool_deltas = st.tool_deltas;
	take_calls(&st.calls, o);
	openai_stream_free(&st);
}

static void
check_outcome(const struct outcome *o)
{
	const char *text = o->text.data ? o->text.data : "";

	FUZZ_CHECK(utf8_valid(text, o->text.len) && !memchr(text, '\0', o->text.len));
	FUZZ_CHECK(o->rc == TE_OK || o->rc == TE_PROVIDER || o->rc == TE_TOOLARGE);
	FUZZ_CHECK(memchr(o->err, '\0', sizeof o->err) != NULL);
	if (o->rc == TE_OK) {
		FUZZ_CHECK(o->err[0] == '\0');
	} else {
		FUZZ_CHECK(o->err[0] != '\0');
		if (!utf8_valid(o->err, strlen(o->err)))
			fprintf(stderr, "message: %s\n", o->err);
		FUZZ_CHECK(utf8_valid(o->err, strlen(o->err)));
	}
	FUZZ_CHECK(o->deltas >= 0 && o->deltas <= o->events);
	FUZZ_CHECK(o->tool_deltas >= 0 && o->tool_deltas <= o->events);
	FUZZ_CHECK(o->ncalls >= 0 && o->ncalls <= TOOLCALL_MAX_CALLS);
	FUZZ_CHECK(o->calls_total <= TOOLCALL_MAX_TOTAL);
	FUZZ_CHECK(o->ncalls == 0 || o->tool_deltas > 0 || o->rc != TE_OK);
	if (o->calls_rc == TE_OK) {
		struct json_tokener *tok = json_tokener_new_ex(64);
		struct json_object *a;

		FUZZ_CHECK(tok != NULL);
		FUZZ_CHECK(utf8_valid(o->calls.data, o->calls.len));
		a = json_tokener_parse_ex(tok, o->calls.data, (int)o->calls.len);
		FUZZ_CHECK(a && json_object_is_type(a, json_type_array));
		FUZZ_CHECK((int)json_object_array_length(a) == o->ncalls);
		for (int i = 0; i < o->ncalls; i++) {
			struct json_object *c = json_object_array_get_idx(a, (size_t)i), *v;

			FUZZ_CHECK(json_object_object_length(c) == 3);
			FUZZ_CHECK(json_object_object_get_ex(c, "id", &v) &&
			    json_object_is_type(v, json_type_string));
			FUZZ_CHECK(json_object_object_get_ex(c, "name", &v) &&
			    json_object_is_type(v, json_type_string));
			FUZZ_CHECK(json_object_object_get_ex(c, "arguments", &v) &&
			    json_object_is_type(v, json_type_object));
		}
		json_object_put(a);
		json_tokener_free(tok);
	}
	FUZZ_CHECK(!o->done || o->rc == TE_OK);
	FUZZ_CHECK(memchr(o->finish, '\0', sizeof o->finish) != NULL);
	FUZZ_CHECK(memchr(o->usage, '\0', sizeof o->usage) != NULL);
	if (o->usage[0]) {
		struct json_object *u = json_tokener_parse(o->usage);

		FUZZ_CHECK(u && json_object_is_type(u, json_type_object));
		json_object_put(u);
	}
}

static int
same(const struct outcome *a, const struct outcome *b)
{
	return a->text.len == b->text.len &&
	    (a->text.len == 0 || !memcmp(a->text.data, b->text.data, a->text.len)) &&
	    a->rc == b->rc && !strcmp(a->err, b->err) && a->events == b->events &&
	    a->deltas == b->deltas && !strcmp(a->usage, b->usage) &&
	    !strcmp(a->finish, b->finish) && a->done == b->done &&
	    a->tool_deltas == b->tool_deltas && a->ncalls == b->ncalls &&
	    a->calls_total == b->calls_total && a->calls_rc == b->calls_rc &&
	    a->calls.len == b->calls.len &&
	    (a->calls.len == 0 || !memcmp(a->calls.data, b->calls.data, a->calls.len));
}

static void
check_stream(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	size_t c1 = fuzz_split(data, size, 1), c2 = fuzz_split(data, size, 2), cuts[2];
	struct outcome whole, two, three, bytes, big, big_taken;

	cuts[0] = c1 < c2 ? c1 : c2;
	cuts[1] = c1 < c2 ? c2 : c1;
	feed(s, size, NULL, 0, MAX_TEXT, 0, &whole);
	check_outcome(&whole);
	feed(s, size, &c1, 1, MAX_TEXT, 0, &two);
	FUZZ_CHECK(same(&whole, &two));
	feed(s, size, cuts, 2, MAX_TEXT, 0, &three);
	FUZZ_CHECK(same(&whole, &three));
	if (size <= 1024) {
		size_t *every = malloc((size ? size : 1) * sizeof *every);

		FUZZ_CHECK(every != NULL);
		for (size_t i = 0; i < size; i++)
			every[i] = i + 1;
		feed(s, size, every, size ? size - 1 : 0, MAX_TEXT, 0, &bytes);
		FUZZ_CHECK(same(&whole, &bytes));
		buf_free(&bytes.text);
		buf_free(&bytes.calls);
		free(every);
	}
	/* no text bound: taking after each read or once gives the same */
	feed(s, size, &c1, 1, BIG, 0, &big);
	check_outcome(&big);
	feed(s, size, cuts, 2, BIG, 1, &big_taken);
	FUZZ_CHECK(same(&big, &big_taken));
	if (whole.rc == TE_OK)
		FUZZ_CHECK(same(&whole, &big));
	buf_free(&big_taken.text);
	buf_free(&big_taken.calls);
	buf_free(&big.text);
	buf_free(&big.calls);
	buf_free(&three.text);
	buf_free(&three.calls);
	buf_free(&two.text);
	buf_free(&two.calls);
	buf_free(&whole.text);
	buf_free(&whole.calls);
}

static void
check_quoted(const char *dst, size_t cap)
{
	size_t n;

	FUZZ_CHECK(memchr(dst, '\0', cap) != NULL);
	n = strlen(dst);
	FUZZ_CHECK(utf8_valid(dst, n));
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)dst[i] >= 0x20 && dst[i] != 0x7f);
}

static void
check_texts(const uint8_t *data, size_t size)
{
	static const size_t caps[] = { 1, 4, 16, OPENAI_EXCERPT_MAX * 4 + 200 };
	char *body = fuzz_bytes(data, size);

	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
		char *dst = malloc(caps[i]);
		size_t max = fuzz_split(data, size, 4 + (uint32_t)i), n;

		FUZZ_CHECK(dst != NULL);
		openai_error_text(dst, caps[i], body, size);
		check_quoted(dst, caps[i]);
		FUZZ_CHECK(caps[i] < 16 || dst[0] != '\0');

		FUZZ_CHECK(openai_excerpt(dst, caps[i], body, size, max) == dst);
		check_quoted(dst, caps[i]);
		/* each input byte quoted becomes at most 4 output bytes, "..." aside */
		n = strlen(dst);
		FUZZ_CHECK(n <= 4 * max + 3);
		free(dst);
	}
	free(body);
}

/* The table read plainly: entries split at ',', the name before the first '=',
 * blanks (space, tab) trimmed; the upstream name after '=', or the name. */
static int
lookup_reference(const char *table, const char *model, char *out, size_t outlen)
{
	const char *p = table;

	for (;;) {
		size_t len = strcspn(p, ","), nlen, eq, ulen;
		const char *name = p, *up;

		eq = strcspn(p, "=,");
		nlen = eq;
		while (nlen && (*name == ' ' || *name == '\t'))
			name++, nlen--;
		while (nlen && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
			nlen--;
		if (*model && nlen == strlen(model) && !memcmp(name, model, nlen)) {
			up = eq < len ? p + eq + 1 : name;
			ulen = eq < len ? len - eq - 1 : nlen;
			while (ulen && (*up == ' ' || *up == '\t'))
				up++, ulen--;
			while (ulen && (up[ulen - 1] == ' ' || up[ulen - 1] == '\t'))
				ulen--;
			if (ulen == 0) {
				up = name;
				ulen = nlen;
			}
			if (ulen >= outlen)
				return -1;
			memcpy(out, up, ulen);
			out[ulen] = '\0';
			return 1;
		}
		if (!p[len])
			return 0;
		p += len + 1;
	}
}

static void
check_lookup(const uint8_t *data, size_t size)
{
	static const size_t outlens[] = { 1, 8, 256 };
	char *table = fuzz_cstr(data, size);
	size_t tlen = strlen(table);
	const char *model = tlen < size ? table + tlen + 1 : "gpt-4o";

	for (size_t i = 0; i < sizeof outlens / sizeof outlens[0]; i++) {
		char *out = malloc(outlens[i]), want[4096 + 1];
		int rc;

		FUZZ_CHECK(out != NULL);
		memset(out, 0x5a, outlens[i]);
		rc = openai_model_lookup(table, model, out, outlens[i]);
		FUZZ_CHECK(rc == lookup_reference(table, model, want, outlens[i]));
		if (rc == 1) {
			FUZZ_CHECK(!strcmp(out, want));
		} else {
			for (size_t k = 0; k < outlens[i]; k++)
				FUZZ_CHECK(out[k] == 0x5a);
		}
		free(out);
	}
	free(table);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_stream(data, size);
	check_texts(data, size);
	check_lookup(data, size);
	return 0;
}
