/* run_ops.c - the generator's narrow interface (run.h), wired to this worker's
 * store, bus, the model providers, counters and settings. The only place the
 * generator meets struct app. */
#include "run.h"
#include "app.h"
#include "bus.h"
#include "config.h"
#include "provider.h"
#include "store.h"

static int
op_run_context(void *arg, const char *run_id, struct run_ctx *out)
{
	return store_run_context(((struct app *)arg)->store, run_id, out);
}

static int
op_run_finish(void *arg, const char *run_id, int attempt, long worker, const char *status,
    const char *output, size_t output_len, const char *error_json, const char *usage_json,
    const char *tool_calls_json)
{
	return store_run_finish(((struct app *)arg)->store, run_id, attempt, worker, status, output,
	    output_len, error_json, usage_json, tool_calls_json);
}

static int
op_run_state(void *arg, const char *run_id, struct run_state *out)
{
	return store_run_state(((struct app *)arg)->store, NULL, run_id, out);
}

static int
op_last(void *arg, const char *run_id, struct gen_last *out)
{
	struct bus_event ev;
	int rc = bus_last(((struct app *)arg)->bus, run_id, &ev);

	if (rc != TE_OK)
		return rc;
	out->sseq = ev.sseq;
	out->attempt = ev.attempt;
	out->seq = ev.seq;
	out->type = ev.type;
	bus_event_release(&ev);
	return TE_OK;
}

static int
op_publish(void *arg, const char *run_id, int attempt, int64_t seq, enum bus_ev type, int64_t end,
    const char *msg_id, const char *data, size_t len, uint64_t expect, int64_t deadline_ms,
    uint64_t *sseq)
{
	return bus_publish(((struct app *)arg)->bus, run_id, attempt, seq, type, end, msg_id, data,
	    len, expect, deadline_ms, sseq);
}

static int
op_pub_open(void *arg, struct bus_pub **out)
{
	return bus_pub_open(((struct app *)arg)->bus, out);
}

static size_t
op_max_data(void *arg)
{
	return bus_max_data(((struct app *)arg)->bus);
}

static int
op_provider_start(void *arg, struct provider_req *req, struct provider_call **out, char *err,
    size_t errlen)
{
	req->cfg = ((struct app *)arg)->cfg;
	return provider_start(req, out, err, errlen);
}

static void
op_takeover_observe(void *arg, long long ms)
{
	app_takeover_observe(arg, ms);
}

void
gen_ops_for_app(struct gen_ops *o, struct app *a)
{
	*o = (struct gen_ops){
		.arg = a,
		.run_context = op_run_context,
		.run_finish = op_run_finish,
		.run_state = op_run_state,
		.last = op_last,
		.publish = op_publish,
		.pub_open = op_pub_open,
		/* the per-event calls go straight to the bus and the provider */
		.pub_close = bus_pub_close,
		.pub_send = bus_pub_send,
		.pub_settle = bus_pub_settle,
		.pub_inflight = bus_pub_inflight,
		.pub_error = bus_pub_error,
		.max_data = op_max_data,
		.provider_start = op_provider_start,
		.provider_next = provider_next,
		.provider_cancel = provider_cancel,
		.provider_usage = provider_usage,
		.provider_tool_calls = provider_tool_calls,
		.provider_free = provider_free,
		.runs_started = &a->ctr.runs_started,
		.chunks_published = &a->ctr.chunks_published,
		.fenced_publishes = &a->ctr.fenced_publishes,
		.provider_errors = &a->ctr.provider_errors,
		.takeover_observe = op_takeover_observe,
		.worker = a->worker,
		.system_prompt = a->cfg->system_prompt,
		.max_output = a->cfg->max_output,
		.max_run_s = a->cfg->max_run_s,
		.nats_timeout_ms = a->cfg->nats_timeout_ms,
	};
}
