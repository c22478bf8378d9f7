/* fuzz_mock.c - mock provider directives in user text (app/provider_mock.c
 * mock_parse). Properties:
 *   - the spec agrees with an independent reading of API.md's directives: the first
 *     "slow:<N>x<MS>" and the first "fail:<K>" that are whole words and in range
 *     (N <= 100000, MS <= 600000, K <= 100000, at most 9 digits each), and the words
 *     "emit" and "history" anywhere;
 *   - "tool:<name>" words (a name of 1 to 64 of [A-Za-z0-9_-] ending the word), at
 *     most 8, in order; with one, no text unless a slow: was read;
 *   - every field is written, and within its range;
 *   - white space around the text changes nothing, and an added " history" word
 *     sets history and nothing else. */
#include "fuzz.h"
#include "provider.h"

#define MAX_CHUNKS 100000
#define MAX_INTERVAL_MS 600000

/* A byte that can be part of a word: ASCII letters, digits, '_' and any non-ASCII. */
static int
wordish(char c)
{
	unsigned char u = (unsigned char)c;

	return u >= 0x80 || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
	    (u >= '0' && u <= '9') || u == '_';
}

/* 1..9 digits at s[*i], at most max: the value, advancing *i; -1 when not. */
static long
number(const char *s, size_t *i, long max)
{
	size_t j = *i;
	long v = 0;

	while (s[j] >= '0' && s[j] <= '9' && j - *i < 10)
		v = v * 10 + (s[j++] - '0');
	if (j == *i || j - *i > 9 || v > max)
		return -1;
	*i = j;
	return v;
}

static void
reference(const char *s, struct mock_spec *w)
{
	size_t n = strlen(s);
	int slow = 0, fail = 0;

	w->chunks = 5;
	w->interval_ms = 50;
	w->fail_after = -1;
	w->emit = w->history = 0;
	w->ntools = 0;
	for (size_t i = 0; i < n; i++) {
		size_t j;
		long a, b;

		if (i > 0 && wordish(s[i - 1]))
			continue;
		if (!slow && !strncmp(s + i, "slow:", 5)) {
			j = i + 5;
			if ((a = number(s, &j, MAX_CHUNKS)) >= 0 && s[j] == 'x') {
				j++;
				if ((b = number(s, &j, MAX_INTERVAL_MS)) >= 0 && !wordish(s[j])) {
					w->chunks = a;
					w->interval_ms = b;
					slow = 1;
				}
			}
		}
		if (!fail && !strncmp(s + i, "fail:", 5)) {
			j = i + 5;
			if ((a = number(s, &j, MAX_CHUNKS)) >= 0 && !wordish(s[j])) {
				w->fail_after = a;
				fail = 1;
			}
		}
		if (!strncmp(s + i, "emit", 4) && !wordish(s[i + 4]))
			w->emit = 1;
		if (!strncmp(s + i, "history", 7) && !wordish(s[i + 7]))
			w->history = 1;
		if (w->ntools < 8 && !strncmp(s + i, "tool:", 5)) {
			size_t k = i + 5;

			while (s[k] == '-' || (wordish(s[k]) && (unsigned char)s[k] < 0x80))
				k++;
			if (k - i - 5 >= 1 && k - i - 5 <= 64 && !wordish(s[k])) {
				memcpy(w->tools[w->ntools], s + i + 5, k - i - 5);
				w->tools[w->ntools++][k - i - 5] = '\0';
			}
		}
	}
	if (w->ntools > 0 && !slow)
		w->chunks = 0;
}

static void
parse(const char *s, struct mock_spec *spec)
{
	memset(spec, 0x5a, sizeof *spec);
	mock_parse(s, spec);
	FUZZ_CHECK(spec->chunks >= 0 && spec->chunks <= MAX_CHUNKS);
	FUZZ_CHECK(spec->interval_ms >= 0 && spec->interval_ms <= MAX_INTERVAL_MS);
	FUZZ_CHECK(spec->fail_after >= -1 && spec->fail_after <= MAX_CHUNKS);
	FUZZ_CHECK((spec->emit == 0 || spec->emit == 1) &&
	    (spec->history == 0 || spec->history == 1));
	FUZZ_CHECK(spec->big >= 0 && spec->big <= (4L << 20));
	FUZZ_CHECK(spec->crash_at >= 0 && spec->crash_at <= MAX_CHUNKS);
	FUZZ_CHECK(spec->ntools >= 0 && spec->ntools <= MOCK_MAX_TOOLS);
	for (int i = 0; i < spec->ntools; i++)
		FUZZ_CHECK(strlen(spec->tools[i]) >= 1 && strlen(spec->tools[i]) <= 64);
}

static int
equal(const struct mock_spec *a, const struct mock_spec *b)
{
	if (a->ntools != b->ntools)
		return 0;
	for (int i = 0; i < a->ntools; i++)
		if (strcmp(a->tools[i], b->tools[i]) != 0)
			return 0;
	return a->chunks == b->chunks && a->interval_ms == b->interval_ms &&
	    a->fail_after == b->fail_after && a->emit == b->emit && a->history == b->history;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size), *t = malloc(size + 16);
	struct mock_spec spec, want, other;

	FUZZ_CHECK(t != NULL);
	parse(s, &spec);
	reference(s, &want);
	FUZZ_CHECK(equal(&spec, &want));

	snprintf(t, size + 16, " \t%s\n ", s);
	parse(t, &other);
	FUZZ_CHECK(equal(&spec, &other));

	snprintf(t, size + 16, "%s history", s);
	parse(t, &other);
	want = spec;
	want.history = 1;
	FUZZ_CHECK(equal(&other, &want));

	parse(NULL, &other);
	FUZZ_CHECK(other.chunks == 5 && other.interval_ms == 50 && other.fail_after == -1 &&
	    !other.emit && !other.history);
	free(t);
	free(s);
	return 0;
}
