/* tools.h - what a client says about tools, checked (API.md "v1 additions: tools"):
 * the definitions and tool_choice given at run creation, and the outputs given to a
 * run that asks for them. Pure (json-c only): unit-tested. */
#ifndef TETHER_TOOLS_H
#define TETHER_TOOLS_H

#include <stddef.h>
#include <json-c/json.h>

#include "buf.h"
#include "jsonv.h"

#define TOOLS_MAX 64                    /* definitions per run */
#define TOOL_DESCRIPTION_MAX 4096       /* bytes of a description */
#define TOOL_PARAMETERS_MAX (16 * 1024) /* bytes of one parameters schema, as JSON */
#define TOOLS_MAX_BYTES (256 * 1024)    /* bytes of all definitions, as JSON */
#define TOOL_OUTPUT_MAX (256 * 1024)    /* bytes of one output */

/* Is s a tool name: ^[A-Za-z0-9_-]{1,64}$ */
int tool_name_ok(const char *s);
/* tools (NULL when absent) and tool_choice (NULL when absent). JV_OK, or JV_FIELD
 * with the field and a sentence in e. tool_choice "required" or naming a function
 * needs that function among the tools. */
int tools_check(struct json_object *tools, struct json_object *tool_choice, struct jsonv_err *e);
/* outputs as given ([{"tool_call_id","output"}…]) against the run's calls
 * (calls_json, [{"id","name","arguments"}…]): exactly one output per call, no
 * other. On JV_OK, out holds the outputs as JSON in the calls' order (what the
 * continuation stores, and its idempotency fingerprint). */
int tools_outputs(struct json_object *outputs, const char *calls_json, size_t max_output,
    struct buf *out, struct jsonv_err *e);

#endif
