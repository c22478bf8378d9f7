/* Client JSON: parsing with limits, and field validation. */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "jsonv.h"
#include "util.h"

/* Parse s (n bytes) and return the code; *out (may be NULL) gets the object or NULL. */
static int
parse(const char *s, size_t n, int depth, struct json_object **out, char *err, size_t errlen)
{
	struct json_object *o = NULL;
	int rc;

	err[0] = '\0';
	rc = jsonv_parse_object(s, n, depth, &o, err, errlen);
	if (rc != JV_OK) {
		CU_ASSERT_PTR_NULL(o);          /* written only on success */
	} else {
		CU_ASSERT_PTR_NOT_NULL(o);
	}
	if (out)
		*out = o;
	else
		json_object_put(o);
	return rc;
}

static int
parse_str(const char *s, int depth, char *err, size_t errlen)
{
	return parse(s, strlen(s), depth, NULL, err, errlen);
}

static void
rc_is(const char *s, int want, const char *want_err)
{
	char err[256];
	int rc = parse_str(s, 32, err, sizeof err);

	CU_ASSERT_EQUAL(rc, want);
	if (rc != want)
		fprintf(stderr, "\ninput %s: rc %d (%s), want %d\n", s, rc, err, want);
	if (want_err)
		CU_ASSERT_STRING_EQUAL(err, want_err);
	if (want != JV_OK)
		CU_ASSERT(err[0] != '\0');
}

static void
test_valid(void)
{
	static const char *const ok[] = {
		"{}", " {} ", "\n\t{\r\n}\r\n\t ", "{\"a\":1}", "{\"a\":\"x\",\"b\":[1,2,{\"c\":null}]}",
		"{\"a\":true,\"b\":false,\"c\":null,\"d\":-0,\"e\":1.5e-3,\"f\":0.25,\"g\":1E+2}",
		"{\"\":\"\"}", "{\"a\":\"\\u00e9\\n\\\"\\\\\\/\"}", "{\"emoji\":\"\\ud83d\\ude00\"}",
		"{\"k\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", "{\"a\":[]}", "{\"a\":{}}",
		"{\"a\":1e999}",
	};
	struct json_object *o;
	char err[256];

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		rc_is(ok[i], JV_OK, NULL);
	/* The object is the caller's and holds what was sent. */
	CU_ASSERT_EQUAL(parse("{\"a\":\"b\",\"n\":3}", 15, 32, &o, err, sizeof err), JV_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT(json_object_is_type(o, json_type_object));
	CU_ASSERT_EQUAL(json_object_object_length(o), 2);
	CU_ASSERT_STRING_EQUAL(json_object_get_string(json_object_object_get(o, "a")), "b");
	CU_ASSERT_EQUAL(json_object_get_int(json_object_object_get(o, "n")), 3);
	json_object_put(o);
	/* Only n bytes are read: what follows in memory does not matter. */
	CU_ASSERT_EQUAL(parse("{}garbage", 2, 32, NULL, err, sizeof err), JV_OK);
}

static void
test_malformed(void)
{
	static const char *const bad[] = {
		"{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1,}", "{,}", "{\"a\" 1}", "{\"a\":1 \"b\":2}",
		"{\"a\":01}", "{\"a\":+1}", "{\"a\":.5}", "{\"a\":1e}", "{\"a\":0x10}", "{\"a\":tru}",
		"{\"a\":True}", "{\"a\":\"\\x41\"}", "{\"a\":\"\\u12\"}", "{\"a\":'x'}", "/*c*/{}",
		"}", "]", "{]", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":undefined}",
		/* json-c takes these even in strict mode; PostgreSQL does not */
		"{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":-Infinity}", "{\"a\":1.}",
		"{\"a\":[1,{\"b\":-1.e5}]}", "{\"a\":{\"b\":{\"c\":nan}}}",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		rc_is(bad[i], JV_SYNTAX, NULL);
	rc_is("{\"a\":NaN}", JV_SYNTAX, "malformed JSON: NaN is not a JSON number");
	rc_is("{\"a\":[0,1.]}", JV_SYNTAX, "malformed JSON: 1. is not a JSON number");
}

static void
test_truncated(void)
{
	static const char *const bad[] = {
		"", " ", "{", "{\"a\":", "{\"a\"", "{\"a\":\"x", "{\"a\":[1,2", "{\"a\":{\"b\":1}",
		"{\"a\":1", "{\"a\":-", "{\"a\":\"\\u00", "[", "\"abc",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		rc_is(bad[i], JV_SYNTAX, "request body is truncated JSON");
}

static void
test_trailing(void)
{
	char err[256];

	rc_is("{} x", JV_SYNTAX, "malformed JSON at byte 3: unexpected character");
	rc_is("{}{}", JV_SYNTAX, NULL);
	rc_is("{\"a\":1}}", JV_SYNTAX, NULL);
	rc_is("{}\n\n,", JV_SYNTAX, NULL);
	rc_is("[] {}", JV_SYNTAX, NULL);
	/* A NUL byte after the object is garbage, not an end. */
	CU_ASSERT_EQUAL(parse("{}\0", 3, 32, NULL, err, sizeof err), JV_SYNTAX);
	CU_ASSERT_EQUAL(parse("{\"a\":1}\0 ", 9, 32, NULL, err, sizeof err), JV_SYNTAX);
	CU_ASSERT_EQUAL(parse("{\"a\":\0}", 7, 32, NULL, err, sizeof err), JV_SYNTAX);
	/* Trailing JSON whitespace is fine, other white space is not. */
	rc_is("{} \t\r\n", JV_OK, NULL);
	rc_is("{}\f", JV_SYNTAX, NULL);
	rc_is("{}\v", JV_SYNTAX, NULL);
}

static void
test_not_object(void)
{
	static const char *const other[] = {
		"[]", "[1,2]", " [ {} ] ", "\"s\"", "\"\"", "1", "0", "-1", "1.5", "1e3", "1 ",
		" 42\n", "true", "false", "null", "null ", " true\t",
	};

	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
		rc_is(other[i], JV_NOT_OBJECT, "request body must be a JSON object");
}

static void
test_utf8(void)
{
	static const char *const bad[] = {
		"{\"a\":\"\xff\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xe0\x80\xaf\"}",
		"{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xc3\"}",
		"{\"a\":\"\xe2\x82\"}", "{\"\xfe\":1}", "{\"a\":1}\x80", "\xef\xbb\xbf{}",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (strcmp(bad[i], "\xef\xbb\xbf{}") == 0) {
			rc_is(bad[i], JV_SYNTAX, NULL);         /* a BOM is valid UTF-8, not JSON */
		} else {
			rc_is(bad[i], JV_SYNTAX, "request body is not valid UTF-8");
		}
	}
	/* Escaped lone surrogates cannot produce invalid UTF-8: json-c substitutes U+FFFD. */
	{
		struct json_object *o;
		char err[256];
		const char *v;

		CU_ASSERT_EQUAL_FATAL(parse("{\"a\":\"\\ud800x\"}", 15, 32, &o, err, sizeof err), JV_OK);
		v = json_object_get_string(json_object_object_get(o, "a"));
		CU_ASSERT(utf8_valid(v, strlen(v)));
		json_object_put(o);
	}
}

/* Depth, as this code means it: the top-level object is level 0 and every value
 * inside a container is one level deeper than the container, scalars included.
 * max_depth is the deepest level any value may sit at. So {"a":1} has depth 1;
 * k nested objects whose innermost holds a value have depth k; k nested
 * containers whose innermost is empty ({} or []) have depth k-1. */
static void
nest(char *b, int k, const char *leaf, int arrays)
{
	/* k containers: the top-level object, then k-1 objects or arrays, then leaf. */
	b[0] = '\0';
	strcat(b, "{\"a\":");
	for (int i = 1; i < k; i++)
		strcat(b, arrays ? "[" : "{\"a\":");
	strcat(b, leaf);
	for (int i = 1; i < k; i++)
		strcat(b, arrays ? "]" : "}");
	strcat(b, "}");
}

static void
test_depth(void)
{
	static char b[16384];
	char err[256];

	for (int d = 2; d <= 40; d++) {
		/* d containers with a value inside the innermost: depth d, accepted */
		nest(b, d, "1", 0);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_OK);
		nest(b, d, "\"s\"", 1);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_OK);
		/* one container more: depth d+1, refused */
		nest(b, d + 1, "1", 0);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_DEPTH);
		nest(b, d + 1, "null", 1);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_DEPTH);
		/* an empty innermost container holds nothing: d+1 of them is depth d */
		nest(b, d, "{}", 0);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_OK);
		nest(b, d, "[]", 1);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_OK);
		nest(b, d + 1, "{}", 0);
		CU_ASSERT_EQUAL(parse_str(b, d, err, sizeof err), JV_DEPTH);
	}
	/* The documented default (API.md: depth 32). */
	nest(b, 32, "1", 0);
	CU_ASSERT_EQUAL(parse_str(b, 32, err, sizeof err), JV_OK);
	nest(b, 33, "1", 0);
	CU_ASSERT_EQUAL(parse_str(b, 32, err, sizeof err), JV_DEPTH);
	CU_ASSERT_STRING_EQUAL(err, "JSON nested deeper than 32 levels");
	/* Width is not depth. */
	CU_ASSERT_EQUAL(parse_str("{\"a\":[1,2,3],\"b\":[4,5],\"c\":{\"d\":6}}", 2, err,
	    sizeof err), JV_OK);
	/* Far too deep fails cleanly, however deep. */
	b[0] = '\0';
	strcat(b, "{\"a\":");
	for (int i = 0; i < 5000; i++)
		strcat(b, "[");
	CU_ASSERT_EQUAL(parse_str(b, 32, err, sizeof err), JV_DEPTH);
}

static void
test_only_keys(void)
{
	static const char *const keys[] = { "input", "model", "params", NULL };
	static const char *const none[] = { NULL };
	struct json_object *o;
	struct jsonv_err e;
	char err[256], body[512], longkey[128];

	CU_ASSERT_EQUAL_FATAL(parse_str("{}", 32, err, sizeof err), JV_OK);
	CU_ASSERT_EQUAL_FATAL(parse("{\"input\":\"x\",\"model\":\"m\"}", 25, 32, &o, err,
	    sizeof err), JV_OK);
	CU_ASSERT_EQUAL(jsonv_only_keys(o, keys, NULL, &e), JV_OK);
	CU_ASSERT_EQUAL(jsonv_only_keys(o, none, NULL, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "input");
	CU_ASSERT_STRING_EQUAL(e.msg, "input is not a known field");
	json_object_put(o);

	CU_ASSERT_EQUAL_FATAL(parse_str("{}", 32, err, sizeof err), JV_OK);
	snprintf(body, sizeof body, "{\"input\":\"x\",\"Model\":1}");
	CU_ASSERT_EQUAL_FATAL(parse(body, strlen(body), 32, &o, err, sizeof err), JV_OK);
	CU_ASSERT_EQUAL(jsonv_only_keys(o, keys, NULL, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "Model");
	CU_ASSERT_STRING_EQUAL(e.msg, "Model is not a known field");
	CU_ASSERT_EQUAL(jsonv_only_keys(o, keys, "params.", &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "params.Model");
	CU_ASSERT_STRING_EQUAL(e.msg, "params.Model is not a known field");
	json_object_put(o);

	/* A long key is cut to 63 bytes in the field name, never inside a UTF-8 character. */
	memset(longkey, 'k', 62);
	memcpy(longkey + 62, "\xc3\xa9tail", 6);
	longkey[68] = '\0';
	snprintf(body, sizeof body, "{\"%s\":1}", longkey);
	CU_ASSERT_EQUAL_FATAL(parse(body, strlen(body), 32, &o, err, sizeof err), JV_OK);
	CU_ASSERT_EQUAL(jsonv_only_keys(o, keys, "params.", &e), JV_FIELD);
	CU_ASSERT_EQUAL(strlen(e.field), 7 + 62);
	CU_ASSERT_EQUAL(strncmp(e.field, "params.kkkk", 11), 0);
	CU_ASSERT(utf8_valid(e.field, strlen(e.field)));
	CU_ASSERT(utf8_valid(e.msg, strlen(e.msg)));
	json_object_put(o);
}

static void
test_string(void)
{
	struct json_object *o;
	struct jsonv_err e;
	const char *s;
	size_t len;
	char err[256];
	static const char body[] = "{\"s\":\"hello\",\"empty\":\"\",\"null\":null,\"num\":5,"
	    "\"arr\":[\"x\"],\"obj\":{},\"nul\":\"a\\u0000b\",\"t\":true}";

	CU_ASSERT_EQUAL_FATAL(parse(body, sizeof body - 1, 32, &o, err, sizeof err), JV_OK);

	s = NULL;
	len = 99;
	CU_ASSERT_EQUAL(jsonv_string(o, "s", 1, 1, 5, &s, &len, &e), JV_OK);
	CU_ASSERT_STRING_EQUAL(s, "hello");
	CU_ASSERT_EQUAL(len, 5);
	CU_ASSERT_EQUAL(jsonv_string(o, "s", 1, 0, 5, &s, NULL, &e), JV_OK);

	/* too long: limit in bytes, inclusive */
	CU_ASSERT_EQUAL(jsonv_string(o, "s", 1, 1, 4, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "s");
	CU_ASSERT_STRING_EQUAL(e.msg, "s is too long (limit 4 bytes)");

	/* required and optional, absent and null */
	CU_ASSERT_EQUAL(jsonv_string(o, "missing", 1, 1, 10, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "missing");
	CU_ASSERT_STRING_EQUAL(e.msg, "missing is required");
	CU_ASSERT_EQUAL(jsonv_string(o, "null", 1, 1, 10, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.msg, "null is required");
	s = "untouched";
	len = 99;
	CU_ASSERT_EQUAL(jsonv_string(o, "missing", 0, 1, 10, &s, &len, &e), JV_OK);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_EQUAL(len, 0);
	s = "untouched";
	CU_ASSERT_EQUAL(jsonv_string(o, "null", 0, 1, 10, &s, NULL, &e), JV_OK);
	CU_ASSERT_PTR_NULL(s);

	/* empty: minlen decides */
	CU_ASSERT_EQUAL(jsonv_string(o, "empty", 1, 1, 10, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.msg, "empty must not be empty");
	CU_ASSERT_EQUAL(jsonv_string(o, "empty", 1, 0, 10, &s, &len, &e), JV_OK);
	CU_ASSERT_STRING_EQUAL(s, "");
	CU_ASSERT_EQUAL(len, 0);

	/* wrong types, required or not */
	CU_ASSERT_EQUAL(jsonv_string(o, "num", 0, 0, 10, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "num");
	CU_ASSERT_STRING_EQUAL(e.msg, "num must be a string");
	CU_ASSERT_EQUAL(jsonv_string(o, "arr", 1, 0, 10, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.msg, "arr must be a string");
	CU_ASSERT_EQUAL(jsonv_string(o, "obj", 1, 0, 10, &s, &len, &e), JV_FIELD);
	CU_ASSERT_EQUAL(jsonv_string(o, "t", 1, 0, 10, &s, &len, &e), JV_FIELD);

	/* embedded NUL, whatever the limits */
	s = "untouched";
	CU_ASSERT_EQUAL(jsonv_string(o, "nul", 1, 0, 100, &s, &len, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "nul");
	CU_ASSERT_STRING_EQUAL(e.msg, "nul must not contain a NUL character");
	CU_ASSERT_STRING_EQUAL(s, "untouched");
	json_object_put(o);
}

static void
test_object(void)
{
	struct json_object *o, *v;
	struct jsonv_err e;
	char err[256];
	static const char body[] = "{\"p\":{\"t\":1},\"n\":null,\"s\":\"x\",\"a\":[]}";

	CU_ASSERT_EQUAL_FATAL(parse(body, sizeof body - 1, 32, &o, err, sizeof err), JV_OK);
	v = NULL;
	CU_ASSERT_EQUAL(jsonv_object(o, "p", &v, &e), JV_OK);
	CU_ASSERT_PTR_NOT_NULL(v);
	CU_ASSERT(json_object_is_type(v, json_type_object));
	v = o;
	CU_ASSERT_EQUAL(jsonv_object(o, "missing", &v, &e), JV_OK);
	CU_ASSERT_PTR_NULL(v);
	v = o;
	CU_ASSERT_EQUAL(jsonv_object(o, "n", &v, &e), JV_OK);
	CU_ASSERT_PTR_NULL(v);
	v = o;
	CU_ASSERT_EQUAL(jsonv_object(o, "s", &v, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.field, "s");
	CU_ASSERT_STRING_EQUAL(e.msg, "s must be an object");
	CU_ASSERT_PTR_EQUAL(v, o);
	CU_ASSERT_EQUAL(jsonv_object(o, "a", &v, &e), JV_FIELD);
	CU_ASSERT_STRING_EQUAL(e.msg, "a must be an object");
	json_object_put(o);
}

static void
no_nul_is(const char *body, int want)
{
	struct json_object *o;
	struct jsonv_err e;
	char err[256];

	CU_ASSERT_EQUAL_FATAL(parse(body, strlen(body), 32, &o, err, sizeof err), JV_OK);
	CU_ASSERT_EQUAL(jsonv_no_nul(o, "metadata", &e), want);
	if (want == JV_FIELD) {
		CU_ASSERT_STRING_EQUAL(e.field, "metadata");
		CU_ASSERT_STRING_EQUAL(e.msg, "metadata must not contain a NUL character");
	}
	json_object_put(o);
}

static void
test_no_nul(void)
{
	no_nul_is("{}", JV_OK);
	no_nul_is("{\"a\":\"b\",\"c\":[1,\"d\",{\"e\":[null,true,2.5,\"\\u0001\"]}]}", JV_OK);
	no_nul_is("{\"a\":\"\\u0000\"}", JV_FIELD);
	no_nul_is("{\"a\":\"x\",\"b\":\"y\\u0000\"}", JV_FIELD);
	no_nul_is("{\"a\":[\"ok\",\"no\\u0000\"]}", JV_FIELD);
	no_nul_is("{\"a\":[[[[\"\\u0000\"]]]]}", JV_FIELD);
	no_nul_is("{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\\u0000f\"}]}}}", JV_FIELD);
	no_nul_is("{\"a\":[{},[],{\"b\":[{\"c\":\"\\u0000\"}]}]}", JV_FIELD);
}

static const struct unit_case cases[] = {
	{ "valid objects", test_valid },
	{ "malformed", test_malformed },
	{ "truncated", test_truncated },
	{ "trailing bytes", test_trailing },
	{ "not an object", test_not_object },
	{ "invalid UTF-8", test_utf8 },
	{ "depth", test_depth },
	{ "only keys", test_only_keys },
	{ "string fields", test_string },
	{ "object fields", test_object },
	{ "no NUL anywhere", test_no_nul },
};

UNIT_MAIN("jsonv", cases)
