/* run.c - generators. Each owns one (run, attempt); every write it makes is fenced:
 * stream publishes by expected last subject sequence, the terminal row write by
 * attempt and owner. A fenced write means someone else owns the run now (a taker
 * or a cancel): the generator stops at once and writes nothing more. Everything
 * outside goes through struct gen_ops (run.h). */
#include "run.h"
#include "sse.h"
#include "bus.h"
#include "buf.h"
#include "crash.h"
#include "err.h"
#include "fault.h"
#include "log.h"
#include "provider.h"
#include "store.h"
#include "toolcall.h"
#include "util.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STACK_SIZE (256 * 1024)
#define RESET_TRIES 8

struct job {
	struct job *next;
	struct runner *r;
	char run_id[UUID_LEN + 1];
	int attempt;
	enum run_kind kind;
	int64_t claimed_us;
	struct provider_call *call;     /* guarded by runner.mu */
	int stop;                       /* guarded by runner.mu: cancelled or aborted */
};

struct runner {
	struct gen_ops ops;
	pthread_mutex_t mu;             /* guards everything below and job.call/stop */
	pthread_cond_t idle;
	int max;
	int reserved;                   /* slots taken, running or about to */
	int active;                     /* generator threads alive */
	struct job *jobs;
};

int
runner_new(struct runner **out, const struct gen_ops *ops, int max_runs)
{
	struct runner *r = calloc(1, sizeof *r);

	if (!r)
		return TE_NOMEM;
	r->ops = *ops;
	r->max = max_runs;
	pthread_mutex_init(&r->mu, NULL);
	cond_init_monotonic(&r->idle);
	*out = r;
	return TE_OK;
}

void
runner_free(struct runner *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->idle);
	free(r);
}

int
runner_reserve(struct runner *r)
{
	int rc = TE_OK;

	pthread_mutex_lock(&r->mu);
	if (r->reserved >= r->max)
		rc = TE_CAPACITY;
	else
		r->reserved++;
	pthread_mutex_unlock(&r->mu);
	return rc;
}

void
runner_reserve_force(struct runner *r)
{
	pthread_mutex_lock(&r->mu);
	r->reserved++;
	pthread_mutex_unlock(&r->mu);
}

void
runner_unreserve(struct runner *r)
{
	pthread_mutex_lock(&r->mu);
	r->reserved--;
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->mu);
}

int
runner_free_slots(struct runner *r)
{
	int n;

	pthread_mutex_lock(&r->mu);
	n = r->max - r->reserved;
	pthread_mutex_unlock(&r->mu);
	return n;
}

int
runner_reserved(struct runner *r)
{
	int n;

	pthread_mutex_lock(&r->mu);
	n = r->reserved;
	pthread_mutex_unlock(&r->mu);
	return n;
}

static int
job_stopped(struct job *j)
{
	int s;

	pthread_mutex_lock(&j->r->mu);
	s = j->stop;
	pthread_mutex_unlock(&j->r->mu);
	return s;
}

static void
job_set_call(struct job *j, struct provider_call *c)
{
	pthread_mutex_lock(&j->r->mu);
	j->call = c;
	if (c && j->stop)
		j->r->ops.provider_cancel(c);
	pthread_mutex_unlock(&j->r->mu);
}

/* ---- the generator ---- */

static void term_announce(const struct gen_ops *o, const char *run_id, int attempt,
    const char *status, const char *error_json, const char *why);

struct gen {
	struct job *j;
	const struct gen_ops *o;
	const char *run;
	int attempt;
	int64_t deadline_ms;            /* give up on NATS/PostgreSQL trouble after this */
	uint64_t prev;                  /* stream sequence of our previous publish */
	struct bus_pub *pub;            /* one event in flight at a time */
	int64_t seq;
	struct run_ctx ctx;
};

/* Collect the ack of the event in flight: its stream sequence is what the next
 * publish expects (fencing). */
static int
gen_settle(struct gen *g)
{
	uint64_t sseq = 0;
	int rc;

	if (!g->o->pub_inflight(g->pub))
		return TE_OK;
	rc = g->o->pub_settle(g->pub, g->deadline_ms, &sseq);
	if (rc == TE_OK) {
		g->prev = sseq;
	} else if (rc == TE_FENCED) {
		atomic_fetch_add(g->o->fenced_publishes, 1);
		tlog_run(LOG_WARN, g->run, g->attempt,
		    "publish fenced: the run has a newer owner or was cancelled; stopping");
	}
	return rc;
}

/* Send one event with the previous one's sequence as the expectation. Deltas go
 * out without waiting for their ack (collected before the next send), so the ack
 * round trip overlaps the model's time; settle_now waits for it at once. */
static int
gen_publish(struct gen *g, enum bus_ev type, int64_t end, const char *msg_id, const char *data,
    size_t len, int settle_now)
{
	int rc;

	if ((rc = gen_settle(g)) != TE_OK)
		return rc;
	if ((rc = g->o->pub_send(g->pub, g->run, g->attempt, g->seq, type, end, msg_id, data, len,
	    g->prev)) != TE_OK)
		return rc;
	if (type == EV_DELTA)
		atomic_fetch_add(g->o->chunks_published, 1);
	return settle_now ? gen_settle(g) : TE_OK;
}

/* Does the run's row still say it is ours: running, at this attempt, owned by
 * this worker? *ours is written only on success. */
static int
gen_row_ours(struct gen *g, int *ours)
{
	struct run_state rs;
	int rc = g->o->run_state(g->o->arg, g->run, &rs);

	if (rc != TE_OK)
		return rc;
	*ours = !strcmp(rs.status, "running") && rs.attempt == g->attempt && rs.owner == g->o->worker;
	store_run_state_free(&rs);
	return TE_OK;
}

/* Seq 0 of a takeover: reset, expecting the subject's last sequence as read. */
static int
gen_reset_publish(struct gen *g, const char *data, size_t n)
{
	for (int i = 0; i < RESET_TRIES; i++) {
		struct gen_last last;
		int ours, rc = g->o->last(g->o->arg, g->run, &last);

		if (rc == TE_OK) {
			g->prev = last.sseq;
			if (last.type == EV_DONE) {
				tlog_run(LOG_INFO, g->run, g->attempt,
				    "stream already ended (done); not resuming");
				return TE_FENCED;
			}
		} else if (rc == TE_NOTFOUND) {
			g->prev = 0;
		} else {
			sleep_ms(100);
			continue;
		}
		g->seq = 0;
		rc = g->o->publish(g->o->arg, g->run, g->attempt, 0, EV_RESET, 0, NULL, data, n,
		    g->prev, g->deadline_ms, &g->prev);
		if (rc == TE_OK)
			return TE_OK;
		if (rc != TE_FENCED)
			return rc;
		/* Someone published between our read and our reset: still ours? */
		if (gen_row_ours(g, &ours) == TE_OK && !ours)
			return TE_FENCED;
	}
	return TE_FENCED;
}

static int
gen_reset(struct gen *g)
{
	struct buf data;
	int rc;

	buf_init(&data, 96);
	if ((rc = event_reset_json(&data, g->attempt)) == TE_OK)
		rc = gen_reset_publish(g, data.data, data.len);
	buf_free(&data);
	return rc;
}

static int
gen_start_event(struct gen *g)
{
	struct buf b;
	int rc;

	buf_init(&b, 256);
	rc = event_start_json(&b, g->run, g->ctx.thread_id, g->attempt);
	g->seq = 0;
	if (rc == TE_OK)
		rc = gen_publish(g, EV_START, 0, NULL, b.data, b.len, 1);
	buf_free(&b);
	return rc;
}

/* The terminal row write, retried while PostgreSQL is away. */
static int
gen_finish(struct gen *g, const char *status, const char *output, size_t len, const char *error,
    const char *usage, const char *tool_calls)
{
	int64_t backoff = 100;

	for (;;) {
		int rc = g->o->run_finish(g->o->arg, g->run, g->attempt, g->o->worker, status,
		    output, len, error, usage, tool_calls);

		if (rc == TE_OK || rc == TE_FENCED) {
			if (rc == TE_FENCED)
				tlog_run(LOG_WARN, g->run, g->attempt,
				    "terminal write fenced: the run is no longer this attempt's; stopping");
			return rc;
		}
		if (now_ms() > g->deadline_ms || job_stopped(g->j))
			return rc;
		tlog_run(LOG_WARN, g->run, g->attempt, "could not write the %s state (%s); retrying",
		    status, te_strerror(rc));
		sleep_ms(backoff);
		if (backoff < 2000)
			backoff *= 2;
	}
}

static void
gen_done(struct gen *g, const char *status, const char *error_json)
{
	struct buf b;

	buf_init(&b, (error_json ? strlen(error_json) : 0) + 64);
	if (event_done_json(&b, status, error_json) == TE_OK)
		gen_publish(g, EV_DONE, 0, NULL, b.data, b.len, 1);
	buf_free(&b);
}

static void gen_fenced(struct gen *g);

static void
gen_fail(struct gen *g, const char *code, const char *msg)
{
	struct buf e;
	char safe[1024];

	/* The last delta must be in the stream (or fenced) before the row says failed. */
	if (gen_settle(g) == TE_FENCED) {
		gen_fenced(g);
		return;
	}

	/* Messages quote upstream bytes and may have been cut mid-character: the
	 * error is JSON that PostgreSQL stores, so keep it valid UTF-8. */
	if (!utf8_valid(msg, strlen(msg))) {
		log_escape(safe, sizeof safe, msg, strlen(msg));
		msg = safe;
	}
	buf_init(&e, JSON_STR_MAX(strlen(msg)) + strlen(code) + 64);
	if (buf_printf(&e, "{\"code\":\"%s\",\"message\":", code) != TE_OK ||
	    buf_json_str(&e, msg, strlen(msg)) != TE_OK || buf_puts(&e, "}") != TE_OK) {
		tlog_run(LOG_ERROR, g->run, g->attempt, "could not encode the run's error: %s", code);
		buf_free(&e);
		return;
	}
	if (gen_finish(g, "failed", NULL, 0, e.data, NULL, NULL) == TE_OK) {
		g->seq++;
		gen_done(g, "failed", e.data);
	}
	buf_free(&e);
}

/* A publish was fenced. Normally a taker or a cancel owns the run now and this
 * generator just stops. But when the row still says the run is ours, running, at
 * this attempt, nobody fenced us: the stream itself was reset (NATS came back
 * without its store). Then the text streamed so far is gone for good: end the run
 * failed, clearly, rather than leave it running with nobody publishing. */
static void
gen_fenced(struct gen *g)
{
	struct buf e;
	int ours;

	if (gen_row_ours(g, &ours) != TE_OK || !ours)
		return;
	tlog_run(LOG_ERROR, g->run, g->attempt,
	    "the run's events are gone from JetStream (stream reset?); ending the run failed");
	buf_init(&e, 512);
	if (buf_puts(&e, "{\"code\":\"unavailable\",\"message\":\"the run's event stream was lost "
	    "(NATS lost its store); start the run again\"}") == TE_OK &&
	    gen_finish(g, "failed", NULL, 0, e.data, NULL, NULL) == TE_OK)
		term_announce(g->o, g->run, g->attempt, "failed", e.data, "final");
	buf_free(&e);
}

/* The generator cannot go on and has no working publisher (or none yet): end the
 * run failed, fenced by attempt and owner, then publish done as an outsider would.
 * A run left running under a live owner with no generator would wait for the
 * reaper (max_run_s): recovery treats a live owner's runs as in hand. */
static void
gen_abandon(struct gen *g, const char *code, const char *msg)
{
	struct buf e;

	tlog_run(LOG_ERROR, g->run, g->attempt, "ending the run failed: %s", msg);
	buf_init(&e, JSON_STR_MAX(strlen(msg)) + strlen(code) + 64);
	if (buf_printf(&e, "{\"code\":\"%s\",\"message\":", code) == TE_OK &&
	    buf_json_str(&e, msg, strlen(msg)) == TE_OK && buf_puts(&e, "}") == TE_OK &&
	    gen_finish(g, "failed", NULL, 0, e.data, NULL, NULL) == TE_OK)
		term_announce(g->o, g->run, g->attempt, "failed", e.data, "final");
	buf_free(&e);
}

/* A publish failed with rc (not fenced): end the run with a clear error. */
static void
gen_publish_failed(struct gen *g, int rc, const char *what)
{
	char msg[512];

	if (rc == TE_TIMEOUT) {
		gen_fail(g, "unavailable", "could not publish to NATS before the deadline");
		return;
	}
	snprintf(msg, sizeof msg, "could not publish the %s: %s", what,
	    g->pub && g->o->pub_error(g->pub)[0] ? g->o->pub_error(g->pub) : te_strerror(rc));
	gen_fail(g, "internal", msg);
}

/* Publish one chunk of text as delta events. A chunk whose event would exceed the
 * server's max_payload (a provider line can be 1 MiB, and control bytes escape to
 * six) goes out as several deltas, cut at UTF-8 character boundaries; end is the
 * output length after each. base is the output length before the chunk. */
static int
gen_delta(struct gen *g, struct buf *data, const char *text, size_t len, size_t base)
{
	size_t max = g->o->max_data(g->o->arg), piece, off = 0;
	int rc;

	buf_reset(data);
	if ((rc = buf_puts(data, "{\"text\":")) != TE_OK ||
	    (rc = buf_json_str(data, text, len)) != TE_OK || (rc = buf_puts(data, "}")) != TE_OK)
		return rc;
	if (max == 0 || data->len <= max)
		return gen_publish(g, EV_DELTA, (int64_t)(base + len), NULL, data->data, data->len, 0);
	/* Every byte escapes to at most 6: pieces of (max - 16) / 6 bytes always fit. */
	piece = max > 16 + 6 ? (max - 16) / 6 : 1;
	while (off < len) {
		size_t end = len - off > piece ? off + piece : len;

		while (end < len && end > off + 1 && ((unsigned char)text[end] & 0xc0) == 0x80)
			end--;
		buf_reset(data);
		if ((rc = buf_puts(data, "{\"text\":")) != TE_OK ||
		    (rc = buf_json_str(data, text + off, end - off)) != TE_OK ||
		    (rc = buf_puts(data, "}")) != TE_OK)
			return rc;
		if (off > 0)
			g->seq++;
		if ((rc = gen_publish(g, EV_DELTA, (int64_t)(base + end), NULL, data->data, data->len,
		    0)) != TE_OK)
			return rc;
		off = end;
	}
	return TE_OK;
}

/* The conversation sent upstream: the system prompt, the thread's history, then
 * the run's input (a continuation has none: its tool messages end the history).
 * An assistant message's tool calls go up only when tool messages follow it (a
 * run cancelled while it waited for outputs left calls nobody answered, which
 * providers refuse); a message left with neither text nor calls is dropped. */
static int
gen_messages(struct gen *g, struct provider_msg **out, size_t *n)
{
	size_t k = 0, cap = g->ctx.nhistory + 2;
	struct provider_msg *m = calloc(cap, sizeof *m);
	const struct chat_msg *h = g->ctx.history;

	if (!m)
		return TE_NOMEM;
	if (g->o->system_prompt[0]) {
		m[k].role = "system";
		m[k++].content = g->o->system_prompt;
	}
	for (size_t i = 0; i < g->ctx.nhistory; i++) {
		int answered = h[i].tool_calls_json && i + 1 < g->ctx.nhistory &&
		    !strcmp(h[i + 1].role, "tool");

		if (!strcmp(h[i].role, "assistant") && !answered && !h[i].content[0])
			continue;
		m[k].role = h[i].role;
		m[k].content = h[i].content;
		m[k].tool_calls_json = answered ? h[i].tool_calls_json : NULL;
		m[k++].tool_call_id = h[i].tool_call_id;
	}
	if (g->ctx.input) {
		m[k].role = "user";
		m[k++].content = g->ctx.input;
	}
	*out = m;
	*n = k;
	return TE_OK;
}

/* The reply asked for tools: one tool_call event per call (after the deltas, each
 * with the output's length as its end), then the row says requires_action with
 * the calls, then done. *calls_json is the calls as stored. */
static int
gen_tool_calls(struct gen *g, const struct toolcalls *tc, size_t out_len, struct buf *calls_json)
{
	struct json_object *arr;
	char err[512];
	int rc;

	if ((rc = toolcalls_json(tc, g->attempt, calls_json, err, sizeof err)) != TE_OK) {
		atomic_fetch_add(g->o->provider_errors, 1);
		gen_fail(g, "provider_error", err);
		return rc;
	}
	if (!(arr = json_tokener_parse(calls_json->data)))
		return TE_NOMEM;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		const char *ev = json_object_to_json_string_ext(json_object_array_get_idx(arr, i),
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

		g->seq++;
		rc = gen_publish(g, EV_TOOL_CALL, (int64_t)out_len, NULL, ev, strlen(ev), 0);
		if (rc != TE_OK)
			break;
	}
	json_object_put(arr);
	if (rc == TE_FENCED)
		gen_fenced(g);
	else if (rc != TE_OK)
		gen_publish_failed(g, rc, "tool_call event");
	return rc;
}

/* A provider call failed: the detail (upstream status and body excerpt, curl's
 * error naming hosts) is for operators, in the log; the run's error, which the
 * tenant reads, says only what kind of failure it was. */
static void
gen_provider_fail(struct gen *g, int rc, const char *detail)
{
	int timeout = rc == TE_TIMEOUT;

	atomic_fetch_add(g->o->provider_errors, 1);
	tlog_run(LOG_WARN, g->run, g->attempt, "provider call failed (%s): %s",
	    timeout ? "timeout" : "provider_error", detail);
	gen_fail(g, timeout ? "timeout" : "provider_error", timeout
	    ? "the model provider did not answer in time"
	    : "the model provider failed; the server's log has the details");
}

static void
gen_run(struct gen *g)
{
	struct provider_msg *msgs = NULL;
	struct provider_call *call = NULL;
	struct provider_req preq;
	struct buf out, chunk, data;
	char err[1024];
	size_t nmsgs = 0;
	int64_t backoff = 100;
	int rc, eof = 0;

	buf_init(&out, (size_t)g->o->max_output);
	buf_init(&chunk, (size_t)g->o->max_output);
	buf_init(&data, JSON_STR_MAX(g->o->max_output) + 64);
	if ((rc = g->o->pub_open(g->o->arg, &g->pub)) != TE_OK) {
		snprintf(err, sizeof err, "could not open a NATS publisher: %s", te_strerror(rc));
		gen_abandon(g, "unavailable", err);
		goto out;
	}
	while ((rc = g->o->run_context(g->o->arg, g->run, &g->ctx)) == TE_DB ||
	    rc == TE_TIMEOUT) {
		if (now_ms() > g->deadline_ms || job_stopped(g->j))
			goto out;
		sleep_ms(backoff);
		if (backoff < 2000)
			backoff *= 2;
	}
	if (rc != TE_OK) {
		snprintf(err, sizeof err, "could not load the run: %s", te_strerror(rc));
		gen_abandon(g, "internal", err);
		goto out;
	}
	if (g->j->kind == RUN_FRESH && g->attempt == 1) {
		rc = gen_start_event(g);
		if (rc == TE_FENCED)
			gen_fenced(g);
		else if (rc != TE_OK && !job_stopped(g->j))
			gen_publish_failed(g, rc, "start event");
	} else if ((rc = gen_reset(g)) != TE_OK && rc != TE_FENCED && !job_stopped(g->j)) {
		snprintf(err, sizeof err, "could not publish the reset event: %s", te_strerror(rc));
		gen_abandon(g, rc == TE_TIMEOUT ? "unavailable" : "internal", err);
	}
	if (rc != TE_OK)
		goto out;
	if (g->j->kind == RUN_TAKEOVER && g->j->claimed_us) {
		long long ms = (now_us() - g->j->claimed_us) / 1000;

		g->o->takeover_observe(g->o->arg, ms);
		tlog_run(LOG_INFO, g->run, g->attempt, "resumed: reset published %lld ms after the claim",
		    ms);
	}
	if ((rc = gen_messages(g, &msgs, &nmsgs)) != TE_OK)
		goto out;
	memset(&preq, 0, sizeof preq);
	preq.run_id = g->run;
	preq.attempt = g->attempt;
	preq.model = g->ctx.model;
	preq.msgs = msgs;
	preq.nmsgs = nmsgs;
	preq.params_json = g->ctx.params_json;
	preq.tools_json = g->ctx.tools_json;
	preq.tool_choice_json = g->ctx.tool_choice_json;
	err[0] = '\0';
	if ((rc = g->o->provider_start(g->o->arg, &preq, &call, err, sizeof err)) != TE_OK) {
		gen_provider_fail(g, TE_PROVIDER, err[0] ? err : te_strerror(rc));
		goto out;
	}
	job_set_call(g->j, call);
	for (g->seq = 1;; g->seq++) {
		buf_reset(&chunk);
		rc = g->o->provider_next(call, &chunk, &eof, err, sizeof err);
		if (rc == TE_CLOSED || job_stopped(g->j)) {
			/* Cancelled or aborted: the canceller or a taker writes the end. */
			tlog_run(LOG_INFO, g->run, g->attempt,
			    "stopping: the run was cancelled or this worker is draining");
			goto out;
		}
		if (rc != TE_OK) {
			gen_provider_fail(g, rc, err[0] ? err : te_strerror(rc));
			goto out;
		}
		if (eof)
			break;
		if (chunk.len == 0) {
			g->seq--;
			continue;
		}
		if (out.len + chunk.len > (size_t)g->ctx.max_output_bytes) {
			gen_fail(g, "output_limit", "the reply passed this tenant's quota of output "
			    "bytes per run (max_output_bytes)");
			goto out;
		}
		if (buf_append(&out, chunk.data, chunk.len) != TE_OK) {
			gen_fail(g, "provider_error", "the reply exceeded the output limit (max_output)");
			goto out;
		}
		rc = gen_delta(g, &data, chunk.data, chunk.len, out.len - chunk.len);
		if (rc == TE_FENCED) {
			gen_fenced(g);
			goto out;
		}
		if (rc != TE_OK) {
			gen_publish_failed(g, rc, "delta event");
			goto out;
		}
	}
	{
		const char *usage = g->o->provider_usage(call), *status = "completed";
		const struct toolcalls *tc = g->o->provider_tool_calls(call);

		g->seq--;       /* the loop counted the eof */
		buf_reset(&data);
		if (tc && toolcalls_count(tc) > 0) {
			if (gen_tool_calls(g, tc, out.len, &data) != TE_OK)
				goto out;
			status = "requires_action";
		}
		/* Every event stored before the row says completed (then done). */
		if ((rc = gen_settle(g)) == TE_FENCED) {
			gen_fenced(g);
			goto out;
		}
		if (rc != TE_OK) {
			gen_publish_failed(g, rc, "delta event");
			goto out;
		}
		if (gen_finish(g, status, out.data ? out.data : "", out.len, NULL, usage,
		    data.len ? data.data : NULL) != TE_OK)
			goto out;
		g->seq++;
		gen_done(g, status, NULL);
	}
	tlog_run(LOG_DEBUG, g->run, g->attempt, "completed: %lld chunks, %zu bytes",
	    (long long)g->seq - 1, out.len);
out:
	job_set_call(g->j, NULL);
	g->o->pub_close(g->pub);
	g->o->provider_free(call);
	free(msgs);
	store_run_context_free(&g->ctx);
	buf_free(&out);
	buf_free(&chunk);
	buf_free(&data);
}

static void *
gen_main(void *arg)
{
	struct job *j = arg;
	struct runner *r = j->r;
	struct gen g;

	memset(&g, 0, sizeof g);
	g.j = j;
	g.o = &r->ops;
	g.run = j->run_id;
	g.attempt = j->attempt;
	g.deadline_ms = now_ms() + (int64_t)r->ops.max_run_s * 1000;
	crash_generating(j->run_id, j->attempt);        /* a crash of this thread is the run's */
	gen_run(&g);
	crash_generating(NULL, 0);

	pthread_mutex_lock(&r->mu);
	for (struct job **p = &r->jobs; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	r->active--;
	r->reserved--;
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->mu);
	free(j);
	return NULL;
}

int
runner_spawn(struct runner *r, const char *run_id, int attempt, enum run_kind kind,
    int64_t claimed_us)
{
	struct job *j = calloc(1, sizeof *j);
	pthread_attr_t attr;
	pthread_t th;
	int err;

	if (!j)
		return TE_NOMEM;
	j->r = r;
	snprintf(j->run_id, sizeof j->run_id, "%s", run_id);
	j->attempt = attempt;
	j->kind = kind;
	j->claimed_us = claimed_us;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, STACK_SIZE);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&r->mu);
	j->next = r->jobs;
	r->jobs = j;
	r->active++;
	err = kind == RUN_TAKEOVER && fault_hit("spawn_takeover") ? EAGAIN
	    : pthread_create(&th, &attr, gen_main, j);
	if (err) {
		r->jobs = j->next;
		r->active--;
	}
	pthread_mutex_unlock(&r->mu);
	pthread_attr_destroy(&attr);
	if (err) {
		free(j);
		tlog_run(LOG_ERROR, run_id, attempt, "could not start a generator thread: %s",
		    strerror(err));
		return TE_NOMEM;
	}
	atomic_fetch_add(r->ops.runs_started, 1);
	return TE_OK;
}

void
runner_cancel(struct runner *r, const char *run_id, int attempt)
{
	pthread_mutex_lock(&r->mu);
	for (struct job *j = r->jobs; j; j = j->next)
		if (!strcmp(j->run_id, run_id) && (attempt == 0 || j->attempt == attempt)) {
			j->stop = 1;
			if (j->call)
				r->ops.provider_cancel(j->call);
		}
	pthread_mutex_unlock(&r->mu);
}

void
runner_abort_all(struct runner *r)
{
	pthread_mutex_lock(&r->mu);
	for (struct job *j = r->jobs; j; j = j->next) {
		j->stop = 1;
		if (j->call)
			r->ops.provider_cancel(j->call);
	}
	pthread_mutex_unlock(&r->mu);
}

int
runner_wait(struct runner *r, int64_t deadline_ms)
{
	int n;

	pthread_mutex_lock(&r->mu);
	while (r->active > 0) {
		struct timespec ts;
		int64_t left = deadline_ms - now_ms();

		if (left <= 0)
			break;
		if (left > 100)
			left = 100;
		deadline_ts(&ts, left);
		pthread_cond_timedwait(&r->idle, &r->mu, &ts);
	}
	n = r->active;
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* ---- done for a run this worker does not generate ---- */

static int
term_publish(const struct gen_ops *o, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why)
{
	char msg_id[UUID_LEN + 32];
	struct buf b;
	int rc = TE_FENCED;

	buf_init(&b, (error_json ? strlen(error_json) : 0) + 64);
	if (event_done_json(&b, status, error_json) != TE_OK) {
		buf_free(&b);
		return TE_NOMEM;
	}
	/* One id per run and reason: a retried publish is stored once. */
	snprintf(msg_id, sizeof msg_id, "%s:%s", run_id, why);
	for (int i = 0; i < RESET_TRIES && rc == TE_FENCED; i++) {
		struct gen_last last;
		uint64_t expect = 0, sseq;
		int64_t seq = 1;

		rc = o->last(o->arg, run_id, &last);
		if (rc == TE_OK) {
			expect = last.sseq;
			if (last.attempt == attempt)
				seq = last.seq + 1;
			if (last.type == EV_DONE)
				break;
		} else if (rc != TE_NOTFOUND) {
			break;
		}
		rc = o->publish(o->arg, run_id, attempt, seq, EV_DONE, 0, msg_id, b.data, b.len, expect,
		    now_ms() + o->nats_timeout_ms, &sseq);
	}
	if (rc != TE_OK)
		tlog_run(LOG_WARN, run_id, attempt, "could not publish done (%s): %s; watchers "
		    "will complete from PostgreSQL", status, te_strerror(rc));
	buf_free(&b);
	return rc;
}

static void
term_announce(const struct gen_ops *o, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why)
{
	int rc = term_publish(o, run_id, attempt, status, error_json, why);

	if (rc != TE_OK && rc != TE_FENCED)
		tlog_run(LOG_INFO, run_id, attempt, "could not publish done (%s): %s; watchers "
		    "complete from PostgreSQL", status, te_strerror(rc));
}

int
run_publish_terminal(struct runner *r, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why)
{
	return term_publish(&r->ops, run_id, attempt, status, error_json, why);
}

void
run_announce_terminal(struct runner *r, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why)
{
	term_announce(&r->ops, run_id, attempt, status, error_json, why);
}
