/* fuzz_jsonv.c - request bodies: jsonv_parse_object, then the field checks of
 * POST /v1/threads (handlers/threads.c) and POST /v1/threads/{id}/runs
 * (handlers/runs.c). Properties:
 *   - failure leaves *out untouched and says why in valid UTF-8; success is an object;
 *   - invalid UTF-8 never parses;
 *   - what parsed prints (as the handlers print it) to valid UTF-8 that parses back,
 *     at the same depth limit, to an equal object that prints the same;
 *   - the minimum depth limit accepts nothing the default refuses;
 *   - trailing white space changes nothing;
 *   - each validator's verdict matches the field it looked at, its out-parameters
 *     are written only on success, and its error names the field in valid UTF-8;
 *   - jsonv_no_nul fails exactly when the printed JSON holds a \u0000 escape
 *     (PostgreSQL refuses those). */
#include "fuzz.h"
#include "jsonv.h"
#include "util.h"

#include <json-c/json.h>

#define DEPTH 32                /* TETHER_JSON_DEPTH: default */
#define DEPTH_MIN 2             /* and minimum */
#define MAX_INPUT (256 << 10)   /* TETHER_MAX_INPUT default */
#define MODEL_MAX 128           /* handlers/runs.c */
#define TITLE_MAX 1000          /* handlers/threads.c */
#define LEN_MARK ((size_t)0x5a5a5a)

static char mark;
#define OBJ_MARK ((struct json_object *)(void *)&mark)
#define STR_MARK ((const char *)&mark)

static void
check_text(const char *s, size_t cap)
{
	FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
	FUZZ_CHECK(utf8_valid(s, strlen(s)));
}

static struct json_object *
parse(const char *s, size_t n, int depth, int *rc)
{
	struct json_object *obj = OBJ_MARK;
	char err[256];

	memset(err, 0x55, sizeof err);
	*rc = jsonv_parse_object(s, n, depth, &obj, err, sizeof err);
	if (*rc != JV_OK) {
		FUZZ_CHECK(*rc == JV_SYNTAX || *rc == JV_DEPTH || *rc == JV_NOT_OBJECT);
		FUZZ_CHECK(obj == OBJ_MARK);
		check_text(err, sizeof err);
		FUZZ_CHECK(err[0] != '\0');
		return NULL;
	}
	FUZZ_CHECK(obj != NULL && obj != OBJ_MARK && json_object_is_type(obj, json_type_object));
	return obj;
}

static void
check_field_err(const struct jsonv_err *e, const char *field)
{
	check_text(e->field, sizeof e->field);
	check_text(e->msg, sizeof e->msg);
	FUZZ_CHECK(strncmp(e->msg, e->field, strlen(e->field)) == 0);
	if (field)
		FUZZ_CHECK(strcmp(e->field, field) == 0);
}

static int
listed(const char *const *keys, const char *k)
{
	for (; *keys; keys++)
		if (!strcmp(*keys, k))
			return 1;
	return 0;
}

static void
check_only_keys(struct json_object *obj, const char *const *keys, const char *prefix)
{
	struct jsonv_err e;
	size_t plen = prefix ? strlen(prefix) : 0;
	int rc = jsonv_only_keys(obj, keys, prefix, &e), unknown = 0, named = 0;

	json_object_object_foreach(obj, k, v) {
		(void)v;
		if (listed(keys, k))
			continue;
		unknown = 1;
		if (rc != JV_OK && strlen(e.field) >= plen &&
		    !strncmp(k, e.field + plen, strlen(e.field + plen)))
			named = 1;
	}
	FUZZ_CHECK((rc == JV_OK) == !unknown);
	if (rc == JV_OK)
		return;
	FUZZ_CHECK(rc == JV_FIELD);
	check_field_err(&e, NULL);
	FUZZ_CHECK(!prefix || !strncmp(e.field, prefix, plen));
	FUZZ_CHECK(named);      /* e.field is (a prefix of) an unknown key */
}

static void
check_string(struct json_object *obj, const char *key, int required, size_t minlen,
    size_t maxlen)
{
	struct json_object *v = NULL;
	const char *s = STR_MARK;
	size_t len = LEN_MARK, n;
	struct jsonv_err e;
	int present = json_object_object_get_ex(obj, key, &v) &&
	    !json_object_is_type(v, json_type_null);
	int rc = jsonv_string(obj, key, required, minlen, maxlen, &s, &len, &e);

	if (!present) {
		FUZZ_CHECK((rc == JV_OK) == !required);
		if (rc == JV_OK)
			FUZZ_CHECK(s == NULL && len == 0);
		else
			FUZZ_CHECK(s == STR_MARK && len == LEN_MARK);
		if (rc != JV_OK)
			check_field_err(&e, key);
		return;
	}
	if (!json_object_is_type(v, json_type_string)) {
		FUZZ_CHECK(rc == JV_FIELD && s == STR_MARK && len == LEN_MARK);
		check_field_err(&e, key);
		return;
	}
	n = (size_t)json_object_get_string_len(v);
	if (n < minlen || n > maxlen || memchr(json_object_get_string(v), '\0', n)) {
		FUZZ_CHECK(rc == JV_FIELD && s == STR_MARK && len == LEN_MARK);
		check_field_err(&e, key);
		return;
	}
	FUZZ_CHECK(rc == JV_OK);
	FUZZ_CHECK(s == json_object_get_string(v) && len == n && strlen(s) == n);
}

static void
check_object(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL, *o = OBJ_MARK;
	struct jsonv_err e;
	int present = json_object_object_get_ex(obj, key, &v) &&
	    !json_object_is_type(v, json_type_null);
	int rc = jsonv_object(obj, key, &o, &e);

	if (!present) {
		FUZZ_CHECK(rc == JV_OK && o == NULL);
	} else if (json_object_is_type(v, json_type_object)) {
		FUZZ_CHECK(rc == JV_OK && o == v);
	} else {
		FUZZ_CHECK(rc == JV_FIELD && o == OBJ_MARK);
		check_field_err(&e, key);
	}
}

/* JSON text as json-c prints it: a backslash occurs only in a string escape. */
static int
has_nul_escape(const char *s)
{
	for (; *s; s++) {
		if (*s != '\\')
			continue;
		if (s[1] == 'u' && !strncmp(s + 2, "0000", 4))
			return 1;
		if (s[1])
			s++;
	}
	return 0;
}

static void
check_no_nul(struct json_object *obj, const char *field)
{
	struct jsonv_err e;
	int rc = jsonv_no_nul(obj, field, &e);

	FUZZ_CHECK((rc != JV_OK) ==
	    has_nul_escape(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN)));
	if (rc != JV_OK)
		check_field_err(&e, field);
}

static void
check_round_trip(struct json_object *obj)
{
	const char *out = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	size_t n = strlen(out);
	char *copy = fuzz_bytes((const uint8_t *)out, n);
	struct json_object *again;
	int rc;

	FUZZ_CHECK(utf8_valid(out, n));
	again = parse(copy, n, DEPTH, &rc);
	if (!again)
		fprintf(stderr, "printed as %s\n", out);
	FUZZ_CHECK(rc == JV_OK);
	FUZZ_CHECK(json_object_equal(obj, again));
	FUZZ_CHECK(!strcmp(out, json_object_to_json_string_ext(again, JSON_C_TO_STRING_PLAIN)));
	json_object_put(again);
	free(copy);
}

static void
check_handlers(struct json_object *body)
{
	static const char *const thread_keys[] = { "title", "metadata", NULL };
	static const char *const run_keys[] = { "input", "model", "params", NULL };
	struct json_object *meta = NULL, *params = NULL;
	struct jsonv_err e;

	check_only_keys(body, thread_keys, NULL);
	check_string(body, "title", 0, 0, TITLE_MAX);
	check_object(body, "metadata");
	if (jsonv_object(body, "metadata", &meta, &e) == JV_OK && meta)
		check_no_nul(meta, "metadata");

	check_only_keys(body, run_keys, NULL);
	check_string(body, "input", 1, 1, MAX_INPUT);
	check_string(body, "model", 0, 1, MODEL_MAX);
	check_object(body, "params");
	if (jsonv_object(body, "params", &params, &e) == JV_OK && params) {
		static const char *const pkeys[] = { "temperature", "top_p", "max_tokens", "stop",
		    NULL };

		check_only_keys(params, pkeys, "params.");
		check_no_nul(params, "params");
	}
	check_no_nul(body, "body");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_bytes(data, size), *padded;
	struct json_object *obj, *shallow, *spaced;
	int rc, rc_min, rc_sp;

	obj = parse(s, size, DEPTH, &rc);
	if (!utf8_valid(s, size))
		FUZZ_CHECK(rc == JV_SYNTAX);

	shallow = parse(s, size, DEPTH_MIN, &rc_min);
	if (rc_min == JV_OK)
		FUZZ_CHECK(rc == JV_OK && json_object_equal(obj, shallow));

	padded = malloc(size + 2);
	FUZZ_CHECK(padded != NULL);
	memcpy(padded, data, size);
	memcpy(padded + size, " \n", 2);
	spaced = parse(padded, size + 2, DEPTH, &rc_sp);
	FUZZ_CHECK(rc_sp == rc);
	if (rc == JV_OK)
		FUZZ_CHECK(json_object_equal(obj, spaced));

	if (obj) {
		check_round_trip(obj);
		check_handlers(obj);
	}
	json_object_put(spaced);
	json_object_put(shallow);
	json_object_put(obj);
	free(padded);
	free(s);
	return 0;
}
