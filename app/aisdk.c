/* aisdk.c - see aisdk.h. */
#include "aisdk.h"
#include "jsonv.h"
#include "sse.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* One frame: tether's id, no event name, the chunk as data. */
static int
frame(struct buf *out, const char *id, const char *chunk, size_t len)
{
	return sse_format(out, id, NULL, chunk, len);
}

static int
frame_str(struct buf *out, const char *id, const char *chunk)
{
	return frame(out, id, chunk, strlen(chunk));
}

/* {"type":"<type>","id":"<run>:<attempt>"} */
static int
frame_part(struct aisdk *s, struct buf *out, const char *id, const char *type, int attempt)
{
	char c[160];

	snprintf(c, sizeof c, "{\"type\":\"%s\",\"id\":\"%s:%d\"}", type, s->run, attempt);
	return frame_str(out, id, c);
}

static int
open_part(struct aisdk *s, struct buf *out, const char *id, int attempt)
{
	int rc = TE_OK;

	if (s->open && s->open != attempt)
		rc = frame_part(s, out, id, "text-end", s->open);
	if (rc == TE_OK && s->open != attempt)
		rc = frame_part(s, out, id, "text-start", attempt);
	if (rc == TE_OK)
		s->open = s->held = attempt;
	return rc;
}

static int
on_start(struct aisdk *s, struct buf *out, const char *id, int attempt)
{
	char c[160];
	int rc = TE_OK;

	if (!s->started) {
		snprintf(c, sizeof c, "{\"type\":\"start\",\"messageId\":\"%s\"}", s->run);
		if ((rc = frame_str(out, id, c)) == TE_OK)
			rc = frame_str(out, id, "{\"type\":\"start-step\"}");
		s->started = 1;
	}
	return rc == TE_OK ? open_part(s, out, id, attempt) : rc;
}

static int
on_reset(struct aisdk *s, struct buf *out, const char *id, int attempt, struct json_object *d)
{
	struct json_object *v;
	const char *reason = "owner_lost";
	int old = s->open ? s->open : s->held ? s->held : attempt - 1, rc = TE_OK;
	struct buf c;

	if (json_object_object_get_ex(d, "reason", &v) && json_object_is_type(v, json_type_string))
		reason = json_object_get_string(v);
	if (s->open) {
		rc = frame_part(s, out, id, "text-end", s->open);
		s->open = 0;
	}
	buf_init(&c, JSON_STR_MAX(strlen(reason)) + 256);
	if (rc == TE_OK)
		rc = buf_printf(&c, "{\"type\":\"data-tether-reset\",\"data\":{\"attempt\":%d,"
		    "\"reason\":", attempt);
	if (rc == TE_OK)
		rc = buf_json_str(&c, reason, strlen(reason));
	if (rc == TE_OK)
		rc = buf_printf(&c, ",\"abandoned\":\"%s:%d\"},\"transient\":true}", s->run, old);
	if (rc == TE_OK)
		rc = frame(out, id, c.data, c.len);
	buf_free(&c);
	return rc == TE_OK ? open_part(s, out, id, attempt) : rc;
}

static int
on_delta(struct aisdk *s, struct buf *out, const char *id, int attempt, struct json_object *d)
{
	struct json_object *v;
	struct buf c;
	size_t n;
	int rc;

	if (!json_object_object_get_ex(d, "text", &v) || !json_object_is_type(v, json_type_string))
		return TE_INVAL;
	if ((rc = open_part(s, out, id, attempt)) != TE_OK)
		return rc;
	n = (size_t)json_object_get_string_len(v);
	buf_init(&c, JSON_STR_MAX(n) + 160);
	rc = buf_printf(&c, "{\"type\":\"text-delta\",\"id\":\"%s:%d\",\"delta\":", s->run, attempt);
	if (rc == TE_OK)
		rc = buf_json_str(&c, json_object_get_string(v), n);
	if (rc == TE_OK)
		rc = buf_puts(&c, "}");
	if (rc == TE_OK)
		rc = frame(out, id, c.data, c.len);
	buf_free(&c);
	return rc;
}

/* tool_call -> tool-input-available, the attempt in providerMetadata.tether (a
 * reset's data part names the abandoned attempt: an application drops that
 * attempt's tool parts as it drops its text part). */
static int
on_tool_call(struct buf *out, const char *id, int attempt, struct json_object *d)
{
	struct json_object *cid, *name, *args, *c;
	int rc;

	if (!json_object_object_get_ex(d, "id", &cid) || !json_object_is_type(cid, json_type_string) ||
	    !json_object_object_get_ex(d, "name", &name) || !json_object_is_type(name, json_type_string) ||
	    !json_object_object_get_ex(d, "arguments", &args))
		return TE_INVAL;
	c = json_object_new_object();
	json_object_object_add(c, "type", json_object_new_string("tool-input-available"));
	json_object_object_add(c, "toolCallId", json_object_get(cid));
	json_object_object_add(c, "toolName", json_object_get(name));
	json_object_object_add(c, "input", json_object_get(args));
	{
		struct json_object *meta = json_object_new_object(), *t = json_object_new_object();

		json_object_object_add(t, "attempt", json_object_new_int(attempt));
		json_object_object_add(meta, "tether", t);
		json_object_object_add(c, "providerMetadata", meta);
	}
	rc = frame_str(out, id, json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(c);
	return rc;
}

/* failed: the error's message (its code when it has none). */
static int
on_failed(struct buf *out, const char *id, struct json_object *d)
{
	struct json_object *err, *v;
	const char *text = "the run failed";
	struct buf c;
	int rc;

	if (json_object_object_get_ex(d, "error", &err) &&
	    ((json_object_object_get_ex(err, "message", &v) && json_object_is_type(v, json_type_string)) ||
	    (json_object_object_get_ex(err, "code", &v) && json_object_is_type(v, json_type_string))))
		text = json_object_get_string(v);
	buf_init(&c, JSON_STR_MAX(strlen(text)) + 64);
	rc = buf_puts(&c, "{\"type\":\"error\",\"errorText\":");
	if (rc == TE_OK)
		rc = buf_json_str(&c, text, strlen(text));
	if (rc == TE_OK)
		rc = buf_puts(&c, "}");
	if (rc == TE_OK)
		rc = frame(out, id, c.data, c.len);
	buf_free(&c);
	return rc;
}

static int
on_done(struct aisdk *s, struct buf *out, const char *id, struct json_object *d)
{
	struct json_object *v;
	const char *status;
	int rc = TE_OK;

	if (!json_object_object_get_ex(d, "status", &v) || !json_object_is_type(v, json_type_string))
		return TE_INVAL;
	status = json_object_get_string(v);
	if (!strcmp(status, "completed") || !strcmp(status, "requires_action")) {
		if (s->open)
			rc = frame_part(s, out, id, "text-end", s->open);
		s->open = 0;
		if (rc == TE_OK)
			rc = frame_str(out, id, "{\"type\":\"finish-step\"}");
		if (rc == TE_OK)
			rc = frame_str(out, id, "{\"type\":\"finish\"}");
	} else if (!strcmp(status, "failed")) {
		rc = on_failed(out, id, d);
	} else if (!strcmp(status, "cancelled")) {
		rc = frame_str(out, id, "{\"type\":\"abort\"}");
	} else {
		return TE_INVAL;
	}
	return rc == TE_OK ? frame_str(out, id, "[DONE]") : rc;
}

void
aisdk_init(struct aisdk *s, const char *run_id, int last_attempt)
{
	memset(s, 0, sizeof *s);
	snprintf(s->run, sizeof s->run, "%s", run_id);
	s->held = last_attempt;
}

int
aisdk_event(struct aisdk *s, struct buf *out, int attempt, int64_t seq, const char *event,
    const char *data, size_t len)
{
	struct json_tokener *tok;
	struct json_object *d = NULL;
	char id[48];
	int rc = TE_INVAL;

	/* An event kind without a mapping is left out rather than ending the stream. */
	if (strcmp(event, "start") && strcmp(event, "reset") && strcmp(event, "delta") &&
	    strcmp(event, "done") && strcmp(event, "tool_call"))
		return TE_OK;
	if (!(tok = json_tokener_new()))
		return TE_NOMEM;
	snprintf(id, sizeof id, "%d:%lld", attempt, (long long)seq);
	d = json_tokener_parse_ex(tok, data, (int)len);
	if (!d || !json_object_is_type(d, json_type_object))
		goto out;
	if (!strcmp(event, "start"))
		rc = on_start(s, out, id, attempt);
	else if (!strcmp(event, "reset"))
		rc = on_reset(s, out, id, attempt, d);
	else if (!strcmp(event, "delta"))
		rc = on_delta(s, out, id, attempt, d);
	else if (!strcmp(event, "done"))
		rc = on_done(s, out, id, d);
	else if (!strcmp(event, "tool_call"))
		rc = on_tool_call(out, id, attempt, d);
out:
	json_object_put(d);
	json_tokener_free(tok);
	return rc;
}

static int
fail(struct jsonv_err *e, const char *field, const char *msg)
{
	snprintf(e->field, sizeof e->field, "%s", field);
	snprintf(e->msg, sizeof e->msg, "%s %s", field, msg);
	return JV_FIELD;
}

/* The text parts of one UIMessage, joined into text. */
static int
message_text(struct json_object *m, size_t idx, size_t max_input, struct buf *text,
    struct jsonv_err *e)
{
	struct json_object *parts, *p, *t, *v;
	char field[64];
	size_t n;

	snprintf(field, sizeof field, "messages[%zu].parts", idx);
	if (!json_object_object_get_ex(m, "parts", &parts) ||
	    !json_object_is_type(parts, json_type_array))
		return fail(e, field, "must be an array of message parts");
	n = json_object_array_length(parts);
	for (size_t i = 0; i < n; i++) {
		p = json_object_array_get_idx(parts, i);
		if (!json_object_is_type(p, json_type_object) ||
		    !json_object_object_get_ex(p, "type", &t) || !json_object_is_type(t, json_type_string))
			return fail(e, field, "must hold objects with a string \"type\"");
		if (strcmp(json_object_get_string(t), "text"))
			continue;
		if (!json_object_object_get_ex(p, "text", &v) || !json_object_is_type(v, json_type_string))
			return fail(e, field, "has a text part without a string \"text\"");
		if (memchr(json_object_get_string(v), '\0', (size_t)json_object_get_string_len(v)))
			return fail(e, field, "must not contain a NUL character");
		if (text->len + (size_t)json_object_get_string_len(v) > max_input) {
			snprintf(field, sizeof field, "messages[%zu]", idx);
			snprintf(e->field, sizeof e->field, "%s", field);
			snprintf(e->msg, sizeof e->msg, "%s: the text is too long (limit %zu bytes)", field,
			    max_input);
			return JV_FIELD;
		}
		if (buf_append(text, json_object_get_string(v), (size_t)json_object_get_string_len(v)) != TE_OK)
			return fail(e, field, "is too large");
	}
	if (text->len == 0)
		return fail(e, field, "holds no text: the last user message needs a text part");
	return JV_OK;
}

int
aisdk_request_input(struct json_object *body, size_t max_input, struct buf *text,
    struct jsonv_err *e)
{
	static const char *const keys[] = { "id", "messages", "trigger", "messageId", "model",
		"params", NULL };
	struct json_object *msgs, *m, *role;
	const char *s;
	size_t n;
	int rc;

	if ((rc = jsonv_only_keys(body, keys, NULL, e)) != JV_OK ||
	    (rc = jsonv_string(body, "id", 0, 0, 256, &s, NULL, e)) != JV_OK ||
	    (rc = jsonv_string(body, "messageId", 0, 0, 256, &s, NULL, e)) != JV_OK ||
	    (rc = jsonv_string(body, "trigger", 0, 1, 64, &s, NULL, e)) != JV_OK)
		return rc;
	if (s && strcmp(s, "submit-message") && strcmp(s, "regenerate-message"))
		return fail(e, "trigger", "must be \"submit-message\" or \"regenerate-message\"");
	if (!json_object_object_get_ex(body, "messages", &msgs) ||
	    !json_object_is_type(msgs, json_type_array))
		return fail(e, "messages", "must be an array of UI messages");
	n = json_object_array_length(msgs);
	for (size_t i = n; i-- > 0;) {
		m = json_object_array_get_idx(msgs, i);
		if (!json_object_is_type(m, json_type_object))
			return fail(e, "messages", "must hold objects");
		if (json_object_object_get_ex(m, "role", &role) &&
		    json_object_is_type(role, json_type_string) &&
		    !strcmp(json_object_get_string(role), "user"))
			return message_text(m, i, max_input, text, e);
	}
	return fail(e, "messages", "must hold a user message");
}
