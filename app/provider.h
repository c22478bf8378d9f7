/* provider.h - a model provider behind one interface: start, next chunk, cancel.
 * "mock" is built in (provider_mock.c); any other model goes to the
 * OpenAI-compatible provider when TETHER_PROVIDER_URL is set. */
#ifndef TETHER_PROVIDER_H
#define TETHER_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct config;
struct provider_call;
struct toolcalls;

struct provider_msg {
	const char *role;       /* system, user, assistant, tool */
	const char *content;
	const char *tool_calls_json;    /* assistant: [{"id","name","arguments":{}}…] or NULL */
	const char *tool_call_id;       /* tool: the call this output answers, else NULL */
};

struct provider_req {
	const struct config *cfg;
	const char *run_id;
	int attempt;
	const char *model;
	const struct provider_msg *msgs;        /* the conversation, the new input last */
	size_t nmsgs;
	const char *params_json;                /* validated at run creation; may be NULL */
	const char *tools_json;                 /* [{"type":"function","function":{…}}…], validated; may be NULL */
	const char *tool_choice_json;           /* "auto" | "none" | "required" | {…} as JSON; may be NULL */
};

/* Is this model name servable here? 0, or -1 with a sentence in err. */
int provider_model_check(const struct config *cfg, const char *model, char *err, size_t errlen);
/* The model a run gets when it names none. */
const char *provider_default_model(const struct config *cfg);

/* Begin a call. The request and its strings must outlive the call. */
int provider_start(const struct provider_req *req, struct provider_call **out, char *err,
    size_t errlen);
/* Block until the next chunk (appended to chunk, which the caller resets), the end
 * (*eof = 1, TE_OK), a failure (TE_PROVIDER, message in err) or a cancel (TE_CLOSED). */
int provider_next(struct provider_call *c, struct buf *chunk, int *eof, char *err, size_t errlen);
/* From any thread: make provider_next return TE_CLOSED promptly and drop the upstream. */
void provider_cancel(struct provider_call *c);
/* Token usage as a JSON object once known, else NULL. Owned by the call. */
const char *provider_usage(struct provider_call *c);
/* The tool calls the reply asked for, after eof: NULL or a set with none when it
 * asked for none. Owned by the call. */
const struct toolcalls *provider_tool_calls(struct provider_call *c);
void provider_free(struct provider_call *c);

/* Implementations. */
struct provider_ops {
	int (*start)(const struct provider_req *req, struct provider_call **out, char *err,
	    size_t errlen);
	int (*next)(struct provider_call *c, struct buf *chunk, int *eof, char *err, size_t errlen);
	void (*cancel)(struct provider_call *c);
	const char *(*usage)(struct provider_call *c);
	const struct toolcalls *(*tool_calls)(struct provider_call *c);        /* may be NULL */
	void (*free)(struct provider_call *c);
};

/* Every call starts with this header so the dispatcher finds its ops. */
struct provider_call_base {
	const struct provider_ops *ops;
};

extern const struct provider_ops provider_mock_ops;
extern const struct provider_ops provider_openai_ops;

/* The OpenAI-compatible provider's model check (a provider URL is configured):
 * any name when provider_models is empty, else the default model or a listed one. */
int provider_openai_model_check(const struct config *cfg, const char *model, char *err,
    size_t errlen);

/* Mock directives of API.md, parsed from the input (pure; unit-tested). */
struct mock_spec {
	long chunks;            /* slow:<N>x<MS>: N, default 5, at most 100000 */
	long interval_ms;       /* MS, default 50 */
	long fail_after;        /* fail:<K>, -1 when absent */
	int emit;               /* emit: chunk-<i>@<unix us> */
	int history;            /* history: first chunk describes the conversation */
	long big;               /* big:<N>: a first chunk of N bytes that escape to ~6N, 0 when absent */
	long crash_at;          /* crash:<K>: the worker aborts at chunk K, 0 when absent */
	int ntools;             /* tool:<name> words (at most MOCK_MAX_TOOLS), in order */
	char tools[8][65];
};
#define MOCK_MAX_TOOLS 8
void mock_parse(const char *input, struct mock_spec *spec);

#endif
