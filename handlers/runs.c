/* POST /v1/threads/{id}/runs and GET /v1/runs/{id}. */
#include "routes.h"
#include "aisdk.h"
#include "app.h"
#include "bus.h"
#include "buf.h"
#include "config.h"
#include "jsonv.h"
#include "log.h"
#include "provider.h"
#include "run.h"
#include "store.h"
#include "tools.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAX 128
#define IDEMPOTENCY_KEY_MAX 255
#define STOP_MAX 4
#define STOP_LEN_MAX 256

static int
model_name_ok(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		    *s == '-' || *s == '_' || *s == '.' || *s == ':' || *s == '/' || *s == '@'))
			return 0;
	return 1;
}

static int
number_in(struct json_object *v, double lo, double hi, double *out)
{
	double d;

	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return 0;
	d = json_object_get_double(v);
	if (!isfinite(d) || d < lo || d > hi)
		return 0;
	*out = d;
	return 1;
}

/* The sampling parameters a provider accepts; anything else is refused. */
static int
params_check(struct req *r, struct json_object *params)
{
	json_object_object_foreach(params, k, v) {
		char field[96];
		double d;

		snprintf(field, sizeof field, "params.%.80s", k);
		if (!strcmp(k, "temperature")) {
			if (!number_in(v, 0, 2, &d)) {
				http_error_field(r, field, "%s must be a number from 0 to 2", field);
				return -1;
			}
		} else if (!strcmp(k, "top_p")) {
			if (!number_in(v, 0, 1, &d)) {
				http_error_field(r, field, "%s must be a number from 0 to 1", field);
				return -1;
			}
		} else if (!strcmp(k, "max_tokens")) {
			int64_t n;
			if (!json_object_is_type(v, json_type_int) ||
			    (n = json_object_get_int64(v)) < 1 || n > 1000000) {
				http_error_field(r, field, "%s must be an integer from 1 to 1000000", field);
				return -1;
			}
		} else if (!strcmp(k, "stop")) {
			int ok = 1;
			if (json_object_is_type(v, json_type_string)) {
				ok = json_object_get_string_len(v) >= 1 &&
				    json_object_get_string_len(v) <= STOP_LEN_MAX;
			} else if (json_object_is_type(v, json_type_array)) {
				size_t n = json_object_array_length(v);
				ok = n >= 1 && n <= STOP_MAX;
				for (size_t i = 0; i < n && ok; i++) {
					struct json_object *s = json_object_array_get_idx(v, i);
					ok = json_object_is_type(s, json_type_string) &&
					    json_object_get_string_len(s) >= 1 &&
					    json_object_get_string_len(s) <= STOP_LEN_MAX;
				}
			} else {
				ok = 0;
			}
			if (!ok) {
				http_error_field(r, field, "%s must be a string or an array of 1 to %d "
				    "strings of 1 to %d bytes", field, STOP_MAX, STOP_LEN_MAX);
				return -1;
			}
		} else {
			http_error_field(r, field, "%s is not a supported parameter (temperature, top_p, "
			    "max_tokens, stop)", field);
			return -1;
		}
	}
	return 0;
}

static int
wants_stream(const struct req *r)
{
	return r->accept && strstr(r->accept, "text/event-stream") != NULL;
}

void
run_accepted(struct req *r, int status, const char *run_id, const char *thread_id,
    const char *run_status, int attempt, const char *continues)
{
	char body[640], cont[64] = "";

	if (continues)
		snprintf(cont, sizeof cont, ",\"continues\":\"%s\"", continues);
	snprintf(body, sizeof body,
	    "{\"run_id\":\"%s\",\"thread_id\":\"%s\",\"status\":\"%s\",\"attempt\":%d,"
	    "\"events_url\":\"/v1/runs/%s/events\"%s}", run_id, thread_id, run_status, attempt,
	    run_id, cont);
	http_json_str(r, status, body);
}

int
idempotency_key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (k[i] < 0x21 || k[i] > 0x7e)
			return 0;
	return 1;
}

int
run_admit(struct req *r)
{
	struct app *a = r->app;

	if (atomic_load(&a->draining)) {
		http_error_ex(r, API_UNAVAILABLE, NULL, NULL, "Retry-After: 1\r\n",
		    "this server is shutting down; retry (another server will take the run)");
		return -1;
	}
	if (!bus_connected(a->bus)) {
		http_error_ex(r, API_UNAVAILABLE, NULL, NULL, "Retry-After: 1\r\n",
		    "NATS is unavailable: runs cannot stream now");
		return -1;
	}
	if (runner_reserve(a->runner) != TE_OK) {
		http_error_ex(r, API_AT_CAPACITY, NULL, NULL, "Retry-After: 1\r\n",
		    "this worker runs as many runs as it may (max_runs); retry");
		return -1;
	}
	return 0;
}

void
run_store_error(struct req *r, int rc, const char *what, const char *failed)
{
	if (rc == TE_NOTFOUND)
		http_error(r, API_NOT_FOUND, "no %s %s", what, r->id);
	else
		http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
		    rc == TE_DB || rc == TE_TIMEOUT ? "PostgreSQL is unavailable; retry" : failed);
}

int
run_start_created(struct req *r, const char *run_id)
{
	static const char why[] = "{\"code\":\"internal\",\"message\":\"could not start a generator\"}";
	struct app *a = r->app;
	int rc;

	if (runner_spawn(a->runner, run_id, 1, RUN_FRESH, 0) == TE_OK)
		return 0;
	/* Fail it, fenced; if even that fails, hand it back so that the sweep resumes
	 * it: never leave it running under this live worker. */
	rc = store_run_finish(a->store, run_id, 1, a->worker, "failed", NULL, 0, why, NULL, NULL);
	if (rc == TE_OK)
		run_announce_terminal(a->runner, run_id, 1, "failed", why, "final");
	else if (rc != TE_FENCED && (rc = store_run_release(a->store, run_id, 1, a->worker)) != TE_OK &&
	    rc != TE_FENCED)
		tlog_run(LOG_ERROR, run_id, 1, "the run has no generator and could not be failed nor "
		    "handed back: %s; the sweep fails it after max_run_s", te_strerror(rc));
	http_error(r, API_INTERNAL, "the run %s was created but could not start", run_id);
	return -1;
}

void
h_runs_create(struct req *r)
{
	static const char *const keys[] = { "input", "model", "params", "tools", "tool_choice", NULL };
	struct app *a = r->app;
	const struct config *cfg = a->cfg;
	struct json_object *body = NULL, *params = NULL, *tools = NULL, *tool_choice = NULL;
	const char *input, *model, *idem = r->idempotency_key;
	struct run_created out;
	struct run_new in;
	struct jsonv_err e;
	struct buf req, sdk_input;
	char err[512];
	int rc, reserved = 0, aisdk = 0;

	/* The input and model escaped (up to six bytes each), params as json-c writes
	 * them again (at most twice the body: it escapes '/'). */
	buf_init(&req, JSON_STR_MAX(cfg->max_input) + JSON_STR_MAX(MODEL_MAX) +
	    (size_t)cfg->max_body * 4 + 1024);
	buf_init(&sdk_input, (size_t)cfg->max_input);
	if (events_format(r, &aisdk) < 0)
		goto out;
	if (idem && !idempotency_key_ok(idem)) {
		http_error(r, API_BAD_REQUEST, "Idempotency-Key must be 1-%d printable ASCII characters",
		    IDEMPOTENCY_KEY_MAX);
		goto out;
	}
	if (http_json_body(r, 0, &body) < 0)
		goto out;
	/* format=ai-sdk also takes the AI SDK's chat body: the last user message's text. */
	if (aisdk && json_object_object_get_ex(body, "messages", NULL)) {
		if (aisdk_request_input(body, (size_t)cfg->max_input, &sdk_input, &e) != JV_OK) {
			http_error_field(r, e.field, "%s", e.msg);
			goto out;
		}
		input = sdk_input.data;
	} else if (jsonv_only_keys(body, keys, NULL, &e) != JV_OK ||
	    jsonv_string(body, "input", 1, 1, (size_t)cfg->max_input, &input, NULL, &e) != JV_OK) {
		http_error_field(r, e.field, "%s", e.msg);
		goto out;
	}
	/* The conversation sent upstream is capped (store_run_context): the input always
	 * goes, so an input over the cap is refused here rather than cut. */
	if (strlen(input) > (size_t)cfg->history_max_bytes) {
		http_error_field(r, "input", "input is too long for the conversation limit (%d bytes, "
		    "history_max_bytes)", cfg->history_max_bytes);
		goto out;
	}
	if (jsonv_string(body, "model", 0, 1, MODEL_MAX, &model, NULL, &e) != JV_OK ||
	    jsonv_object(body, "params", &params, &e) != JV_OK ||
	    (params && jsonv_no_nul(params, "params", &e) != JV_OK)) {
		http_error_field(r, e.field, "%s", e.msg);
		goto out;
	}
	if (!model)
		model = provider_default_model(cfg);
	if (!model_name_ok(model)) {
		http_error_field(r, "model", "model names are letters, digits and -_.:/@");
		goto out;
	}
	if (provider_model_check(cfg, model, err, sizeof err) < 0) {
		http_error_field(r, "model", "%s", err);
		goto out;
	}
	if (params && params_check(r, params) < 0)
		goto out;
	json_object_object_get_ex(body, "tools", &tools);
	json_object_object_get_ex(body, "tool_choice", &tool_choice);
	if (tools_check(tools, tool_choice, &e) != JV_OK ||
	    (tools && jsonv_no_nul(tools, "tools", &e) != JV_OK)) {
		http_error_field(r, e.field, "%s", e.msg);
		goto out;
	}
	if (run_admit(r) < 0)
		goto out;
	reserved = 1;
	rc = buf_puts(&req, "{\"input\":");
	if (rc == TE_OK)
		rc = buf_json_str(&req, input, strlen(input));
	if (rc == TE_OK)
		rc = buf_puts(&req, ",\"model\":");
	if (rc == TE_OK)
		rc = buf_json_str(&req, model, strlen(model));
	if (rc == TE_OK && params)
		rc = buf_printf(&req, ",\"params\":%s",
		    json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN));
	if (rc == TE_OK && tools && json_object_array_length(tools) > 0)
		rc = buf_printf(&req, ",\"tools\":%s",
		    json_object_to_json_string_ext(tools, JSON_C_TO_STRING_PLAIN));
	if (rc == TE_OK && tool_choice)
		rc = buf_printf(&req, ",\"tool_choice\":%s",
		    json_object_to_json_string_ext(tool_choice, JSON_C_TO_STRING_PLAIN));
	if (rc == TE_OK)
		rc = buf_puts(&req, "}");
	if (rc != TE_OK) {
		http_error(r, API_PAYLOAD_TOO_LARGE, "the request is too large");
		goto out;
	}
	memset(&in, 0, sizeof in);
	in.tenant = r->tenant;
	in.thread_id = r->id;
	in.idempotency_key = idem;
	in.request_json = req.data;
	in.input = input;
	in.model = model;
	in.worker = a->worker;
	in.pod = a->pod;
	in.pid = a->pid;
	in.tenant_max_active = r->limits.max_active_runs;
	if ((rc = store_run_create(a->store, &in, &out)) != TE_OK) {
		run_store_error(r, rc, "thread", "could not create the run");
		goto out;
	}
	switch (out.outcome) {
	case RUN_CREATED:
		if (run_start_created(r, out.run_id) < 0)
			goto out;
		reserved = 0;
		tlog_run(LOG_DEBUG, out.run_id, 1, "run created on thread %s", r->id);
		if (wants_stream(r))
			events_serve(r, out.run_id, NULL);
		else
			run_accepted(r, 202, out.run_id, r->id, "running", 1, NULL);
		break;
	case RUN_REPLAYED:
		if (wants_stream(r))
			events_serve(r, out.run_id, NULL);
		else
			run_accepted(r, 200, out.run_id, r->id, out.status, out.attempt, NULL);
		break;
	case RUN_IDEMPOTENCY_MISMATCH:
		http_error(r, API_IDEMPOTENCY_CONFLICT,
		    "Idempotency-Key was used for a different request (run %s)", out.run_id);
		break;
	case RUN_THREAD_BUSY:
		http_error_ex(r, API_THREAD_BUSY, NULL, out.active_run_id, NULL,
		    "the thread already has an active run");
		break;
	case RUN_TENANT_LIMIT:
		http_error_quota(r, "max_active_runs", 1,
		    "this tenant has as many active runs as its quota allows (max_active_runs)");
		break;
	}
out:
	if (reserved)
		runner_unreserve(a->runner);
	buf_free(&req);
	buf_free(&sdk_input);
	json_object_put(body);
}

void
h_run_get(struct req *r)
{
	char *json = NULL;
	int rc = store_run_get(r->app->store, r->tenant, r->id, &json);

	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no run %s", r->id);
		return;
	}
	if (rc != TE_OK) {
		http_error(r, api_err_from_te(rc), "could not read the run: %s", te_strerror(rc));
		return;
	}
	http_json_str(r, 200, json);
	free(json);
}
