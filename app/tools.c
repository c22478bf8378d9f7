/* tools.c - tool definitions, tool_choice and tool outputs, checked. */
#include "tools.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(struct jsonv_err *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct jsonv_err *e, const char *field, const char *fmt, ...)
{
	va_list ap;

	snprintf(e->field, sizeof e->field, "%s", field);
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return JV_FIELD;
}

int
tool_name_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
		    (s[n] >= '0' && s[n] <= '9') || s[n] == '_' || s[n] == '-'))
			return 0;
	return n >= 1 && n <= 64;
}

static size_t
json_size(struct json_object *o)
{
	return strlen(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

/* One definition: {"type":"function","function":{"name","description"?,"parameters"?,"strict"?}}. */
static int
tool_check(struct json_object *t, size_t i, const char **name, struct jsonv_err *e)
{
	static const char *const keys[] = { "type", "function", NULL };
	static const char *const fkeys[] = { "name", "description", "parameters", "strict", NULL };
	struct json_object *f, *v;
	char field[64];
	const char *type;

	snprintf(field, sizeof field, "tools[%zu]", i);
	if (!json_object_is_type(t, json_type_object))
		return fail(e, field, "%s must be an object {\"type\":\"function\",\"function\":{…}}", field);
	snprintf(field, sizeof field, "tools[%zu].", i);
	if (jsonv_only_keys(t, keys, field, e) != JV_OK)
		return JV_FIELD;
	snprintf(field, sizeof field, "tools[%zu].type", i);
	if (!json_object_object_get_ex(t, "type", &v) || !json_object_is_type(v, json_type_string) ||
	    strcmp((type = json_object_get_string(v)), "function") != 0)
		return fail(e, field, "%s must be \"function\"", field);
	snprintf(field, sizeof field, "tools[%zu].function", i);
	if (!json_object_object_get_ex(t, "function", &f) || !json_object_is_type(f, json_type_object))
		return fail(e, field, "%s must be an object with a name", field);
	snprintf(field, sizeof field, "tools[%zu].function.", i);
	if (jsonv_only_keys(f, fkeys, field, e) != JV_OK)
		return JV_FIELD;
	snprintf(field, sizeof field, "tools[%zu].function.name", i);
	if (!json_object_object_get_ex(f, "name", &v) || !json_object_is_type(v, json_type_string) ||
	    !tool_name_ok(json_object_get_string(v)))
		return fail(e, field, "%s must match ^[A-Za-z0-9_-]{1,64}$", field);
	*name = json_object_get_string(v);
	snprintf(field, sizeof field, "tools[%zu].function.description", i);
	if (json_object_object_get_ex(f, "description", &v) &&
	    (!json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) > TOOL_DESCRIPTION_MAX))
		return fail(e, field, "%s must be a string of at most %d bytes", field,
		    TOOL_DESCRIPTION_MAX);
	snprintf(field, sizeof field, "tools[%zu].function.parameters", i);
	if (json_object_object_get_ex(f, "parameters", &v) &&
	    (!json_object_is_type(v, json_type_object) || json_size(v) > TOOL_PARAMETERS_MAX))
		return fail(e, field, "%s must be a JSON Schema object of at most %d bytes", field,
		    TOOL_PARAMETERS_MAX);
	snprintf(field, sizeof field, "tools[%zu].function.strict", i);
	if (json_object_object_get_ex(f, "strict", &v) && !json_object_is_type(v, json_type_boolean))
		return fail(e, field, "%s must be true or false", field);
	return JV_OK;
}

static int
choice_check(struct json_object *c, const char *const *names, size_t n, struct jsonv_err *e)
{
	static const char *const keys[] = { "type", "function", NULL };
	static const char *const fkeys[] = { "name", NULL };
	struct json_object *v, *f;
	const char *s, *name;

	if (json_object_is_type(c, json_type_string)) {
		s = json_object_get_string(c);
		if (!strcmp(s, "auto") || !strcmp(s, "none"))
			return JV_OK;
		if (!strcmp(s, "required"))
			return n ? JV_OK : fail(e, "tool_choice", "tool_choice \"required\" needs tools");
		return fail(e, "tool_choice", "tool_choice must be \"auto\", \"none\", \"required\" or "
		    "{\"type\":\"function\",\"function\":{\"name\":…}}");
	}
	if (json_object_is_type(c, json_type_object) &&
	    jsonv_only_keys(c, keys, "tool_choice.", e) != JV_OK)
		return JV_FIELD;
	if (json_object_is_type(c, json_type_object) &&
	    json_object_object_get_ex(c, "function", &f) && json_object_is_type(f, json_type_object) &&
	    jsonv_only_keys(f, fkeys, "tool_choice.function.", e) != JV_OK)
		return JV_FIELD;
	if (!json_object_is_type(c, json_type_object) ||
	    !json_object_object_get_ex(c, "type", &v) || !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), "function") != 0 ||
	    !json_object_object_get_ex(c, "function", &f) || !json_object_is_type(f, json_type_object) ||
	    !json_object_object_get_ex(f, "name", &v) || !json_object_is_type(v, json_type_string))
		return fail(e, "tool_choice", "tool_choice must be \"auto\", \"none\", \"required\" or "
		    "{\"type\":\"function\",\"function\":{\"name\":…}}");
	name = json_object_get_string(v);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return JV_OK;
	return fail(e, "tool_choice.function.name", "tool_choice names a function that is not "
	    "among the tools");
}

int
tools_check(struct json_object *tools, struct json_object *tool_choice, struct jsonv_err *e)
{
	const char *names[TOOLS_MAX];
	size_t n = 0;

	if (tools) {
		if (!json_object_is_type(tools, json_type_array) ||
		    (n = json_object_array_length(tools)) > TOOLS_MAX)
			return fail(e, "tools", "tools must be an array of at most %d function definitions",
			    TOOLS_MAX);
		if (json_size(tools) > TOOLS_MAX_BYTES)
			return fail(e, "tools", "tools must be at most %d bytes as JSON", TOOLS_MAX_BYTES);
		for (size_t i = 0; i < n; i++) {
			if (tool_check(json_object_array_get_idx(tools, i), i, &names[i], e) != JV_OK)
				return JV_FIELD;
			for (size_t j = 0; j < i; j++)
				if (!strcmp(names[i], names[j])) {
					char field[64];

					snprintf(field, sizeof field, "tools[%zu].function.name", i);
					return fail(e, field, "two tools are named \"%s\"", names[i]);
				}
		}
	}
	if (tool_choice)
		return choice_check(tool_choice, names, n, e);
	return JV_OK;
}

int
tools_outputs(struct json_object *outputs, const char *calls_json, size_t max_output,
    struct buf *out, struct jsonv_err *e)
{
	static const char *const keys[] = { "tool_call_id", "output", NULL };
	struct json_object *calls = json_tokener_parse(calls_json), *ordered = NULL;
	size_t nc, no;
	int rc = JV_FIELD;

	if (!calls || !json_object_is_type(calls, json_type_array)) {
		fail(e, "outputs", "the run's tool calls could not be read");
		goto out;
	}
	nc = json_object_array_length(calls);
	if (!json_object_is_type(outputs, json_type_array) || (no = json_object_array_length(outputs)) == 0) {
		fail(e, "outputs", "outputs must be an array with one {\"tool_call_id\",\"output\"} per "
		    "pending call (%zu)", nc);
		goto out;
	}
	ordered = json_object_new_array_ext((int)nc);
	for (size_t i = 0; i < no; i++) {
		struct json_object *o = json_object_array_get_idx(outputs, i), *v;
		const char *id, *text;
		size_t k;
		char field[64], prefix[32];

		snprintf(field, sizeof field, "outputs[%zu]", i);
		snprintf(prefix, sizeof prefix, "outputs[%zu].", i);
		if (!json_object_is_type(o, json_type_object)) {
			fail(e, field, "%s must be an object {\"tool_call_id\",\"output\"}", field);
			goto out;
		}
		if (jsonv_only_keys(o, keys, prefix, e) != JV_OK)
			goto out;
		if (jsonv_string(o, "tool_call_id", 1, 1, 256, &id, NULL, e) != JV_OK ||
		    jsonv_string(o, "output", 1, 0, max_output, &text, NULL, e) != JV_OK) {
			char f[sizeof e->field + sizeof prefix];

			snprintf(f, sizeof f, "%s%s", prefix, e->field);
			snprintf(e->field, sizeof e->field, "%.95s", f);
			goto out;
		}
		for (k = 0; k < nc; k++) {
			struct json_object *c = json_object_array_get_idx(calls, k);

			if (json_object_object_get_ex(c, "id", &v) && !strcmp(json_object_get_string(v), id))
				break;
		}
		snprintf(field, sizeof field, "outputs[%zu].tool_call_id", i);
		if (k == nc) {
			fail(e, field, "the run has no pending tool call \"%.80s\"", id);
			goto out;
		}
		if (json_object_array_get_idx(ordered, k)) {
			fail(e, field, "two outputs for the tool call \"%.80s\"", id);
			goto out;
		}
		v = json_object_new_object();
		json_object_object_add(v, "tool_call_id", json_object_new_string(id));
		json_object_object_add(v, "output", json_object_new_string(text));
		json_object_array_put_idx(ordered, k, v);
	}
	for (size_t k = 0; k < nc; k++)
		if (!json_object_array_get_idx(ordered, k)) {
			struct json_object *v = NULL;

			json_object_object_get_ex(json_object_array_get_idx(calls, k), "id", &v);
			fail(e, "outputs", "no output for the tool call \"%.80s\" (one output per pending "
			    "call)", v ? json_object_get_string(v) : "?");
			goto out;
		}
	if (buf_puts(out, json_object_to_json_string_ext(ordered, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE)) != TE_OK) {
		fail(e, "outputs", "the outputs are too large");
		goto out;
	}
	rc = JV_OK;
out:
	json_object_put(ordered);
	json_object_put(calls);
	return rc;
}
