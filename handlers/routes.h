/* routes.h - the routing table (kcgi-style rows, scanned in order by route_match;
 * a row's id names its route for the tests) and the handlers. */
#ifndef TETHER_ROUTES_H
#define TETHER_ROUTES_H

#include <stddef.h>

#include "http.h"

enum route_id {
	R_HEALTHZ = 0,
	R_READYZ,
	R_METRICS,
	R_THREADS,
	R_THREAD,
	R_THREAD_RUNS,
	R_THREAD_EVENTS,
	R_RUN,
	R_RUN_EVENTS,
	R_RUN_CANCEL,
	R_RUN_TOOL_OUTPUTS,
	R_ADMIN_KEYS,
	R_ADMIN_RECOVER,
	R_ADMIN_KEY,
	R_ADMIN_LIMITS,
	R_BENCH_STREAM,
	R__MAX
};

enum route_auth { AUTH_NONE = 0, AUTH_KEY, AUTH_ADMIN };
enum route_param { P_NONE = 0, P_ID, P_NAME };

typedef void (*handler_fn)(struct req *r);

struct route {
	enum route_id id;
	const char *pattern;            /* literal segments and one "*" for the parameter */
	enum route_param param;
	enum http_method method;
	enum route_auth auth;
	handler_fn fn;
};

struct route_match {
	const struct route *route;      /* NULL: no route for this method */
	char allow[64];                 /* methods the path accepts (405) */
	char param[96];                 /* the raw parameter segment */
};

/* 0 when a route matched, -404 when no pattern matches the path, -405 when the
 * path matches with other methods (match->allow lists them). */
int route_match(const char *path, enum http_method m, struct route_match *match);
/* Route, authenticate, validate the parameter and call the handler. */
void route_dispatch(struct req *r);

/* handlers/<family>.c */
void h_healthz(struct req *r);
void h_readyz(struct req *r);
void h_metrics(struct req *r);
void h_threads_create(struct req *r);
void h_threads_list(struct req *r);
void h_thread_get(struct req *r);
void h_runs_create(struct req *r);
void h_run_get(struct req *r);
void h_run_events(struct req *r);
void h_thread_events(struct req *r);
void h_run_cancel(struct req *r);
void h_run_tool_outputs(struct req *r);
void h_admin_keys(struct req *r);
void h_admin_keys_list(struct req *r);
void h_admin_key_revoke(struct req *r);
void h_admin_limits_get(struct req *r);
void h_admin_limits_put(struct req *r);
void h_admin_recover(struct req *r);
void h_bench_stream(struct req *r);

/* Run creation's answer (202/200 {"run_id","thread_id","status","attempt",
 * "events_url","continues"?}); continues: the run a continuation follows, or NULL. */
void run_accepted(struct req *r, int status, const char *run_id, const char *thread_id,
    const char *run_status, int attempt, const char *continues);
/* May this worker start a run now (not draining, NATS up, a generator slot)? 0
 * with the slot reserved (the caller gives it back unless a generator takes it),
 * or -1 with the 503 answered. */
int run_admit(struct req *r);
/* Answer a store failure of a run route: 404 "no <what> <id>" for TE_NOTFOUND, 503
 * when PostgreSQL is away, else the error with the sentence failed. */
void run_store_error(struct req *r, int rc, const char *what, const char *failed);
/* Start the generator of a run just created (its slot reserved): 0 (the slot is
 * the generator's now), or -1 with the error answered and the run failed (or
 * handed back to the sweep); the slot is still the caller's to give back. */
int run_start_created(struct req *r, const char *run_id);
/* An Idempotency-Key header value: 1-255 printable ASCII characters. */
int idempotency_key_ok(const char *k);
/* The format query parameter: absent (tether's events) or ai-sdk (*aisdk = 1).
 * -1 when it is something else: the 400 invalid_field is answered. */
int events_format(struct req *r, int *aisdk);
struct run_state;
/* Serve a run's event stream (events.c); rs, when given, is its state read just now. */
void events_serve(struct req *r, const char *run_id, struct run_state *rs);

#endif
