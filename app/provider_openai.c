/* provider_openai.c - any OpenAI-compatible server (OpenAI, vLLM, llama.cpp server,
 * Ollama): POST {base}/chat/completions with "stream": true over libcurl.
 *
 * One call = one curl multi handle driven by the generator thread inside
 * provider_next (curl_multi_poll); provider_cancel, from any thread, sets a flag
 * and curl_multi_wakeup()s the poll, and the transfer is removed at once, which
 * closes the upstream connection. Before the first piece of the reply (text or a
 * tool-call fragment) a transient failure (connect error, dropped or stalled
 * stream, 408/429/5xx) is retried with capped exponential backoff and jitter,
 * honouring Retry-After; after it, any failure ends the call. The key is sent only
 * in the Authorization header and is never logged nor quoted.
 *
 * Tools: req->tools_json and req->tool_choice_json go upstream as "tools" and
 * "tool_choice"; the history's tool calls and tool outputs as OpenAI's assistant
 * "tool_calls" and "tool" messages. Streamed tool-call fragments are assembled in
 * the stream (openai_stream.calls) and handed out after eof (provider_tool_calls). */
#include "provider.h"
#include "provider_openai.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define ERRBODY_MAX (8 * 1024)
#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 8000
#define RETRY_AFTER_CAP_MS 60000
#define POLL_MAX_MS 1000

struct openai_call {
	struct provider_call_base base;
	const struct provider_req *req;
	const struct config *cfg;
	char url[640];
	char *body;                     /* the request JSON (json-c string, copied) */
	struct curl_slist *headers;
	CURLM *multi;
	CURL *easy;                     /* the current transfer, NULL between tries */
	atomic_int cancelled;           /* set by provider_cancel from any thread */
	struct openai_stream st;        /* of the current transfer */
	struct buf errbody;             /* body of a non-stream answer (bounded) */
	char ctype[128];                /* Content-Type of the current answer */
	char retry_after[64];           /* Retry-After (or retry-after-ms, "ms:" prefixed) */
	char curl_err[CURL_ERROR_SIZE];
	int finished;                   /* the current transfer is over: xfer_rc holds why */
	CURLcode xfer_rc;
	int tries;                      /* transfers started */
	int64_t deadline_ms;            /* the whole call: provider_total_s */
	int64_t try_start_ms;
	int64_t last_event_ms;
	long events_seen;
	int64_t retry_at_ms;            /* between tries: when the next one starts */
	size_t produced;                /* bytes of text handed to the caller */
	int eof;                        /* the reply ended: st.calls is complete */
	unsigned rnd;                   /* backoff jitter (xorshift) */
};

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct openai_call *c = arg;
	size_t len = size * n, k;
	const char *v;

	if (len >= 5 && !memcmp(p, "HTTP/", 5)) {       /* a new response (after 100, redirects) */
		c->ctype[0] = c->retry_after[0] = '\0';
		return len;
	}
	v = memchr(p, ':', len);
	if (!v)
		return len;
	k = (size_t)(v - p);
	for (v++; v < p + len && (*v == ' ' || *v == '\t'); v++)
		;
	{
		size_t vl = (size_t)(p + len - v);

		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (k == 12 && !strncasecmp(p, "content-type", 12))
			snprintf(c->ctype, sizeof c->ctype, "%.*s", (int)(vl < 127 ? vl : 127), v);
		else if (k == 11 && !strncasecmp(p, "retry-after", 11) && c->retry_after[0] != 'm')
			snprintf(c->retry_after, sizeof c->retry_after, "%.*s", (int)(vl < 63 ? vl : 63), v);
		else if (k == 14 && !strncasecmp(p, "retry-after-ms", 14))
			snprintf(c->retry_after, sizeof c->retry_after, "ms:%.*s", (int)(vl < 40 ? vl : 40), v);
	}
	return len;
}

static long
xfer_status(struct openai_call *c)
{
	long status = 0;

	if (c->easy)
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

static int
is_event_stream(const struct openai_call *c)
{
	/* Servers that omit the type are given the benefit of the doubt. */
	return !c->ctype[0] || strcasestr(c->ctype, "text/event-stream") != NULL ||
	    strcasestr(c->ctype, "json") == NULL;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct openai_call *c = arg;
	size_t len = size * n;
	long status = xfer_status(c);

	if (status < 200 || status > 299 || !is_event_stream(c)) {
		size_t room = c->errbody.max - c->errbody.len;

		if (buf_append(&c->errbody, p, len < room ? len : room) != TE_OK)
			return 0;
		return len <= room ? len : 0;   /* enough of an error body: end the transfer */
	}
	return openai_stream_feed(&c->st, p, len) == TE_OK ? len : 0;
}

static void
xfer_drop(struct openai_call *c)
{
	if (!c->easy)
		return;
	/* Removing an unfinished transfer closes its connection: the upstream sees
	 * the client go away and stops generating (and billing). */
	curl_multi_remove_handle(c->multi, c->easy);
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
}

static int
xfer_start(struct openai_call *c, char *err, size_t errlen)
{
	const struct config *cfg = c->cfg;
	CURL *e = curl_easy_init();

	if (!e) {
		snprintf(err, errlen, "out of memory starting the provider call");
		return TE_NOMEM;
	}
	openai_stream_free(&c->st);
	openai_stream_init(&c->st, (size_t)cfg->provider_max_line, (size_t)cfg->max_output);
	buf_reset(&c->errbody);
	c->ctype[0] = c->retry_after[0] = c->curl_err[0] = '\0';
	c->finished = 0;
	c->xfer_rc = CURLE_OK;
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(c->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->provider_connect_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tether");
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		snprintf(err, errlen, "could not start the provider transfer");
		return TE_NOMEM;
	}
	c->easy = e;
	c->tries++;
	c->try_start_ms = c->last_event_ms = now_ms();
	c->events_seen = 0;
	return TE_OK;
}

static unsigned
rnd_next(struct openai_call *c)
{
	c->rnd ^= c->rnd << 13;
	c->rnd ^= c->rnd >> 17;
	c->rnd ^= c->rnd << 5;
	return c->rnd;
}

/* Milliseconds the server asked us to wait, or -1. */
static int64_t
retry_after_ms(const char *v)
{
	int64_t n;

	if (!v[0])
		return -1;
	if (!strncmp(v, "ms:", 3))
		return parse_int64(v + 3, strlen(v + 3), 0, 86400000, &n) == 0 ? n : -1;
	if (parse_int64(v, strlen(v), 0, 86400, &n) == 0)
		return n * 1000;
	{
		time_t t = curl_getdate(v, NULL);
		if (t != (time_t)-1) {
			int64_t ms = ((int64_t)t - (int64_t)time(NULL)) * 1000;
			return ms < 0 ? 0 : ms;
		}
	}
	return -1;
}

/* A try failed with why. Schedule another (TE_OK) if the failure is transient, no text
 * was produced, retries and time are left; else the final error with err set. */
static int
try_failed(struct openai_call *c, int transient, int final_rc, const char *why, char *err,
    size_t errlen)
{
	int retries = c->tries - 1, started;
	int64_t delay, ra;

	xfer_drop(c);
	/* Tool-call fragments start the reply as text does. Nothing of them has been
	 * handed out yet (the calls are, after eof), so a retry would be safe
	 * (xfer_start begins a fresh stream, and with it a fresh set of calls), but a
	 * reply that began is never silently asked for again: it fails. */
	started = c->produced > 0 || toolcalls_count(&c->st.calls) > 0;
	if (!transient || started || retries >= c->cfg->provider_retries) {
		if (toolcalls_count(&c->st.calls) > 0)
			snprintf(err, errlen, "%s (after %ld chunks and %ld tool call fragment%s)",
			    why, c->st.deltas, c->st.tool_deltas, c->st.tool_deltas == 1 ? "" : "s");
		else if (c->produced > 0)
			snprintf(err, errlen, "%s (after %ld chunks)", why, c->st.deltas);
		else if (retries > 0)
			snprintf(err, errlen, "%s (after %d %s)", why, retries,
			    retries == 1 ? "retry" : "retries");
		else
			snprintf(err, errlen, "%s", why);
		return final_rc;
	}
	delay = BACKOFF_BASE_MS << (retries < 5 ? retries : 5);
	if (delay > BACKOFF_CAP_MS)
		delay = BACKOFF_CAP_MS;
	delay = delay / 2 + (int64_t)(rnd_next(c) % (unsigned)(delay / 2 + 1));
	if ((ra = retry_after_ms(c->retry_after)) >= 0)
		delay = ra > RETRY_AFTER_CAP_MS ? RETRY_AFTER_CAP_MS : ra;
	if (now_ms() + delay >= c->deadline_ms) {
		snprintf(err, errlen, "%s (no time left to retry within provider_total_s=%d)", why,
		    c->cfg->provider_total_s);
		return final_rc;
	}
	c->retry_at_ms = now_ms() + delay;
	tlog_run(LOG_WARN, c->req->run_id, c->req->attempt,
	    "provider try %d failed: %s; retrying in %lld ms", c->tries, why, (long long)delay);
	return TE_OK;
}

static int
status_transient(long status)
{
	return status == 408 || status == 409 || status == 429 || (status >= 500 && status <= 599);
}

static int
curl_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_OUT_OF_MEMORY:
	case CURLE_TOO_MANY_REDIRECTS:
		return 0;
	default:
		return 1;
	}
}

/* The current transfer is over and left no pending text: why, and what next. */
static int
xfer_finished(struct openai_call *c, char *err, size_t errlen)
{
	char text[OPENAI_EXCERPT_MAX * 4 + 200], why[sizeof text + 256];
	long status = xfer_status(c);

	if (status >= 200 && status <= 299 && !is_event_stream(c)) {
		openai_error_text(text, sizeof text, c->errbody.data, c->errbody.len);
		snprintf(why, sizeof why, "upstream answered HTTP %ld with %s instead of an event "
		    "stream: %s", status, c->ctype, text);
		return try_failed(c, 0, TE_PROVIDER, why, err, errlen);
	}
	if (status > 0 && (status < 200 || status > 299)) {
		openai_error_text(text, sizeof text, c->errbody.data, c->errbody.len);
		snprintf(why, sizeof why, "upstream returned HTTP %ld: %s", status, text);
		return try_failed(c, status_transient(status), TE_PROVIDER, why, err, errlen);
	}
	if (c->xfer_rc == CURLE_OK) {
		/* A clean end without [DONE]: fine when a choice finished (older servers). */
		if (c->st.finish[0])
			return TE_OK;
		snprintf(why, sizeof why, "the provider's stream ended without [DONE] after %ld "
		    "events", c->st.events);
		return try_failed(c, 1, TE_PROVIDER, why, err, errlen);
	}
	tlog_run(LOG_WARN, c->req->run_id, c->req->attempt, "provider transfer failed: %s",
	    c->curl_err[0] ? c->curl_err : curl_easy_strerror(c->xfer_rc));
	if (status == 0)
		snprintf(why, sizeof why, "could not reach the provider: %s",
		    curl_easy_strerror(c->xfer_rc));
	else
		snprintf(why, sizeof why, "the provider connection failed mid-stream: %s",
		    c->curl_err[0] ? c->curl_err : curl_easy_strerror(c->xfer_rc));
	return try_failed(c, curl_transient(c->xfer_rc), TE_PROVIDER, why, err, errlen);
}

/* The earliest deadline that applies now, and whether it already passed. */
static int
check_timeouts(struct openai_call *c, int64_t now, int64_t *wake, char *err, size_t errlen)
{
	const struct config *cfg = c->cfg;
	char why[256];
	int64_t d;

	if (now >= c->deadline_ms) {
		xfer_drop(c);
		snprintf(err, errlen, "the provider call exceeded provider_total_s (%d s) after %ld "
		    "chunks", cfg->provider_total_s, c->st.deltas);
		return TE_TIMEOUT;
	}
	*wake = c->deadline_ms;
	if (!c->easy)
		return TE_OK;
	if (c->events_seen == 0) {
		d = c->try_start_ms + cfg->provider_first_token_ms;
		if (now >= d) {
			snprintf(why, sizeof why, "no first token from the provider within %d ms "
			    "(provider_first_token_ms)", cfg->provider_first_token_ms);
			return try_failed(c, 1, TE_TIMEOUT, why, err, errlen);
		}
	} else {
		d = c->last_event_ms + cfg->provider_idle_ms;
		if (now >= d) {
			snprintf(why, sizeof why, "the provider sent nothing for %d ms "
			    "(provider_idle_ms)", cfg->provider_idle_ms);
			return try_failed(c, 1, TE_TIMEOUT, why, err, errlen);
		}
	}
	if (d < *wake)
		*wake = d;
	return TE_OK;
}

static void
pump(struct openai_call *c)
{
	CURLMsg *m;
	int running, left;

	curl_multi_perform(c->multi, &running);
	while ((m = curl_multi_info_read(c->multi, &left)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy) {
			c->finished = 1;
			c->xfer_rc = m->data.result;
		}
	if (c->st.events != c->events_seen) {
		c->events_seen = c->st.events;
		c->last_event_ms = now_ms();
	}
}

static int
openai_next(struct provider_call *pc, struct buf *chunk, int *eof, char *err, size_t errlen)
{
	struct openai_call *c = (struct openai_call *)pc;

	*eof = 0;
	for (;;) {
		int64_t now, wake;
		int rc;

		if (atomic_load(&c->cancelled)) {
			xfer_drop(c);
			return TE_CLOSED;
		}
		if (c->easy && c->st.text.len) {
			size_t n = c->st.text.len;

			if ((rc = openai_stream_take(&c->st, chunk)) != TE_OK) {
				xfer_drop(c);
				snprintf(err, errlen, "the reply exceeded the output limit (max_output)");
				return rc;
			}
			c->produced += n;
			return TE_OK;
		}
		if (c->easy && c->st.rc != TE_OK) {
			char why[sizeof c->st.err];

			snprintf(why, sizeof why, "%s", c->st.err);
			/* An error event is upstream's answer, not a blip: not retried. */
			return try_failed(c, 0, TE_PROVIDER, why, err, errlen);
		}
		if (c->easy && c->st.done) {
			*eof = c->eof = 1;
			return TE_OK;
		}
		if (c->easy && c->finished) {
			if ((rc = xfer_finished(c, err, errlen)) != TE_OK)
				return rc;
			if (c->easy) {          /* ended cleanly with a finish_reason */
				*eof = c->eof = 1;
				return TE_OK;
			}
			continue;
		}
		now = now_ms();
		if (!c->easy && now >= c->retry_at_ms) {
			if ((rc = xfer_start(c, err, errlen)) != TE_OK)
				return rc;
		}
		if ((rc = check_timeouts(c, now, &wake, err, errlen)) != TE_OK)
			return rc;
		if (!c->easy && c->retry_at_ms < wake)
			wake = c->retry_at_ms;
		if (c->easy) {
			long before = c->st.events;
			size_t tlen = c->st.text.len;

			pump(c);
			if (c->finished || c->st.text.len != tlen || c->st.events != before ||
			    c->st.rc != TE_OK || c->st.done)
				continue;
		}
		if (atomic_load(&c->cancelled))
			continue;
		wake -= now_ms();
		if (wake > POLL_MAX_MS)
			wake = POLL_MAX_MS;
		if (wake < 1)
			wake = 1;
		curl_multi_poll(c->multi, NULL, 0, (int)wake, NULL);
	}
}

static void
openai_cancel(struct provider_call *pc)
{
	struct openai_call *c = (struct openai_call *)pc;

	atomic_store(&c->cancelled, 1);
	curl_multi_wakeup(c->multi);
}

static const char *
openai_usage(struct provider_call *pc)
{
	struct openai_call *c = (struct openai_call *)pc;

	return c->st.usage[0] ? c->st.usage : NULL;
}

static const struct toolcalls *
openai_tool_calls(struct provider_call *pc)
{
	struct openai_call *c = (struct openai_call *)pc;

	return c->eof ? &c->st.calls : NULL;
}

static void
openai_free(struct provider_call *pc)
{
	struct openai_call *c = (struct openai_call *)pc;

	if (!c)
		return;
	xfer_drop(c);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	curl_slist_free_all(c->headers);
	free(c->body);
	openai_stream_free(&c->st);
	buf_free(&c->errbody);
	free(c);
}

/* One JSON object, array or string from s, nested at most depth levels, white space
 * around it allowed; NULL when s is anything else. The caller puts it. */
static struct json_object *
json_parse_one(const char *s, int depth)
{
	struct json_tokener *tok = json_tokener_new_ex(depth);
	struct json_object *o;
	size_t n = strlen(s), end;

	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)n);
	end = json_tokener_get_parse_end(tok);
	while (o && end < n && (s[end] == ' ' || s[end] == '\t' || s[end] == '\n' || s[end] == '\r'))
		end++;
	if (o && (json_tokener_get_error(tok) != json_tokener_success || end < n)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* tether's [{"id","name","arguments":{…}}…] as OpenAI's assistant tool_calls:
 * [{"id","type":"function","function":{"name","arguments":"<the object as a string>"}}…]. */
static int
msg_tool_calls(const char *tool_calls_json, int depth, struct json_object **out, char *err,
    size_t errlen)
{
	struct json_object *in = json_parse_one(tool_calls_json, depth), *calls = NULL;
	int rc = TE_INVAL;

	if (!in || !json_object_is_type(in, json_type_array)) {
		snprintf(err, errlen, "an assistant message's tool calls are not a JSON array");
		goto out;
	}
	if (!(calls = json_object_new_array()))
		goto nomem;
	for (size_t i = 0; i < json_object_array_length(in); i++) {
		struct json_object *e = json_object_array_get_idx(in, i), *id, *name, *args = NULL;
		struct json_object *call, *fn;
		const char *text = "{}";

		if (!json_object_is_type(e, json_type_object) ||
		    !json_object_object_get_ex(e, "id", &id) || !json_object_is_type(id, json_type_string) ||
		    !json_object_object_get_ex(e, "name", &name) ||
		    !json_object_is_type(name, json_type_string)) {
			snprintf(err, errlen, "tool call %zu of an assistant message has no id or name",
			    i);
			goto out;
		}
		if (json_object_object_get_ex(e, "arguments", &args) &&
		    json_object_is_type(args, json_type_string))
			text = json_object_get_string(args);
		else if (args && !json_object_is_type(args, json_type_null))
			text = json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN |
			    JSON_C_TO_STRING_NOSLASHESCAPE);
		if (!text || !(call = json_object_new_object()))
			goto nomem;
		json_object_array_add(calls, call);
		if (!(fn = json_object_new_object()))
			goto nomem;
		json_object_object_add(call, "id", json_object_get(id));
		json_object_object_add(call, "type", json_object_new_string("function"));
		json_object_object_add(call, "function", fn);
		json_object_object_add(fn, "name", json_object_get(name));
		json_object_object_add(fn, "arguments", json_object_new_string(text));
	}
	*out = calls;
	calls = NULL;
	rc = TE_OK;
	goto out;
nomem:
	rc = TE_NOMEM;
	snprintf(err, errlen, "out of memory building the provider request");
out:
	json_object_put(in);
	json_object_put(calls);
	return rc;
}

/* One message of the history as OpenAI wants it. */
static int
request_msg(const struct provider_msg *pm, int depth, struct json_object **out, char *err,
    size_t errlen)
{
	struct json_object *m = json_object_new_object(), *calls = NULL;
	const char *content = pm->content ? pm->content : "";
	int rc;

	if (!m)
		goto nomem;
	json_object_object_add(m, "role", json_object_new_string(pm->role));
	if (pm->tool_calls_json && pm->tool_calls_json[0]) {
		if ((rc = msg_tool_calls(pm->tool_calls_json, depth, &calls, err, errlen)) != TE_OK) {
			json_object_put(m);
			return rc;
		}
		if (json_object_array_length(calls) == 0) {
			json_object_put(calls);
			calls = NULL;
		}
	}
	/* An assistant message that only calls tools has content null, as OpenAI sends it. */
	json_object_object_add(m, "content", calls && !content[0] ? NULL :
	    json_object_new_string(content));
	if (calls)
		json_object_object_add(m, "tool_calls", calls);
	if (pm->tool_call_id)
		json_object_object_add(m, "tool_call_id", json_object_new_string(pm->tool_call_id));
	*out = m;
	return TE_OK;
nomem:
	snprintf(err, errlen, "out of memory building the provider request");
	return TE_NOMEM;
}

/* "tools" (a non-empty array) and with them "tool_choice", from the run's JSON. */
static int
request_tools(const struct provider_req *req, int depth, struct json_object *o, char *err,
    size_t errlen)
{
	struct json_object *tools, *choice;

	if (!req->tools_json || !req->tools_json[0])
		return TE_OK;
	tools = json_parse_one(req->tools_json, depth);
	if (!tools || !json_object_is_type(tools, json_type_array)) {
		json_object_put(tools);
		snprintf(err, errlen, "the run's tools are not a JSON array");
		return TE_INVAL;
	}
	/* OpenAI refuses an empty tools array, and a tool_choice without tools. */
	if (json_object_array_length(tools) == 0) {
		json_object_put(tools);
		return TE_OK;
	}
	json_object_object_add(o, "tools", tools);
	if (!req->tool_choice_json || !req->tool_choice_json[0])
		return TE_OK;
	choice = json_parse_one(req->tool_choice_json, depth);
	if (!choice || !(json_object_is_type(choice, json_type_string) ||
	    json_object_is_type(choice, json_type_object))) {
		json_object_put(choice);
		snprintf(err, errlen, "the run's tool_choice is neither a string nor an object");
		return TE_INVAL;
	}
	json_object_object_add(o, "tool_choice", choice);
	return TE_OK;
}

/* The request body: model, messages, stream, stream_options, the allowed params,
 * tools and tool_choice. */
static int
request_body(const struct provider_req *req, const char *upstream, char **out, char *err,
    size_t errlen)
{
	static const char *const allowed[] = { "temperature", "top_p", "max_tokens", "stop", NULL };
	struct json_object *o = json_object_new_object(), *msgs = json_object_new_array();
	struct json_object *so = json_object_new_object(), *params = NULL;
	/* As deep as a run's request may be (json-c counts the top level too). */
	int depth = req->cfg->json_depth + 1, rc = TE_NOMEM;

	if (!o || !msgs || !so)
		goto out;
	json_object_object_add(o, "model", json_object_new_string(upstream));
	for (size_t i = 0; i < req->nmsgs; i++) {
		struct json_object *m;

		if ((rc = request_msg(&req->msgs[i], depth, &m, err, errlen)) != TE_OK)
			goto out;
		json_object_array_add(msgs, m);
	}
	rc = TE_NOMEM;
	json_object_object_add(o, "messages", msgs);
	msgs = NULL;
	json_object_object_add(o, "stream", json_object_new_boolean(1));
	json_object_object_add(so, "include_usage", json_object_new_boolean(1));
	json_object_object_add(o, "stream_options", so);
	so = NULL;
	if (req->params_json && req->params_json[0]) {
		params = json_tokener_parse(req->params_json);
		if (!params || !json_object_is_type(params, json_type_object)) {
			snprintf(err, errlen, "the run's params are not a JSON object");
			rc = TE_INVAL;
			goto out;
		}
		for (int i = 0; allowed[i]; i++) {
			struct json_object *v;

			if (json_object_object_get_ex(params, allowed[i], &v))
				json_object_object_add(o, allowed[i], json_object_get(v));
		}
	}
	if ((rc = request_tools(req, depth, o, err, errlen)) != TE_OK)
		goto out;
	rc = TE_NOMEM;
	if (!(*out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE))))
		goto out;
	rc = TE_OK;
out:
	if (rc == TE_NOMEM)
		snprintf(err, errlen, "out of memory building the provider request");
	json_object_put(o);
	json_object_put(msgs);
	json_object_put(so);
	json_object_put(params);
	return rc;
}

static int
openai_start(const struct provider_req *req, struct provider_call **out, char *err, size_t errlen)
{
	const struct config *cfg = req->cfg;
	struct openai_call *c;
	char upstream[256], line[700];
	size_t blen = strlen(cfg->provider_url);
	int rc;

	if (openai_model_lookup(cfg->provider_models, req->model, upstream, sizeof upstream) != 1)
		snprintf(upstream, sizeof upstream, "%s", req->model);
	while (blen && cfg->provider_url[blen - 1] == '/')
		blen--;
	if (!(c = calloc(1, sizeof *c))) {
		snprintf(err, errlen, "out of memory");
		return TE_NOMEM;
	}
	c->base.ops = &provider_openai_ops;
	c->req = req;
	c->cfg = cfg;
	c->deadline_ms = now_ms() + (int64_t)cfg->provider_total_s * 1000;
	c->rnd = (unsigned)(now_us() ^ ((int64_t)getpid() << 16)) | 1u;
	buf_init(&c->errbody, ERRBODY_MAX);
	openai_stream_init(&c->st, (size_t)cfg->provider_max_line, (size_t)cfg->max_output);
	snprintf(c->url, sizeof c->url, "%.*s/chat/completions", (int)blen, cfg->provider_url);
	if ((rc = request_body(req, upstream, &c->body, err, errlen)) != TE_OK)
		goto fail;
	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	c->headers = curl_slist_append(c->headers, "Accept: text/event-stream");
	c->headers = curl_slist_append(c->headers, "Expect:");
	if (cfg->provider_key[0]) {
		snprintf(line, sizeof line, "Authorization: Bearer %s", cfg->provider_key);
		c->headers = curl_slist_append(c->headers, line);
		explicit_bzero(line, sizeof line);
	}
	if (!c->headers || !(c->multi = curl_multi_init())) {
		snprintf(err, errlen, "out of memory");
		rc = TE_NOMEM;
		goto fail;
	}
	if ((rc = xfer_start(c, err, errlen)) != TE_OK)
		goto fail;
	*out = (struct provider_call *)c;
	return TE_OK;
fail:
	openai_free((struct provider_call *)c);
	return rc;
}

const struct provider_ops provider_openai_ops = {
	.start = openai_start,
	.next = openai_next,
	.cancel = openai_cancel,
	.usage = openai_usage,
	.tool_calls = openai_tool_calls,
	.free = openai_free,
};
