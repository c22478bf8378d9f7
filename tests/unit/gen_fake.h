/* gen_fake.h - fakes of the generator's narrow interface (struct gen_ops, run.h),
 * for tests/unit/test_gen.c: one run's subject that checks each publish's expected
 * last sequence as JetStream does (and what happens to it before a chosen publish),
 * the run's row, whose terminal write is fenced as store_run_finish's is, and a
 * scripted provider. Everything the generator does is appended to F.log as one
 * line. Header-only, test code. */
#ifndef TETHER_GEN_FAKE_H
#define TETHER_GEN_FAKE_H

#include "unit.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "provider.h"
#include "run.h"
#include "store.h"
#include "toolcall.h"
#include "util.h"

#define RUN "11111111-2222-3333-4444-555555555555"
#define THREAD "99999999-2222-3333-4444-555555555555"
#define ME 7
#define TAKER 9
#define MAX_LOG 64

struct ev {
	uint64_t sseq;
	int attempt;
	int64_t seq;
	enum bus_ev type;
};

/* What happens to the stream just before the n-th publish (counting every send
 * and every publish, from 1). */
enum act {
	ACT_NONE = 0,
	ACT_INTRUDE,            /* someone else's event (intruder) lands first */
	ACT_WIPE,               /* NATS lost its store: the stream starts over, empty */
};

enum step_kind {
	ST_CHUNK = 0,           /* text */
	ST_EOF,
	ST_FAIL,                /* rc, with text as the provider's error message */
	ST_CANCEL,              /* a cancel reaches the worker; the call ends TE_CLOSED */
	ST_ABORT,               /* the worker drains while text still arrives */
};

struct step {
	enum step_kind kind;
	const char *text;
	int rc;
};

struct fake {
	/* the run's subject */
	struct ev stream[64];
	int nstream;
	uint64_t next_sseq;
	int npublish;
	int act_at;
	enum act act;
	struct ev intruder;
	/* the pipelined publisher: one event in flight */
	int inflight, inflight_fenced;
	struct ev pending;
	int pub_open_rc;
	size_t max_data;
	/* the run's row */
	char status[16];
	int row_attempt;
	long row_owner;
	int finish_db_errors;           /* PostgreSQL away for this many terminal writes */
	/* the provider */
	const struct step *steps;
	int nsteps, at;
	struct toolcalls tc;
	const char *system_prompt;
	struct runner *r;
	/* counters */
	atomic_llong runs_started, chunks_published, fenced_publishes, provider_errors;
	int takeovers;
	long long takeover_ms;
	/* what the generator did */
	char log[MAX_LOG][768];
	int nlog;
};

static struct fake F;
/* Handles the generator passes back without looking inside. */
static max_align_t fake_pub, fake_call;

static void __attribute__((format(printf, 1, 2)))
flog(const char *fmt, ...)
{
	va_list ap;

	if (F.nlog >= MAX_LOG)
		return;
	va_start(ap, fmt);
	vsnprintf(F.log[F.nlog++], sizeof F.log[0], fmt, ap);
	va_end(ap);
}

static uint64_t
stream_last(void)
{
	return F.nstream ? F.stream[F.nstream - 1].sseq : 0;
}

static uint64_t
stream_add(int attempt, int64_t seq, enum bus_ev type)
{
	struct ev *e = &F.stream[F.nstream++];

	*e = (struct ev){ ++F.next_sseq, attempt, seq, type };
	return e->sseq;
}

/* A run attempt already streamed: start and n deltas (sseq 1..n+1). */
static void
stream_fill(int attempt, int ndeltas, int done)
{
	stream_add(attempt, 0, EV_START);
	for (int i = 1; i <= ndeltas; i++)
		stream_add(attempt, i, EV_DELTA);
	if (done)
		stream_add(attempt, ndeltas + 1, EV_DONE);
}

static void
before_publish(void)
{
	if (++F.npublish != F.act_at)
		return;
	if (F.act == ACT_INTRUDE) {
		stream_add(F.intruder.attempt, F.intruder.seq, F.intruder.type);
	} else if (F.act == ACT_WIPE) {
		F.nstream = 0;
		F.next_sseq = 0;
	}
}

/* JetStream's check: an expectation (non-zero) must equal the subject's last. */
static int
stream_accepts(uint64_t expect)
{
	return expect == 0 || expect == stream_last();
}

/* ---- the store ---- */

static int
f_run_context(void *arg, const char *run_id, struct run_ctx *out)
{
	(void)arg;
	CU_ASSERT_STRING_EQUAL(run_id, RUN);
	memset(out, 0, sizeof *out);
	snprintf(out->thread_id, sizeof out->thread_id, "%s", THREAD);
	snprintf(out->model, sizeof out->model, "mock");
	out->input = strdup("hello");
	out->max_output_bytes = 1 << 20;
	return out->input ? TE_OK : TE_NOMEM;
}

static const char *
rc_name(int rc)
{
	return rc == TE_OK ? "ok" : rc == TE_FENCED ? "fenced" : te_strerror(rc);
}

/* Fenced as store_run_finish is: only the owner of this attempt of a running run. */
static int
f_run_finish(void *arg, const char *run_id, int attempt, long worker, const char *status,
    const char *output, size_t output_len, const char *error_json, const char *usage_json,
    const char *tool_calls_json)
{
	int rc = !strcmp(F.status, "running") && attempt == F.row_attempt && worker == F.row_owner
	    ? TE_OK : TE_FENCED;

	(void)arg;
	CU_ASSERT_STRING_EQUAL(run_id, RUN);
	if (F.finish_db_errors > 0) {
		F.finish_db_errors--;
		rc = TE_DB;
	}
	flog("finish %s attempt=%d owner=%ld output=%.*s error=%s usage=%s tool_calls=%s -> %s",
	    status, attempt, worker, (int)output_len, output ? output : "", error_json ? error_json : "-",
	    usage_json ? usage_json : "-", tool_calls_json ? tool_calls_json : "-", rc_name(rc));
	if (rc == TE_OK)
		snprintf(F.status, sizeof F.status, "%s", status);
	return rc;
}

static int
f_run_state(void *arg, const char *run_id, struct run_state *out)
{
	(void)arg;
	memset(out, 0, sizeof *out);
	snprintf(out->id, sizeof out->id, "%s", run_id);
	snprintf(out->status, sizeof out->status, "%s", F.status);
	out->attempt = F.row_attempt;
	out->owner = F.row_owner;
	flog("state -> %s attempt=%d owner=%ld", F.status, F.row_attempt, F.row_owner);
	return TE_OK;
}

/* ---- the bus ---- */

static int
f_last(void *arg, const char *run_id, struct gen_last *out)
{
	const struct ev *e;

	(void)arg;
	CU_ASSERT_STRING_EQUAL(run_id, RUN);
	if (F.nstream == 0) {
		flog("last -> none");
		return TE_NOTFOUND;
	}
	e = &F.stream[F.nstream - 1];
	flog("last -> sseq=%llu %s attempt=%d seq=%lld", (unsigned long long)e->sseq,
	    bus_ev_name(e->type), e->attempt, (long long)e->seq);
	*out = (struct gen_last){ e->sseq, e->attempt, e->seq, e->type };
	return TE_OK;
}

static int
f_publish(void *arg, const char *run_id, int attempt, int64_t seq, enum bus_ev type, int64_t end,
    const char *msg_id, const char *data, size_t len, uint64_t expect, int64_t deadline_ms,
    uint64_t *sseq)
{
	char head[256];

	(void)arg;
	(void)deadline_ms;
	CU_ASSERT_STRING_EQUAL(run_id, RUN);
	before_publish();
	snprintf(head, sizeof head, "publish %s seq=%lld end=%lld expect=%llu id=%s",
	    bus_ev_name(type), (long long)seq, (long long)end, (unsigned long long)expect,
	    msg_id ? msg_id : "-");
	if (!stream_accepts(expect)) {
		flog("%s %.*s -> fenced", head, (int)len, data);
		return TE_FENCED;
	}
	*sseq = stream_add(attempt, seq, type);
	flog("%s %.*s -> sseq=%llu", head, (int)len, data, (unsigned long long)*sseq);
	return TE_OK;
}

static int
f_pub_open(void *arg, struct bus_pub **out)
{
	(void)arg;
	if (F.pub_open_rc != TE_OK)
		return F.pub_open_rc;
	*out = (struct bus_pub *)&fake_pub;
	return TE_OK;
}

/* Closing with an event in flight leaves its fate to the server (logged). */
static void
f_pub_close(struct bus_pub *p)
{
	CU_ASSERT(p == NULL || p == (struct bus_pub *)&fake_pub);
	if (F.inflight)
		flog("close with %s seq=%lld in flight", bus_ev_name(F.pending.type),
		    (long long)F.pending.seq);
	F.inflight = 0;
}

/* The server decides when the event arrives (now); the generator learns it at settle. */
static int
f_pub_send(struct bus_pub *p, const char *run_id, int attempt, int64_t seq, enum bus_ev type,
    int64_t end, const char *msg_id, const char *data, size_t len, uint64_t expect)
{
	CU_ASSERT(p == (struct bus_pub *)&fake_pub);
	CU_ASSERT_STRING_EQUAL(run_id, RUN);
	CU_ASSERT_PTR_NULL(msg_id);
	if (F.inflight)
		return TE_INVAL;
	before_publish();
	flog("send %s seq=%lld end=%lld expect=%llu %.*s", bus_ev_name(type), (long long)seq,
	    (long long)end, (unsigned long long)expect, (int)len, data);
	F.inflight = 1;
	F.pending = (struct ev){ 0, attempt, seq, type };
	F.inflight_fenced = !stream_accepts(expect);
	if (!F.inflight_fenced)
		F.pending.sseq = stream_add(attempt, seq, type);
	return TE_OK;
}

static int
f_pub_settle(struct bus_pub *p, int64_t deadline_ms, uint64_t *sseq)
{
	(void)p;
	(void)deadline_ms;
	if (!F.inflight)
		return TE_OK;
	F.inflight = 0;
	if (F.inflight_fenced) {
		flog("fenced %s seq=%lld", bus_ev_name(F.pending.type), (long long)F.pending.seq);
		return TE_FENCED;
	}
	flog("ack %s seq=%lld sseq=%llu", bus_ev_name(F.pending.type), (long long)F.pending.seq,
	    (unsigned long long)F.pending.sseq);
	*sseq = F.pending.sseq;
	return TE_OK;
}

static int
f_pub_inflight(const struct bus_pub *p)
{
	(void)p;
	return F.inflight;
}

static const char *
f_pub_error(const struct bus_pub *p)
{
	(void)p;
	return "";
}

static size_t
f_max_data(void *arg)
{
	(void)arg;
	return F.max_data;
}

/* ---- the provider ---- */

static int
f_provider_start(void *arg, struct provider_req *req, struct provider_call **out, char *err,
    size_t errlen)
{
	(void)arg;
	(void)err;
	(void)errlen;
	flog("provider start model=%s attempt=%d messages=%zu first=%s:%s", req->model,
	    req->attempt, req->nmsgs, req->nmsgs ? req->msgs[0].role : "-",
	    req->nmsgs ? req->msgs[0].content : "-");
	*out = (struct provider_call *)&fake_call;
	return TE_OK;
}

static int
f_provider_next(struct provider_call *c, struct buf *chunk, int *eof, char *err, size_t errlen)
{
	const struct step *s;

	CU_ASSERT(c == (struct provider_call *)&fake_call);
	CU_ASSERT_FATAL(F.at < F.nsteps);
	s = &F.steps[F.at++];
	*eof = 0;
	switch (s->kind) {
	case ST_CHUNK:
		return buf_puts(chunk, s->text);
	case ST_EOF:
		*eof = 1;
		return TE_OK;
	case ST_FAIL:
		snprintf(err, errlen, "%s", s->text);
		return s->rc;
	case ST_CANCEL:
		runner_cancel(F.r, RUN, 0);
		return TE_CLOSED;
	case ST_ABORT:
		runner_abort_all(F.r);
		return buf_puts(chunk, s->text);
	}
	return TE_PROVIDER;
}

static void
f_provider_cancel(struct provider_call *c)
{
	CU_ASSERT(c == (struct provider_call *)&fake_call);
	flog("provider cancel");
}

static const char *
f_provider_usage(struct provider_call *c)
{
	(void)c;
	return "{\"total_tokens\":5}";
}

static const struct toolcalls *
f_provider_tool_calls(struct provider_call *c)
{
	(void)c;
	return F.tc.n ? &F.tc : NULL;
}

static void
f_provider_free(struct provider_call *c)
{
	CU_ASSERT(c == NULL || c == (struct provider_call *)&fake_call);
}

static void
f_takeover_observe(void *arg, long long ms)
{
	(void)arg;
	F.takeovers++;
	F.takeover_ms = ms;
	flog("takeover observed");
}

/* ---- running a generator ---- */

static void
fake_reset(const struct step *steps, int nsteps)
{
	toolcalls_free(&F.tc);
	memset(&F, 0, sizeof F);
	toolcalls_init(&F.tc);
	F.steps = steps;
	F.nsteps = nsteps;
	F.system_prompt = "";
	snprintf(F.status, sizeof F.status, "running");
	F.row_attempt = 1;
	F.row_owner = ME;
}

#define FAKE(...) do { \
	static const struct step steps_[] = { __VA_ARGS__ }; \
	fake_reset(steps_, (int)(sizeof steps_ / sizeof steps_[0])); \
} while (0)

static struct runner *
runner_make(void)
{
	struct gen_ops o = {
		.arg = &F,
		.run_context = f_run_context, .run_finish = f_run_finish, .run_state = f_run_state,
		.last = f_last, .publish = f_publish, .pub_open = f_pub_open,
		.pub_close = f_pub_close, .pub_send = f_pub_send, .pub_settle = f_pub_settle,
		.pub_inflight = f_pub_inflight, .pub_error = f_pub_error, .max_data = f_max_data,
		.provider_start = f_provider_start, .provider_next = f_provider_next,
		.provider_cancel = f_provider_cancel, .provider_usage = f_provider_usage,
		.provider_tool_calls = f_provider_tool_calls, .provider_free = f_provider_free,
		.runs_started = &F.runs_started, .chunks_published = &F.chunks_published,
		.fenced_publishes = &F.fenced_publishes, .provider_errors = &F.provider_errors,
		.takeover_observe = f_takeover_observe,
		.worker = ME, .system_prompt = F.system_prompt, .max_output = 65536,
		.max_run_s = 60, .nats_timeout_ms = 1000,
	};
	struct runner *r = NULL;

	CU_ASSERT_EQUAL_FATAL(runner_new(&r, &o, 4), TE_OK);
	return r;
}

/* Spawn one generator (as run creation or recovery does) and wait for its end. */
static void
generate(int attempt, enum run_kind kind, int64_t claimed_us)
{
	F.r = runner_make();
	CU_ASSERT_EQUAL_FATAL(runner_reserve(F.r), TE_OK);
	CU_ASSERT_EQUAL_FATAL(runner_spawn(F.r, RUN, attempt, kind, claimed_us), TE_OK);
	CU_ASSERT_EQUAL(runner_wait(F.r, now_ms() + 30000), 0);
	CU_ASSERT_EQUAL(runner_reserved(F.r), 0);
	CU_ASSERT_EQUAL(F.inflight, 0);
	runner_free(F.r);
	F.r = NULL;
	CU_ASSERT_EQUAL(F.runs_started, 1);
}

static void
expect_log(const char *const *want, int n)
{
	for (int i = 0; i < n || i < F.nlog; i++) {
		const char *w = i < n ? want[i] : "(nothing)", *g = i < F.nlog ? F.log[i] : "(nothing)";

		if (strcmp(w, g) != 0) {
			fprintf(stderr, "\n  line %d\n    want: %s\n    got:  %s\n  whole log:\n", i + 1, w,
			    g);
			for (int k = 0; k < F.nlog; k++)
				fprintf(stderr, "    %s\n", F.log[k]);
			CU_FAIL("the generator did something else");
			return;
		}
	}
}

#define EXPECT_LOG(...) do { \
	static const char *const want_[] = { __VA_ARGS__ }; \
	expect_log(want_, (int)(sizeof want_ / sizeof want_[0])); \
} while (0)

#endif
