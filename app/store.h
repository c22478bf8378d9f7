/* store.h - everything tether keeps in PostgreSQL. The only module that speaks
 * libpq; SQL lives here and in sql/. Every call has a deadline (connect_timeout,
 * statement_timeout and a client-side poll deadline) and returns an enum tether_err:
 * TE_DB when PostgreSQL is unreachable, TE_TIMEOUT when it is too slow. */
#ifndef TETHER_STORE_H
#define TETHER_STORE_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "quota.h"
#include "util.h"

struct config;
struct store;

/* A pool of query connections, opened lazily and re-opened after failures. */
TE_MUST_CHECK int store_open(struct store **out, const struct config *cfg, const char *app_name);
void store_close(struct store *st);
TE_MUST_CHECK int store_ping(struct store *st);
/* Cancel waits and refuse new acquisitions (shutdown). */
void store_shutdown(struct store *st);

/* ---- tenants and keys (store_tenants.c) ---- */
/* Create the tenant when new and store sha256(key); key_id is the new key's id. */
TE_MUST_CHECK int store_key_create(struct store *st, const char *tenant_name, const char *key,
    char key_id[UUID_LEN + 1]);
/* The tenant id and key id of an unrevoked key; TE_NOTFOUND for unknown or revoked keys. */
TE_MUST_CHECK int store_auth(struct store *st, const char *key, char tenant_id[UUID_LEN + 1],
    char key_id[UUID_LEN + 1], struct tenant_limits *lim);
/* {"items":[{"id","created_at","revoked_at"}...]} oldest first (caller frees);
 * TE_NOTFOUND when no tenant has that name. */
TE_MUST_CHECK int store_key_list(struct store *st, const char *tenant_name, char **json);
/* Revoke a key (idempotent: the first revocation's time stays); {"id","revoked_at"}
 * (caller frees). TE_NOTFOUND for an unknown id. */
TE_MUST_CHECK int store_key_revoke(struct store *st, const char *key_id, char **json);
/* A tenant's effective quotas; TE_NOTFOUND when no tenant has that name. */
TE_MUST_CHECK int store_limits_get(struct store *st, const char *tenant_name, struct tenant_limits *out);
/* Set some of a tenant's own quotas: for each of the four fields (in struct
 * tenant_limits order) set[i] 0 keeps it, 1 sets val[i], 2 restores the default.
 * TE_NOTFOUND when no tenant has that name. */
TE_MUST_CHECK int store_limits_set(struct store *st, const char *tenant_name, const int set[4],
    const long val[4]);
/* Write this worker's tenant usage (quota_usage_json) and read the other workers'
 * sum, in the same form (caller frees). */
TE_MUST_CHECK int store_tenant_usage_sync(struct store *st, long worker, const char *usage_json,
    char **others_json);

/* ---- threads (results are JSON documents as API.md shows; caller frees) ---- */
TE_MUST_CHECK int store_thread_create(struct store *st, const char *tenant, const char *title,
    const char *metadata_json, char **json);
/* TE_NOTFOUND when before names no thread of this tenant. */
TE_MUST_CHECK int store_thread_list(struct store *st, const char *tenant, int limit, const char *before,
    char **json);
TE_MUST_CHECK int store_thread_get(struct store *st, const char *tenant, const char *id, char **json);
/* The active run of a thread, else its latest; run_id is "" when it never had one. */
TE_MUST_CHECK int store_thread_run(struct store *st, const char *tenant, const char *thread_id,
    char run_id[UUID_LEN + 1]);

/* ---- runs ---- */
struct run_new {
	const char *tenant;
	const char *thread_id;
	const char *idempotency_key;    /* NULL: none */
	const char *request_json;       /* {"input","model","params"} as stored */
	const char *input;
	const char *model;
	long worker;
	const char *pod;
	pid_t pid;
	int tenant_max_active;
};

enum run_outcome {
	RUN_CREATED = 0,
	RUN_REPLAYED,           /* same Idempotency-Key, same request */
	RUN_IDEMPOTENCY_MISMATCH,
	RUN_THREAD_BUSY,
	RUN_TENANT_LIMIT,
};

struct run_created {
	enum run_outcome outcome;
	char run_id[UUID_LEN + 1];      /* the run (created or replayed) */
	char active_run_id[UUID_LEN + 1];
	char status[16];
	int attempt;
};

/* TE_NOTFOUND when the thread is not the tenant's. */
TE_MUST_CHECK int store_run_create(struct store *st, const struct run_new *in, struct run_created *out);
TE_MUST_CHECK int store_run_get(struct store *st, const char *tenant, const char *id, char **json);

struct run_state {
	char id[UUID_LEN + 1];
	char thread_id[UUID_LEN + 1];
	char status[16];
	int attempt;
	long owner;                     /* 0: none */
	int terminal;
	char *output;                   /* NULL unless completed; freed by store_run_state_free */
	size_t output_len;
	char *error_json;               /* NULL unless failed */
	char *tool_calls_json;          /* the calls the final attempt asked for, else NULL */
	int ncalls;
};
/* tenant NULL: any tenant (internal callers). */
TE_MUST_CHECK int store_run_state(struct store *st, const char *tenant, const char *id, struct run_state *out);
void store_run_state_free(struct run_state *s);

struct run_cancel {
	char status[16];                /* status after the call */
	int changed;                    /* 1 when this call cancelled it */
	int attempt;
	long owner;
};
TE_MUST_CHECK int store_run_cancel(struct store *st, const char *tenant, const char *id, struct run_cancel *out);

struct chat_msg {
	char role[16];
	char *content;
	char *tool_calls_json;          /* assistant: the calls it made, else NULL */
	char *tool_call_id;             /* tool: the call answered, else NULL */
};

struct run_ctx {
	char thread_id[UUID_LEN + 1];
	char model[129];
	char *input;                    /* NULL for a continuation (its tool messages end the history) */
	char *params_json;              /* NULL when none */
	char *tools_json;               /* NULL when none */
	char *tool_choice_json;         /* NULL when none */
	struct chat_msg *history;       /* thread messages before this run's input, oldest
	                                 * first (a continuation's: up to its tool outputs) */
	size_t nhistory;
	long max_output_bytes;          /* the tenant's quota on output per run */
};
TE_MUST_CHECK int store_run_context(struct store *st, const char *run_id, struct run_ctx *out);
void store_run_context_free(struct run_ctx *c);

/* Terminal write, fenced: only the owner of this attempt of a running run succeeds
 * (TE_FENCED otherwise). completed and requires_action also store the assistant
 * message (requires_action with its tool_calls_json). */
TE_MUST_CHECK int store_run_finish(struct store *st, const char *run_id, int attempt, long worker,
    const char *status, const char *output, size_t output_len, const char *error_json,
    const char *usage_json, const char *tool_calls_json);

/* POST /v1/runs/{id}/tool_outputs: the run (requires_action) becomes completed and
 * its continuation is created running, owned by this worker, with a tool message
 * per output, in one transaction. */
struct run_continue {
	const char *tenant;
	const char *run_id;
	const char *idempotency_key;    /* NULL: none */
	const char *outputs_json;       /* [{"tool_call_id","output"}…] in the calls' order */
	long worker;
	const char *pod;
	pid_t pid;
	int tenant_max_active;
};
enum continue_outcome {
	CONT_CREATED = 0,
	CONT_REPLAYED,                  /* the same outputs (or Idempotency-Key) again */
	CONT_IDEMPOTENCY_MISMATCH,      /* the Idempotency-Key was used for another request */
	CONT_NOT_WAITING,               /* the run is not in requires_action (status in out) */
	CONT_TENANT_LIMIT,
};
struct run_continued {
	enum continue_outcome outcome;
	char run_id[UUID_LEN + 1];      /* the continuation */
	char thread_id[UUID_LEN + 1];
	char status[16];                /* the continuation's; CONT_NOT_WAITING: the run's */
	int attempt;
};
TE_MUST_CHECK int store_run_continue(struct store *st, const struct run_continue *in,
    struct run_continued *out);

/* Claim up to max finished runs whose end is older than grace_s and whose events
 * are still in JetStream (marking them purged): *ids (caller frees) holds n UUIDs. */
TE_MUST_CHECK int store_runs_purge_claim(struct store *st, int grace_s, int max,
    char (**ids)[UUID_LEN + 1], size_t *n);
/* The purge of a claimed run failed: leave it for a later pass. */
TE_MUST_CHECK int store_run_purge_undo(struct store *st, const char *run_id);

/* Hand a running run back, fenced (this owner, this attempt): the owner becomes
 * NULL and the sweep's orphan claim resumes it elsewhere. For a claimed run whose
 * generator could not start. TE_FENCED when the run is not ours any more. */
TE_MUST_CHECK int store_run_release(struct store *st, const char *run_id, int attempt, long worker);

/* Charge a run one crash: the generator of `attempt` crashed its worker (docs/
 * DESIGN.md "Poison runs"). Once per attempt. When the run is still running and
 * now has max_attempts crashes, it is failed with too_many_attempts in the same
 * statement: *failed_now = 1, *cur_attempt = its attempt and *error_json (caller
 * frees) its error, for the done event. */
TE_MUST_CHECK int store_run_charge_crash(struct store *st, const char *run_id, int attempt, int max_attempts,
    int *failed_now, int *cur_attempt, char **error_json);

/* ---- workers and takeover ---- */
struct store_live;

/* Liveness: a dedicated connection holding a session advisory lock keyed by the
 * worker id (from a sequence), taken before the workers row is inserted. */
TE_MUST_CHECK int store_live_open(struct store_live **out, const struct config *cfg, const char *pod, pid_t pid,
    long *worker_id);
/* TE_OK; TE_DB when the connection broke (call store_live_reconnect);
 * TE_NOTFOUND when the row is gone: this worker was declared dead. */
TE_MUST_CHECK int store_live_heartbeat(struct store_live *lv, const char *counters_json);
TE_MUST_CHECK int store_live_reconnect(struct store_live *lv);
/* Delete the row (when nothing is owned any more) and close. */
void store_live_close(struct store_live *lv, int delete_row);

struct claimed {
	char run_id[UUID_LEN + 1];
	int attempt;                    /* the new attempt (claimed) or the last one (failed) */
	long old_owner;
};

struct claim_set {
	struct claimed *v;
	size_t n, cap;
};
void claim_set_free(struct claim_set *s);
TE_MUST_CHECK int claim_set_add(struct claim_set *s, const char *run_id, int attempt,
    long old_owner);

enum probe_result { PROBE_ALIVE = 0, PROBE_DEAD, PROBE_GONE };

/* Probe worker `dead` (pg_try_advisory_xact_lock inside the claiming transaction).
 * When it is dead (or has no row), claim up to max_claim of its running runs
 * (only run_id at attempt seen_attempt when run_id is given), fail those with
 * max_attempts crashes (docs/DESIGN.md "Poison runs"), and delete its row. */
TE_MUST_CHECK int store_probe_claim(struct store *st, long me, const char *pod, pid_t pid, long dead,
    const char *run_id, int seen_attempt, int max_claim, int max_attempts, int grace_s,
    enum probe_result *result, struct claim_set *claimed, struct claim_set *failed);

struct worker_ref {
	long id;
	char pod[64];
	pid_t pid;
};
TE_MUST_CHECK int store_workers_list(struct store *st, struct worker_ref **v, size_t *n);
/* Running runs whose owner has no workers row (or none at all): claim them by CAS. */
TE_MUST_CHECK int store_claim_orphans(struct store *st, long me, const char *pod, pid_t pid, int max_claim,
    int max_attempts, struct claim_set *claimed, struct claim_set *failed);
/* Queued runs: start them here. */
TE_MUST_CHECK int store_start_queued(struct store *st, long me, const char *pod, pid_t pid, int max_start,
    struct claim_set *started);
/* Runs older than max_run_s: fail them with timeout. */
TE_MUST_CHECK int store_reap(struct store *st, int max_run_s, struct claim_set *failed);
/* The owner's pod/pid for logs and the API; "" / 0 when unknown. */
TE_MUST_CHECK int store_worker_get(struct store *st, long id, struct worker_ref *out);

/* ---- metrics ---- */
struct metrics {
	long runs[6];                   /* queued, running, requires_action, completed, failed,
	                                 * cancelled */
	long attempts;                  /* sum of attempts over all runs */
	long takeovers;                 /* sum of takeovers over all runs */
	long workers;                   /* live worker rows */
	long pods;                      /* distinct pods among them */
	char *counters_json;            /* retired + live worker counters; caller frees */
	char *watchers_json;            /* {"<pod>": {"watchers","generators"}} of live workers; caller frees */
};
/* The figures, computed at most max_age_ms ago (by any worker: one shared cache). */
TE_MUST_CHECK int store_metrics(struct store *st, int max_age_ms, struct metrics *m);
void store_metrics_free(struct metrics *m);

/* ---- migrations (tetherctl) ---- */
/* Apply pending sql/NNNN_*.sql files in order, in one transaction, under an advisory
 * lock. *applied is how many files this call applied. */
TE_MUST_CHECK int store_migrate(const char *database_url, const char *sql_dir, int connect_timeout_s,
    int *applied, char *err, size_t errlen);
/* The highest applied migration, or 0. */
TE_MUST_CHECK int store_schema_version(struct store *st, int *version);

#endif
