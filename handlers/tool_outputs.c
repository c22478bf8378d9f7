/* POST /v1/runs/{id}/tool_outputs - the caller's answers to a run that ended asking
 * for tools (requires_action). One output per pending call; the run becomes
 * completed and its continuation starts on the same thread, answered like run
 * creation (202, or 200 for the same outputs or Idempotency-Key again). */
#include "routes.h"
#include "app.h"
#include "buf.h"
#include "config.h"
#include "jsonv.h"
#include "log.h"
#include "run.h"
#include "store.h"
#include "tools.h"

#include <json-c/json.h>
#include <string.h>

/* The outputs, checked against the run's calls, in the calls' order (canon). 0, or
 * -1 with the error answered. */
static int
outputs_read(struct req *r, struct json_object *body, struct buf *canon)
{
	static const char *const keys[] = { "outputs", NULL };
	struct app *a = r->app;
	struct json_object *outputs;
	struct run_state rs;
	struct jsonv_err e;
	int rc;

	if (jsonv_only_keys(body, keys, NULL, &e) != JV_OK) {
		http_error_field(r, e.field, "%s", e.msg);
		return -1;
	}
	if (!json_object_object_get_ex(body, "outputs", &outputs)) {
		http_error_field(r, "outputs", "outputs is required: [{\"tool_call_id\",\"output\"}…]");
		return -1;
	}
	if ((rc = store_run_state(a->store, r->tenant, r->id, &rs)) != TE_OK) {
		run_store_error(r, rc, "run", "could not read the run");
		return -1;
	}
	/* The calls of a run that asked for tools never change: checking before the
	 * transaction is safe; the transaction checks the status again. */
	if (!rs.tool_calls_json || !strcmp(rs.status, "cancelled") || !strcmp(rs.status, "failed")) {
		http_error(r, API_CONFLICT, "the run is %s, not waiting for tool outputs "
		    "(requires_action)", rs.status);
		store_run_state_free(&rs);
		return -1;
	}
	rc = tools_outputs(outputs, rs.tool_calls_json, TOOL_OUTPUT_MAX, canon, &e);
	store_run_state_free(&rs);
	if (rc != JV_OK) {
		http_error_field(r, e.field, "%s", e.msg);
		return -1;
	}
	return 0;
}

void
h_run_tool_outputs(struct req *r)
{
	struct app *a = r->app;
	struct json_object *body = NULL;
	struct run_continue in;
	struct run_continued out;
	struct buf canon;
	int rc, reserved = 0;

	buf_init(&canon, (size_t)a->cfg->max_body * 2 + 1024);
	if (r->idempotency_key && !idempotency_key_ok(r->idempotency_key)) {
		http_error(r, API_BAD_REQUEST, "Idempotency-Key must be 1-255 printable ASCII characters");
		goto out;
	}
	if (http_json_body(r, 0, &body) < 0 || outputs_read(r, body, &canon) < 0)
		goto out;
	if (run_admit(r) < 0)
		goto out;
	reserved = 1;
	memset(&in, 0, sizeof in);
	in.tenant = r->tenant;
	in.run_id = r->id;
	in.idempotency_key = r->idempotency_key;
	in.outputs_json = canon.data;
	in.worker = a->worker;
	in.pod = a->pod;
	in.pid = a->pid;
	in.tenant_max_active = r->limits.max_active_runs;
	if ((rc = store_run_continue(a->store, &in, &out)) != TE_OK) {
		run_store_error(r, rc, "run", "could not continue the run");
		goto out;
	}
	switch (out.outcome) {
	case CONT_CREATED:
		if (run_start_created(r, out.run_id) < 0)
			goto out;
		reserved = 0;
		tlog_run(LOG_DEBUG, out.run_id, 1, "continuation of run %s created", r->id);
		run_accepted(r, 202, out.run_id, out.thread_id, "running", 1, r->id);
		break;
	case CONT_REPLAYED:
		run_accepted(r, 200, out.run_id, out.thread_id, out.status, out.attempt, r->id);
		break;
	case CONT_IDEMPOTENCY_MISMATCH:
		http_error(r, API_IDEMPOTENCY_CONFLICT,
		    "Idempotency-Key was used for a different request (run %s)", out.run_id);
		break;
	case CONT_NOT_WAITING:
		if (out.run_id[0])
			http_error(r, API_CONFLICT, "the run is not waiting for tool outputs: other "
			    "outputs continued it (run %s)", out.run_id);
		else
			http_error(r, API_CONFLICT, "the run is %s, not waiting for tool outputs "
			    "(requires_action)", out.status);
		break;
	case CONT_TENANT_LIMIT:
		http_error_quota(r, "max_active_runs", 1,
		    "this tenant has as many active runs as its quota allows (max_active_runs)");
		break;
	}
out:
	if (reserved)
		runner_unreserve(a->runner);
	buf_free(&canon);
	json_object_put(body);
}
