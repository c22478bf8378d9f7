#include "client.h"
#include "err.h"
#include "util.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	return buf_append(b, p, size * n) == TE_OK ? size * n : 0;
}

static struct curl_slist *
headers(const struct client *c, int json, int stream, const char *last_id)
{
	struct curl_slist *h = NULL;
	char line[600];

	h = curl_slist_append(h, "User-Agent: tetherctl");
	if (c->key && *c->key) {
		snprintf(line, sizeof line, "Authorization: Bearer %s", c->key);
		h = curl_slist_append(h, line);
	}
	if (json)
		h = curl_slist_append(h, "Content-Type: application/json");
	if (stream)
		h = curl_slist_append(h, "Accept: text/event-stream");
	if (last_id && *last_id) {
		snprintf(line, sizeof line, "Last-Event-ID: %s", last_id);
		h = curl_slist_append(h, line);
	}
	return h;
}

int
client_json(const struct client *c, const char *method, const char *path, const char *body,
    struct buf *resp, char *err, size_t errlen)
{
	return client_json_idem(c, method, path, body, NULL, resp, err, errlen);
}

int
client_json_idem(const struct client *c, const char *method, const char *path, const char *body,
    const char *idem, struct buf *resp, char *err, size_t errlen)
{
	char url[2048];
	struct curl_slist *h;
	CURL *cu = curl_easy_init();
	CURLcode rc;
	long status = -1;

	if (!cu) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(url, sizeof url, "%s%s", c->url, path);
	h = headers(c, body != NULL, 0, NULL);
	if (idem) {
		char line[320];

		snprintf(line, sizeof line, "Idempotency-Key: %s", idem);
		h = curl_slist_append(h, line);
	}
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT, c->timeout_s > 0 ? c->timeout_s : 30L);
	curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, "");
	}
	rc = curl_easy_perform(cu);
	if (rc == CURLE_OK)
		curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
	curl_slist_free_all(h);
	curl_easy_cleanup(cu);
	return rc == CURLE_OK ? (int)status : -1;
}

struct stream_ctx {
	struct client_stream *s;
	struct sseparse p;
	int stopped;
	long status;
	CURL *cu;
	struct buf errbody;
};

static int
on_event(void *arg, const struct sse_event *ev)
{
	struct stream_ctx *x = arg;
	int rc;

	if (ev->id[0])
		snprintf(x->s->last_id, sizeof x->s->last_id, "%s", ev->id);
	if (!strcmp(ev->event, "done"))
		x->s->saw_done = 1;
	rc = x->s->on_event(x->s->arg, ev);
	if (rc)
		x->stopped = 1;
	return rc ? rc : (x->s->saw_done ? 1 : 0);
}

static size_t
on_bytes(char *p, size_t size, size_t n, void *arg)
{
	struct stream_ctx *x = arg;

	if (x->status == 0)
		curl_easy_getinfo(x->cu, CURLINFO_RESPONSE_CODE, &x->status);
	if (x->status != 200) {
		/* An error body past the cap is not worth reading on: end the transfer. */
		return buf_append(&x->errbody, p, size * n) == TE_OK ? size * n : 0;
	}
	if (sseparse_feed(&x->p, p, size * n) != 0)
		return 0;       /* done, stopped or a bound: end the transfer */
	return size * n;
}

static int
stream_once(const struct client *c, const char *path, const char *post_body,
    struct client_stream *s, long *status, char *err, size_t errlen)
{
	struct stream_ctx x;
	struct curl_slist *h;
	char url[2048];
	CURLcode rc;

	memset(&x, 0, sizeof x);
	x.s = s;
	buf_init(&x.errbody, 64 * 1024);
	sseparse_init(&x.p, 1 << 20, 16 << 20, on_event, NULL, &x);
	if (!(x.cu = curl_easy_init())) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(url, sizeof url, "%s%s", c->url, path);
	h = headers(c, post_body != NULL, 1, post_body ? NULL : s->last_id);
	curl_easy_setopt(x.cu, CURLOPT_URL, url);
	curl_easy_setopt(x.cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(x.cu, CURLOPT_WRITEFUNCTION, on_bytes);
	curl_easy_setopt(x.cu, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(x.cu, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(x.cu, CURLOPT_NOSIGNAL, 1L);
	/* A stream may be quiet up to the server's heartbeat (15 s by default). */
	curl_easy_setopt(x.cu, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(x.cu, CURLOPT_LOW_SPEED_TIME, 60L);
	if (post_body) {
		curl_easy_setopt(x.cu, CURLOPT_POSTFIELDS, post_body);
		curl_easy_setopt(x.cu, CURLOPT_POSTFIELDSIZE, (long)strlen(post_body));
	}
	rc = curl_easy_perform(x.cu);
	if (x.status == 0)
		curl_easy_getinfo(x.cu, CURLINFO_RESPONSE_CODE, &x.status);
	*status = x.status;
	if (x.status != 200 && x.status > 0)
		snprintf(err, errlen, "HTTP %ld: %s", x.status, x.errbody.data ? x.errbody.data : "");
	else if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR)
		snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
	curl_slist_free_all(h);
	curl_easy_cleanup(x.cu);
	sseparse_free(&x.p);
	buf_free(&x.errbody);
	return x.stopped ? 1 : 0;
}

int
client_stream(const struct client *c, const char *path, struct client_stream *s,
    int max_reconnects, char *err, size_t errlen)
{
	int64_t backoff = 200;
	long status = 0;

	err[0] = '\0';
	for (;;) {
		if (stream_once(c, path, NULL, s, &status, err, errlen) == 1 || s->saw_done)
			break;
		/* A 4xx will not get better by retrying. */
		if ((status >= 400 && status < 500) || s->reconnects >= max_reconnects)
			break;
		s->reconnects++;
		sleep_ms(backoff);
		backoff = backoff * 2 > 3000 ? 3000 : backoff * 2;
		err[0] = '\0';
	}
	return s->saw_done ? 0 : -1;
}
