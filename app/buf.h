/* buf.h - a growing byte buffer with a hard cap (curl's bounded dynbuf). */
#ifndef TETHER_BUF_H
#define TETHER_BUF_H

#include "err.h"

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;     /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max;     /* appends beyond this fail with TE_TOOLARGE */
};

void buf_init(struct buf *b, size_t max);
TE_MUST_CHECK int buf_append(struct buf *b, const void *p, size_t n);
TE_MUST_CHECK int buf_puts(struct buf *b, const char *s);
TE_MUST_CHECK int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
TE_MUST_CHECK int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Append s as a JSON string literal (quotes included). A byte becomes at most six
 * ("\u001f"): JSON_STR_MAX(n) bounds the literal of n bytes, quotes included.
 * Size every buffer that holds escaped text with it, never with 2 * n. */
#define JSON_STR_MAX(n) ((size_t)(n) * 6 + 2)
TE_MUST_CHECK int buf_json_str(struct buf *b, const char *s, size_t n);
void buf_reset(struct buf *b);
/* Hand over the data; the caller frees it. The buffer is left empty. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

#endif
