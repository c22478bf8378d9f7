/* log.h - one key=value line per event on stderr.
 * ts level pod worker pid run attempt msg; client bytes are escaped. */
#ifndef TETHER_LOG_H
#define TETHER_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG__MAX };

void log_init(const char *pod, int level);
void log_set_worker(long worker);
int log_enabled(enum log_level level);
int log_level_parse(const char *name);

/* run may be NULL and attempt 0 when the line is not about a run. */
void log_run(enum log_level level, const char *run, int attempt, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define tlog(level, ...) \
	do { if (log_enabled(level)) log_run((level), NULL, 0, __VA_ARGS__); } while (0)
#define tlog_run(level, run, attempt, ...) \
	do { if (log_enabled(level)) log_run((level), (run), (attempt), __VA_ARGS__); } while (0)

/* Escape bytes for a log line: quotes, backslashes, control and non-ASCII bytes
 * become \xNN. Writes at most cap-1 bytes plus NUL; returns dst. */
char *log_escape(char *dst, size_t cap, const char *src, size_t len);

#endif
