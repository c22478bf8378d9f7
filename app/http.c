#include "http.h"
#include "config.h"
#include "jsonv.h"
#include "log.h"
#include "sse.h"

#include <fcgiapp.h>
#include <json-c/json.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#define SSE_SEND_TIMEOUT_S 5
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum http_method
http_method_parse(const char *s)
{
	static const struct { const char *name; enum http_method m; } t[] = {
		{ "GET", M_GET }, { "POST", M_POST }, { "PUT", M_PUT }, { "DELETE", M_DELETE },
		{ "PATCH", M_PATCH }, { "HEAD", M_HEAD }, { "OPTIONS", M_OPTIONS },
	};

	if (!s)
		return M_OTHER;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(s, t[i].name))
			return t[i].m;
	return M_OTHER;
}

const char *
http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

static const char *
param(struct req *r, const char *name)
{
	const char *v = FCGX_GetParam(name, r->fcgi->envp);

	return v && *v ? v : NULL;
}

void
http_req_init(struct req *r, struct app *app, const struct config *cfg, FCGX_Request *fcgi)
{
	const char *cl;
	int64_t n;

	memset(r, 0, sizeof *r);
	r->app = app;
	r->cfg = cfg;
	r->fcgi = fcgi;
	r->started_us = now_us();
	r->method_str = param(r, "REQUEST_METHOD");
	r->method = http_method_parse(r->method_str);
	r->path = param(r, "DOCUMENT_URI");
	if (!r->path)
		r->path = param(r, "SCRIPT_NAME");
	if (!r->path)
		r->path = "/";
	r->query = param(r, "QUERY_STRING");
	r->content_type = param(r, "CONTENT_TYPE");
	r->authorization = param(r, "HTTP_AUTHORIZATION");
	r->accept = param(r, "HTTP_ACCEPT");
	r->last_event_id = FCGX_GetParam("HTTP_LAST_EVENT_ID", fcgi->envp);
	r->idempotency_key = FCGX_GetParam("HTTP_IDEMPOTENCY_KEY", fcgi->envp);
	r->remote_addr = param(r, "REMOTE_ADDR");
	r->content_length = -1;
	cl = param(r, "CONTENT_LENGTH");
	if (cl && parse_int64(cl, strlen(cl), 0, INT64_MAX, &n) == 0)
		r->content_length = n;
	buf_init(&r->body, 0);
}

void
http_req_free(struct req *r)
{
	buf_free(&r->body);
}

int
http_body_read(struct req *r, size_t max)
{
	char chunk[8192];
	int n;

	buf_init(&r->body, max);
	if (r->content_length > (int64_t)max) {
		http_error(r, API_PAYLOAD_TOO_LARGE, "request body of %lld bytes exceeds the limit of %zu bytes",
		    (long long)r->content_length, max);
		return -1;
	}
	while ((n = FCGX_GetStr(chunk, sizeof chunk, r->fcgi->in)) > 0) {
		if (buf_append(&r->body, chunk, (size_t)n) != TE_OK) {
			http_error(r, API_PAYLOAD_TOO_LARGE, "request body exceeds the limit of %zu bytes", max);
			return -1;
		}
	}
	if (r->content_length >= 0 && (int64_t)r->body.len != r->content_length) {
		http_error(r, API_BAD_REQUEST, "request body ended after %zu of %lld bytes",
		    r->body.len, (long long)r->content_length);
		return -1;
	}
	if (!r->body.data && buf_append(&r->body, "", 0) != TE_OK) {
		http_error(r, API_INTERNAL, "out of memory reading the request body");
		return -1;
	}
	return 0;
}

static int
is_json_type(const char *ct)
{
	size_t n;

	while (*ct == ' ')
		ct++;
	n = strcspn(ct, "; ");
	return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

int
http_json_body(struct req *r, int allow_empty, struct json_object **out)
{
	const struct config *cfg = r->cfg;
	struct json_object *obj = NULL;
	char err[256];
	int rc;

	if (http_body_read(r, (size_t)cfg->max_body) < 0)
		return -1;
	if (r->body.len == 0 && allow_empty) {
		*out = json_object_new_object();
		return *out ? 0 : -1;
	}
	if (!r->content_type || !is_json_type(r->content_type)) {
		http_error(r, API_UNSUPPORTED_MEDIA_TYPE,
		    "request body must be sent with Content-Type: application/json");
		return -1;
	}
	rc = jsonv_parse_object(r->body.data, r->body.len, cfg->json_depth, &obj, err, sizeof err);
	if (rc != JV_OK) {
		http_error_ex(r, API_INVALID_JSON, NULL, NULL, NULL, err);
		return -1;
	}
	*out = obj;
	return 0;
}

static void
write_all(struct req *r, const char *p, size_t n)
{
	while (n > 0) {
		int k = n > (1 << 30) ? (1 << 30) : (int)n;
		if (FCGX_PutStr(p, k, r->fcgi->out) < 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

void
http_respond(struct req *r, int status, const char *ctype, const char *extra_headers,
    const char *body, size_t len)
{
	char head[1024];
	int n;

	if (r->status)
		return;
	r->status = status;
	/* snprintf, not FCGX_FPrintF: libfcgi's own printf lacks %zu and friends. */
	n = snprintf(head, sizeof head, "Status: %d %s\r\n%s%s%sContent-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n%s\r\n", status, http_status_text(status),
	    ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", len,
	    extra_headers ? extra_headers : "");
	if (n < 0 || (size_t)n >= sizeof head)
		return;
	write_all(r, head, (size_t)n);
	if (r->method != M_HEAD && len)
		write_all(r, body, len);
}

void
http_json(struct req *r, int status, struct json_object *obj)
{
	size_t len;
	const char *s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

	http_respond(r, status, "application/json; charset=utf-8", NULL, s, len);
}

void
http_json_str(struct req *r, int status, const char *json)
{
	http_respond(r, status, "application/json; charset=utf-8", NULL, json, strlen(json));
}

int
http_error_render(struct buf *b, enum api_err e, const char *msg, const char *field,
    const char *active_run_id)
{
	int rc;

	if ((rc = buf_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":", api_err_code(e))) != TE_OK ||
	    (rc = buf_json_str(b, msg, strlen(msg))) != TE_OK)
		return rc;
	if (field && ((rc = buf_puts(b, ",\"field\":")) != TE_OK ||
	    (rc = buf_json_str(b, field, strlen(field))) != TE_OK))
		return rc;
	if (active_run_id && ((rc = buf_puts(b, ",\"active_run_id\":")) != TE_OK ||
	    (rc = buf_json_str(b, active_run_id, strlen(active_run_id))) != TE_OK))
		return rc;
	return buf_puts(b, "}}");
}

void
http_error_quota(struct req *r, const char *limit, int retry_after_s, const char *msg)
{
	struct buf b;
	char hdr[48];
	int rc;

	buf_init(&b, 4096);
	rc = http_error_render(&b, API_QUOTA_EXCEEDED, msg, NULL, NULL);
	if (rc == TE_OK) {
		b.len -= 2;     /* reopen the error object: "limit" goes in it */
		b.data[b.len] = '\0';
		rc = buf_printf(&b, ",\"limit\":\"%s\"}}", limit);
	}
	snprintf(hdr, sizeof hdr, "Retry-After: %d\r\n", retry_after_s);
	if (rc == TE_OK)
		http_respond(r, 429, "application/json; charset=utf-8", hdr, b.data, b.len);
	else
		http_error_ex(r, API_QUOTA_EXCEEDED, NULL, NULL, hdr, msg);
	buf_free(&b);
}

void
http_error_ex(struct req *r, enum api_err e, const char *field, const char *active_run_id,
    const char *extra_headers, const char *msg)
{
	struct buf b;
	char safe[1024], safe_field[256];
	size_t n = strlen(msg);

	/* Messages and fields may quote client bytes: keep them valid UTF-8 in the JSON. */
	if (!utf8_valid(msg, n)) {
		log_escape(safe, sizeof safe, msg, n);
		msg = safe;
	}
	if (field && !utf8_valid(field, strlen(field))) {
		log_escape(safe_field, sizeof safe_field, field, strlen(field));
		field = safe_field;
	}
	buf_init(&b, 64 * 1024);
	if (http_error_render(&b, e, msg, field, active_run_id) != TE_OK) {
		static const char too_large[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"error too large\"}}";

		buf_reset(&b);
		if (buf_puts(&b, too_large) != TE_OK) {
			buf_free(&b);
			http_respond(r, api_err_status(e), "application/json; charset=utf-8",
			    extra_headers, too_large, sizeof too_large - 1);
			return;
		}
	}
	if (api_err_status(e) >= 500 || log_enabled(LOG_DEBUG))
		tlog(api_err_status(e) >= 500 ? LOG_WARN : LOG_DEBUG, "%s %s -> %d %s: %s",
		    r->method_str ? r->method_str : "-", r->path, api_err_status(e), api_err_code(e), msg);
	http_respond(r, api_err_status(e), "application/json; charset=utf-8", extra_headers, b.data,
	    b.len);
	buf_free(&b);
}

void
http_error(struct req *r, enum api_err e, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	http_error_ex(r, e, NULL, NULL, NULL, msg);
}

void
http_error_field(struct req *r, const char *field, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	http_error_ex(r, API_INVALID_FIELD, field, NULL, NULL, msg);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode the value v[0..vlen) into dst, or only measure it when dst is NULL:
 * its length, or -2 when malformed or not shorter than cap. */
static int
query_decode(const char *v, size_t vlen, char *dst, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return -2;
	for (size_t i = 0; i < vlen; i++) {
		char c = v[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= vlen)
				return -2;
			if ((h = hexval(v[i + 1])) < 0 || (l = hexval(v[i + 2])) < 0)
				return -2;
			c = (char)(h * 16 + l);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (c == '\0' || o + 1 >= cap)
			return -2;
		if (dst)
			dst[o] = c;
		o++;
	}
	if (dst)
		dst[o] = '\0';
	return (int)o;
}

int
http_query_get(const char *query, const char *name, char *dst, size_t cap)
{
	size_t nlen = strlen(name);
	const char *p = query;

	if (!query)
		return -1;
	while (*p) {
		const char *end = strchr(p, '&'), *eq;
		size_t seg = end ? (size_t)(end - p) : strlen(p);

		eq = memchr(p, '=', seg);
		if ((eq ? (size_t)(eq - p) : seg) == nlen && strncmp(p, name, nlen) == 0) {
			const char *v = eq ? eq + 1 : p + seg;
			size_t vlen = (size_t)(p + seg - v);

			/* dst is written only when the whole value fits. */
			if (query_decode(v, vlen, NULL, cap) < 0)
				return -2;
			return query_decode(v, vlen, dst, cap);
		}
		if (!end)
			break;
		p = end + 1;
	}
	return -1;
}

static const char sse_head[] = "Status: 200 OK\r\n"
    "Content-Type: text/event-stream; charset=utf-8\r\n"
    "Cache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\n";

int
http_sse_start(struct req *r)
{
	return http_sse_start_ex(r, NULL);
}

int
http_sse_start_ex(struct req *r, const char *headers)
{
	if (r->status)
		return TE_INVAL;
	r->status = 200;
	r->streaming = 1;
	/* A stream's events may be written by a thread that serves many streams: a
	 * client that stops reading must not stall it. After this long the write
	 * fails, the stream ends and the client resumes with Last-Event-ID. */
	{
		struct timeval tv = { .tv_sec = SSE_SEND_TIMEOUT_S, .tv_usec = 0 };

		setsockopt(r->fcgi->ipcFd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	}
	write_all(r, sse_head, sizeof sse_head - 1);
	if (headers)
		write_all(r, headers, strlen(headers));
	write_all(r, "\r\n", 2);
	return FCGX_FFlush(r->fcgi->out) < 0 ? TE_CLOSED : TE_OK;
}

static int
sse_flush(struct req *r, struct buf *b)
{
	int rc = TE_OK;

	if (FCGX_PutStr(b->data, (int)b->len, r->fcgi->out) < 0 || FCGX_FFlush(r->fcgi->out) < 0)
		rc = TE_CLOSED;
	return rc;
}

int
http_sse_event(struct req *r, const char *id, const char *event, const char *data, size_t len)
{
	struct buf b;
	int rc;

	buf_init(&b, len + 256);
	if ((rc = sse_format(&b, id, event, data, len)) == TE_OK)
		rc = sse_flush(r, &b);
	buf_free(&b);
	return rc;
}

int
http_sse_write(struct req *r, const char *data, size_t len)
{
	while (len > 0) {
		int k = len > (1 << 30) ? (1 << 30) : (int)len;

		if (FCGX_PutStr(data, k, r->fcgi->out) < 0)
			return TE_CLOSED;
		data += k;
		len -= (size_t)k;
	}
	return FCGX_FFlush(r->fcgi->out) < 0 ? TE_CLOSED : TE_OK;
}

int
http_sse_comment(struct req *r, const char *text)
{
	struct buf b;
	int rc;

	buf_init(&b, 1024);
	if ((rc = sse_comment(&b, text)) == TE_OK)
		rc = sse_flush(r, &b);
	buf_free(&b);
	return rc;
}

/* FastCGI record header (FastCGI 1.0 spec, 3.3): version, type, request id,
 * content length, padding length, reserved. */
#define FCGI_HEADER_LEN 8
#define FCGI_VERSION_1 1
#define FCGI_STDOUT 6
#define FCGI_END_REQUEST 3
#define FCGI_MAX_CONTENT 65535

void
http_wire_init(struct sse_wire *w, struct req *r, size_t cap)
{
	buf_init(&w->b, (size_t)1 << 30);
	w->off = 0;
	w->cap = cap;
	w->fd = r->fcgi->ipcFd;
	w->request_id = r->fcgi->requestId;
}

void
http_wire_free(struct sse_wire *w)
{
	buf_free(&w->b);
	w->off = 0;
}

size_t
http_wire_pending(const struct sse_wire *w)
{
	return w->b.len - w->off;
}

static int
wire_record(struct sse_wire *w, int type, const void *data, size_t n)
{
	unsigned char h[FCGI_HEADER_LEN] = { FCGI_VERSION_1, (unsigned char)type,
		(unsigned char)(w->request_id >> 8), (unsigned char)w->request_id,
		(unsigned char)(n >> 8), (unsigned char)n, 0, 0 };
	int rc = buf_append(&w->b, h, sizeof h);

	return rc == TE_OK && n ? buf_append(&w->b, data, n) : rc;
}

int
http_wire_put(struct sse_wire *w, const char *data, size_t len, int bounded)
{
	int rc = TE_OK;

	if (bounded && http_wire_pending(w) > w->cap)
		return TE_TOOLARGE;
	if (w->off > 0 && w->off == w->b.len) {
		buf_reset(&w->b);
		w->off = 0;
	}
	while (len > 0 && rc == TE_OK) {
		size_t n = len > FCGI_MAX_CONTENT ? FCGI_MAX_CONTENT : len;

		rc = wire_record(w, FCGI_STDOUT, data, n);
		data += n;
		len -= n;
	}
	return rc;
}

int
http_wire_end(struct sse_wire *w)
{
	/* appStatus 0 (4 bytes), protocolStatus FCGI_REQUEST_COMPLETE, 3 reserved */
	static const unsigned char end[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
	int rc = wire_record(w, FCGI_STDOUT, NULL, 0);

	return rc == TE_OK ? wire_record(w, FCGI_END_REQUEST, end, sizeof end) : rc;
}

int
http_wire_push(struct sse_wire *w)
{
	while (w->off < w->b.len) {
		ssize_t n = send(w->fd, w->b.data + w->off, w->b.len - w->off,
		    MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			w->off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return TE_AGAIN;
		return TE_CLOSED;
	}
	buf_reset(&w->b);
	w->off = 0;
	return TE_OK;
}

void
http_wire_wait(struct sse_wire *w, int timeout_ms)
{
	struct pollfd p = { .fd = w->fd, .events = POLLOUT };

	poll(&p, 1, timeout_ms);
}

int
http_wire_drain(struct sse_wire *w, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int rc;

	while ((rc = http_wire_push(w)) == TE_AGAIN) {
		int64_t left = deadline - now_ms();

		if (left <= 0)
			return TE_TIMEOUT;
		http_wire_wait(w, (int)left);
	}
	return rc;
}

void
http_wire_abort(struct sse_wire *w)
{
	if (w->fd >= 0)
		shutdown(w->fd, SHUT_RDWR);
}

int
http_wire_detach(struct sse_wire *w, struct req *r, int min_fd, int devnull)
{
	int hi = fcntl(w->fd, F_DUPFD_CLOEXEC, min_fd), dummy;

	if (hi < 0)
		return TE_IO;
	if ((dummy = fcntl(devnull, F_DUPFD_CLOEXEC, 0)) < 0) {
		close(hi);
		return TE_IO;
	}
	/* libfcgi's FCGX_Finish_r writes its end records to the dummy and closes it:
	 * shutdown() fails on it (not a socket), so its select() loop never runs. */
	close(w->fd);
	r->fcgi->ipcFd = dummy;
	w->fd = hi;
	return TE_OK;
}

int
http_client_gone(struct req *r)
{
	struct pollfd p = { .fd = r->fcgi->ipcFd, .events = POLLRDHUP };

	if (p.fd < 0)
		return 1;
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}
