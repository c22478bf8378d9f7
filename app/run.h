/* run.h - the generator: one thread per active run of this worker. It publishes
 * start/reset, each delta and done with fencing, and writes the terminal state
 * to PostgreSQL (fenced by attempt) before done. It sees only the narrow interface
 * below (struct gen_ops): the run's rows, the run's stream, the model provider,
 * counters and a few settings. app/run_ops.c wires them to the real modules;
 * tests/unit/test_gen.c to fakes. */
#ifndef TETHER_RUN_H
#define TETHER_RUN_H

#include "err.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "provider.h"
#include "store.h"

struct runner;

enum run_kind {
	RUN_FRESH = 0,          /* attempt 1: publish start */
	RUN_TAKEOVER,           /* a claimed orphan: publish reset, regenerate */
};

/* The last event on a run's subject (what a fenced publish expects next). */
struct gen_last {
	uint64_t sseq;          /* its stream sequence */
	int attempt;
	int64_t seq;
	enum bus_ev type;
};

/* What a generator may do, and nothing else. Functions that take arg get the
 * ops' arg; the publisher and provider-call ones get their own handle. Each
 * returns TE_OK or an error, as the store_, bus_ and provider_ function it
 * stands for (store.h, bus.h, provider.h) does. */
struct gen_ops {
	void *arg;
	/* PostgreSQL: the run's request and history; the terminal write, fenced by
	 * attempt and owner; the run's row now (store_run_state_free frees it) */
	int (*run_context)(void *arg, const char *run_id, struct run_ctx *out);
	int (*run_finish)(void *arg, const char *run_id, int attempt, long worker,
	    const char *status, const char *output, size_t output_len, const char *error_json,
	    const char *usage_json, const char *tool_calls_json);
	int (*run_state)(void *arg, const char *run_id, struct run_state *out);
	/* JetStream: the subject's last event (TE_NOTFOUND when empty), a fenced
	 * publish waiting for its ack, and the pipelined publisher (bus_pub_*) */
	int (*last)(void *arg, const char *run_id, struct gen_last *out);
	int (*publish)(void *arg, const char *run_id, int attempt, int64_t seq, enum bus_ev type,
	    int64_t end, const char *msg_id, const char *data, size_t len, uint64_t expect,
	    int64_t deadline_ms, uint64_t *sseq);
	int (*pub_open)(void *arg, struct bus_pub **out);
	void (*pub_close)(struct bus_pub *p);
	int (*pub_send)(struct bus_pub *p, const char *run_id, int attempt, int64_t seq,
	    enum bus_ev type, int64_t end, const char *msg_id, const char *data, size_t len,
	    uint64_t expect);
	int (*pub_settle)(struct bus_pub *p, int64_t deadline_ms, uint64_t *sseq);
	int (*pub_inflight)(const struct bus_pub *p);
	const char *(*pub_error)(const struct bus_pub *p);
	size_t (*max_data)(void *arg);
	/* the model: start fills in req->cfg (the provider's settings) and begins */
	int (*provider_start)(void *arg, struct provider_req *req, struct provider_call **out,
	    char *err, size_t errlen);
	int (*provider_next)(struct provider_call *c, struct buf *chunk, int *eof, char *err,
	    size_t errlen);
	void (*provider_cancel)(struct provider_call *c);
	const char *(*provider_usage)(struct provider_call *c);
	const struct toolcalls *(*provider_tool_calls)(struct provider_call *c);
	void (*provider_free)(struct provider_call *c);
	/* counters (/metrics), owned by the caller, outliving the runner */
	atomic_llong *runs_started;
	atomic_llong *chunks_published;
	atomic_llong *fenced_publishes;
	atomic_llong *provider_errors;
	void (*takeover_observe)(void *arg, long long ms);
	/* settings */
	long worker;                    /* this worker: the owner its writes are fenced by */
	const char *system_prompt;      /* "" for none; outlives the runner */
	int max_output;                 /* bytes of one reply */
	int max_run_s;                  /* give up on NATS/PostgreSQL trouble after this */
	int nats_timeout_ms;            /* an outsider's done */
};

/* The real ones (app/run_ops.c): a's store and bus (read at each call: the bus
 * connects after the runner exists), the providers, a's counters and settings.
 * After the worker registered (a->worker). */
struct app;
void gen_ops_for_app(struct gen_ops *o, struct app *a);

/* ops is copied. */
TE_MUST_CHECK int runner_new(struct runner **out, const struct gen_ops *ops, int max_runs);
void runner_free(struct runner *r);
/* Take a slot before creating a run (TE_CAPACITY when full). */
int runner_reserve(struct runner *r);
/* Take a slot even beyond the limit (runs already claimed in PostgreSQL). */
void runner_reserve_force(struct runner *r);
void runner_unreserve(struct runner *r);
int runner_free_slots(struct runner *r);
/* Slots taken: generators running plus those reserved for a run about to start
 * (the generators gauge, and what a drain waits for). */
int runner_reserved(struct runner *r);
/* Start generating in a new thread; uses a reserved slot. claimed_us is when the
 * claim committed (takeover latency), 0 for fresh runs. */
TE_MUST_CHECK int runner_spawn(struct runner *r, const char *run_id, int attempt, enum run_kind kind,
    int64_t claimed_us);
/* Stop a local generator at once (a cancel reached this worker). */
void runner_cancel(struct runner *r, const char *run_id, int attempt);
/* Abort every generator (drain deadline), without terminal writes. */
void runner_abort_all(struct runner *r);
/* Wait until no generator runs or the deadline (monotonic ms); returns how many remain. */
int runner_wait(struct runner *r, int64_t deadline_ms);

/* Publish done for a run this worker does not generate (cancel, sweep failures),
 * after the terminal state is in PostgreSQL, through r's interface. Nothing is
 * published when the stream already ended. why names the writer in the
 * Nats-Msg-Id ("cancel", "final"). */
TE_MUST_CHECK int run_publish_terminal(struct runner *r, const char *run_id, int attempt,
    const char *status, const char *error_json, const char *why);
/* run_publish_terminal for callers that have nothing else to do when it fails (the
 * row is terminal already; watchers complete from PostgreSQL): logs why. */
void run_announce_terminal(struct runner *r, const char *run_id, int attempt, const char *status,
    const char *error_json, const char *why);

#endif
