#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Written once before threads start (log_init, log_set_worker). */
static char log_pod[64] = "-";
static long log_worker;
static int log_min = LOG_INFO;

static const char *const level_names[LOG__MAX] = { "debug", "info", "warn", "error" };

void
log_init(const char *pod, int level)
{
	if (pod && *pod)
		snprintf(log_pod, sizeof log_pod, "%s", pod);
	if (level >= 0 && level < LOG__MAX)
		log_min = level;
}

void
log_set_worker(long worker)
{
	log_worker = worker;
}

int
log_enabled(enum log_level level)
{
	return (int)level >= log_min;
}

int
log_level_parse(const char *name)
{
	for (int i = 0; i < LOG__MAX; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

char *
log_escape(char *dst, size_t cap, const char *src, size_t len)
{
	return text_escape(dst, cap, src, len, SIZE_MAX, ESC_QUOTES);
}

void
log_run(enum log_level level, const char *run, int attempt, const char *fmt, ...)
{
	char msg[2048], esc[3072], line[4096];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	if ((unsigned)level >= LOG__MAX)
		level = LOG_ERROR;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	log_escape(esc, sizeof esc, msg, strlen(msg));
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof line,
	    "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s pod=%s worker=%ld pid=%ld",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (long)(tv.tv_usec / 1000), level_names[level], log_pod, log_worker, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	if (run)
		n += snprintf(line + n, sizeof line - n, " run=%s attempt=%d", run, attempt);
	if ((size_t)n < sizeof line)
		n += snprintf(line + n, sizeof line - n, " msg=\"%s\"\n", esc);
	if ((size_t)n >= sizeof line) {
		n = sizeof line;
		line[n - 2] = '"';
		line[n - 1] = '\n';
	}
	/* One write per line keeps lines whole across threads and processes. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
