/* aisdk.h - tether's events as the Vercel AI SDK's UI message stream (protocol v1),
 * for streams opened with format=ai-sdk (API.md, "v1 additions: AI SDK UI message
 * stream"). Pure: events in, SSE frames out; the watcher engine calls it in place
 * of plain framing, so every frame keeps tether's `id: <attempt>:<seq>` line and
 * Last-Event-ID resumption works unchanged.
 *
 *   start    -> start {messageId: run}, start-step (once per connection), text-start
 *   delta    -> text-delta (a text-start first if this connection has no open part)
 *   reset    -> text-end of the open part, data-tether-reset (transient), text-start
 *   tool_call -> tool-input-available {toolCallId, toolName, input,
 *               providerMetadata: {tether: {attempt}}}
 *   done     -> completed/requires_action: text-end, finish-step, finish;
 *               failed: error {errorText}; cancelled: abort; then data: [DONE]
 * A text part's id is "<run id>:<attempt>". */
#ifndef TETHER_AISDK_H
#define TETHER_AISDK_H

#include "buf.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define AISDK_HEADER "x-vercel-ai-ui-message-stream: v1\r\n"

struct json_object;
struct jsonv_err;

struct aisdk {
	char run[40];
	int started;            /* start and start-step sent on this connection */
	int open;               /* attempt whose text part is open here (0: none) */
	int held;               /* attempt whose text the client holds (0: none) */
};

/* last_attempt: the attempt of the client's Last-Event-ID (0: none). */
void aisdk_init(struct aisdk *s, const char *run_id, int last_attempt);
/* Append the frames for one tether event (event "start", "reset", "delta",
 * "tool_call", "done" with its JSON data). TE_INVAL for data that is not what tether
 * writes; TE_TOOLARGE when out is full. Other events write nothing and return TE_OK. */
TE_MUST_CHECK int aisdk_event(struct aisdk *s, struct buf *out, int attempt, int64_t seq,
    const char *event, const char *data, size_t len);

/* The AI SDK's default chat request body ({"id","messages":[UIMessage...],"trigger",
 * "messageId"?}, plus tether's "model" and "params"): the text of the last user
 * message (its text parts, joined) is appended to text, at most max_input bytes.
 * JV_OK or a jsonv error in e (e->field names the offending field). */
int aisdk_request_input(struct json_object *body, size_t max_input, struct buf *text,
    struct jsonv_err *e);

#endif
