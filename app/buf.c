#include "buf.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

static int
buf_grow(struct buf *b, size_t need)
{
	size_t cap;
	char *p;

	if (need > b->max)
		return TE_TOOLARGE;
	if (need + 1 <= b->cap)
		return TE_OK;
	cap = b->cap ? b->cap : 64;
	while (cap < need + 1)
		cap *= 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	p = realloc(b->data, cap);
	if (!p)
		return TE_NOMEM;
	b->data = p;
	b->cap = cap;
	return TE_OK;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n > b->max - b->len)
		return TE_TOOLARGE;
	if ((rc = buf_grow(b, b->len + n)) != TE_OK)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return TE_OK;
}

int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n, rc;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return TE_INVAL;
	if ((size_t)n > b->max - b->len)
		return TE_TOOLARGE;
	if ((rc = buf_grow(b, b->len + (size_t)n)) != TE_OK)
		return rc;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return TE_OK;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

int
buf_json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6] = { '\\', 'u', '0', '0', 0, 0 };
	size_t start = 0, len0 = b->len;
	int rc;

	if ((rc = buf_append(b, "\"", 1)) != TE_OK)
		return rc;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *rep = NULL;
		size_t replen = 2;

		switch (c) {
		case '"': rep = "\\\""; break;
		case '\\': rep = "\\\\"; break;
		case '\n': rep = "\\n"; break;
		case '\r': rep = "\\r"; break;
		case '\t': rep = "\\t"; break;
		default:
			if (c < 0x20) {
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				rep = esc;
				replen = 6;
			}
		}
		if (!rep)
			continue;
		if ((rc = buf_append(b, s + start, i - start)) != TE_OK ||
		    (rc = buf_append(b, rep, replen)) != TE_OK)
			goto fail;
		start = i + 1;
	}
	if ((rc = buf_append(b, s + start, n - start)) == TE_OK &&
	    (rc = buf_append(b, "\"", 1)) == TE_OK)
		return TE_OK;
fail:
	/* All or nothing, like every other append. */
	b->len = len0;
	b->data[len0] = '\0';
	return rc;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *
buf_steal(struct buf *b)
{
	char *p = b->data;

	if (!p)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void
buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
