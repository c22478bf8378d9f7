/* provider_openai.h - the pure parts of the OpenAI-compatible provider
 * (provider_openai_parse.c; the calls themselves are in provider_openai.c): the
 * streamed chat-completion parser, the model table and the excerpts that error
 * messages quote. No network here: unit-tested. */
#ifndef TETHER_PROVIDER_OPENAI_H
#define TETHER_PROVIDER_OPENAI_H

#include <stddef.h>

#include "buf.h"
#include "sseparse.h"
#include "toolcall.h"

struct config;

/* Bytes of an upstream body or message quoted in an error message. */
#define OPENAI_EXCERPT_MAX 200

/* Incremental parser of a `stream: true` chat completion: SSE framing (sseparse)
 * then one JSON chunk per `data:` event, `data: [DONE]` at the end. */
struct openai_stream {
	struct sseparse sse;
	struct buf text;        /* choices[0].delta.content not yet taken, valid UTF-8 */
	long events;            /* data events parsed (role-only and usage chunks too) */
	long deltas;            /* events that carried content */
	long tool_deltas;       /* events that carried tool-call fragments */
	struct toolcalls calls; /* choices[0].delta.tool_calls, assembled (toolcall.h) */
	char usage[192];        /* {"prompt_tokens":N,"completion_tokens":M,"total_tokens":T} or "" */
	char finish[32];        /* the last finish_reason seen, or "" */
	int done;               /* data: [DONE] seen; later bytes are ignored */
	int rc;                 /* TE_OK, or TE_PROVIDER / TE_TOOLARGE once failed (sticky) */
	char err[512];          /* the failure as a sentence */
};

/* max_line bounds one SSE line and one event's data; max_text bounds the text
 * held between two openai_stream_take calls. */
void openai_stream_init(struct openai_stream *s, size_t max_line, size_t max_text);
/* Feed response bytes, split anywhere. Returns TE_OK, or s->rc with s->err set:
 * an upstream error event, an event that is not a JSON object, a bound hit.
 * Invalid UTF-8 and NUL in content become U+FFFD; unknown or missing fields,
 * comments and non-content chunks are ignored. Tool-call fragments go to s->calls
 * (toolcalls_feed); one it refuses fails the stream. */
int openai_stream_feed(struct openai_stream *s, const char *p, size_t n);
/* Move the pending text to the end of out (TE_OK, or TE_TOOLARGE from out). */
int openai_stream_take(struct openai_stream *s, struct buf *out);
void openai_stream_free(struct openai_stream *s);

/* Look a model up in a provider_models table ("a, b=upstream-b"). Returns 1 and
 * writes the upstream name (the name itself when it has no "=") when listed,
 * 0 when not (out untouched), -1 when the upstream name does not fit. */
int openai_model_lookup(const char *table, const char *model, char *out, size_t outlen);

/* Quote at most max bytes of src for an error message: valid UTF-8 kept,
 * control and invalid bytes as \xNN, cut on a character boundary with "...".
 * Always NUL-terminates dst (cap > 0). Returns dst. */
char *openai_excerpt(char *dst, size_t cap, const char *src, size_t len, size_t max);

/* The readable part of an upstream error body: error.message (with type/code)
 * from a JSON body, else an excerpt of the raw bytes. */
void openai_error_text(char *dst, size_t cap, const char *body, size_t len);

#endif
