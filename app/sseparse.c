#include "sseparse.h"
#include "err.h"

#include <stdio.h>
#include <string.h>

void
sseparse_init(struct sseparse *p, size_t max_line, size_t max_event, sse_event_fn fn,
    sse_comment_fn cfn, void *arg)
{
	memset(p, 0, sizeof *p);
	buf_init(&p->line, max_line);
	buf_init(&p->data, max_event);
	p->max_line = max_line;
	p->on_event = fn;
	p->on_comment = cfn;
	p->arg = arg;
}

void
sseparse_free(struct sseparse *p)
{
	buf_free(&p->line);
	buf_free(&p->data);
}

static int
dispatch(struct sseparse *p)
{
	struct sse_event ev;
	int rc = 0;

	if (p->have_data) {
		ev.id = p->id;
		ev.event = p->event[0] ? p->event : "message";
		ev.data = p->data.data ? p->data.data : "";
		ev.data_len = p->data.len;
		rc = p->on_event ? p->on_event(p->arg, &ev) : 0;
	}
	buf_reset(&p->data);
	p->have_data = 0;
	p->event[0] = '\0';
	return rc;
}

static int
line(struct sseparse *p)
{
	const char *l = p->line.data ? p->line.data : "";
	size_t n = p->line.len, flen;
	const char *val;
	size_t vlen;

	if (n == 0)
		return dispatch(p);
	if (l[0] == ':') {
		if (p->on_comment)
			p->on_comment(p->arg, l + 1, n - 1);
		return 0;
	}
	val = memchr(l, ':', n);
	flen = val ? (size_t)(val - l) : n;
	if (val) {
		val++;
		if (val < l + n && *val == ' ')
			val++;
		vlen = (size_t)(l + n - val);
	} else {
		val = "";
		vlen = 0;
	}
	if (flen == 4 && !memcmp(l, "data", 4)) {
		if ((p->have_data && buf_append(&p->data, "\n", 1) != TE_OK) ||
		    buf_append(&p->data, val, vlen) != TE_OK) {
			p->error = 1;
			return -1;
		}
		p->have_data = 1;
	} else if (flen == 5 && !memcmp(l, "event", 5)) {
		snprintf(p->event, sizeof p->event, "%.*s", (int)(vlen < 63 ? vlen : 63), val);
	} else if (flen == 2 && !memcmp(l, "id", 2)) {
		if (!memchr(val, '\0', vlen))
			snprintf(p->id, sizeof p->id, "%.*s", (int)(vlen < 255 ? vlen : 255), val);
	}
	/* retry and unknown fields are ignored, as the SSE specification says. */
	return 0;
}

int
sseparse_feed(struct sseparse *p, const char *s, size_t n)
{
	size_t start = 0;
	int rc;

	if (p->error)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c != '\n' && c != '\r') {
			p->last_cr = 0;
			continue;
		}
		if (c == '\n' && p->last_cr && i == start) {
			/* LF of a CRLF split from its CR: already handled. */
			p->last_cr = 0;
			start = i + 1;
			continue;
		}
		if (buf_append(&p->line, s + start, i - start) != TE_OK) {
			p->error = 1;
			return -1;
		}
		/* rc is the callback's (any non-zero value) unless a bound was hit. */
		rc = line(p);
		buf_reset(&p->line);
		if (p->error)
			return -1;
		p->last_cr = c == '\r';
		start = i + 1;
		if (rc)
			return rc;
	}
	if (start < n && buf_append(&p->line, s + start, n - start) != TE_OK) {
		p->error = 1;
		return -1;
	}
	return 0;
}
