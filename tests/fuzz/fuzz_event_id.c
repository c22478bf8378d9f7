/* fuzz_event_id.c - event ids from clients: Last-Event-ID and ?after= (app/sse.c
 * event_id_parse). Properties:
 *   - the verdict and the values agree with an independent reading of the grammar
 *     ("<attempt>:<seq>", attempt 1..1000000, seq 0..10^12, digits only, no
 *     leading zeros);
 *   - what parses prints back ("%d:%lld") to exactly the input bytes;
 *   - failure leaves the out-parameters untouched;
 *   - nothing past n is read (the input has no NUL after it). */
#include "fuzz.h"
#include "sse.h"

/* One decimal part of 1..13 digits, no leading zero; -1 when not. */
static long long
part(const char *s, size_t n)
{
	long long v = 0;

	if (n == 0 || n > 13 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int
reference(const char *s, size_t n, long long *attempt, long long *seq)
{
	size_t c = 0;

	while (c < n && s[c] != ':')
		c++;
	if (c == n)
		return -1;
	*attempt = part(s, c);
	*seq = part(s + c + 1, n - c - 1);
	if (*attempt < 1 || *attempt > EVENT_ID_MAX_ATTEMPT || *seq < 0 || *seq > EVENT_ID_MAX_SEQ)
		return -1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_bytes(data, size), text[64];
	int attempt = -7;
	int64_t seq = -7;
	long long ra, rs;
	int rc = event_id_parse(s, size, &attempt, &seq);
	int ref = reference(s, size, &ra, &rs);

	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(rc == ref);
	if (rc == 0) {
		FUZZ_CHECK(attempt == ra && seq == rs);
		snprintf(text, sizeof text, "%d:%lld", attempt, (long long)seq);
		FUZZ_CHECK(strlen(text) == size && memcmp(text, s, size) == 0);
	} else {
		FUZZ_CHECK(attempt == -7 && seq == -7);
	}
	free(s);
	return 0;
}
