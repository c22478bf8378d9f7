/* http.h - one FastCGI request: parameters, bounded body, JSON responses,
 * the error shape of API.md, and Server-Sent Events writing. */
#ifndef TETHER_HTTP_H
#define TETHER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "quota.h"
#include "util.h"

struct app;
struct config;
struct json_object;
typedef struct FCGX_Request FCGX_Request;

enum http_method {
	M_GET = 1, M_POST = 2, M_PUT = 4, M_DELETE = 8, M_PATCH = 16, M_HEAD = 32,
	M_OPTIONS = 64, M_OTHER = 128
};

struct req {
	struct app *app;                /* the worker, for the handlers (http.c never reads it) */
	const struct config *cfg;
	FCGX_Request *fcgi;
	enum http_method method;
	const char *method_str;
	const char *path;               /* DOCUMENT_URI: decoded, normalised by nginx */
	const char *query;              /* QUERY_STRING, raw */
	const char *content_type;
	const char *authorization;
	const char *accept;
	const char *last_event_id;
	const char *idempotency_key;
	const char *remote_addr;
	int64_t content_length;         /* -1 when absent */
	struct buf body;
	/* filled by routing */
	char id[UUID_LEN + 1];
	char name[65];
	/* filled by auth */
	char tenant[UUID_LEN + 1];
	char key_id[UUID_LEN + 1];      /* the API key's id */
	unsigned auth_gen;              /* auth_revocations() before the key was checked */
	struct tenant_limits limits;    /* the tenant's effective quotas */
	/* response state */
	int status;                     /* 0 until headers are written */
	int streaming;
	int64_t started_us;
};

enum http_method http_method_parse(const char *s);
const char *http_status_text(int status);

void http_req_init(struct req *r, struct app *app, const struct config *cfg, FCGX_Request *fcgi);
void http_req_free(struct req *r);

/* Read the body within the configured limit; on failure the error response
 * has been sent and -1 is returned. */
int http_body_read(struct req *r, size_t max);
/* Read and parse a JSON object body (415, 413, 400 answered here). With
 * allow_empty, an empty body yields an empty object. *out belongs to the caller. */
int http_json_body(struct req *r, int allow_empty, struct json_object **out);

void http_respond(struct req *r, int status, const char *ctype, const char *extra_headers,
    const char *body, size_t len);
void http_json(struct req *r, int status, struct json_object *obj);
void http_json_str(struct req *r, int status, const char *json);
/* 429 quota_exceeded with "limit" (max_active_runs, max_streams, requests_per_s)
 * and Retry-After; msg is server text (no client bytes). */
void http_error_quota(struct req *r, const char *limit, int retry_after_s, const char *msg);
void http_error(struct req *r, enum api_err e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void http_error_field(struct req *r, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The general form: any of field, active_run_id, extra_headers may be NULL. */
void http_error_ex(struct req *r, enum api_err e, const char *field, const char *active_run_id,
    const char *extra_headers, const char *msg);
/* Render {"error":{...}} into b (pure; unit-tested). */
int http_error_render(struct buf *b, enum api_err e, const char *msg, const char *field,
    const char *active_run_id);

/* Query string: copy the percent-decoded value of name into dst.
 * Returns its length, -1 when absent, -2 when malformed or longer than cap-1;
 * dst is written only when the length is returned. */
int http_query_get(const char *query, const char *name, char *dst, size_t cap);

/* Event streams. */
int http_sse_start(struct req *r);
/* The same with more response headers (each ending in \r\n; NULL: none). */
int http_sse_start_ex(struct req *r, const char *headers);
/* Returns TE_OK or TE_CLOSED when the client has gone. */
int http_sse_event(struct req *r, const char *id, const char *event, const char *data, size_t len);
int http_sse_comment(struct req *r, const char *text);
/* Write preformatted SSE bytes (several events at once) and flush. */
int http_sse_write(struct req *r, const char *data, size_t len);
/* An event stream's bytes on the wire, after http_sse_start: framed here as
 * FastCGI STDOUT records and sent with MSG_DONTWAIT, so the thread that delivers a
 * run's events to many streams never waits on one client. libfcgi's own buffer is
 * empty after http_sse_start, and FCGX_Finish_r writes the end of the request once
 * http_wire_drain has sent everything. Owned by one stream; guard it with the
 * stream's lock. */
struct sse_wire {
	struct buf b;           /* framed records */
	size_t off;             /* bytes of b already sent */
	size_t cap;             /* unsent bytes allowed by a bounded put */
	int fd;                 /* the connection to the web server */
	int request_id;         /* FastCGI request id */
};
/* For r's connection (after http_sse_start). */
void http_wire_init(struct sse_wire *w, struct req *r, size_t cap);
void http_wire_free(struct sse_wire *w);
size_t http_wire_pending(const struct sse_wire *w);
/* Frame len bytes of SSE text. bounded: TE_TOOLARGE (nothing queued) when more
 * than cap bytes are unsent already: the client is not reading. */
int http_wire_put(struct sse_wire *w, const char *data, size_t len, int bounded);
/* Queue the end of the request (an empty STDOUT record, then END_REQUEST with
 * status 0), for a stream that left libfcgi (app/watcher.c). */
int http_wire_end(struct sse_wire *w);
/* Send what the socket takes now: TE_OK (all sent), TE_AGAIN (some left), TE_CLOSED. */
int http_wire_push(struct sse_wire *w);
/* Send everything: TE_OK, TE_TIMEOUT, TE_CLOSED. */
int http_wire_drain(struct sse_wire *w, int timeout_ms);
/* Wait until the socket can take more, or timeout_ms passed. */
void http_wire_wait(struct sse_wire *w, int timeout_ms);
/* A stream that cannot end cleanly (bytes left unsent): cut the connection so the
 * web server ends the client's response and the client resumes. */
void http_wire_abort(struct sse_wire *w);
/* Take r's connection away from libfcgi (the stream goes on in app/watcher.c):
 * the connection moves to a descriptor >= min_fd, where libfcgi's select() never
 * sees it, and libfcgi finishes the request on a dummy (a dup of devnull). TE_OK
 * with w->fd the new descriptor, or TE_IO (nothing changed). */
int http_wire_detach(struct sse_wire *w, struct req *r, int min_fd, int devnull);

/* Non-blocking check: has the web server closed this request's connection? */
int http_client_gone(struct req *r);

#endif
