/* The mock model: its directives (API.md) and the provider interface around it. */
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "provider.h"
#include "util.h"

static void
spec_is(const char *input, long chunks, long interval, long fail, int emit, int history)
{
	struct mock_spec s;

	memset(&s, 0x5a, sizeof s);
	mock_parse(input, &s);
	CU_ASSERT_EQUAL(s.chunks, chunks);
	CU_ASSERT_EQUAL(s.interval_ms, interval);
	CU_ASSERT_EQUAL(s.fail_after, fail);
	CU_ASSERT_EQUAL(s.emit, emit);
	CU_ASSERT_EQUAL(s.history, history);
	if (s.chunks != chunks || s.interval_ms != interval || s.fail_after != fail ||
	    s.emit != emit || s.history != history)
		fprintf(stderr, "\n\"%s\": %ldx%ld fail %ld emit %d history %d\n", input ? input : "(null)",
		    s.chunks, s.interval_ms, s.fail_after, s.emit, s.history);
}

static void
test_parse_defaults(void)
{
	spec_is(NULL, 5, 50, -1, 0, 0);
	spec_is("", 5, 50, -1, 0, 0);
	spec_is("hello world", 5, 50, -1, 0, 0);
}

static void
test_parse_slow(void)
{
	spec_is("slow:3x10", 3, 10, -1, 0, 0);
	spec_is("please go slow:12x0 now", 12, 0, -1, 0, 0);
	spec_is("slow:100000x1", 100000, 1, -1, 0, 0);
	spec_is("slow:1x600000", 1, 600000, -1, 0, 0);
	spec_is("line one\nslow:2x5\n", 2, 5, -1, 0, 0);
	spec_is("\tslow:2x5\r\n", 2, 5, -1, 0, 0);
	/* after and before punctuation */
	spec_is("Hello, slow:4x20.", 4, 20, -1, 0, 0);
	spec_is("Hello,slow:4x20!", 4, 20, -1, 0, 0);
	spec_is("(slow:4x20)", 4, 20, -1, 0, 0);
	spec_is("[slow:4x20]", 4, 20, -1, 0, 0);
	spec_is("Tell me a story.slow:4x20", 4, 20, -1, 0, 0);
	spec_is("Really?slow:4x20;", 4, 20, -1, 0, 0);
	spec_is("\"slow:4x20\"", 4, 20, -1, 0, 0);
	spec_is("note:slow:4x20", 4, 20, -1, 0, 0);
	/* the first well-formed one wins; malformed ones before it are skipped */
	spec_is("slow:x slow:2x3 slow:7x7", 2, 3, -1, 0, 0);
}

static void
test_parse_malformed(void)
{
	static const char *const bad[] = {
		"slow:", "slow:3", "slow:3x", "slow:x10", "slow:3x10x", "slow:3x10ms", "slow: 3x10",
		"slow:3 x10", "slow:-3x10", "slow:3x-10", "slow:+3x10", "slow:3X10", "slow:3y10",
		"SLOW:3x10", "slowly:3x10", "noslow:3x10", "xslow:3x10", "_slow:3x10", "9slow:3x10",
		"slow:3x10_", "slow:3x10a",
		/* out of bounds: N at most 100000, MS at most 600000, at most 9 digits */
		"slow:100001x10", "slow:3x600001", "slow:1000000000x1", "slow:99999999999x1",
		"slow:3x99999999999",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		spec_is(bad[i], 5, 50, -1, 0, 0);
	spec_is("slow:100001x10 slow:100000x0", 100000, 0, -1, 0, 0);
	/* a directive glued to a failed one is not a word of its own */
	spec_is("slow:9slow:2x3", 5, 50, -1, 0, 0);
	spec_is("fail:xfail:2", 5, 50, -1, 0, 0);
	spec_is("fail:fail:2", 5, 50, 2, 0, 0);
}

static void
test_parse_fail(void)
{
	spec_is("fail:2", 5, 50, 2, 0, 0);
	spec_is("fail:0", 5, 50, 0, 0, 0);
	spec_is("x fail:3 slow:10x10", 10, 10, 3, 0, 0);
	spec_is("(fail:1).", 5, 50, 1, 0, 0);
	spec_is("fail:", 5, 50, -1, 0, 0);
	spec_is("fail:x", 5, 50, -1, 0, 0);
	spec_is("fail:2x", 5, 50, -1, 0, 0);
	spec_is("fail:-1", 5, 50, -1, 0, 0);
	spec_is("nofail:2", 5, 50, -1, 0, 0);
	spec_is("fail:100001", 5, 50, -1, 0, 0);
	spec_is("fail:100000", 5, 50, 100000, 0, 0);
	spec_is("fail:bad fail:4", 5, 50, 4, 0, 0);
}

static void
test_parse_words(void)
{
	spec_is("emit", 5, 50, -1, 1, 0);
	spec_is("please emit now", 5, 50, -1, 1, 0);
	spec_is("emit, please", 5, 50, -1, 1, 0);
	spec_is("(emit)", 5, 50, -1, 1, 0);
	spec_is("emit.", 5, 50, -1, 1, 0);
	spec_is("\"emit\"", 5, 50, -1, 1, 0);
	spec_is("emitted", 5, 50, -1, 0, 0);
	spec_is("emits", 5, 50, -1, 0, 0);
	spec_is("remit", 5, 50, -1, 0, 0);
	spec_is("emit_x", 5, 50, -1, 0, 0);
	spec_is("EMIT", 5, 50, -1, 0, 0);
	spec_is("emitted then emit", 5, 50, -1, 1, 0);
	spec_is("history", 5, 50, -1, 0, 1);
	spec_is("first question history slow:1x10", 1, 10, -1, 0, 1);
	spec_is("histories", 5, 50, -1, 0, 0);
	spec_is("prehistory", 5, 50, -1, 0, 0);
	spec_is("emit history fail:1 slow:2x0", 2, 0, 1, 1, 1);
	/* non-ASCII letters are letters: no boundary inside a UTF-8 word */
	spec_is("\xc3\xa9" "emit", 5, 50, -1, 0, 0);
}

/* ---- the provider ---- */

struct call {
	struct config cfg;
	struct provider_msg msgs[3];
	struct provider_req req;
	struct provider_call *c;
};

static void
call_start(struct call *k, const char *input, int history)
{
	char err[256] = "";

	memset(k, 0, sizeof *k);
	config_defaults(&k->cfg);
	k->cfg.mock = 1;                /* as scripts/stack runs it: crash: works */
	k->req.cfg = &k->cfg;
	k->req.run_id = "0b6f1c2e-9d8a-4c3b-8e7f-123456789abc";
	k->req.attempt = 1;
	k->req.model = "mock";
	if (history) {
		k->msgs[0] = (struct provider_msg){ .role = "user", .content = "first" };
		k->msgs[1] = (struct provider_msg){ .role = "assistant", .content = "reply" };
		k->msgs[2] = (struct provider_msg){ .role = "user", .content = input };
		k->req.nmsgs = 3;
	} else {
		k->msgs[0] = (struct provider_msg){ .role = "user", .content = input };
		k->req.nmsgs = 1;
	}
	k->req.msgs = k->msgs;
	CU_ASSERT_EQUAL_FATAL(provider_start(&k->req, &k->c, err, sizeof err), TE_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(k->c);
}

/* Next chunk into a fresh string (caller frees); *rc gets the code. */
static char *
next(struct call *k, int *rc, int *eof, char *err, size_t errlen)
{
	struct buf b;

	buf_init(&b, 4096);
	err[0] = '\0';
	*eof = -1;
	*rc = provider_next(k->c, &b, eof, err, errlen);
	return buf_steal(&b);
}

/* "t<digits> chunk-<i> ": returns the stamp, or -1 when the shape is wrong. */
static long long
chunk_stamp(const char *s, long i)
{
	char tail[64];
	long long t;
	int n = -1;

	if (s[0] != 't' || s[1] < '1' || s[1] > '9' || sscanf(s, "t%lld%n", &t, &n) != 1 || n < 2)
		return -1;
	snprintf(tail, sizeof tail, " chunk-%ld ", i);
	if (strcmp(s + n, tail) != 0 || strspn(s + 1, "0123456789") != (size_t)n - 1)
		return -1;
	return t;
}

static void
test_provider_slow(void)
{
	struct call k;
	char err[256], *s;
	int rc, eof;
	long long t0 = wall_ms(), stamp = -1;

	call_start(&k, "count slow:3x0", 0);
	CU_ASSERT_PTR_NULL(provider_usage(k.c));
	for (long i = 1; i <= 3; i++) {
		long long t;

		s = next(&k, &rc, &eof, err, sizeof err);
		CU_ASSERT_EQUAL(rc, TE_OK);
		CU_ASSERT_EQUAL(eof, 0);
		t = chunk_stamp(s, i);
		CU_ASSERT(t >= 0);
		if (t < 0)
			fprintf(stderr, "\nchunk %ld: \"%s\"\n", i, s);
		if (i == 1)
			stamp = t;
		CU_ASSERT_EQUAL(t, stamp);      /* the call-start stamp, the same every chunk */
		free(s);
	}
	CU_ASSERT(stamp >= t0 && stamp <= wall_ms());
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT_EQUAL(eof, 1);
	CU_ASSERT_STRING_EQUAL(s, "");
	free(s);
	/* eof again, not more chunks */
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT_EQUAL(eof, 1);
	free(s);
	provider_free(k.c);
}

static void
test_provider_paced(void)
{
	/* Chunk i is due at start + i * MS: three chunks 30 ms apart take >= 90 ms. */
	struct call k;
	char err[256], *s;
	int rc, eof;
	int64_t t0 = now_ms();

	call_start(&k, "slow:3x30", 0);
	for (int i = 0; i < 3; i++) {
		s = next(&k, &rc, &eof, err, sizeof err);
		CU_ASSERT_EQUAL(rc, TE_OK);
		free(s);
		CU_ASSERT(now_ms() - t0 >= 30 * (i + 1));
	}
	provider_free(k.c);
}

static void
test_provider_fail(void)
{
	struct call k;
	char err[256], *s;
	int rc, eof;

	call_start(&k, "fail:1 slow:5x0", 0);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT_EQUAL(eof, 0);
	CU_ASSERT(chunk_stamp(s, 1) > 0);
	free(s);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "mock provider failed after 1 chunks (fail:1)");
	CU_ASSERT_STRING_EQUAL(s, "");
	free(s);
	provider_free(k.c);

	call_start(&k, "fail:0", 0);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_PROVIDER);
	CU_ASSERT_STRING_EQUAL(err, "mock provider failed after 0 chunks (fail:0)");
	free(s);
	provider_free(k.c);

	/* fail after more chunks than there are: a normal end */
	call_start(&k, "fail:9 slow:1x0", 0);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	free(s);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT_EQUAL(eof, 1);
	free(s);
	provider_free(k.c);
}

static void
test_provider_emit(void)
{
	struct call k;
	char err[256], *s, want[32];
	int rc, eof;
	long long prev = 0;
	int64_t t0 = wall_us();

	call_start(&k, "emit slow:3x0", 0);
	for (int i = 1; i <= 3; i++) {
		long long us;
		int n = -1;

		s = next(&k, &rc, &eof, err, sizeof err);
		CU_ASSERT_EQUAL(rc, TE_OK);
		snprintf(want, sizeof want, "chunk-%d@", i);
		CU_ASSERT_EQUAL(strncmp(s, want, strlen(want)), 0);
		CU_ASSERT_EQUAL(sscanf(s + strlen(want), "%lld%n", &us, &n), 1);
		CU_ASSERT(n > 0 && strspn(s + strlen(want), "0123456789") == (size_t)n);
		CU_ASSERT_STRING_EQUAL(s + strlen(want) + n, " ");
		CU_ASSERT(us >= t0 && us <= wall_us() && us >= prev);
		prev = us;
		free(s);
	}
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(eof, 1);
	free(s);
	provider_free(k.c);
}

static void
test_provider_history(void)
{
	struct call k;
	char err[256], *s;
	int rc, eof;

	call_start(&k, "history slow:1x0", 1);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT_EQUAL(eof, 0);
	CU_ASSERT_STRING_EQUAL(s, "history=3 roles=user,assistant,user ");
	free(s);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT(chunk_stamp(s, 1) > 0);
	free(s);
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(eof, 1);
	free(s);
	provider_free(k.c);

	/* Only the last message's directives count. */
	call_start(&k, "plain", 1);
	k.msgs[0].content = "history slow:1x0";
	s = next(&k, &rc, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT(chunk_stamp(s, 1) > 0);
	free(s);
	provider_free(k.c);
}

static void
test_provider_other_models(void)
{
	struct config cfg;
	struct provider_msg m = { .role = "user", .content = "hi" };
	struct provider_req req;
	struct provider_call *c = NULL;
	char err[256] = "";

	config_defaults(&cfg);
	memset(&req, 0, sizeof req);
	req.cfg = &cfg;
	req.model = "gpt-x";
	req.msgs = &m;
	req.nmsgs = 1;
	CU_ASSERT_EQUAL(provider_start(&req, &c, err, sizeof err), TE_PROVIDER);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_STRING_EQUAL(err, "model \"gpt-x\" needs a provider and none is configured");
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "mock", err, sizeof err), 0);
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "gpt-x", err, sizeof err), -1);
	CU_ASSERT_STRING_EQUAL(provider_default_model(&cfg), "mock");
	/* With a provider, "mock" only where TETHER_MOCK=1 (API.md). */
	snprintf(cfg.provider_url, sizeof cfg.provider_url, "http://127.0.0.1:1/v1");
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "mock", err, sizeof err), -1);
	CU_ASSERT(strstr(err, "TETHER_MOCK=1") != NULL);
	cfg.mock = 1;
	CU_ASSERT_EQUAL(provider_model_check(&cfg, "mock", err, sizeof err), 0);
	provider_free(NULL);
	provider_cancel(NULL);
}

struct blocked {
	struct call *k;
	atomic_int entered;
	atomic_int returned;
	int rc;
	int eof;
	char *chunk;
};

static void *
blocked_main(void *arg)
{
	struct blocked *b = arg;
	char err[256];

	atomic_store(&b->entered, 1);
	b->chunk = next(b->k, &b->rc, &b->eof, err, sizeof err);
	atomic_store(&b->returned, 1);
	return NULL;
}

/* Poll for flag within ms; returns 1 when it was set. */
static int
wait_flag(atomic_int *flag, int64_t ms)
{
	int64_t deadline = now_ms() + ms;

	while (!atomic_load(flag)) {
		if (now_ms() >= deadline)
			return 0;
		sleep_ms(1);
	}
	return 1;
}

static void
test_provider_cancel(void)
{
	struct call k;
	struct blocked b;
	pthread_t th;
	int64_t t0;

	call_start(&k, "slow:1x60000", 0);
	memset(&b, 0, sizeof b);
	b.k = &k;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, blocked_main, &b), 0);
	CU_ASSERT_FATAL(wait_flag(&b.entered, 5000));
	/* It is blocked: the chunk is due in a minute. */
	CU_ASSERT_EQUAL(wait_flag(&b.returned, 100), 0);
	t0 = now_ms();
	provider_cancel(k.c);
	CU_ASSERT_FATAL(wait_flag(&b.returned, 5000));
	CU_ASSERT(now_ms() - t0 < 2000);      /* the chunk was due in 60 s */
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(b.rc, TE_CLOSED);
	CU_ASSERT_STRING_EQUAL(b.chunk, "");
	free(b.chunk);
	/* Cancelled stays cancelled. */
	{
		char err[256], *s;
		int rc, eof;

		s = next(&k, &rc, &eof, err, sizeof err);
		CU_ASSERT_EQUAL(rc, TE_CLOSED);
		free(s);
	}
	provider_free(k.c);

	/* A cancel before the first chunk, from this thread, also ends the call. */
	call_start(&k, "history slow:2x60000", 1);
	provider_cancel(k.c);
	{
		char err[256], *s;
		int rc, eof;

		s = next(&k, &rc, &eof, err, sizeof err);
		CU_ASSERT_EQUAL(rc, TE_CLOSED);
		free(s);
	}
	provider_free(k.c);
}

static void
test_parse_big_crash(void)
{
	struct mock_spec s;

	mock_parse("hello", &s);
	CU_ASSERT_EQUAL(s.big, 0);
	CU_ASSERT_EQUAL(s.crash_at, 0);
	mock_parse("big:102400 slow:2x0", &s);
	CU_ASSERT_EQUAL(s.big, 102400);
	CU_ASSERT_EQUAL(s.chunks, 2);
	mock_parse("big:4194304", &s);
	CU_ASSERT_EQUAL(s.big, 4194304);
	mock_parse("big:4194305 big:0 bigx:3 big:7x", &s);
	CU_ASSERT_EQUAL(s.big, 0);
	mock_parse("crash:3", &s);
	CU_ASSERT_EQUAL(s.crash_at, 3);
	mock_parse("crash:0 crash:-1 nocrash:2 crash:x", &s);
	CU_ASSERT_EQUAL(s.crash_at, 0);
	mock_parse("(crash:7).", &s);
	CU_ASSERT_EQUAL(s.crash_at, 7);
}

/* big:<N>: one N-byte first chunk of control bytes (and 'b's) ending in a space,
 * then the usual chunks. */
static void
test_provider_big(void)
{
	struct call k;
	struct buf b;
	char err[256];
	int rc, eof;
	size_t ctl = 0;

	call_start(&k, "big:1000 slow:1x0", 0);
	buf_init(&b, 1 << 20);
	rc = provider_next(k.c, &b, &eof, err, sizeof err);
	CU_ASSERT_EQUAL(rc, TE_OK);
	CU_ASSERT_EQUAL(eof, 0);
	CU_ASSERT_EQUAL(b.len, 1000);
	for (size_t i = 0; i < b.len; i++)
		ctl += (unsigned char)b.data[i] < 0x20;
	CU_ASSERT_EQUAL(ctl, 999 - 999 / 32);
	CU_ASSERT_EQUAL(b.data[0], 1);
	CU_ASSERT_EQUAL(b.data[31], 'b');
	CU_ASSERT_EQUAL(b.data[999], ' ');
	buf_reset(&b);
	CU_ASSERT_EQUAL(provider_next(k.c, &b, &eof, err, sizeof err), TE_OK);
	CU_ASSERT(b.len > 0 && strstr(b.data, " chunk-1 ") != NULL);
	buf_free(&b);
	provider_free(k.c);
}

/* crash:<K>: the process aborts at chunk K (run in a child). */
static void
test_provider_crash(void)
{
	int status = 0;
	pid_t pid = fork();

	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct call k;
		struct buf b;
		char err[256];
		int eof;

		call_start(&k, "crash:2 slow:5x0", 0);
		buf_init(&b, 4096);
		if (provider_next(k.c, &b, &eof, err, sizeof err) != TE_OK)
			_exit(10);              /* chunk 1 must come */
		provider_next(k.c, &b, &eof, err, sizeof err);
		_exit(11);                      /* chunk 2 must not */
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* Without TETHER_MOCK=1, crash:<K> is an ordinary word: the run completes. */
static void
test_crash_needs_mock_setting(void)
{
	struct call k;
	struct buf b;
	char err[256];
	int eof = 0, n = 0;

	call_start(&k, "crash:1 slow:3x0", 0);
	provider_free(k.c);
	k.cfg.mock = 0;
	CU_ASSERT_EQUAL_FATAL(provider_start(&k.req, &k.c, err, sizeof err), TE_OK);
	buf_init(&b, 4096);
	while (!eof && n < 10) {
		CU_ASSERT_EQUAL_FATAL(provider_next(k.c, &b, &eof, err, sizeof err), TE_OK);
		n++;
	}
	CU_ASSERT(eof);
	CU_ASSERT(strstr(b.data, "chunk-3 ") != NULL);
	buf_free(&b);
	provider_free(k.c);
}

static const struct unit_case cases[] = {
	{ "parse defaults", test_parse_defaults },
	{ "parse slow", test_parse_slow },
	{ "parse malformed", test_parse_malformed },
	{ "parse fail", test_parse_fail },
	{ "parse whole words", test_parse_words },
	{ "provider slow:3x0", test_provider_slow },
	{ "provider pacing", test_provider_paced },
	{ "provider fail", test_provider_fail },
	{ "provider emit", test_provider_emit },
	{ "provider history", test_provider_history },
	{ "provider other models", test_provider_other_models },
	{ "provider cancel", test_provider_cancel },
	{ "parse big and crash", test_parse_big_crash },
	{ "provider big", test_provider_big },
	{ "provider crash", test_provider_crash },
	{ "crash needs TETHER_MOCK", test_crash_needs_mock_setting },
};

UNIT_MAIN("mock", cases)
