/* toolcall.c - tool calls assembled from streamed fragments (toolcall.h). Pure:
 * tests/unit/test_toolcall.c and tests/fuzz/fuzz_toolcall.c feed it adversarial
 * fragments.
 *
 * Everything that comes from upstream is checked where it arrives: the index and
 * the id's bytes and length, the name's characters and length, every bound. The
 * arguments are checked once complete (toolcalls_json): one JSON object, parsed by
 * json-c with a depth limit, plus what json-c 0.16 accepts even in strict mode and
 * RFC 8259 (and PostgreSQL's jsonb, where the calls are stored) does not: single
 * quotes, raw control characters in strings, NaN and Infinity, "1.", \u0000, and
 * integers that json-c would silently clamp to 64 bits. They are written back in
 * json-c's compact form: every value is kept exactly, white space is not. */
#include "toolcall.h"
#include "util.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGS_DEPTH 32   /* nesting inside one call's arguments */

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void
toolcalls_init(struct toolcalls *t)
{
	memset(t, 0, sizeof *t);
}

void
toolcalls_free(struct toolcalls *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->n; i++)
		buf_free(&t->calls[i].args);
	free(t->calls);
	memset(t, 0, sizeof *t);
}

int
toolcalls_count(const struct toolcalls *t)
{
	return t ? t->n : 0;
}

static int
name_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '_' || c == '-';
}

/* The first byte of s that may not be in an id (visible ASCII, no space), or -1. */
static int
id_bad_byte(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return (unsigned char)s[i];
	return -1;
}

static int
name_bad_byte(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!name_char((unsigned char)s[i]))
			return (unsigned char)s[i];
	return -1;
}

static struct toolcall *
call_find(const struct toolcalls *t, long index)
{
	for (int i = 0; i < t->n; i++)
		if (t->calls[i].index == index)
			return &t->calls[i];
	return NULL;
}

int
toolcalls_feed(struct toolcalls *t, long index, const char *id, const char *name,
    const char *args, size_t args_len, char *err, size_t errlen)
{
	size_t idlen = id ? strlen(id) : 0, nlen = name ? strlen(name) : 0;
	struct toolcall *c;
	int bad, rc;

	if (index < 0 || index > TOOLCALL_MAX_INDEX)
		return fail(err, errlen, TE_PROVIDER, "upstream sent tool call index %ld; an index "
		    "must be between 0 and %d", index, TOOLCALL_MAX_INDEX);
	if (idlen > TOOLCALL_MAX_ID)
		return fail(err, errlen, TE_PROVIDER, "upstream sent an id of %zu bytes for tool "
		    "call %ld; the limit is %d", idlen, index, TOOLCALL_MAX_ID);
	if ((bad = id_bad_byte(id, idlen)) >= 0)
		return fail(err, errlen, TE_PROVIDER, "upstream sent an id for tool call %ld with "
		    "byte 0x%02x; an id must be visible ASCII", index, (unsigned)bad);
	if ((bad = name_bad_byte(name, nlen)) >= 0)
		return fail(err, errlen, TE_PROVIDER, "upstream sent a name for tool call %ld with "
		    "byte 0x%02x; a tool name must match ^[A-Za-z0-9_-]{1,64}$", index, (unsigned)bad);
	c = call_find(t, index);
	if (c && idlen && c->id[0] && strcmp(c->id, id) != 0)
		return fail(err, errlen, TE_PROVIDER, "upstream changed the id of tool call %ld "
		    "from \"%s\" to \"%s\"", index, c->id, id);
	if (nlen > TOOLCALL_MAX_NAME - (c ? strlen(c->name) : 0))
		return fail(err, errlen, TE_PROVIDER, "the name of tool call %ld is longer than "
		    "%d bytes", index, TOOLCALL_MAX_NAME);
	if (args_len > TOOLCALL_MAX_ARGS - (c ? c->args.len : 0))
		return fail(err, errlen, TE_TOOLARGE, "the arguments of tool call %ld are longer "
		    "than %d bytes", index, TOOLCALL_MAX_ARGS);
	if (args_len > TOOLCALL_MAX_TOTAL - t->total)
		return fail(err, errlen, TE_TOOLARGE, "the arguments of the reply's tool calls are "
		    "longer than %d bytes in all", TOOLCALL_MAX_TOTAL);
	if (!c) {
		struct toolcall *calls;

		if (t->n >= TOOLCALL_MAX_CALLS)
			return fail(err, errlen, TE_TOOLARGE, "upstream asked for more than %d tool "
			    "calls in one reply", TOOLCALL_MAX_CALLS);
		if (!(calls = realloc(t->calls, (size_t)(t->n + 1) * sizeof *calls)))
			return fail(err, errlen, TE_NOMEM, "out of memory assembling tool calls");
		t->calls = calls;
		c = &t->calls[t->n++];
		memset(c, 0, sizeof *c);
		c->index = index;
		buf_init(&c->args, TOOLCALL_MAX_ARGS);
	}
	if (args_len && (rc = buf_append(&c->args, args, args_len)) != TE_OK)
		return fail(err, errlen, rc, "out of memory assembling tool calls");
	t->total += args_len;
	if (idlen)
		memcpy(c->id, id, idlen + 1);
	if (nlen)
		memcpy(c->name + strlen(c->name), name, nlen + 1);
	return TE_OK;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? (RFC 8259), and for an integer,
 * within what json-c keeps exactly (int64 below zero, uint64 above). */
static const char *
number_check(const char *s, size_t n)
{
	size_t i = 0, digits;
	int neg = 0, integer = 1;

	if (i < n && s[i] == '-')
		i++, neg = 1;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return "a number that is not a JSON number";
	digits = i - (size_t)neg;
	if (i < n && s[i] == '.') {
		integer = 0;
		if (++i >= n || s[i] < '0' || s[i] > '9')
			return "a number that is not a JSON number";
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		integer = 0;
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return "a number that is not a JSON number";
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i != n)
		return "a number that is not a JSON number";
	if (integer) {
		const char *lim = neg ? "9223372036854775808" : "18446744073709551615";
		size_t limlen = strlen(lim);

		if (digits > limlen || (digits == limlen && memcmp(s + neg, lim, limlen) > 0))
			return "an integer outside the 64-bit range";
	}
	return NULL;
}

/* Text json-c has parsed as one object: what it took that it should not have (see
 * the top of the file), with *at the byte, or NULL. */
static const char *
lax_json(const char *s, size_t n, size_t *at)
{
	size_t i = 0;

	while (i < n) {
		unsigned char ch = (unsigned char)s[i];
		size_t start = i;
		const char *why;

		*at = i;
		if (ch == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				*at = i;
				if ((unsigned char)s[i] < 0x20)
					return "a control character not escaped in a string";
				if (s[i] == '\\' && ++i < n && s[i] == 'u' && n - i > 4 &&
				    !memcmp(s + i + 1, "0000", 4))
					return "a NUL character (\\u0000), which cannot be stored";
			}
			i++;
		} else if (ch == '\'') {
			return "a single-quoted string";
		} else if (ch == '-' || (ch >= '0' && ch <= '9')) {
			while (i < n && s[i] && strchr("0123456789+-.eE", s[i]))
				i++;
			if ((why = number_check(s + start, i - start)) != NULL)
				return why;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
			while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
				i++;
			if (!((i - start == 4 && (!memcmp(s + start, "true", 4) ||
			    !memcmp(s + start, "null", 4))) ||
			    (i - start == 5 && !memcmp(s + start, "false", 5))))
				return "a word that is not true, false or null";
		} else {
			i++;
		}
	}
	return NULL;
}

static int
ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The call's arguments as one JSON object (*out, the caller puts it), or a reason in
 * why: "are not valid JSON ...". */
static int
args_parse(const struct toolcall *c, struct json_object **out, char *why, size_t whylen)
{
	const char *s = c->args.data ? c->args.data : "";
	size_t n = c->args.len, end, at;
	struct json_tokener *tok;
	struct json_object *o;
	enum json_tokener_error jerr;
	const char *lax;

	for (end = 0; end < n && ws(s[end]); end++)
		;
	if (end == n) {         /* "" or only white space: no arguments */
		if (!(*out = json_object_new_object()))
			return fail(why, whylen, TE_NOMEM, "out of memory");
		return TE_OK;
	}
	if (!utf8_valid(s, n))
		return fail(why, whylen, TE_PROVIDER, "are not valid UTF-8");
	/* json-c counts the top-level object as one level. */
	if (!(tok = json_tokener_new_ex(ARGS_DEPTH + 1)))
		return fail(why, whylen, TE_NOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue) {
		json_object_put(o);
		if (s[strspn(s, " \t\r\n")] != '{')
			return fail(why, whylen, TE_PROVIDER, "are not a JSON object");
		return fail(why, whylen, TE_PROVIDER, "are cut short: %zu bytes of JSON that do "
		    "not end", n);
	}
	if (jerr == json_tokener_error_depth)
		return fail(why, whylen, TE_PROVIDER, "nest deeper than %d levels", ARGS_DEPTH);
	if (jerr != json_tokener_success)
		return fail(why, whylen, TE_PROVIDER, "are not valid JSON (at byte %zu: %s)", end,
		    json_tokener_error_desc(jerr));
	while (end < n && ws(s[end]))
		end++;
	if (end < n) {
		json_object_put(o);
		return fail(why, whylen, TE_PROVIDER, "have bytes after the JSON object (at byte "
		    "%zu)", end);
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return fail(why, whylen, TE_PROVIDER, "are not a JSON object");
	}
	if ((lax = lax_json(s, n, &at)) != NULL) {
		json_object_put(o);
		return fail(why, whylen, TE_PROVIDER, "hold %s (at byte %zu)", lax, at);
	}
	*out = o;
	return TE_OK;
}

/* The calls in index order (insertion sort: at most TOOLCALL_MAX_CALLS). */
static void
sort_by_index(const struct toolcalls *t, int *order)
{
	for (int i = 0; i < t->n; i++) {
		int j = i;

		while (j > 0 && t->calls[order[j - 1]].index > t->calls[i].index) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
}

static const char *
call_id(const struct toolcall *c, int attempt, char *gen, size_t genlen)
{
	if (c->id[0])
		return c->id;
	snprintf(gen, genlen, "call_%d_%ld", attempt, c->index);
	return gen;
}

int
toolcalls_json(const struct toolcalls *t, int attempt, struct buf *out, char *err,
    size_t errlen)
{
	int order[TOOLCALL_MAX_CALLS];
	size_t len0 = out->len;
	int rc = TE_OK;

	sort_by_index(t, order);
	if ((rc = buf_puts(out, "[")) != TE_OK)
		goto out;
	for (int k = 0; k < t->n; k++) {
		const struct toolcall *c = &t->calls[order[k]];
		char gen[64], gen2[64], why[256];
		const char *id = call_id(c, attempt, gen, sizeof gen);
		struct json_object *args = NULL;
		const char *argtext;

		if (!c->name[0]) {
			rc = fail(err, errlen, TE_PROVIDER, "upstream sent tool call %ld without a "
			    "name", c->index);
			goto out;
		}
		for (int j = 0; j < k; j++)
			if (!strcmp(id, call_id(&t->calls[order[j]], attempt, gen2, sizeof gen2))) {
				rc = fail(err, errlen, TE_PROVIDER, "upstream gave tool calls %ld and "
				    "%ld the same id \"%s\"", t->calls[order[j]].index, c->index, id);
				goto out;
			}
		if ((rc = args_parse(c, &args, why, sizeof why)) != TE_OK) {
			fail(err, errlen, rc, "the arguments of tool call %ld (%s) %s", c->index,
			    c->name, why);
			goto out;
		}
		argtext = json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN |
		    JSON_C_TO_STRING_NOSLASHESCAPE);
		if (!argtext)
			rc = TE_NOMEM;
		else if ((rc = buf_puts(out, k ? ",{\"id\":" : "{\"id\":")) == TE_OK &&
		    (rc = buf_json_str(out, id, strlen(id))) == TE_OK &&
		    (rc = buf_puts(out, ",\"name\":")) == TE_OK &&
		    (rc = buf_json_str(out, c->name, strlen(c->name))) == TE_OK &&
		    (rc = buf_puts(out, ",\"arguments\":")) == TE_OK &&
		    (rc = buf_puts(out, argtext)) == TE_OK)
			rc = buf_puts(out, "}");
		json_object_put(args);
		if (rc != TE_OK)
			goto full;
	}
	if ((rc = buf_puts(out, "]")) == TE_OK)
		goto out;
full:
	if (rc == TE_NOMEM)
		fail(err, errlen, rc, "out of memory writing the tool calls");
	else
		fail(err, errlen, rc, "the tool calls do not fit in %zu bytes", out->max);
out:
	if (rc != TE_OK && out->data) {
		out->len = len0;
		out->data[len0] = '\0';
	}
	return rc;
}
