/* routes.c - one table maps method and path to a handler. */
#include "routes.h"
#include "app.h"
#include "auth.h"
#include "config.h"
#include "log.h"
#include "quota.h"

#include <stdio.h>
#include <string.h>

static const struct route routes[] = {
	{ R_HEALTHZ, "/healthz", P_NONE, M_GET, AUTH_NONE, h_healthz },
	{ R_READYZ, "/readyz", P_NONE, M_GET, AUTH_NONE, h_readyz },
	{ R_METRICS, "/metrics", P_NONE, M_GET, AUTH_NONE, h_metrics },
	{ R_THREADS, "/v1/threads", P_NONE, M_POST, AUTH_KEY, h_threads_create },
	{ R_THREADS, "/v1/threads", P_NONE, M_GET, AUTH_KEY, h_threads_list },
	{ R_THREAD, "/v1/threads/*", P_ID, M_GET, AUTH_KEY, h_thread_get },
	{ R_THREAD_RUNS, "/v1/threads/*/runs", P_ID, M_POST, AUTH_KEY, h_runs_create },
	{ R_THREAD_EVENTS, "/v1/threads/*/events", P_ID, M_GET, AUTH_KEY, h_thread_events },
	{ R_RUN, "/v1/runs/*", P_ID, M_GET, AUTH_KEY, h_run_get },
	{ R_RUN_EVENTS, "/v1/runs/*/events", P_ID, M_GET, AUTH_KEY, h_run_events },
	{ R_RUN_CANCEL, "/v1/runs/*/cancel", P_ID, M_POST, AUTH_KEY, h_run_cancel },
	{ R_RUN_TOOL_OUTPUTS, "/v1/runs/*/tool_outputs", P_ID, M_POST, AUTH_KEY, h_run_tool_outputs },
	{ R_ADMIN_KEYS, "/v1/admin/tenants/*/keys", P_NAME, M_POST, AUTH_ADMIN, h_admin_keys },
	{ R_ADMIN_KEYS, "/v1/admin/tenants/*/keys", P_NAME, M_GET, AUTH_ADMIN, h_admin_keys_list },
	{ R_ADMIN_KEY, "/v1/admin/keys/*", P_ID, M_DELETE, AUTH_ADMIN, h_admin_key_revoke },
	{ R_ADMIN_LIMITS, "/v1/admin/tenants/*/limits", P_NAME, M_GET, AUTH_ADMIN, h_admin_limits_get },
	{ R_ADMIN_LIMITS, "/v1/admin/tenants/*/limits", P_NAME, M_PUT, AUTH_ADMIN, h_admin_limits_put },
	{ R_ADMIN_RECOVER, "/v1/admin/recover", P_NONE, M_POST, AUTH_ADMIN, h_admin_recover },
	{ R_BENCH_STREAM, "/v1/bench/stream", P_NONE, M_GET, AUTH_KEY, h_bench_stream },
};

#define NROUTES (sizeof routes / sizeof routes[0])

static const char *
method_name(enum http_method m)
{
	switch (m) {
	case M_GET: return "GET";
	case M_POST: return "POST";
	case M_PUT: return "PUT";
	case M_DELETE: return "DELETE";
	case M_PATCH: return "PATCH";
	case M_HEAD: return "HEAD";
	case M_OPTIONS: return "OPTIONS";
	default: return "OTHER";
	}
}

/* Match path against pattern; "*" matches one non-empty segment without '/'. */
static int
pattern_match(const char *pattern, const char *path, char *param, size_t cap)
{
	const char *p = pattern, *s = path;

	while (*p) {
		if (*p == '*') {
			size_t n = strcspn(s, "/");

			if (n == 0)
				return 0;
			if (n >= cap)
				n = cap - 1;    /* too long to be valid: validation rejects it */
			memcpy(param, s, n);
			param[n] = '\0';
			s += strcspn(s, "/");
			p++;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	return *s == '\0';
}

int
route_match(const char *path, enum http_method m, struct route_match *match)
{
	unsigned seen = 0;
	int any = 0;

	memset(match, 0, sizeof *match);
	if (!path || strlen(path) > 1024)
		return -404;
	for (size_t i = 0; i < NROUTES; i++) {
		char param[96] = "";

		if (!pattern_match(routes[i].pattern, path, param, sizeof param))
			continue;
		any = 1;
		seen |= routes[i].method;
		if (routes[i].method == m || (m == M_HEAD && routes[i].method == M_GET)) {
			match->route = &routes[i];
			memcpy(match->param, param, sizeof param);
			return 0;
		}
	}
	if (!any)
		return -404;
	for (unsigned bit = 1; bit < M_OTHER; bit <<= 1) {
		if (!(seen & bit))
			continue;
		if (match->allow[0])
			strncat(match->allow, ", ", sizeof match->allow - strlen(match->allow) - 1);
		strncat(match->allow, method_name((enum http_method)bit),
		    sizeof match->allow - strlen(match->allow) - 1);
	}
	return -405;
}

static int
tenant_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (i > 0 && (c == '-' || c == '_'));
		if (!ok)
			return 0;
	}
	return 1;
}

void
route_dispatch(struct req *r)
{
	struct route_match m;
	int rc = route_match(r->path, r->method, &m);

	if (rc == -404) {
		char esc[256];

		log_escape(esc, sizeof esc, r->path, strlen(r->path));
		http_error(r, API_NOT_FOUND, "no route for %s %s", r->method_str ? r->method_str : "-",
		    esc);
		return;
	}
	if (rc == -405) {
		char hdr[96];

		snprintf(hdr, sizeof hdr, "Allow: %s\r\n", m.allow);
		http_error_ex(r, API_METHOD_NOT_ALLOWED, NULL, NULL, hdr,
		    "method not allowed on this route");
		return;
	}
	if (m.route->auth == AUTH_ADMIN && auth_admin(r) < 0)
		return;
	if (m.route->auth == AUTH_KEY && auth_tenant(r->app->auth, r->app->store, r) < 0)
		return;
	if (m.route->auth == AUTH_KEY &&
	    !quota_request(r->app->quota, r->tenant, r->limits.requests_per_s)) {
		http_error_quota(r, "requests_per_s", 1,
		    "this tenant is over its quota of requests per second (requests_per_s)");
		return;
	}
	if (m.route->param == P_ID) {
		if (!uuid_valid(m.param)) {
			http_error(r, API_INVALID_ID, "the id in the path is not a lower-case UUID");
			return;
		}
		memcpy(r->id, m.param, UUID_LEN + 1);
	} else if (m.route->param == P_NAME) {
		if (!tenant_name_ok(m.param)) {
			http_error_field(r, "name", "tenant names are 1-64 characters of a-z, 0-9, "
			    "'-' and '_', starting with a letter or digit");
			return;
		}
		snprintf(r->name, sizeof r->name, "%s", m.param);
	}
	m.route->fn(r);
	if (!r->status)
		http_error(r, API_INTERNAL, "the handler produced no response");
}
