#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

static int64_t
clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t now_ms(void) { return clock_us(CLOCK_MONOTONIC) / 1000; }
int64_t now_us(void) { return clock_us(CLOCK_MONOTONIC); }
int64_t wall_ms(void) { return clock_us(CLOCK_REALTIME) / 1000; }
int64_t wall_us(void) { return clock_us(CLOCK_REALTIME); }

void
sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void
deadline_ts(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	if (ms <= 0)
		return;
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int
cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t attr;
	int rc;

	if ((rc = pthread_condattr_init(&attr)) != 0)
		return rc;
	if ((rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)) == 0)
		rc = pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
	return rc;
}

long
nofile_cap(long max)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)max) {
		rl.rlim_cur = (rlim_t)max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
			return -1;
	}
	return rl.rlim_cur == RLIM_INFINITY ? max : (long)rl.rlim_cur;
}

int
uuid_validn(const char *s, size_t n)
{
	if (!s || n != UUID_LEN)
		return 0;
	for (size_t i = 0; i < UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

int
uuid_valid(const char *s)
{
	return s && uuid_validn(s, strnlen(s, UUID_LEN + 1));
}

int
random_hex(char *dst, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];
	size_t got = 0;

	if (nbytes > sizeof raw)
		return -1;
	while (got < nbytes) {
		ssize_t r = getrandom(raw + got, nbytes - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < nbytes; i++) {
		dst[2 * i] = hex[raw[i] >> 4];
		dst[2 * i + 1] = hex[raw[i] & 15];
	}
	dst[2 * nbytes] = '\0';
	return 0;
}

int
secret_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = (unsigned char)(la != lb);
	size_t n = la > lb ? la : lb;

	for (size_t i = 0; i < n; i++) {
		unsigned char ca = i < la ? (unsigned char)a[i] : 0;
		unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
		d |= ca ^ cb;
	}
	return d == 0;
}

int
parse_int64(const char *s, size_t n, int64_t min, int64_t max, int64_t *out)
{
	uint64_t u = 0, lim = INT64_MAX;
	int64_t v;
	size_t i = 0;
	int neg = 0;

	if (!s || n == 0 || n > 20)
		return -1;
	if (s[0] == '-') {
		neg = 1;
		i = 1;
		lim = (uint64_t)INT64_MAX + 1;  /* INT64_MIN's magnitude */
		if (n == 1)
			return -1;
	}
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (u > (lim - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		u = u * 10 + (uint64_t)(s[i] - '0');
	}
	v = neg ? (u ? -(int64_t)(u - 1) - 1 : 0) : (int64_t)u;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t len;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* How many bytes at s (n left) text_escape keeps as they are; 0: escape one. */
static size_t
esc_keep(const char *s, size_t n, unsigned flags)
{
	unsigned char c = (unsigned char)s[0];
	size_t len;

	if (c < 0x80)
		return c >= 0x20 && c != 0x7f &&
		    (!(flags & ESC_QUOTES) || (c != '"' && c != '\\')) ? 1 : 0;
	if (!(flags & ESC_UTF8))
		return 0;
	len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
	return len && len <= n && utf8_valid(s, len) ? len : 0;
}

char *
text_escape(char *dst, size_t cap, const char *src, size_t len, size_t max, unsigned flags)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0, tail = flags & ESC_ELLIPSIS ? 4 : 1;

	if (cap == 0)
		return dst;
	while (i < len) {
		size_t k = esc_keep(src + i, len - i, flags), need = k ? k : 4;

		if (i + (k ? k : 1) > max || o + need + tail > cap) {
			if ((flags & ESC_ELLIPSIS) && o + 4 <= cap) {
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (k) {
			memcpy(dst + o, src + i, k);
			o += k;
			i += k;
		} else {
			unsigned char c = (unsigned char)src[i++];

			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
	return dst;
}

static void
put_n(char *dst, size_t cap, size_t *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && *o + 1 < cap; i++)
		dst[(*o)++] = s[i];
}

char *
url_mask(char *dst, size_t cap, const char *urls)
{
	const char *p = urls;
	size_t o = 0;

	if (cap == 0)
		return dst;
	while (*p) {
		size_t len = strcspn(p, ",");
		const char *end = p + len, *sep = strstr(p, "://"), *auth, *host, *at = NULL, *colon;

		if (!sep || sep >= end) {               /* not a URL: as is */
			put_n(dst, cap, &o, p, len);
		} else {
			auth = sep + 3;
			host = auth + strcspn(auth, "/?#,");
			if (host > end)
				host = end;
			for (const char *q = auth; q < host; q++)
				if (*q == '@')
					at = q;         /* the last '@' before the host */
			put_n(dst, cap, &o, p, (size_t)(auth - p));
			if (at) {
				colon = memchr(auth, ':', (size_t)(at - auth));
				if (colon)              /* user:password */
					put_n(dst, cap, &o, auth, (size_t)(colon + 1 - auth));
				if (colon || !strncmp(p, "nats", 4) || !strncmp(p, "tls", 3))
					put_n(dst, cap, &o, "***", 3);  /* a password or a NATS token */
				else
					put_n(dst, cap, &o, auth, (size_t)(at - auth));   /* a user name */
				auth = at;
			}
			put_n(dst, cap, &o, auth, (size_t)(end - auth));
		}
		p = end;
		if (*p == ',')
			put_n(dst, cap, &o, p++, 1);
	}
	dst[o] = '\0';
	return dst;
}
