#include "jsonv.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and nothing else (RFC 8259). */
static int
number_ok(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (*s >= '0' && *s <= '9')
			s++;
	else
		return 0;
	if (*s == '.') {
		if (*++s < '0' || *s > '9')
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		if (*++s == '+' || *s == '-')
			s++;
		if (*s < '0' || *s > '9')
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/* json-c 0.16 takes NaN, Infinity and "1." even in strict mode and prints them back
 * as read, which PostgreSQL's json refuses: find such a number. Recursion is bounded
 * by the parse depth. */
static struct json_object *
bad_number(struct json_object *v)
{
	struct json_object *bad = NULL;

	switch (json_object_get_type(v)) {
	case json_type_double:
		return number_ok(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)) ?
		    NULL : v;
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v) && !bad; i++)
			bad = bad_number(json_object_array_get_idx(v, i));
		return bad;
	case json_type_object: {
		json_object_object_foreach(v, k, child) {
			(void)k;
			if ((bad = bad_number(child)) != NULL)
				return bad;
		}
		return NULL;
	}
	default:
		return NULL;
	}
}

int
jsonv_parse_object(const char *s, size_t n, int max_depth, struct json_object **out,
    char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *obj, *bad;
	enum json_tokener_error jerr;
	size_t used;

	if (n > INT32_MAX) {
		snprintf(err, errlen, "request body is too large to parse");
		return JV_SYNTAX;
	}
	if (!utf8_valid(s, n)) {
		snprintf(err, errlen, "request body is not valid UTF-8");
		return JV_SYNTAX;
	}
	/* json-c counts the top-level value as one level. */
	if (!(tok = json_tokener_new_ex(max_depth + 1))) {
		snprintf(err, errlen, "out of memory");
		return JV_SYNTAX;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		/* All was read. A NUL ends the input: that completes a top-level number or
		 * literal ("1", "null"), and anything else stays unfinished. */
		obj = json_tokener_parse_ex(tok, "", 1);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(obj);
			json_tokener_free(tok);
			snprintf(err, errlen, "request body is truncated JSON");
			return JV_SYNTAX;
		}
		jerr = json_tokener_success;
		used = n;
	}
	if (jerr != json_tokener_success) {
		int depth = jerr == json_tokener_error_depth;

		if (depth)
			snprintf(err, errlen, "JSON nested deeper than %d levels", max_depth);
		else
			snprintf(err, errlen, "malformed JSON at byte %zu: %s", used,
			    json_tokener_error_desc(jerr));
		json_tokener_free(tok);
		json_object_put(obj);
		return depth ? JV_DEPTH : JV_SYNTAX;
	}
	json_tokener_free(tok);
	for (; used < n; used++) {
		char c = s[used];
		if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			json_object_put(obj);
			snprintf(err, errlen, "unexpected bytes after the JSON value at byte %zu", used);
			return JV_SYNTAX;
		}
	}
	/* obj is NULL for a top-level null. */
	if (!obj || !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		snprintf(err, errlen, "request body must be a JSON object");
		return JV_NOT_OBJECT;
	}
	if ((bad = bad_number(obj)) != NULL) {
		snprintf(err, errlen, "malformed JSON: %.32s is not a JSON number",
		    json_object_to_json_string_ext(bad, JSON_C_TO_STRING_PLAIN));
		json_object_put(obj);
		return JV_SYNTAX;
	}
	*out = obj;
	return JV_OK;
}

/* Copy at most cap-1 bytes of s without splitting a UTF-8 sequence. */
static void
key_copy(char *dst, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* e->msg becomes "<field> <what>". */
static int
field_fail(struct jsonv_err *e, const char *prefix, const char *key, const char *what)
{
	snprintf(e->field, sizeof e->field, "%s%s", prefix ? prefix : "", key);
	snprintf(e->msg, sizeof e->msg, "%s %s", e->field, what);
	return JV_FIELD;
}

int
jsonv_only_keys(struct json_object *obj, const char *const *keys, const char *prefix,
    struct jsonv_err *e)
{
	json_object_object_foreach(obj, k, v) {
		int ok = 0;

		(void)v;
		for (const char *const *p = keys; *p; p++)
			if (!strcmp(*p, k)) {
				ok = 1;
				break;
			}
		if (!ok) {
			char name[64];

			key_copy(name, sizeof name, k);
			return field_fail(e, prefix, name, "is not a known field");
		}
	}
	return JV_OK;
}

int
jsonv_string(struct json_object *obj, const char *key, int required, size_t minlen,
    size_t maxlen, const char **s, size_t *len, struct jsonv_err *e)
{
	struct json_object *v;
	const char *str;
	size_t n;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			return field_fail(e, NULL, key, "is required");
		*s = NULL;
		if (len)
			*len = 0;
		return JV_OK;
	}
	if (!json_object_is_type(v, json_type_string))
		return field_fail(e, NULL, key, "must be a string");
	str = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (memchr(str, '\0', n))
		return field_fail(e, NULL, key, "must not contain a NUL character");
	if (n < minlen)
		return field_fail(e, NULL, key, "must not be empty");
	if (n > maxlen) {
		char what[64];

		snprintf(what, sizeof what, "is too long (limit %zu bytes)", maxlen);
		return field_fail(e, NULL, key, what);
	}
	*s = str;
	if (len)
		*len = n;
	return JV_OK;
}

int
jsonv_object(struct json_object *obj, const char *key, struct json_object **o,
    struct jsonv_err *e)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
		*o = NULL;
		return JV_OK;
	}
	if (!json_object_is_type(v, json_type_object))
		return field_fail(e, NULL, key, "must be an object");
	*o = v;
	return JV_OK;
}

static int
has_nul(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_string:
		return memchr(json_object_get_string(v), '\0',
		    (size_t)json_object_get_string_len(v)) != NULL;
	case json_type_array:
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (has_nul(json_object_array_get_idx(v, i)))
				return 1;
		return 0;
	case json_type_object: {
		json_object_object_foreach(v, k, child) {
			(void)k;
			if (has_nul(child))
				return 1;
		}
		return 0;
	}
	default:
		return 0;
	}
}

int
jsonv_no_nul(struct json_object *obj, const char *field, struct jsonv_err *e)
{
	if (has_nul(obj))
		return field_fail(e, NULL, field, "must not contain a NUL character");
	return JV_OK;
}
