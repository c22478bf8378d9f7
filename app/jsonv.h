/* jsonv.h - parse client JSON with limits, and validate fields.
 * Every function that fails writes a human sentence into err. */
#ifndef TETHER_JSONV_H
#define TETHER_JSONV_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

enum jsonv_rc {
	JV_OK = 0,
	JV_SYNTAX,      /* not JSON, truncated, trailing bytes, bad UTF-8 */
	JV_DEPTH,       /* nested deeper than allowed */
	JV_NOT_OBJECT,
	JV_FIELD,       /* a field is missing, unknown or of the wrong type; field names it */
};

/* Parse a whole buffer into one JSON object. *out is owned by the caller
 * (json_object_put). */
int jsonv_parse_object(const char *s, size_t n, int max_depth, struct json_object **out,
    char *err, size_t errlen);

struct jsonv_err {
	char field[96];
	char msg[256];
};

/* Reject keys not in the NULL-terminated list. prefix names the parent ("params."). */
int jsonv_only_keys(struct json_object *obj, const char *const *keys, const char *prefix,
    struct jsonv_err *e);
/* A string field: required or optional (*s = NULL when absent), at most maxlen bytes,
 * no NUL byte; minlen 1 rejects "". */
int jsonv_string(struct json_object *obj, const char *key, int required, size_t minlen,
    size_t maxlen, const char **s, size_t *len, struct jsonv_err *e);
/* An optional object field (*o = NULL when absent). */
int jsonv_object(struct json_object *obj, const char *key, struct json_object **o,
    struct jsonv_err *e);
/* Fails when any string value anywhere inside holds a NUL byte: PostgreSQL text
 * and jsonb cannot store one. Keys need no check: json-c keeps them as C strings,
 * so a key ends at its first NUL before this sees it. */
int jsonv_no_nul(struct json_object *obj, const char *field, struct jsonv_err *e);

#endif
