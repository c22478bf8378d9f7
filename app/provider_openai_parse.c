/* provider_openai_parse.c - the pure parts of the OpenAI-compatible provider:
 * the streamed chat-completion chunk parser (on top of sseparse), the models
 * table, and the escaped excerpts that error messages quote. No I/O, no
 * threads: tests/unit/test_openai.c feeds it adversarial input. */
#include "provider.h"
#include "provider_openai.h"
#include "config.h"
#include "err.h"
#include "util.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define JSON_DEPTH 32
#define ERRTEXT_MAX (64 * 1024)         /* longest error body parsed as JSON */

static int
stream_fail(struct openai_stream *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* snprintf may cut the last UTF-8 sequence of s short: drop what is left of it
 * (the messages end up in JSON that PostgreSQL stores). */
static void
utf8_cut_tail(char *s)
{
	size_t n = strlen(s), k = n;

	while (k > 0 && n - k < 3 && ((unsigned char)s[k - 1] & 0xc0) == 0x80)
		k--;
	if (k > 0 && (unsigned char)s[k - 1] >= 0xc0 && !utf8_valid(s + k - 1, n - k + 1))
		s[k - 1] = '\0';
}

static int
stream_fail(struct openai_stream *s, int rc, const char *fmt, ...)
{
	va_list ap;

	if (s->rc != TE_OK)
		return s->rc;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof s->err, fmt, ap);
	va_end(ap);
	utf8_cut_tail(s->err);
	s->rc = rc;
	return rc;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0. */
static size_t
utf8_seq(const char *p, size_t n)
{
	unsigned char c = (unsigned char)p[0];
	size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
	    (c & 0xf8) == 0xf0 ? 4 : 0;

	if (len == 0 || len > n || !utf8_valid(p, len))
		return 0;
	return len;
}

/* Append text, U+FFFD for every invalid byte and for NUL (PostgreSQL text holds none). */
static int
append_utf8(struct buf *b, const char *p, size_t n)
{
	static const char repl[] = "\xef\xbf\xbd";
	size_t i = 0, start = 0;
	int rc;

	if (utf8_valid(p, n) && !memchr(p, '\0', n))
		return buf_append(b, p, n);
	while (i < n) {
		size_t k = p[i] ? utf8_seq(p + i, n - i) : 0;

		if (k) {
			i += k;
			continue;
		}
		if ((rc = buf_append(b, p + start, i - start)) != TE_OK ||
		    (rc = buf_append(b, repl, 3)) != TE_OK)
			return rc;
		start = ++i;
	}
	return buf_append(b, p + start, n - start);
}

char *
openai_excerpt(char *dst, size_t cap, const char *src, size_t len, size_t max)
{
	return text_escape(dst, cap, src, len, max, ESC_UTF8 | ESC_ELLIPSIS);
}

static const char *
jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* "type/code: message" of an OpenAI error object (or a bare string). */
static void
error_object_text(char *dst, size_t cap, struct json_object *e)
{
	char msg[OPENAI_EXCERPT_MAX * 4 + 8], kind[160] = "";
	const char *m, *type;
	struct json_object *code;

	if (json_object_is_type(e, json_type_string)) {
		m = json_object_get_string(e);
		openai_excerpt(dst, cap, m, strlen(m), OPENAI_EXCERPT_MAX);
		return;
	}
	m = jstr(e, "message");
	type = jstr(e, "type");
	if (json_object_object_get_ex(e, "code", &code) && !json_object_is_type(code, json_type_null) &&
	    (json_object_is_type(code, json_type_string) || json_object_is_type(code, json_type_int))) {
		const char *cs = json_object_get_string(code);
		snprintf(kind, sizeof kind, "%.60s%s%.60s", type ? type : "", type ? "/" : "", cs);
	} else if (type) {
		snprintf(kind, sizeof kind, "%.60s", type);
	}
	openai_excerpt(msg, sizeof msg, m ? m : "(no message)", m ? strlen(m) : 12,
	    OPENAI_EXCERPT_MAX);
	/* kind comes from JSON strings too: quote it the same way. */
	{
		char k2[sizeof kind * 4];
		openai_excerpt(k2, sizeof k2, kind, strlen(kind), sizeof kind);
		snprintf(dst, cap, "%s%s%s", k2, k2[0] ? ": " : "", msg);
		utf8_cut_tail(dst);
	}
}

void
openai_error_text(char *dst, size_t cap, const char *body, size_t len)
{
	struct json_tokener *tok;
	struct json_object *o, *e;

	if (cap == 0)
		return;
	dst[0] = '\0';
	if (!body || len == 0) {
		snprintf(dst, cap, "(empty body)");
		return;
	}
	if ((tok = json_tokener_new_ex(JSON_DEPTH))) {
		o = json_tokener_parse_ex(tok, body, (int)(len > ERRTEXT_MAX ? ERRTEXT_MAX : len));
		if (o && json_object_is_type(o, json_type_object) &&
		    json_object_object_get_ex(o, "error", &e) &&
		    (json_object_is_type(e, json_type_object) || json_object_is_type(e, json_type_string)))
			error_object_text(dst, cap, e);
		else if (o && jstr(o, "message"))
			openai_excerpt(dst, cap, jstr(o, "message"), strlen(jstr(o, "message")),
			    OPENAI_EXCERPT_MAX);
		json_object_put(o);
		json_tokener_free(tok);
	}
	if (!dst[0])
		openai_excerpt(dst, cap, body, len, OPENAI_EXCERPT_MAX);
}

static void
stream_usage(struct openai_stream *s, struct json_object *u)
{
	static const char *const keys[] = { "prompt_tokens", "completion_tokens", "total_tokens" };
	struct buf b;
	int any = 0, rc;

	if (!json_object_is_type(u, json_type_object))
		return;
	buf_init(&b, sizeof s->usage - 1);
	rc = buf_puts(&b, "{");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0] && rc == TE_OK; i++) {
		struct json_object *v;
		int64_t n;

		if (!json_object_object_get_ex(u, keys[i], &v) || !json_object_is_type(v, json_type_int) ||
		    (n = json_object_get_int64(v)) < 0)
			continue;
		rc = buf_printf(&b, "%s\"%s\":%lld", any ? "," : "", keys[i], (long long)n);
		any = 1;
	}
	if (rc == TE_OK && any && buf_puts(&b, "}") == TE_OK)
		snprintf(s->usage, sizeof s->usage, "%s", b.data);
	buf_free(&b);
}

/* A string member: its value and length, or NULL when absent or not a string. */
static const char *
jstrn(struct json_object *o, const char *key, size_t *len)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) {
		*len = (size_t)json_object_get_string_len(v);
		return json_object_get_string(v);
	}
	*len = 0;
	return NULL;
}

/* One element of delta.tool_calls: {index, id?, type?, function: {name?, arguments?}}.
 * A missing index is the element's position in the array (servers that send every
 * call whole in one chunk may omit it). */
static int
stream_tool_call(struct openai_stream *s, struct json_object *tc, size_t pos)
{
	struct json_object *v, *fn = NULL;
	const char *id, *type, *name = NULL, *args = NULL;
	size_t idlen, typelen, namelen = 0, args_len = 0;
	long index = (long)pos;
	char err[256], ex[OPENAI_EXCERPT_MAX * 4 + 8];
	int rc;

	if (!json_object_is_type(tc, json_type_object))
		return stream_fail(s, TE_PROVIDER, "upstream sent a tool call delta that is not an "
		    "object");
	if (json_object_object_get_ex(tc, "index", &v) && !json_object_is_type(v, json_type_null)) {
		int64_t x;

		if (!json_object_is_type(v, json_type_int))
			return stream_fail(s, TE_PROVIDER, "upstream sent a tool call index that is "
			    "not an integer");
		x = json_object_get_int64(v);
		if (x < 0 || x > TOOLCALL_MAX_INDEX)
			return stream_fail(s, TE_PROVIDER, "upstream sent tool call index %lld; an "
			    "index must be between 0 and %d", (long long)x, TOOLCALL_MAX_INDEX);
		index = (long)x;
	}
	id = jstrn(tc, "id", &idlen);
	type = jstrn(tc, "type", &typelen);
	if (type && typelen && strcmp(type, "function") != 0)
		return stream_fail(s, TE_PROVIDER, "upstream sent tool call %ld of type \"%s\"; "
		    "only \"function\" is supported", index, openai_excerpt(ex, sizeof ex, type,
		    typelen, 40));
	if (json_object_object_get_ex(tc, "function", &fn) && !json_object_is_type(fn, json_type_null)) {
		if (!json_object_is_type(fn, json_type_object))
			return stream_fail(s, TE_PROVIDER, "upstream sent tool call %ld with a "
			    "function that is not an object", index);
		name = jstrn(fn, "name", &namelen);
		if (json_object_object_get_ex(fn, "arguments", &v)) {
			if (json_object_is_type(v, json_type_string)) {
				args = json_object_get_string(v);
				args_len = (size_t)json_object_get_string_len(v);
			} else if (json_object_is_type(v, json_type_object)) {
				/* Not OpenAI's form, but some servers send the object itself. */
				args = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
				    JSON_C_TO_STRING_NOSLASHESCAPE);
				args_len = args ? strlen(args) : 0;
			} else if (!json_object_is_type(v, json_type_null)) {
				return stream_fail(s, TE_PROVIDER, "upstream sent arguments for tool "
				    "call %ld that are neither a string nor an object", index);
			}
		}
	}
	/* json-c keeps a string's NUL bytes; toolcalls_feed reads C strings. */
	if ((id && strlen(id) != idlen) || (name && strlen(name) != namelen))
		return stream_fail(s, TE_PROVIDER, "upstream sent an id or name for tool call %ld "
		    "with a NUL byte", index);
	if ((rc = toolcalls_feed(&s->calls, index, id, name, args, args_len, err, sizeof err)) !=
	    TE_OK)
		return stream_fail(s, rc, "%s", err);
	return TE_OK;
}

static int
stream_tool_calls(struct openai_stream *s, struct json_object *arr)
{
	size_t n;
	int rc;

	if (json_object_is_type(arr, json_type_null))
		return TE_OK;
	if (!json_object_is_type(arr, json_type_array))
		return stream_fail(s, TE_PROVIDER, "upstream sent delta.tool_calls that is not an "
		    "array");
	n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++)
		if ((rc = stream_tool_call(s, json_object_array_get_idx(arr, i), i)) != TE_OK)
			return rc;
	if (n)
		s->tool_deltas++;
	return TE_OK;
}

static int
stream_content(struct openai_stream *s, struct json_object *delta)
{
	struct json_object *v;

	if (!json_object_object_get_ex(delta, "content", &v) ||
	    !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
		return TE_OK;
	if (append_utf8(&s->text, json_object_get_string(v),
	    (size_t)json_object_get_string_len(v)) != TE_OK)
		return stream_fail(s, TE_TOOLARGE, "the reply exceeded the output limit (%zu bytes "
		    "pending; max_output)", s->text.max);
	s->deltas++;
	return TE_OK;
}

/* One chunk object: choices[0].delta.content and .tool_calls, finish_reason, usage,
 * error. */
static int
stream_chunk(struct openai_stream *s, struct json_object *o)
{
	struct json_object *v, *choices, *c0 = NULL, *delta;
	const char *finish;
	int rc;

	if (json_object_object_get_ex(o, "error", &v) && !json_object_is_type(v, json_type_null)) {
		char why[OPENAI_EXCERPT_MAX * 4 + 200];

		error_object_text(why, sizeof why, v);
		return stream_fail(s, TE_PROVIDER, "upstream error in the stream: %s", why);
	}
	if (json_object_object_get_ex(o, "usage", &v))
		stream_usage(s, v);
	if (!json_object_object_get_ex(o, "choices", &choices) ||
	    !json_object_is_type(choices, json_type_array))
		return TE_OK;
	for (size_t i = 0; i < json_object_array_length(choices); i++) {
		struct json_object *c = json_object_array_get_idx(choices, i), *idx;

		if (!json_object_is_type(c, json_type_object))
			continue;
		/* n > 1 is never asked for; keep choice 0 even if a server interleaves others. */
		if (!json_object_object_get_ex(c, "index", &idx) || json_object_get_int(idx) == 0) {
			c0 = c;
			break;
		}
	}
	if (!c0)
		return TE_OK;
	if ((finish = jstr(c0, "finish_reason")))
		snprintf(s->finish, sizeof s->finish, "%.31s", finish);
	if (!json_object_object_get_ex(c0, "delta", &delta) ||
	    !json_object_is_type(delta, json_type_object))
		return TE_OK;
	if ((rc = stream_content(s, delta)) != TE_OK)
		return rc;
	if (json_object_object_get_ex(delta, "tool_calls", &v))
		return stream_tool_calls(s, v);
	return TE_OK;
}

static int
on_sse_event(void *arg, const struct sse_event *ev)
{
	struct openai_stream *s = arg;
	struct json_tokener *tok;
	struct json_object *o;
	const char *d = ev->data;
	size_t n = ev->data_len, end;
	char ex[OPENAI_EXCERPT_MAX * 4 + 8];
	int rc;

	while (n && (d[n - 1] == ' ' || d[n - 1] == '\t'))
		n--;
	if (n == 6 && !memcmp(d, "[DONE]", 6)) {
		s->done = 1;
		return 1;       /* stop: nothing after [DONE] matters */
	}
	if (!strcmp(ev->event, "ping") || !strcmp(ev->event, "keepalive"))
		return 0;
	s->events++;
	if (!(tok = json_tokener_new_ex(JSON_DEPTH))) {
		stream_fail(s, TE_NOMEM, "out of memory parsing the provider's stream");
		return -1;
	}
	o = json_tokener_parse_ex(tok, d, (int)n);
	end = o ? json_tokener_get_parse_end(tok) : 0;
	while (o && end < n && (d[end] == ' ' || d[end] == '\t' || d[end] == '\n' || d[end] == '\r'))
		end++;
	if (!o || json_tokener_get_error(tok) != json_tokener_success || end != n ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		json_tokener_free(tok);
		stream_fail(s, TE_PROVIDER, "upstream sent an event that is not a JSON object: \"%s\"",
		    openai_excerpt(ex, sizeof ex, d, n, 80));
		return -1;
	}
	json_tokener_free(tok);
	if (!strcmp(ev->event, "error") && !json_object_object_get_ex(o, "error", NULL)) {
		openai_error_text(ex, sizeof ex, d, n);
		stream_fail(s, TE_PROVIDER, "upstream error in the stream: %s", ex);
		rc = -1;
	} else {
		rc = stream_chunk(s, o) == TE_OK ? 0 : -1;
	}
	json_object_put(o);
	return rc;
}

void
openai_stream_init(struct openai_stream *s, size_t max_line, size_t max_text)
{
	memset(s, 0, sizeof *s);
	sseparse_init(&s->sse, max_line, max_line, on_sse_event, NULL, s);
	buf_init(&s->text, max_text);
	toolcalls_init(&s->calls);
}

int
openai_stream_feed(struct openai_stream *s, const char *p, size_t n)
{
	int rc;

	if (s->rc != TE_OK)
		return s->rc;
	if (s->done)
		return TE_OK;
	rc = sseparse_feed(&s->sse, p, n);
	if (rc < 0 && s->rc == TE_OK)
		stream_fail(s, TE_TOOLARGE, "upstream sent a line or event longer than %zu bytes "
		    "(provider_max_line)", s->sse.max_line);
	return s->rc;
}

int
openai_stream_take(struct openai_stream *s, struct buf *out)
{
	int rc = TE_OK;

	if (s->text.len)
		rc = buf_append(out, s->text.data, s->text.len);
	buf_reset(&s->text);
	return rc;
}

void
openai_stream_free(struct openai_stream *s)
{
	if (!s)
		return;
	sseparse_free(&s->sse);
	buf_free(&s->text);
	toolcalls_free(&s->calls);
}

int
openai_model_lookup(const char *table, const char *model, char *out, size_t outlen)
{
	size_t mlen = strlen(model);
	const char *p = table;

	while (*p) {
		const char *e = strchr(p, ','), *eq, *name_end, *up, *up_end;

		if (!e)
			e = p + strlen(p);
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		for (eq = p; eq < e && *eq != '='; eq++)
			;
		if (eq == e)
			eq = NULL;
		name_end = eq ? eq : e;
		while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t'))
			name_end--;
		if ((size_t)(name_end - p) == mlen && mlen && !memcmp(p, model, mlen)) {
			up = eq ? eq + 1 : p;
			up_end = eq ? e : name_end;
			while (up < up_end && (*up == ' ' || *up == '\t'))
				up++;
			while (up_end > up && (up_end[-1] == ' ' || up_end[-1] == '\t'))
				up_end--;
			if (up_end == up) {     /* "name=" : the name itself */
				up = p;
				up_end = name_end;
			}
			if ((size_t)(up_end - up) >= outlen)
				return -1;
			memcpy(out, up, (size_t)(up_end - up));
			out[up_end - up] = '\0';
			return 1;
		}
		p = *e ? e + 1 : e;
	}
	return 0;
}

int
provider_openai_model_check(const struct config *cfg, const char *model, char *err, size_t errlen)
{
	char up[256];
	int rc;

	/* The allow-list: TETHER_PROVIDER_MODEL, the names of TETHER_PROVIDER_MODELS,
	 * or any name with TETHER_PROVIDER_MODELS=*. */
	if (!strcmp(cfg->provider_models, "*") ||
	    (cfg->provider_model[0] && !strcmp(model, cfg->provider_model)))
		return 0;
	if (!cfg->provider_models[0]) {
		if (cfg->provider_model[0])
			snprintf(err, errlen, "model \"%s\" is not configured; configured models: %s",
			    model, cfg->provider_model);
		else
			snprintf(err, errlen, "model \"%s\" is not configured: this server names no "
			    "model (TETHER_PROVIDER_MODEL, TETHER_PROVIDER_MODELS)", model);
		return -1;
	}
	rc = openai_model_lookup(cfg->provider_models, model, up, sizeof up);
	if (rc == 1)
		return 0;
	if (rc < 0)
		snprintf(err, errlen, "model \"%s\" maps to an upstream name that is too long", model);
	else
		snprintf(err, errlen, "model \"%s\" is not configured; configured models: %s%s%s",
		    model, cfg->provider_model[0] ? cfg->provider_model : "",
		    cfg->provider_model[0] ? ", " : "", cfg->provider_models);
	return -1;
}
