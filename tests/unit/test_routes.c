/* The routing table: method and path to handler, 404 and 405 with Allow. */
#include "unit.h"

#include <string.h>

#include "routes.h"

#define ID "0b6f1c2e-9d8a-4c3b-8e7f-123456789abc"

struct want {
	const char *path;
	enum http_method method;
	enum route_id id;
	handler_fn fn;
	enum route_param param;
	enum route_auth auth;
	const char *value;      /* the parameter segment */
};

static const struct want table[] = {
	{ "/healthz", M_GET, R_HEALTHZ, h_healthz, P_NONE, AUTH_NONE, "" },
	{ "/readyz", M_GET, R_READYZ, h_readyz, P_NONE, AUTH_NONE, "" },
	{ "/metrics", M_GET, R_METRICS, h_metrics, P_NONE, AUTH_NONE, "" },
	{ "/v1/bench/stream", M_GET, R_BENCH_STREAM, h_bench_stream, P_NONE, AUTH_KEY, "" },
	{ "/v1/threads", M_POST, R_THREADS, h_threads_create, P_NONE, AUTH_KEY, "" },
	{ "/v1/threads", M_GET, R_THREADS, h_threads_list, P_NONE, AUTH_KEY, "" },
	{ "/v1/threads/" ID, M_GET, R_THREAD, h_thread_get, P_ID, AUTH_KEY, ID },
	{ "/v1/threads/" ID "/runs", M_POST, R_THREAD_RUNS, h_runs_create, P_ID, AUTH_KEY, ID },
	{ "/v1/threads/" ID "/events", M_GET, R_THREAD_EVENTS, h_thread_events, P_ID, AUTH_KEY, ID },
	{ "/v1/runs/" ID, M_GET, R_RUN, h_run_get, P_ID, AUTH_KEY, ID },
	{ "/v1/runs/" ID "/events", M_GET, R_RUN_EVENTS, h_run_events, P_ID, AUTH_KEY, ID },
	{ "/v1/runs/" ID "/cancel", M_POST, R_RUN_CANCEL, h_run_cancel, P_ID, AUTH_KEY, ID },
	{ "/v1/runs/" ID "/tool_outputs", M_POST, R_RUN_TOOL_OUTPUTS, h_run_tool_outputs, P_ID,
	  AUTH_KEY, ID },
	{ "/v1/admin/tenants/acme-1/keys", M_POST, R_ADMIN_KEYS, h_admin_keys, P_NAME, AUTH_ADMIN,
	  "acme-1" },
	{ "/v1/admin/tenants/acme-1/keys", M_GET, R_ADMIN_KEYS, h_admin_keys_list, P_NAME,
	  AUTH_ADMIN, "acme-1" },
	{ "/v1/admin/keys/" ID, M_DELETE, R_ADMIN_KEY, h_admin_key_revoke, P_ID, AUTH_ADMIN, ID },
	{ "/v1/admin/tenants/acme-1/limits", M_GET, R_ADMIN_LIMITS, h_admin_limits_get, P_NAME,
	  AUTH_ADMIN, "acme-1" },
	{ "/v1/admin/tenants/acme-1/limits", M_PUT, R_ADMIN_LIMITS, h_admin_limits_put, P_NAME,
	  AUTH_ADMIN, "acme-1" },
	{ "/v1/admin/recover", M_POST, R_ADMIN_RECOVER, h_admin_recover, P_NONE, AUTH_ADMIN, "" },
};

static void
test_every_route(void)
{
	struct route_match m;
	unsigned seen = 0;

	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		const struct want *w = &table[i];

		CU_ASSERT_EQUAL_FATAL(route_match(w->path, w->method, &m), 0);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m.route);
		CU_ASSERT_EQUAL(m.route->id, w->id);
		CU_ASSERT_PTR_EQUAL(m.route->fn, w->fn);
		CU_ASSERT_EQUAL(m.route->param, w->param);
		CU_ASSERT_EQUAL(m.route->auth, w->auth);
		CU_ASSERT_EQUAL(m.route->method, w->method);
		CU_ASSERT_STRING_EQUAL(m.param, w->value);
		CU_ASSERT_STRING_EQUAL(m.allow, "");
		seen |= 1u << w->id;
	}
	/* The table above covers every route id. */
	CU_ASSERT_EQUAL(seen, (1u << R__MAX) - 1);
}

static void
test_param_is_raw(void)
{
	struct route_match m;

	/* Matching does not validate: the dispatcher does (uuid, tenant name). */
	CU_ASSERT_EQUAL(route_match("/v1/runs/not-a-uuid", M_GET, &m), 0);
	CU_ASSERT_EQUAL(m.route->id, R_RUN);
	CU_ASSERT_STRING_EQUAL(m.param, "not-a-uuid");
	CU_ASSERT_EQUAL(route_match("/v1/threads/%2e%2e/runs", M_POST, &m), 0);
	CU_ASSERT_EQUAL(m.route->id, R_THREAD_RUNS);
	CU_ASSERT_STRING_EQUAL(m.param, "%2e%2e");
	/* DOCUMENT_URI holds no query: a '?' in it is a decoded %3F, part of the segment. */
	CU_ASSERT_EQUAL(route_match("/v1/threads/" ID "?a/runs", M_POST, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.param, ID "?a");
	CU_ASSERT_EQUAL(route_match("/v1/admin/tenants/x/keys", M_POST, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.param, "x");
}

static void
test_head_is_get(void)
{
	struct route_match m;

	CU_ASSERT_EQUAL(route_match("/healthz", M_HEAD, &m), 0);
	CU_ASSERT_EQUAL(m.route->id, R_HEALTHZ);
	CU_ASSERT_PTR_EQUAL(m.route->fn, h_healthz);
	CU_ASSERT_EQUAL(route_match("/v1/threads", M_HEAD, &m), 0);
	CU_ASSERT_PTR_EQUAL(m.route->fn, h_threads_list);
	CU_ASSERT_EQUAL(route_match("/v1/runs/" ID "/events", M_HEAD, &m), 0);
	CU_ASSERT_PTR_EQUAL(m.route->fn, h_run_events);
	CU_ASSERT_STRING_EQUAL(m.param, ID);
	/* HEAD where only POST exists is still 405. */
	CU_ASSERT_EQUAL(route_match("/v1/admin/recover", M_HEAD, &m), -405);
	CU_ASSERT_STRING_EQUAL(m.allow, "POST");
}

static void
test_not_found(void)
{
	static const char *const paths[] = {
		"", "/", "//", "/v1", "/v1/", "/v2/threads", "/V1/threads", "/healthz/",
		"/healthzz", "/health", "//healthz", "/v1/threads/", "/v1/threads//runs",
		"/v1/threads/" ID "/", "/v1/threads/" ID "/runs/", "/v1/threads/" ID "/runs/x",
		"/v1/threads/" ID "/run", "/v1/threads/" ID "/" ID, "/v1/runs", "/v1/runs/",
		"/v1/runs//events", "/v1/runs/" ID "/events/extra", "/v1/runs/" ID "/cancel/",
		"/v1/admin/tenants//keys", "/v1/admin/tenants/a/b/keys", "/v1/admin/recover/",
		"/v1/admin", "/v1/admin/tenants/acme", "v1/threads", "/v1/threads?x=1",
		"/metrics/x",
	};
	struct route_match m;

	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		for (unsigned meth = M_GET; meth <= M_OTHER; meth <<= 1) {
			int rc = route_match(paths[i], (enum http_method)meth, &m);

			CU_ASSERT_EQUAL(rc, -404);
			if (rc != -404)
				fprintf(stderr, "path %s method %u: %d\n", paths[i], meth, rc);
			CU_ASSERT_PTR_NULL(m.route);
			CU_ASSERT_STRING_EQUAL(m.allow, "");
		}
	}
	CU_ASSERT_EQUAL(route_match(NULL, M_GET, &m), -404);
}

static void
test_method_not_allowed(void)
{
	static const struct {
		const char *path;
		enum http_method m;
		const char *allow;
	} cases405[] = {
		{ "/v1/threads", M_PUT, "GET, POST" },
		{ "/v1/threads", M_DELETE, "GET, POST" },
		{ "/v1/threads", M_PATCH, "GET, POST" },
		{ "/v1/threads", M_OPTIONS, "GET, POST" },
		{ "/v1/threads", M_OTHER, "GET, POST" },
		{ "/v1/threads/" ID, M_POST, "GET" },
		{ "/v1/threads/" ID, M_DELETE, "GET" },
		{ "/v1/threads/" ID "/runs", M_GET, "POST" },
		{ "/v1/threads/" ID "/runs", M_HEAD, "POST" },
		{ "/v1/threads/" ID "/events", M_POST, "GET" },
		{ "/v1/runs/" ID, M_PUT, "GET" },
		{ "/v1/runs/" ID "/events", M_DELETE, "GET" },
		{ "/v1/runs/" ID "/cancel", M_GET, "POST" },
		{ "/v1/admin/tenants/acme/keys", M_DELETE, "GET, POST" },
		{ "/v1/admin/keys/" ID, M_GET, "DELETE" },
		{ "/v1/admin/tenants/acme/limits", M_POST, "GET, PUT" },
		{ "/v1/admin/recover", M_GET, "POST" },
		{ "/healthz", M_POST, "GET" },
		{ "/readyz", M_OPTIONS, "GET" },
	};
	struct route_match m;

	for (size_t i = 0; i < sizeof cases405 / sizeof cases405[0]; i++) {
		CU_ASSERT_EQUAL(route_match(cases405[i].path, cases405[i].m, &m), -405);
		CU_ASSERT_PTR_NULL(m.route);
		CU_ASSERT_STRING_EQUAL(m.allow, cases405[i].allow);
	}
}

static void
test_long_paths(void)
{
	struct route_match m;
	char path[2048], seg[256];
	size_t n;

	/* A 200-byte parameter segment is cut to the buffer, never past it. */
	memset(seg, 'a', 200);
	seg[200] = '\0';
	snprintf(path, sizeof path, "/v1/runs/%s/events", seg);
	CU_ASSERT_EQUAL(route_match(path, M_GET, &m), 0);
	CU_ASSERT_EQUAL(m.route->id, R_RUN_EVENTS);
	CU_ASSERT_EQUAL(strlen(m.param), sizeof m.param - 1);
	CU_ASSERT(strspn(m.param, "a") == sizeof m.param - 1);
	snprintf(path, sizeof path, "/v1/admin/tenants/%s/keys", seg);
	CU_ASSERT_EQUAL(route_match(path, M_PUT, &m), -405);
	CU_ASSERT_STRING_EQUAL(m.allow, "GET, POST");
	CU_ASSERT_STRING_EQUAL(m.param, "");
	/* Exactly 95 bytes fit whole. */
	memset(seg, 'b', 95);
	seg[95] = '\0';
	snprintf(path, sizeof path, "/v1/threads/%s", seg);
	CU_ASSERT_EQUAL(route_match(path, M_GET, &m), 0);
	CU_ASSERT_STRING_EQUAL(m.param, seg);

	/* Paths up to 1024 bytes are matched; longer ones are not even looked at. */
	n = strlen("/v1/runs/");
	memcpy(path, "/v1/runs/", n);
	memset(path + n, 'c', 1024 - n);
	path[1024] = '\0';
	CU_ASSERT_EQUAL(route_match(path, M_GET, &m), 0);
	CU_ASSERT_EQUAL(m.route->id, R_RUN);
	memset(path + n, 'c', 1025 - n);
	path[1025] = '\0';
	CU_ASSERT_EQUAL(route_match(path, M_GET, &m), -404);
	memset(path, '/', 2000);
	path[2000] = '\0';
	CU_ASSERT_EQUAL(route_match(path, M_GET, &m), -404);
}

static const struct unit_case cases[] = {
	{ "every route", test_every_route },
	{ "parameter is raw", test_param_is_raw },
	{ "HEAD is GET", test_head_is_get },
	{ "not found", test_not_found },
	{ "method not allowed", test_method_not_allowed },
	{ "long paths", test_long_paths },
};

UNIT_MAIN("routes", cases)
