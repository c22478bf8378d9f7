/* ctlchat.c - tetherctl chat and watch: a run's events as they stream, reconnecting
 * until done, and the tool loop (answer the calls of a run that ends
 * requires_action, send the outputs, follow the continuation). */
#include "ctlchat.h"
#include "ctltools.h"
#include "err.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Rounds of tool calls one chat answers before it gives up (a model that keeps
 * asking would otherwise loop for ever). */
#define CHAT_MAX_TOOL_ROUNDS 16

struct chat_opts {
	const char *tool_output;        /* --tool-output: the answer to every call */
	int tool_timeout_s;
	struct ctltools_map map;        /* --tool NAME=CMD */
};

struct chat_state {
	int raw;
	int status_ok;
	int bol;                        /* our last line on stdout is complete */
	char status[32];
	struct json_object *calls;      /* the tool calls of the current attempt */
};

static const char *
json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
}

static const char *
json_plain(struct json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* A tool_call event's data: {"id","name","arguments"}; NULL when it is not one. */
static struct json_object *
chat_call_check(struct json_object *o)
{
	return json_object_is_type(o, json_type_object) && json_str(o, "id") && json_str(o, "name") ?
	    o : NULL;
}

static void
chat_calls_clear(struct chat_state *cs)
{
	json_object_put(cs->calls);
	cs->calls = json_object_new_array();
}

static int
chat_event(void *arg, const struct sse_event *ev)
{
	struct chat_state *cs = arg;
	struct json_object *o = json_tokener_parse(ev->data), *v;
	int had_calls = cs->calls && json_object_array_length(cs->calls) > 0;

	/* A reset voids everything of the older attempt, its tool calls included. */
	if (!strcmp(ev->event, "reset") || !strcmp(ev->event, "start"))
		chat_calls_clear(cs);
	if (!strcmp(ev->event, "tool_call") && chat_call_check(o) && cs->calls)
		json_object_array_add(cs->calls, json_object_get(o));
	if (cs->raw) {
		printf("%s %s %s\n", ev->id, ev->event, ev->data);
	} else if (!strcmp(ev->event, "delta") && o && json_object_object_get_ex(o, "text", &v)) {
		fputs(json_object_get_string(v), stdout);
		cs->bol = 0;
	} else if (!strcmp(ev->event, "reset") && o && json_object_object_get_ex(o, "attempt", &v)) {
		printf("\n[the server generating this reply was lost; attempt %d restarts it%s]\n",
		    json_object_get_int(v), had_calls ? " (the tool calls above are void)" : "");
		cs->bol = 1;
	} else if (!strcmp(ev->event, "tool_call") && chat_call_check(o)) {
		printf("%s[tool call %s %s, id %s]\n", cs->bol ? "" : "\n", json_str(o, "name"),
		    json_object_object_get_ex(o, "arguments", &v) ? json_plain(v) : "{}", json_str(o, "id"));
		cs->bol = 1;
	}
	if (!strcmp(ev->event, "done") && o && json_object_object_get_ex(o, "status", &v)) {
		snprintf(cs->status, sizeof cs->status, "%s", json_object_get_string(v));
		cs->status_ok = !strcmp(cs->status, "completed");
		if (!cs->raw) {
			struct json_object *e;

			if (!cs->bol)
				printf("\n");
			if (!cs->status_ok && strcmp(cs->status, "requires_action"))
				fprintf(stderr, "run %s%s%s\n", cs->status,
				    json_object_object_get_ex(o, "error", &e) ? ": " : "",
				    json_object_object_get_ex(o, "error", &e) ?
				    json_object_to_json_string(e) : "");
		}
	}
	fflush(stdout);
	json_object_put(o);
	return 0;
}

/* Follow one run's events to its done. 0, or 1 with a message printed. */
static int
chat_follow(struct client *c, struct chat_state *cs, const char *run_id)
{
	struct client_stream s;
	char path[256], err[1024];

	memset(&s, 0, sizeof s);
	cs->status[0] = '\0';
	cs->status_ok = 0;
	cs->bol = 0;
	chat_calls_clear(cs);
	s.on_event = chat_event;
	s.arg = cs;
	snprintf(path, sizeof path, "/v1/runs/%s/events", run_id);
	if (client_stream(c, path, &s, 30, err, sizeof err) < 0) {
		fprintf(stderr, "tetherctl chat: the stream ended without done: %s\n", err);
		return 1;
	}
	return 0;
}

/* The calls the run waits on: required_action.tool_calls of GET /v1/runs/{id} (what
 * the server will check the outputs against), else the calls its events carried
 * after their last reset. A new reference; the caller puts it. */
static struct json_object *
chat_pending_calls(struct client *c, struct chat_state *cs, const char *run_id)
{
	struct json_object *o, *ra, *tc, *out = NULL;
	struct buf resp;
	char path[256], err[512];
	int st;

	buf_init(&resp, 16 << 20);
	snprintf(path, sizeof path, "/v1/runs/%s", run_id);
	for (int tries = 0; tries < 5; tries++) {
		buf_reset(&resp);
		st = client_json(c, "GET", path, NULL, &resp, err, sizeof err);
		if (st == 200 || (st >= 400 && st < 500))
			break;
		sleep_ms(300 * (tries + 1));
	}
	o = json_tokener_parse(st == 200 && resp.data ? resp.data : "");
	if (json_object_object_get_ex(o, "required_action", &ra) &&
	    json_object_object_get_ex(ra, "tool_calls", &tc) && json_object_is_type(tc, json_type_array))
		out = json_object_get(tc);
	json_object_put(o);
	buf_free(&resp);
	if (!out) {
		fprintf(stderr, "tetherctl chat: GET %s did not name the pending tool calls; "
		    "answering the %zu the events carried\n", path, json_object_array_length(cs->calls));
		out = json_object_get(cs->calls);
	}
	return out;
}

/* Can every call be answered (a mapping, --tool-output, or a terminal to ask)? */
static int
chat_can_answer(const struct chat_opts *co, struct json_object *calls, const char *run_id)
{
	for (size_t i = 0; i < json_object_array_length(calls); i++) {
		struct json_object *call = json_object_array_get_idx(calls, i);
		const char *name = json_str(call, "name");

		if (!json_str(call, "id") || !name) {
			fprintf(stderr, "tetherctl chat: run %s names a tool call without id or name: %s\n",
			    run_id, json_plain(call));
			return 0;
		}
		if (ctltools_map_find(&co->map, name) || co->tool_output || isatty(0))
			continue;
		fprintf(stderr, "tetherctl chat: the run asks for tool %s (call %s) and nothing can "
		    "answer it: give --tool %s=CMD or --tool-output TEXT, or run on a terminal. "
		    "Run %s waits for tool outputs (requires_action) until they arrive or it is "
		    "cancelled.\n", name, json_str(call, "id"), name, run_id);
		return 0;
	}
	return 1;
}

/* Ask on the terminal: one line. NULL at end of input. The caller frees it. */
static char *
chat_ask(const char *name, const char *id, const char *args)
{
	static char line[CTLTOOLS_OUTPUT_MAX + 2];
	size_t n;

	fprintf(stderr, "tool %s (call %s) with arguments %s\noutput> ", name, id, args);
	fflush(stderr);
	if (!fgets(line, sizeof line, stdin))
		return NULL;
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	return strdup(line);
}

/* Run the mapped command; its output, or an error text that says what went wrong
 * (the model gets it as the call's output). The caller frees it. */
static char *
chat_run_tool(const struct chat_opts *co, const char *cmd, const char *name, const char *id,
    const char *args)
{
	struct buf out, text;
	char why[256];
	char *s;
	int rc;

	buf_init(&out, CTLTOOLS_OUTPUT_MAX);
	buf_init(&text, CTLTOOLS_OUTPUT_MAX + 1024);
	/* The arguments as one line (JSON text, then a newline: `read` takes it too). */
	if (buf_printf(&text, "%s\n", args) != TE_OK) {
		snprintf(why, sizeof why, "could not be given arguments of %zu bytes", strlen(args));
		rc = -1;
	} else {
		rc = ctltools_exec(cmd, text.data, text.len, co->tool_timeout_s * 1000, CTLTOOLS_OUTPUT_MAX,
		    &out, why, sizeof why);
	}
	buf_reset(&text);
	if (rc == 0) {
		s = strdup(out.data ? out.data : "");
	} else {
		fprintf(stderr, "tetherctl chat: tool %s: the command %s; answering call %s with an "
		    "error text\n", name, why, id);
		/* What it printed follows, unless that passes the bound: the sentence stays. */
		if (buf_printf(&text, "error: the command for tool %s %s", name, why) == TE_OK &&
		    rc > 0 && out.len && utf8_valid(out.data, out.len) &&
		    buf_printf(&text, "; its output: %s", out.data) != TE_OK)
			text.data[text.len] = '\0';
		s = strdup(text.data ? text.data : "error");
	}
	buf_free(&out);
	buf_free(&text);
	return s;
}

static void
chat_print_output(const struct chat_state *cs, const char *id, const char *output)
{
	struct json_object *j = json_object_new_string(output);

	fprintf(cs->raw ? stderr : stdout, "[tool output for %s: %s]\n", id, j ? json_plain(j) : "?");
	fflush(stdout);
	json_object_put(j);
}

/* POST /v1/runs/{id}/tool_outputs with one Idempotency-Key over all retries (so a
 * retry after a lost answer starts no second continuation); the continuation's id
 * goes to next. 0, or 1 with a message printed. */
static int
chat_post_outputs(struct client *c, const char *run_id, const char *body, char *next, size_t nextlen)
{
	struct json_object *o = NULL;
	struct buf resp;
	char path[256], err[1024], idem[40];
	const char *id;
	int st = -1, rc = 1;

	buf_init(&resp, 1 << 20);
	random_hex(idem, 16);
	snprintf(path, sizeof path, "/v1/runs/%s/tool_outputs", run_id);
	for (int tries = 0; tries < 10; tries++) {
		buf_reset(&resp);
		st = client_json_idem(c, "POST", path, body, idem, &resp, err, sizeof err);
		if (st == 200 || st == 202 || (st >= 400 && st < 500 && st != 429))
			break;
		sleep_ms(300 * (tries + 1));
	}
	o = json_tokener_parse(resp.data ? resp.data : "");
	id = json_str(o, "run_id") ? json_str(o, "run_id") : json_str(o, "id");
	if ((st != 200 && st != 202) || !id || !uuid_valid(id)) {
		fprintf(stderr, "tetherctl chat: could not send the tool outputs of run %s: %s\n", run_id,
		    st < 0 ? err : resp.data ? resp.data : "");
		goto out;
	}
	snprintf(next, nextlen, "%s", id);
	fprintf(stderr, "run %s (continues %s)\n", next, run_id);
	rc = 0;
out:
	json_object_put(o);
	buf_free(&resp);
	return rc;
}

/* The run ended requires_action: answer each pending call and start the
 * continuation. 0 with its id in next, 1 on a failure, 3 when a call cannot be
 * answered here (a message printed either way). */
static int
chat_answer(struct client *c, const struct chat_opts *co, struct chat_state *cs, const char *run_id,
    char *next, size_t nextlen)
{
	struct json_object *calls = chat_pending_calls(c, cs, run_id), *args;
	int n = (int)json_object_array_length(calls), rc = 1, done = 0;
	const char **ids = calloc((size_t)n + 1, sizeof *ids);
	char **outs = calloc((size_t)n + 1, sizeof *outs);
	struct buf body;

	buf_init(&body, (size_t)(n + 1) * (JSON_STR_MAX(CTLTOOLS_OUTPUT_MAX + 1024) + 512));
	if (!ids || !outs)
		goto out;
	if (n == 0) {
		fprintf(stderr, "tetherctl chat: run %s waits for tool outputs but names no call\n", run_id);
		goto out;
	}
	if (!chat_can_answer(co, calls, run_id)) {
		rc = 3;
		goto out;
	}
	for (done = 0; done < n; done++) {
		struct json_object *call = json_object_array_get_idx(calls, (size_t)done);
		const char *name = json_str(call, "name"), *cmd = ctltools_map_find(&co->map, name);
		const char *a;

		ids[done] = json_str(call, "id");
		/* the arguments as JSON text (a string is sent as it is: some servers quote them) */
		a = !json_object_object_get_ex(call, "arguments", &args) ? "{}" :
		    json_object_is_type(args, json_type_string) ? json_object_get_string(args) : json_plain(args);
		if (cmd)
			outs[done] = chat_run_tool(co, cmd, name, ids[done], a);
		else if (co->tool_output)
			outs[done] = strdup(co->tool_output);
		else if (!(outs[done] = chat_ask(name, ids[done], a))) {
			fprintf(stderr, "\ntetherctl chat: no output given; run %s waits for tool outputs "
			    "until they arrive or it is cancelled\n", run_id);
			rc = 3;
			goto out;
		}
		if (!outs[done])
			goto out;
		chat_print_output(cs, ids[done], outs[done]);
	}
	if (ctltools_outputs_json(&body, ids, (const char *const *)outs, n) != TE_OK) {
		fprintf(stderr, "tetherctl chat: the tool outputs are too large to send\n");
		goto out;
	}
	rc = chat_post_outputs(c, run_id, body.data, next, nextlen);
out:
	for (int i = 0; outs && i < done; i++)
		free(outs[i]);
	free(outs);
	free(ids);
	buf_free(&body);
	json_object_put(calls);
	return rc;
}

/* The tools the run declares: --tools FILE's array, then {"type":"function",
 * "function":{"name":NAME}} for each --tool NAME the file does not define (a model
 * calls only what it was told of). NULL when there are none, or on an error
 * (a message printed, *bad set). */
static struct json_object *
chat_tools(const struct chat_opts *co, const char *file, int *bad)
{
	struct json_object *a = NULL, *fn, *v;
	struct stat st = { 0 };

	*bad = 0;
	if (file) {
		if (stat(file, &st) < 0 || st.st_size > (1 << 20) ||
		    !(a = json_object_from_file(file)) || !json_object_is_type(a, json_type_array)) {
			fprintf(stderr, "tetherctl chat: --tools %s: %s\n", file,
			    st.st_size > (1 << 20) ? "larger than 1 MiB" :
			    "not readable as a JSON array of tool definitions");
			json_object_put(a);
			*bad = 1;
			return NULL;
		}
	} else if (co->map.n) {
		a = json_object_new_array();
	}
	for (int i = 0; a && i < co->map.n; i++) {
		char name[72];
		int defined = 0;

		snprintf(name, sizeof name, "%.*s", (int)co->map.name_len[i], co->map.name[i]);
		for (size_t k = 0; k < json_object_array_length(a); k++) {
			struct json_object *t = json_object_array_get_idx(a, k);

			if (json_object_object_get_ex(t, "function", &fn) && json_str(fn, "name") &&
			    !strcmp(json_str(fn, "name"), name))
				defined = 1;
		}
		if (defined)
			continue;
		fn = json_object_new_object();
		v = json_object_new_object();
		json_object_object_add(fn, "name", json_object_new_string(name));
		json_object_object_add(v, "type", json_object_new_string("function"));
		json_object_object_add(v, "function", fn);
		json_object_array_add(a, v);
	}
	return a;
}

/* --tool-choice: auto, none, required, or a tool's name. NULL when invalid. */
static struct json_object *
chat_tool_choice(const char *s)
{
	struct json_object *o, *fn;

	if (!strcmp(s, "auto") || !strcmp(s, "none") || !strcmp(s, "required"))
		return json_object_new_string(s);
	if (!ctltools_name_valid(s, strlen(s)))
		return NULL;
	o = json_object_new_object();
	fn = json_object_new_object();
	json_object_object_add(fn, "name", json_object_new_string(s));
	json_object_object_add(o, "type", json_object_new_string("function"));
	json_object_object_add(o, "function", fn);
	return o;
}

/* chat's options; the words left are the text. 0, or 2 with a message printed. */
static int
chat_args(int argc, char **argv, struct chat_opts *co, struct chat_state *cs, struct buf *text,
    const char **opt)
{
	char err[256];
	int64_t n;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--thread") && next)
			opt[0] = argv[++i];
		else if (!strcmp(a, "--model") && next)
			opt[1] = argv[++i];
		else if (!strcmp(a, "--tools") && next)
			opt[2] = argv[++i];
		else if (!strcmp(a, "--tool-choice") && next)
			opt[3] = argv[++i];
		else if (!strcmp(a, "--raw"))
			cs->raw = 1;
		else if (!strcmp(a, "--tool") && next) {
			if (ctltools_map_add(&co->map, argv[++i], err, sizeof err) != TE_OK) {
				fprintf(stderr, "tetherctl chat: %s\n", err);
				return 2;
			}
		} else if (!strcmp(a, "--tool-output") && next) {
			co->tool_output = argv[++i];
		} else if (!strcmp(a, "--tool-timeout") && next) {
			if (parse_int64(next, strlen(next), 1, 3600, &n) != 0) {
				fprintf(stderr, "tetherctl chat: --tool-timeout takes seconds, 1 to 3600\n");
				return 2;
			}
			co->tool_timeout_s = (int)n;
			i++;
		} else if (buf_printf(text, "%s%s", text->len ? " " : "", a) != TE_OK) {
			fprintf(stderr, "tetherctl chat: the text is longer than 1 MiB\n");
			return 2;
		}
	}
	if (co->tool_output && (strlen(co->tool_output) > CTLTOOLS_OUTPUT_MAX ||
	    !utf8_valid(co->tool_output, strlen(co->tool_output)))) {
		fprintf(stderr, "tetherctl chat: --tool-output takes UTF-8 text of at most %d bytes\n",
		    CTLTOOLS_OUTPUT_MAX);
		return 2;
	}
	return 0;
}

/* {"input","model"?,"tools"?,"tool_choice"?}. TE_OK or an error. */
static int
chat_body(struct buf *body, const struct buf *text, const char *model, struct json_object *tools,
    struct json_object *choice)
{
	int rc;

	if ((rc = buf_puts(body, "{\"input\":")) != TE_OK ||
	    (rc = buf_json_str(body, text->data, text->len)) != TE_OK)
		return rc;
	if (model && ((rc = buf_puts(body, ",\"model\":")) != TE_OK ||
	    (rc = buf_json_str(body, model, strlen(model))) != TE_OK))
		return rc;
	if (tools && (rc = buf_printf(body, ",\"tools\":%s", json_plain(tools))) != TE_OK)
		return rc;
	if (choice && (rc = buf_printf(body, ",\"tool_choice\":%s", json_plain(choice))) != TE_OK)
		return rc;
	return buf_puts(body, "}");
}

int
ctlchat_chat(struct client *c, int argc, char **argv)
{
	const char *opt[4] = { NULL };  /* --thread, --model, --tools, --tool-choice */
	struct chat_opts co = { .tool_timeout_s = CTLTOOLS_TIMEOUT_S };
	struct chat_state cs = { 0 };
	struct buf text, body, resp;
	char err[1024], path[256], idem[40], thread_id[UUID_LEN + 1], run_id[UUID_LEN + 1];
	char next[UUID_LEN + 1];
	struct json_object *o = NULL, *tools = NULL, *choice = NULL;
	int st = -1, rc = 1, bad = 0;

	buf_init(&text, 1 << 20);
	buf_init(&body, 0);
	buf_init(&resp, 1 << 20);
	if ((rc = chat_args(argc, argv, &co, &cs, &text, opt)) != 0)
		goto out;
	rc = 1;
	if (!text.len) {
		fprintf(stderr, "tetherctl chat: what should I send? (tetherctl chat TEXT...)\n");
		goto out;
	}
	if (opt[1] && strlen(opt[1]) > 1024) {
		fprintf(stderr, "tetherctl chat: the model name is longer than 1024 bytes\n");
		goto out;
	}
	tools = chat_tools(&co, opt[2], &bad);
	if (bad)
		goto out;
	if (opt[3] && !(choice = chat_tool_choice(opt[3]))) {
		fprintf(stderr, "tetherctl chat: --tool-choice takes auto, none, required or a tool name\n");
		goto out;
	}
	/* The text escaped (a control byte takes six), the model, the tools, the braces. */
	body.max = JSON_STR_MAX(1 << 20) + JSON_STR_MAX(1024) + 256 +
	    (tools ? strlen(json_plain(tools)) : 0) + (choice ? strlen(json_plain(choice)) : 0);
	if (chat_body(&body, &text, opt[1], tools, choice) != TE_OK) {
		fprintf(stderr, "tetherctl chat: could not build the request (out of memory)\n");
		goto out;
	}
	if (opt[0]) {
		snprintf(thread_id, sizeof thread_id, "%s", opt[0]);
	} else {
		st = client_json(c, "POST", "/v1/threads", "{}", &resp, err, sizeof err);
		o = json_tokener_parse(resp.data ? resp.data : "");
		if (st != 201 || !json_str(o, "id")) {
			fprintf(stderr, "tetherctl chat: could not create a thread: %s\n",
			    st < 0 ? err : resp.data);
			goto out;
		}
		snprintf(thread_id, sizeof thread_id, "%s", json_str(o, "id"));
		json_object_put(o);
		o = NULL;
		fprintf(stderr, "thread %s\n", thread_id);
	}
	/* Retried POSTs carry the same Idempotency-Key: at most one run is created. */
	random_hex(idem, 16);
	snprintf(path, sizeof path, "/v1/threads/%s/runs", thread_id);
	for (int tries = 0; tries < 10; tries++) {
		buf_reset(&resp);
		st = client_json_idem(c, "POST", path, body.data, idem, &resp, err, sizeof err);
		if (st == 200 || st == 202 || (st >= 400 && st < 500))
			break;
		sleep_ms(300 * (tries + 1));
	}
	o = json_tokener_parse(resp.data ? resp.data : "");
	if ((st != 200 && st != 202) || !json_str(o, "run_id") || !uuid_valid(json_str(o, "run_id"))) {
		fprintf(stderr, "tetherctl chat: could not start the run: %s\n", st < 0 ? err : resp.data);
		goto out;
	}
	snprintf(run_id, sizeof run_id, "%s", json_str(o, "run_id"));
	fprintf(stderr, "run %s\n", run_id);
	/* Follow the run; while it ends asking for tools, answer and follow the continuation. */
	for (int round = 0;; round++) {
		if (chat_follow(c, &cs, run_id) != 0)
			goto out;
		if (strcmp(cs.status, "requires_action")) {
			rc = cs.status_ok ? 0 : 1;
			break;
		}
		if (round >= CHAT_MAX_TOOL_ROUNDS) {
			fprintf(stderr, "tetherctl chat: stopped after %d rounds of tool calls; run %s waits "
			    "for tool outputs until they arrive or it is cancelled\n", round, run_id);
			goto out;
		}
		if ((rc = chat_answer(c, &co, &cs, run_id, next, sizeof next)) != 0)
			goto out;
		rc = 1;
		memcpy(run_id, next, sizeof run_id);
	}
out:
	json_object_put(o);
	json_object_put(tools);
	json_object_put(choice);
	json_object_put(cs.calls);
	buf_free(&text);
	buf_free(&body);
	buf_free(&resp);
	return rc;
}

int
ctlchat_watch(struct client *c, int argc, char **argv)
{
	struct chat_state cs = { .raw = 1 };
	struct client_stream s;
	const char *run = NULL;
	char path[256], err[1024];
	int rc;

	memset(&s, 0, sizeof s);
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc)
			snprintf(s.last_id, sizeof s.last_id, "%s", argv[++i]);
		else if (!run)
			run = argv[i];
		else {
			fprintf(stderr, "tetherctl watch: unexpected %s\n", argv[i]);
			return 2;
		}
	}
	if (!run || !uuid_valid(run)) {
		fprintf(stderr, "tetherctl watch: give a run id (a lower-case UUID)\n");
		return 2;
	}
	s.on_event = chat_event;
	s.arg = &cs;
	snprintf(path, sizeof path, "/v1/runs/%s/events", run);
	rc = client_stream(c, path, &s, 30, err, sizeof err);
	json_object_put(cs.calls);
	if (rc < 0) {
		fprintf(stderr, "tetherctl watch: the stream ended without done: %s\n", err);
		return 1;
	}
	return cs.status_ok ? 0 : 1;
}
