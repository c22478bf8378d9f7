/* sseparse.h - an incremental Server-Sent Events parser (the client side): bytes in,
 * events out. Handles LF, CRLF and CR line ends, comments, multi-line data, ids,
 * events split across reads at any byte; every line has a size bound. Used by
 * tetherctl and by the OpenAI-compatible provider. */
#ifndef TETHER_SSEPARSE_H
#define TETHER_SSEPARSE_H

#include <stddef.h>

#include "buf.h"

struct sse_event {
	const char *id;         /* the last id seen on the stream ("" when none) */
	const char *event;      /* "message" when the event named none */
	const char *data;       /* data lines joined by \n */
	size_t data_len;
};

/* Return non-zero to stop parsing (sseparse_feed then returns that value). */
typedef int (*sse_event_fn)(void *arg, const struct sse_event *ev);
typedef void (*sse_comment_fn)(void *arg, const char *text, size_t len);

struct sseparse {
	struct buf line;
	struct buf data;
	char id[256];
	char event[64];
	int have_data;
	int last_cr;            /* the previous byte was CR (a following LF is its pair) */
	size_t max_line;
	sse_event_fn on_event;
	sse_comment_fn on_comment;
	void *arg;
	int error;              /* a line or event exceeded its bound */
};

void sseparse_init(struct sseparse *p, size_t max_line, size_t max_event, sse_event_fn fn,
    sse_comment_fn cfn, void *arg);
/* Feed bytes; returns 0, the callback's non-zero value, or -1 when a bound was hit. */
int sseparse_feed(struct sseparse *p, const char *s, size_t n);
void sseparse_free(struct sseparse *p);

#endif
