/* stubs.c - what handlers/routes.c references besides route_match, for fuzz_route:
 * authentication and the error responses (scripts/fuzz generates the handlers'
 * stubs from routes.h). route_match calls none of them; each aborts if it ever is. */
#include "routes.h"
#include "auth.h"
#include "quota.h"

#include <stdlib.h>

int auth_admin(struct req *r) { (void)r; abort(); }
int auth_tenant(struct authcache *c, struct store *st, struct req *r)
{
	(void)c; (void)st; (void)r;
	abort();
}

void
http_error(struct req *r, enum api_err e, const char *fmt, ...)
{
	(void)r; (void)e; (void)fmt;
	abort();
}

void
http_error_field(struct req *r, const char *field, const char *fmt, ...)
{
	(void)r; (void)field; (void)fmt;
	abort();
}

void
http_error_ex(struct req *r, enum api_err e, const char *field, const char *active_run_id,
    const char *extra_headers, const char *msg)
{
	(void)r; (void)e; (void)field; (void)active_run_id; (void)extra_headers; (void)msg;
	abort();
}

int
quota_request(struct quota *q, const char *tenant, int limit)
{
	(void)q; (void)tenant; (void)limit;
	abort();
}

void
http_error_quota(struct req *r, const char *limit, int retry_after_s, const char *msg)
{
	(void)r; (void)limit; (void)retry_after_s; (void)msg;
	abort();
}
