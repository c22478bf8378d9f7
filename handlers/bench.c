/* GET /v1/bench/stream?n=N&ms=MS - benchmark-only baseline (TETHER_BENCH_ROUTES=1):
 * the mock generator streamed straight to the client by this FastCGI handler, with
 * no JetStream, no PostgreSQL and no fan-out in between. Same event format as
 * /v1/runs/{id}/events with the mock's `emit` directive, so one load generator
 * measures both and the ratio is the relay's cost. */
#include "log.h"
#include "routes.h"
#include "app.h"
#include "buf.h"
#include "config.h"
#include "provider.h"
#include "sse.h"

#include <stdio.h>

void
h_bench_stream(struct req *r)
{
	const struct config *cfg = r->app->cfg;
	struct provider_call *call = NULL;
	struct provider_req preq = { 0 };
	struct provider_msg msg = { 0 };
	struct buf chunk, data, out;
	char q[32], input[64], err[256], id[32];
	int64_t n = 200, ms = 10;
	int len, eof = 0, rc;

	if (!cfg->bench_routes) {
		http_error(r, API_NOT_FOUND, "benchmark routes are disabled (TETHER_BENCH_ROUTES)");
		return;
	}
	if ((len = http_query_get(r->query, "n", q, sizeof q)) >= 0 &&
	    parse_int64(q, (size_t)len, 1, 100000, &n) < 0) {
		http_error_field(r, "n", "n must be an integer from 1 to 100000");
		return;
	}
	if ((len = http_query_get(r->query, "ms", q, sizeof q)) >= 0 &&
	    parse_int64(q, (size_t)len, 0, 60000, &ms) < 0) {
		http_error_field(r, "ms", "ms must be an integer from 0 to 60000");
		return;
	}
	snprintf(input, sizeof input, "slow:%lldx%lld emit", (long long)n, (long long)ms);
	msg.role = "user";
	msg.content = input;
	preq.cfg = cfg;
	preq.run_id = "bench";
	preq.attempt = 1;
	preq.model = "mock";
	preq.msgs = &msg;
	preq.nmsgs = 1;
	if (provider_start(&preq, &call, err, sizeof err) != TE_OK) {
		http_error(r, API_INTERNAL, "%s", err);
		return;
	}
	buf_init(&chunk, 1 << 16);
	buf_init(&data, JSON_STR_MAX(1 << 16) + 64);
	buf_init(&out, JSON_STR_MAX(1 << 16) + 4096);
	if (http_sse_start(r) != TE_OK)
		goto done;
	if (sse_format(&out, "1:0", "start", "{\"attempt\":1}", 13) != TE_OK)
		goto done;
	for (int64_t i = 1;; i++) {
		buf_reset(&chunk);
		if ((rc = provider_next(call, &chunk, &eof, err, sizeof err)) != TE_OK || eof)
			break;
		buf_reset(&data);
		snprintf(id, sizeof id, "1:%lld", (long long)i);
		if (buf_puts(&data, "{\"text\":") != TE_OK ||
		    buf_json_str(&data, chunk.data, chunk.len) != TE_OK || buf_puts(&data, "}") != TE_OK ||
		    sse_format(&out, id, "delta", data.data, data.len) != TE_OK ||
		    http_sse_write(r, out.data, out.len) != TE_OK)
			goto done;
		buf_reset(&out);
	}
	snprintf(id, sizeof id, "1:%lld", (long long)n + 1);
	if (sse_format(&out, id, "done", "{\"status\":\"completed\"}", 22) == TE_OK &&
	    http_sse_write(r, out.data, out.len) != TE_OK)
		tlog(LOG_DEBUG, "bench stream: the client left before done");
done:
	provider_free(call);
	buf_free(&chunk);
	buf_free(&data);
	buf_free(&out);
}
