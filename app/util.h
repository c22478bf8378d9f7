/* util.h - small helpers with no dependencies: clocks, ids, random bytes. */
#ifndef TETHER_UTIL_H
#define TETHER_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define UUID_LEN 36

int64_t now_ms(void);          /* CLOCK_MONOTONIC, milliseconds */
int64_t now_us(void);          /* CLOCK_MONOTONIC, microseconds */
int64_t wall_ms(void);         /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t wall_us(void);         /* CLOCK_REALTIME, microseconds since the epoch */
void sleep_ms(int64_t ms);

/* Deadlines for pthread_cond_timedwait on CLOCK_MONOTONIC (a wall clock step must
 * not stretch or cut a wait). cond_init_monotonic initializes a condition variable
 * that measures its timeouts on CLOCK_MONOTONIC; deadline_ts writes the absolute
 * CLOCK_MONOTONIC time ms milliseconds from now (ms <= 0: now) for such a wait.
 * Use the two together: a deadline_ts on a default (CLOCK_REALTIME) condition
 * variable is in the past. */
void deadline_ts(struct timespec *ts, int64_t ms);
int cond_init_monotonic(pthread_cond_t *cv);

/* Lower the soft RLIMIT_NOFILE to at most max (the hard limit is left alone);
 * returns the soft limit in force afterwards, or -1 when it cannot be read. */
long nofile_cap(long max);

/* Lower-case canonical UUID text (8-4-4-4-12 hex). Upper case is rejected:
 * ids are lower-case text by contract. */
int uuid_valid(const char *s);
int uuid_validn(const char *s, size_t n);

/* Fill dst with 2*nbytes lower-case hex chars from the kernel's CSPRNG plus NUL.
 * Returns 0 or -1. */
int random_hex(char *dst, size_t nbytes);
/* urls (one or several, comma-separated) with each password replaced by "***"
 * (scheme://user:***@host; a NATS token: nats:// then ***@host): safe to log. Always
 * NUL-terminates dst (cut at cap). */
char *url_mask(char *dst, size_t cap, const char *urls);

/* Constant-time comparison of two NUL-terminated secrets (length leaks only). */
int secret_equal(const char *a, const char *b);

/* Parse a decimal integer with bounds; the whole string must be digits. */
int parse_int64(const char *s, size_t n, int64_t min, int64_t max, int64_t *out);

/* Strict UTF-8 validation (no overlongs, no surrogates, max U+10FFFF). */
int utf8_valid(const char *s, size_t n);

/* The one escaper for text that goes into a log line or an error message: bytes
 * that could break it (control bytes, DEL, and by default every non-ASCII byte)
 * become \xNN. ESC_UTF8 keeps valid UTF-8 sequences as they are; ESC_QUOTES
 * escapes '"' and '\\' too; ESC_ELLIPSIS ends a cut text with "...". Reads at
 * most max bytes of src (SIZE_MAX: all len) and writes at most cap-1 bytes plus
 * NUL, whole escapes only; returns dst. */
enum { ESC_UTF8 = 1, ESC_QUOTES = 2, ESC_ELLIPSIS = 4 };
char *text_escape(char *dst, size_t cap, const char *src, size_t len, size_t max,
    unsigned flags);

#endif
