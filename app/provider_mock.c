/* provider_mock.c - the deterministic model of API.md, for tests, demos and benchmarks.
 * Chunk i (1-based) is due at call start + i * MS and reads
 * "t<call-start unix ms> chunk-<i> ", or "chunk-<i>@<unix us> " with emit.
 * big:<N> sends an N-byte chunk of control bytes first; crash:<K> aborts the
 * process at chunk K (a poison run, for the max_attempts policy). */
#include "provider.h"
#include "config.h"
#include "err.h"
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
	int history_sent;
	int big_sent;
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
	int a, b;

	spec->chunks = 5;
	spec->interval_ms = 50;
	spec->fail_after = -1;
	spec->emit = 0;
	spec->history = 0;
	spec->big = 0;
	spec->crash_at = 0;
	if (!input)
		return;
	for (p = find_word(input, input, "slow:", 0); p; p = find_word(input, p + 1, "slow:", 0)) {
		const char *d = p + 5;

		if ((a = digits(d, MOCK_MAX_CHUNKS, &n)) && d[a] == 'x' &&
		    (b = digits(d + a + 1, MOCK_MAX_INTERVAL_MS, &ms)) && word_end(d[a + 1 + b])) {
			spec->chunks = n;
			spec->interval_ms = ms;
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
	mock_parse(req->nmsgs ? req->msgs[req->nmsgs - 1].content : "", &c->spec);
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
		*eof = 1;
		return TE_OK;
	}
	if (mock_wait(c, c->start_mono_ms + i * c->spec.interval_ms))
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

static void
mock_free(struct provider_call *pc)
{
	struct mock_call *c = (struct mock_call *)pc;

	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

const struct provider_ops provider_mock_ops = {
	.start = mock_start,
	.next = mock_next,
	.cancel = mock_cancel,
	.usage = mock_usage,
	.free = mock_free,
};
