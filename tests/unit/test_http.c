/* The pure parts of http.c (error shape, query strings, methods, status lines)
 * and the one mapping from internal errors to API errors (err.c). */
#include "unit.h"

#include <string.h>

#include "buf.h"
#include "err.h"
#include "http.h"

static void
render_is(enum api_err e, const char *msg, const char *field, const char *active,
    const char *want)
{
	struct buf b;

	buf_init(&b, 4096);
	CU_ASSERT_EQUAL(http_error_render(&b, e, msg, field, active), TE_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b.data);
	CU_ASSERT_STRING_EQUAL(b.data, want);
	if (strcmp(b.data, want) != 0)
		fprintf(stderr, "\n got: %s\nwant: %s\n", b.data, want);
	CU_ASSERT_EQUAL(b.len, strlen(want));
	buf_free(&b);
}

static void
test_error_render(void)
{
	render_is(API_NOT_FOUND, "no run x", NULL, NULL,
	    "{\"error\":{\"code\":\"not_found\",\"message\":\"no run x\"}}");
	render_is(API_INVALID_FIELD, "input is required", "input", NULL,
	    "{\"error\":{\"code\":\"invalid_field\",\"message\":\"input is required\","
	    "\"field\":\"input\"}}");
	render_is(API_THREAD_BUSY, "a run is active", NULL, "0b6f1c2e-9d8a-4c3b-8e7f-123456789abc",
	    "{\"error\":{\"code\":\"thread_busy\",\"message\":\"a run is active\","
	    "\"active_run_id\":\"0b6f1c2e-9d8a-4c3b-8e7f-123456789abc\"}}");
	render_is(API_BAD_REQUEST, "m", "f", "r",
	    "{\"error\":{\"code\":\"bad_request\",\"message\":\"m\",\"field\":\"f\","
	    "\"active_run_id\":\"r\"}}");
	render_is(API_INTERNAL, "", NULL, NULL,
	    "{\"error\":{\"code\":\"internal\",\"message\":\"\"}}");
}

static void
test_error_render_escapes(void)
{
	render_is(API_BAD_REQUEST, "say \"hi\"\nback\\slash\ttab\rcr", NULL, NULL,
	    "{\"error\":{\"code\":\"bad_request\",\"message\":"
	    "\"say \\\"hi\\\"\\nback\\\\slash\\ttab\\rcr\"}}");
	render_is(API_BAD_REQUEST, "\x01\x1f\x7f/", NULL, NULL,
	    "{\"error\":{\"code\":\"bad_request\",\"message\":\"\\u0001\\u001f\x7f/\"}}");
	render_is(API_INVALID_FIELD, "x", "params.\"k\"\n", NULL,
	    "{\"error\":{\"code\":\"invalid_field\",\"message\":\"x\","
	    "\"field\":\"params.\\\"k\\\"\\n\"}}");
	/* UTF-8 passes through untouched. */
	render_is(API_BAD_REQUEST, "caf\xc3\xa9 \xe2\x82\xac", NULL, NULL,
	    "{\"error\":{\"code\":\"bad_request\",\"message\":\"caf\xc3\xa9 \xe2\x82\xac\"}}");
}

static void
test_error_render_bounded(void)
{
	struct buf b;
	char msg[200];

	memset(msg, 'm', sizeof msg - 1);
	msg[sizeof msg - 1] = '\0';
	buf_init(&b, 100);
	CU_ASSERT_EQUAL(http_error_render(&b, API_BAD_REQUEST, msg, NULL, NULL), TE_TOOLARGE);
	buf_free(&b);
}

static void
query_is(const char *q, const char *name, size_t cap, int want_rc, const char *want)
{
	char dst[256];
	int rc;

	memset(dst, 0x5a, sizeof dst);
	rc = http_query_get(q, name, dst, cap);
	CU_ASSERT_EQUAL(rc, want_rc);
	if (rc != want_rc)
		fprintf(stderr, "\nquery \"%s\" name \"%s\": %d, want %d\n", q ? q : "(null)", name,
		    rc, want_rc);
	if (want_rc >= 0 && rc == want_rc) {
		CU_ASSERT_STRING_EQUAL(dst, want);
		CU_ASSERT_EQUAL(strlen(dst), (size_t)rc);
	}
	/* Never a byte past cap. */
	CU_ASSERT_EQUAL((unsigned char)dst[cap], 0x5a);
}

static void
test_query_basic(void)
{
	query_is("after=1:5", "after", 64, 3, "1:5");
	query_is("limit=10&before=abc", "before", 64, 3, "abc");
	query_is("limit=10&before=abc", "limit", 64, 2, "10");
	query_is("limit=10&before=abc", "after", 64, -1, "");
	query_is("", "after", 64, -1, "");
	query_is(NULL, "after", 64, -1, "");
	/* Present with no value, or no '=': the empty string. */
	query_is("after=&x=1", "after", 64, 0, "");
	query_is("x=1&after", "after", 64, 0, "");
	/* The first occurrence wins. */
	query_is("after=1:1&after=2:2", "after", 64, 3, "1:1");
	/* Empty segments are skipped. */
	query_is("&&after=1:2&", "after", 64, 3, "1:2");
}

static void
test_query_names(void)
{
	/* Names are compared whole: a prefix or an extension is another name. */
	query_is("afterx=1&after=2", "after", 64, 1, "2");
	query_is("after=2&afterx=1", "afterx", 64, 1, "1");
	query_is("afterx=1", "after", 64, -1, "");
	query_is("aft=1", "after", 64, -1, "");
	query_is("xafter=1", "after", 64, -1, "");
	query_is("After=1", "after", 64, -1, "");
	/* Names are not decoded. */
	query_is("aft%65r=1", "after", 64, -1, "");
	/* '=' inside the value belongs to the value. */
	query_is("a=b=c", "a", 64, 3, "b=c");
}

static void
test_query_decoding(void)
{
	query_is("after=1%3A5", "after", 64, 3, "1:5");
	query_is("q=a+b%20c", "q", 64, 5, "a b c");
	query_is("q=%2B%2b", "q", 64, 2, "++");
	query_is("q=%c3%A9", "q", 64, 2, "\xc3\xa9");
	query_is("q=%25", "q", 64, 1, "%");
	query_is("q=%26x&y=1", "q", 64, 2, "&x");
	/* Malformed escapes. */
	query_is("q=%4", "q", 64, -2, "");
	query_is("q=%", "q", 64, -2, "");
	query_is("q=%4&x=1", "q", 64, -2, "");
	query_is("q=a%", "q", 64, -2, "");
	query_is("q=%zz", "q", 64, -2, "");
	query_is("q=%g1", "q", 64, -2, "");
	query_is("q=%1g", "q", 64, -2, "");
	query_is("q=%%41", "q", 64, -2, "");
	query_is("q=% 1", "q", 64, -2, "");
	/* A NUL byte never reaches the caller. */
	query_is("q=%00", "q", 64, -2, "");
	query_is("q=a%00b", "q", 64, -2, "");
	/* A malformed parameter elsewhere does not matter. */
	query_is("x=%zz&q=1", "q", 64, 1, "1");
}

static void
test_query_cap(void)
{
	query_is("q=abc", "q", 4, 3, "abc");
	query_is("q=abcd", "q", 4, -2, "");
	query_is("q=%41%42%43", "q", 4, 3, "ABC");
	query_is("q=%41%42%43%44", "q", 4, -2, "");
	query_is("q=", "q", 1, 0, "");
	query_is("q=a", "q", 1, -2, "");
}

static void
test_method_parse(void)
{
	CU_ASSERT_EQUAL(http_method_parse("GET"), M_GET);
	CU_ASSERT_EQUAL(http_method_parse("POST"), M_POST);
	CU_ASSERT_EQUAL(http_method_parse("PUT"), M_PUT);
	CU_ASSERT_EQUAL(http_method_parse("DELETE"), M_DELETE);
	CU_ASSERT_EQUAL(http_method_parse("PATCH"), M_PATCH);
	CU_ASSERT_EQUAL(http_method_parse("HEAD"), M_HEAD);
	CU_ASSERT_EQUAL(http_method_parse("OPTIONS"), M_OPTIONS);
	CU_ASSERT_EQUAL(http_method_parse("get"), M_OTHER);
	CU_ASSERT_EQUAL(http_method_parse("GETX"), M_OTHER);
	CU_ASSERT_EQUAL(http_method_parse("GE"), M_OTHER);
	CU_ASSERT_EQUAL(http_method_parse(" GET"), M_OTHER);
	CU_ASSERT_EQUAL(http_method_parse("TRACE"), M_OTHER);
	CU_ASSERT_EQUAL(http_method_parse(""), M_OTHER);
	CU_ASSERT_EQUAL(http_method_parse(NULL), M_OTHER);
}

static void
test_status_text(void)
{
	static const struct { int status; const char *text; } t[] = {
		{ 200, "OK" }, { 201, "Created" }, { 202, "Accepted" }, { 204, "No Content" },
		{ 400, "Bad Request" }, { 401, "Unauthorized" }, { 404, "Not Found" },
		{ 405, "Method Not Allowed" }, { 409, "Conflict" }, { 413, "Payload Too Large" },
		{ 415, "Unsupported Media Type" }, { 422, "Unprocessable Entity" },
		{ 429, "Too Many Requests" }, { 500, "Internal Server Error" },
		{ 502, "Bad Gateway" }, { 503, "Service Unavailable" },
		{ 0, "Status" }, { 299, "Status" }, { 418, "Status" }, { -1, "Status" },
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		CU_ASSERT_STRING_EQUAL(http_status_text(t[i].status), t[i].text);
	/* Every status an API error maps to has its own reason phrase. */
	for (int e = 0; e < API__MAX; e++)
		CU_ASSERT_STRING_NOT_EQUAL(http_status_text(api_err_status((enum api_err)e)), "Status");
}

static void
test_api_errors(void)
{
	static const struct { enum api_err e; int status; const char *code; } t[] = {
		{ API_BAD_REQUEST, 400, "bad_request" },
		{ API_INVALID_JSON, 400, "invalid_json" },
		{ API_INVALID_ID, 400, "invalid_id" },
		{ API_INVALID_FIELD, 400, "invalid_field" },
		{ API_UNAUTHORIZED, 401, "unauthorized" },
		{ API_NOT_FOUND, 404, "not_found" },
		{ API_METHOD_NOT_ALLOWED, 405, "method_not_allowed" },
		{ API_THREAD_BUSY, 409, "thread_busy" },
		{ API_IDEMPOTENCY_CONFLICT, 422, "idempotency_conflict" },
		{ API_CONFLICT, 409, "conflict" },
		{ API_PAYLOAD_TOO_LARGE, 413, "payload_too_large" },
		{ API_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type" },
		{ API_TOO_MANY_REQUESTS, 429, "too_many_requests" },
		{ API_QUOTA_EXCEEDED, 429, "quota_exceeded" },
		{ API_AT_CAPACITY, 503, "at_capacity" },
		{ API_UNAVAILABLE, 503, "unavailable" },
		{ API_PROVIDER_ERROR, 502, "provider_error" },
		{ API_INTERNAL, 500, "internal" },
	};
	unsigned seen = 0;

	CU_ASSERT_EQUAL(sizeof t / sizeof t[0], API__MAX);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		CU_ASSERT_EQUAL(api_err_status(t[i].e), t[i].status);
		CU_ASSERT_STRING_EQUAL(api_err_code(t[i].e), t[i].code);
		seen |= 1u << t[i].e;
	}
	CU_ASSERT_EQUAL(seen, (1u << API__MAX) - 1);
	/* Out of range: internal. */
	CU_ASSERT_EQUAL(api_err_status(API__MAX), 500);
	CU_ASSERT_STRING_EQUAL(api_err_code(API__MAX), "internal");
	CU_ASSERT_EQUAL(api_err_status((enum api_err)-1), 500);
	CU_ASSERT_STRING_EQUAL(api_err_code((enum api_err)-1), "internal");
}

static void
test_api_from_te(void)
{
	static const struct { enum tether_err te; enum api_err api; } t[] = {
		{ TE_OK, API_INTERNAL },
		{ TE_NOMEM, API_INTERNAL },
		{ TE_INVAL, API_BAD_REQUEST },
		{ TE_NOTFOUND, API_NOT_FOUND },
		{ TE_CONFLICT, API_INTERNAL },
		{ TE_TIMEOUT, API_UNAVAILABLE },
		{ TE_DB, API_UNAVAILABLE },
		{ TE_BUS, API_UNAVAILABLE },
		{ TE_PROVIDER, API_PROVIDER_ERROR },
		{ TE_FENCED, API_INTERNAL },
		{ TE_CAPACITY, API_AT_CAPACITY },
		{ TE_TOOLARGE, API_PAYLOAD_TOO_LARGE },
		{ TE_IO, API_INTERNAL },
		{ TE_CLOSED, API_INTERNAL },
		{ TE_AGAIN, API_INTERNAL },
	};

	CU_ASSERT_EQUAL(sizeof t / sizeof t[0], TE__MAX);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		CU_ASSERT_EQUAL(api_err_from_te(t[i].te), t[i].api);
	CU_ASSERT_EQUAL(api_err_from_te(TE__MAX), API_INTERNAL);
	/* Every internal error has a sentence. */
	for (int e = 0; e < TE__MAX; e++) {
		CU_ASSERT_PTR_NOT_NULL(te_strerror((enum tether_err)e));
		CU_ASSERT_STRING_NOT_EQUAL(te_strerror((enum tether_err)e), "unknown error");
	}
	CU_ASSERT_STRING_EQUAL(te_strerror(TE__MAX), "unknown error");
	CU_ASSERT_STRING_EQUAL(te_strerror(TE_DB), "database unavailable");
}

static const struct unit_case cases[] = {
	{ "error render", test_error_render },
	{ "error render escapes", test_error_render_escapes },
	{ "error render bounded", test_error_render_bounded },
	{ "query basic", test_query_basic },
	{ "query names", test_query_names },
	{ "query decoding", test_query_decoding },
	{ "query cap", test_query_cap },
	{ "method parse", test_method_parse },
	{ "status text", test_status_text },
	{ "api errors", test_api_errors },
	{ "api error from internal", test_api_from_te },
};

UNIT_MAIN("http", cases)
