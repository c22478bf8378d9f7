/* ctltools.h - how `tetherctl chat` answers tool calls (API.md "v1 additions:
 * tools"): a NAME=CMD mapping, a command run through /bin/sh with the call's
 * arguments on its stdin (bounded output, a deadline, its process group killed
 * past either), and the body of POST /v1/runs/{id}/tool_outputs. No HTTP here:
 * unit-tested in tests/unit/test_ctltools.c. */
#ifndef TETHER_CTLTOOLS_H
#define TETHER_CTLTOOLS_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

#define CTLTOOLS_MAX_MAP 64                     /* --tool options (API.md: at most 64 tools) */
#define CTLTOOLS_OUTPUT_MAX (64 * 1024)         /* bytes of one output */
#define CTLTOOLS_TIMEOUT_S 30                   /* default deadline of one command */

struct ctltools_map {
	const char *name[CTLTOOLS_MAX_MAP];     /* point into the NAME=CMD strings given */
	size_t name_len[CTLTOOLS_MAX_MAP];
	const char *cmd[CTLTOOLS_MAX_MAP];
	int n;
};

/* Add one NAME=CMD (NAME matches ^[A-Za-z0-9_-]{1,64}$, CMD is not empty). The map
 * keeps pointers into spec, which must outlive it. A later NAME replaces an earlier
 * one. TE_OK, or TE_INVAL / TE_TOOLARGE with a sentence in err. */
TE_MUST_CHECK int ctltools_map_add(struct ctltools_map *m, const char *spec, char *err,
    size_t errlen);
/* The command mapped to name, or NULL. */
const char *ctltools_map_find(const struct ctltools_map *m, const char *name);

/* Is name a tool name of the contract (^[A-Za-z0-9_-]{1,64}$)? */
int ctltools_name_valid(const char *name, size_t len);

/* Run cmd with /bin/sh -c in its own process group, in_len bytes of in on its
 * stdin (then closed), its stderr shared with ours, and collect its stdout into out
 * (reset first) with the trailing newlines removed, as $(...) does. Returns 0 when
 * it exited 0 within timeout_ms with at most max_out bytes of UTF-8; 1 when it did
 * not, with a sentence in why ("exited with status 3", "timed out after 30 s", ...),
 * what it printed so far left in out; -1 when it could not be started (why says
 * why). Past the deadline or the bound its whole process group gets SIGKILL. */
int ctltools_exec(const char *cmd, const char *in, size_t in_len, int timeout_ms, size_t max_out,
    struct buf *out, char *why, size_t whylen);

/* Append {"outputs":[{"tool_call_id":ids[i],"output":outputs[i]}…]} to body. */
TE_MUST_CHECK int ctltools_outputs_json(struct buf *body, const char *const *ids,
    const char *const *outputs, int n);

#endif
