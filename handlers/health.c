/* GET /healthz (liveness: no dependencies) and GET /readyz (PostgreSQL, NATS, drain). */
#include "routes.h"
#include "app.h"
#include "bus.h"
#include "store.h"

#include <stdio.h>

void
h_healthz(struct req *r)
{
	struct app *a = r->app;
	char body[256];

	snprintf(body, sizeof body, "{\"status\":\"ok\",\"pod\":\"%s\",\"worker\":%ld,\"pid\":%d}",
	    a->pod, a->worker, (int)a->pid);
	http_json_str(r, 200, body);
}

void
h_readyz(struct req *r)
{
	struct app *a = r->app;
	int pg = store_ping(a->store) == TE_OK;
	int nats = bus_ping(a->bus, 1000) == TE_OK;
	int draining = atomic_load(&a->draining);
	const char *status = draining ? "draining" : (pg && nats) ? "ready" : "unavailable";
	char body[320];

	snprintf(body, sizeof body,
	    "{\"status\":\"%s\",\"postgres\":\"%s\",\"nats\":\"%s\",\"pod\":\"%s\",\"worker\":%ld}",
	    status, pg ? "ok" : "unavailable", nats ? "ok" : "unavailable", a->pod, a->worker);
	http_json_str(r, pg && nats && !draining ? 200 : 503, body);
}
