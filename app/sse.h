/* sse.h - Server-Sent Events framing and event ids ("<attempt>:<seq>"). Pure functions. */
#ifndef TETHER_SSE_H
#define TETHER_SSE_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define EVENT_ID_MAX_ATTEMPT 1000000
#define EVENT_ID_MAX_SEQ 1000000000000LL

/* Append one event. data may span lines (\n, \r\n or \r): each becomes a data: line.
 * id and event may be NULL. */
TE_MUST_CHECK int sse_format(struct buf *b, const char *id, const char *event, const char *data, size_t len);
/* Append a comment line (": text\n\n"). */
TE_MUST_CHECK int sse_comment(struct buf *b, const char *text);

/* Parse "<attempt>:<seq>": two decimal integers, attempt >= 1, seq >= 0, no sign,
 * no spaces, no leading zeros beyond "0". Returns 0 or -1. */
int event_id_parse(const char *s, size_t n, int *attempt, int64_t *seq);

/* The data of the events tether writes itself (API.md, "Events"), in one place for
 * the generator, the terminal publishes and the watchers' completion. error_json
 * is a JSON object or NULL. */
TE_MUST_CHECK int event_start_json(struct buf *b, const char *run_id, const char *thread_id, int attempt);
TE_MUST_CHECK int event_reset_json(struct buf *b, int attempt);
TE_MUST_CHECK int event_done_json(struct buf *b, const char *status, const char *error_json);

#endif
