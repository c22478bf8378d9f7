/* provider_mock.c - the deterministic model of API.md, for tests, demos and benchmarks.
 * Chunk i (1-based) is due at call start + i * MS and reads
 * "t<call-start unix ms> chunk-<i> ", or "chunk-<i>@<unix us> " with emit.
 * big:<N> sends an N-byte chunk of control bytes first; crash:<K> aborts the
 * process at chunk K (a poison run, for the max_attempts policy).
 * tool:<name> (up to 8) calls tool <name> with {"n":1} after the text (no text
 * unless slow: asks for some), the arguments in two fragments MS apart, id
 * "call_<first 8 of the run id>_<i>" (the same on every attempt). A continuation
 * (the conversation ends with tool outputs) first replies "tool=<id>:<output> "
 * per output, then the text slow: asks for, and calls no tool. */
#include "provider.h"
#include "config.h"
#include "err.h"
#include "toolcall.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOCK_MAX_CHUNKS 100000
#define MOCK_MAX_INTERVAL_MS 600000
#define MOCK_MAX_BIG (4L << 20)

struct mock_call {
	struct provider_call_base base;
	struct mock_spec spec;
	const struct provider_req *req;
	int64_t start_wall_ms;
	int64_t start_mono_ms;
	long sent;
	long step;                      /* chunks and call fragments due so far */
	int history_sent;
	int big_sent;
	size_t outputs_from;            /* continuation: msgs[outputs_from..] are tool outputs */
	size_t outputs_sent;
	int fragments_sent;             /* tool call fragments (two per call) */
	struct toolcalls calls;
	pthread_mutex_t mu;             /* guards cancelled */
	pthread_cond_t cv;
	int cancelled;
};

/* Directives are whole words: bounded by the ends of the text or by an ASCII byte
 * that is not a letter, digit or '_' (white space, punctuation, quotes). */
static int
word_end(char c)
{
	return c == '\0' || ((unsigned char)c < 0x80 && !(c >= 'a' && c <= 'z') &&
	    !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') && c != '_');
}

static int
word_start(const char *s, const char *p)
{
	return p == s || word_end(p[-1]);
}

/* Digits at p within [0, max]; returns the number of digits read (0: none/too big). */
static int
digits(const char *p, long max, long *out)
{
	long v = 0;
	int n = 0;

	while (p[n] >= '0' && p[n] <= '9') {
		if (n >= 9)
			return 0;
		v = v * 10 + (p[n] - '0');
		n++;
	}
	if (n == 0 || v > max)
		return 0;
	*out = v;
	return n;
}

/* The first word at or after from in the text s. */
static const char *
find_word(const char *s, const char *from, const char *word, int exact)
{
	size_t wl = strlen(word);

	for (const char *p = strstr(from, word); p; p = strstr(p + 1, word))
		if (word_start(s, p) && (!exact || word_end(p[wl])))
			return p;
	return NULL;
}

void
mock_parse(const char *input, struct mock_spec *spec)
{
	const char *p;
	long n, ms, k;
	int a, b, slow = 0;

	spec->chunks = 5;
	spec->interval_ms = 50;
	spec->fail_after = -1;
	spec->emit = 0;
	spec->history = 0;
	spec->big = 0;
	spec->crash_at = 0;
	spec->ntools = 0;
	if (!input)
		return;
	for (p = find_word(input, input, "slow:", 0); p; p = find_word(input, p + 1, "slow:", 0)) {
		const char *d = p + 5;

		if ((a = digits(d, MOCK_MAX_CHUNKS, &n)) && d[a] == 'x' &&
		    (b = digits(d + a + 1, MOCK_MAX_INTERVAL_MS, &ms)) && word_end(d[a + 1 + b])) {
			spec->chunks = n;
			spec->interval_ms = ms;
			slow = 1;
			break;
		}
	}
	for (p = find_word(input, input, "fail:", 0); p; p = find_word(input, p + 1, "fail:", 0)) {
		const char *d = p + 5;

		if ((a = digits(d, MOCK_MAX_CHUNKS, &k)) && word_end(d[a])) {
			spec->fail_after = k;
			break;
		}
	}
	for (p = find_word(input, input, "big:", 0); p; p = find_word(input, p + 1, "big:", 0)) {
		const char *d = p + 4;

		if ((a = digits(d, MOCK_MAX_BIG, &n)) && n > 0 && word_end(d[a])) {
			spec->big = n;
			break;
		}
	}
	for (p = find_word(input, input, "crash:", 0); p; p = find_word(input, p + 1, "crash:", 0)) {
		const char *d = p + 6;

		if ((a = digits(d, MOCK_MAX_CHUNKS, &k)) && k > 0 && word_end(d[a])) {
			spec->crash_at = k;
			break;
		}
	}
	spec->emit = find_word(input, input, "emit", 1) != NULL;
	spec->history = find_word(input, input, "history", 1) != NULL;
	spec->ntools = 0;
	for (p = find_word(input, input, "tool:", 0); p && spec->ntools < MOCK_MAX_TOOLS;
	    p = find_word(input, p + 1, "tool:", 0)) {
		const char *d = p + 5;
		size_t len = 0;

		while (len < 64 && ((d[len] >= 'a' && d[len] <= 'z') || (d[len] >= 'A' && d[len] <= 'Z') ||
		    (d[len] >= '0' && d[len] <= '9') || d[len] == '_' || d[len] == '-'))
			len++;
		if (len == 0 || !word_end(d[len]) || d[len] == '-')
			continue;
		memcpy(spec->tools[spec->ntools], d, len);
		spec->tools[spec->ntools++][len] = '\0';
	}
	/* A reply that calls tools has text only when slow: asks for it. */
	if (spec->ntools > 0 && !slow)
		spec->chunks = 0;
}

static int
mock_start(const struct provider_req *req, struct provider_call **out, char *err, size_t errlen)
{
	struct mock_call *c = calloc(1, sizeof *c);

	(void)err;
	(void)errlen;
	if (!c)
		return TE_NOMEM;
	c->base.ops = &provider_mock_ops;
	c->req = req;
	toolcalls_init(&c->calls);
	/* Directives come from the last user message; a conversation that ends with
	 * tool outputs is a continuation: it answers them and calls no tool. */
	c->outputs_from = req->nmsgs;
	while (c->outputs_from > 0 && !strcmp(req->msgs[c->outputs_from - 1].role, "tool"))
		c->outputs_from--;
	{
		size_t u = c->outputs_from;

		while (u > 0 && strcmp(req->msgs[u - 1].role, "user") != 0)
			u--;
		mock_parse(u > 0 ? req->msgs[u - 1].content : "", &c->spec);
	}
	if (c->outputs_from < req->nmsgs)
		c->spec.ntools = 0;
	c->outputs_sent = c->outputs_from;
	if (!req->cfg || !req->cfg->mock)
		c->spec.crash_at = 0;   /* crash:<K> only where TETHER_MOCK=1 (API.md) */
	c->start_wall_ms = wall_ms();
	c->start_mono_ms = now_ms();
	pthread_mutex_init(&c->mu, NULL);
	cond_init_monotonic(&c->cv);
	*out = (struct provider_call *)c;
	return TE_OK;
}

/* Wait until the monotonic time due_ms or a cancel; returns 1 when cancelled. */
static int
mock_wait(struct mock_call *c, int64_t due_ms)
{
	int cancelled;

	pthread_mutex_lock(&c->mu);
	while (!c->cancelled) {
		int64_t left = due_ms - now_ms();
		struct timespec ts;

		if (left <= 0)
			break;
		deadline_ts(&ts, left);
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	cancelled = c->cancelled;
	pthread_mutex_unlock(&c->mu);
	return cancelled;
}

static int
mock_history(struct mock_call *c, struct buf *chunk)
{
	int rc = buf_printf(chunk, "history=%zu roles=", c->req->nmsgs);

	for (size_t i = 0; i < c->req->nmsgs && rc == TE_OK; i++)
		rc = buf_printf(chunk, "%s%s", i ? "," : "", c->req->msgs[i].role);
	return rc == TE_OK ? buf_puts(chunk, " ") : rc;
}

/* big:<N>: the bytes 0x01..0x1f then 'b', over and over (JSON escapes most of
 * them to six bytes), then one space. */
static int
mock_big(struct mock_call *c, struct buf *chunk)
{
	int rc = TE_OK;

	for (long i = 0; i < c->spec.big - 1 && rc == TE_OK; i++) {
		char ch = i % 32 == 31 ? 'b' : (char)(i % 32 + 1);

		rc = buf_append(chunk, &ch, 1);
	}
	return rc == TE_OK ? buf_puts(chunk, " ") : rc;
}

/* The next half of a tool call: id, name and '{"n":' first, then '1}', MS apart.
 * The chunk stays empty: calls go out as events once the reply ends. */
static int
mock_fragment(struct mock_call *c, char *err, size_t errlen)
{
	int k = c->fragments_sent / 2, second = c->fragments_sent % 2;
	char id[48];

	if (mock_wait(c, c->start_mono_ms + ++c->step * c->spec.interval_ms))
		return TE_CLOSED;
	c->fragments_sent++;
	snprintf(id, sizeof id, "call_%.8s_%d", c->req->run_id ? c->req->run_id : "", k);
	if (second)
		return toolcalls_feed(&c->calls, k, NULL, NULL, "1}", 2, err, errlen);
	return toolcalls_feed(&c->calls, k, id, c->spec.tools[k], "{\"n\":", 5, err, errlen);
}

static int
mock_next(struct provider_call *pc, struct buf *chunk, int *eof, char *err, size_t errlen)
{
	struct mock_call *c = (struct mock_call *)pc;
	long i = c->sent + 1;

	*eof = 0;
	if (c->spec.history && !c->history_sent) {
		c->history_sent = 1;
		if (mock_wait(c, now_ms()))
			return TE_CLOSED;
		return mock_history(c, chunk);
	}
	if (c->spec.big && !c->big_sent) {
		c->big_sent = 1;
		if (mock_wait(c, now_ms()))
			return TE_CLOSED;
		return mock_big(c, chunk);
	}
	if (c->outputs_sent < c->req->nmsgs) {
		const struct provider_msg *m = &c->req->msgs[c->outputs_sent++];

		if (mock_wait(c, now_ms()))
			return TE_CLOSED;
		return buf_printf(chunk, "tool=%s:%s ", m->tool_call_id ? m->tool_call_id : "",
		    m->content ? m->content : "");
	}
	if (c->spec.crash_at && i == c->spec.crash_at) {
		/* A poison run for the max_attempts policy (docs/DESIGN.md): the worker
		 * dies the way a crash in a provider parser would. */
		fprintf(stderr, "mock: crash:%ld reached: aborting this worker\n", c->spec.crash_at);
		abort();
	}
	if (c->spec.fail_after >= 0 && c->sent >= c->spec.fail_after) {
		snprintf(err, errlen, "mock provider failed after %ld chunks (fail:%ld)", c->sent,
		    c->spec.fail_after);
		return TE_PROVIDER;
	}
	if (c->sent >= c->spec.chunks) {
		if (c->fragments_sent < 2 * c->spec.ntools)
			return mock_fragment(c, err, errlen);
		*eof = 1;
		return TE_OK;
	}
	if (mock_wait(c, c->start_mono_ms + ++c->step * c->spec.interval_ms))
		return TE_CLOSED;
	c->sent = i;
	if (c->spec.emit)
		return buf_printf(chunk, "chunk-%ld@%lld ", i, (long long)wall_us());
	return buf_printf(chunk, "t%lld chunk-%ld ", (long long)c->start_wall_ms, i);
}

static void
mock_cancel(struct provider_call *pc)
{
	struct mock_call *c = (struct mock_call *)pc;

	pthread_mutex_lock(&c->mu);
	c->cancelled = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static const char *
mock_usage(struct provider_call *pc)
{
	(void)pc;
	return NULL;
}

static const struct toolcalls *
mock_tool_calls(struct provider_call *pc)
{
	return &((struct mock_call *)pc)->calls;
}

static void
mock_free(struct provider_call *pc)
{
	struct mock_call *c = (struct mock_call *)pc;

	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	toolcalls_free(&c->calls);
	free(c);
}

const struct provider_ops provider_mock_ops = {
	.start = mock_start,
	.next = mock_next,
	.cancel = mock_cancel,
	.usage = mock_usage,
	.tool_calls = mock_tool_calls,
	.free = mock_free,
};
