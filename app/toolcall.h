/* toolcall.h - tool calls assembled from streamed fragments (API.md "v1 additions:
 * tools"). A provider feeds what it receives, piece by piece: the call's index, and
 * any of its id, name and a fragment of its arguments; calls may interleave. At the
 * end of the reply toolcalls_json checks and writes the complete calls. Pure (no
 * I/O, no threads): unit-tested on adversarial input and fuzzed. */
#ifndef TETHER_TOOLCALL_H
#define TETHER_TOOLCALL_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

#define TOOLCALL_MAX_CALLS 64           /* calls in one reply */
#define TOOLCALL_MAX_INDEX 1023         /* a provider's call index (sparse indexes allowed) */
#define TOOLCALL_MAX_ID 128             /* bytes of a call id */
#define TOOLCALL_MAX_NAME 64            /* bytes of a tool name (^[A-Za-z0-9_-]{1,64}$) */
#define TOOLCALL_MAX_ARGS (64 * 1024)   /* bytes of one call's arguments (JSON text) */
#define TOOLCALL_MAX_TOTAL (256 * 1024) /* bytes of all arguments of one reply */

struct toolcall {
	long index;                     /* the provider's index */
	char id[TOOLCALL_MAX_ID + 1];   /* "" until sent */
	char name[TOOLCALL_MAX_NAME + 1];       /* "" until sent; fragments are appended */
	struct buf args;                /* the arguments' JSON text, as streamed */
};

struct toolcalls {
	struct toolcall *calls;         /* in order of first appearance */
	int n;
	size_t total;                   /* argument bytes over all calls */
};

void toolcalls_init(struct toolcalls *t);
void toolcalls_free(struct toolcalls *t);
/* One fragment of call `index`: id and name (NULL or "" when absent; an id, once
 * set, must not change; name pieces are appended, as some servers split names),
 * and args_len bytes of its arguments. TE_OK, or TE_PROVIDER / TE_TOOLARGE with a
 * sentence in err (a bound passed, a negative or too-large index, a changed id). */
TE_MUST_CHECK int toolcalls_feed(struct toolcalls *t, long index, const char *id, const char *name,
    const char *args, size_t args_len, char *err, size_t errlen);
int toolcalls_count(const struct toolcalls *t);
/* The complete calls, appended to out as a JSON array
 * [{"id":"call_…","name":"…","arguments":{…}}, …] in index order. Each must have a
 * name matching ^[A-Za-z0-9_-]{1,64}$ and arguments that parse as one JSON object
 * ("" or only white space: {}). A call without an id gets "call_<attempt>_<index>"
 * (deterministic: ids only need to be unique within the run's attempt).
 * TE_OK, or TE_PROVIDER with a sentence in err (invalid arguments, a missing name). */
TE_MUST_CHECK int toolcalls_json(const struct toolcalls *t, int attempt, struct buf *out, char *err,
    size_t errlen);

#endif
