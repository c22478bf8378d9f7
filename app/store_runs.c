/* store_runs.c - runs: create (idempotent, one active per thread), continue after
 * tool outputs, read, cancel, the generator's context, and the fenced terminal write. */
#include "store_int.h"
#include "config.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_JSON \
	"json_build_object('id', r.id, 'thread_id', r.thread_id, 'status', r.status," \
	" 'attempt', r.attempt," \
	" 'owner', CASE WHEN r.owner IS NULL THEN NULL ELSE json_build_object(" \
	"   'pod', r.owner_pod, 'pid', r.owner_pid, 'worker', r.owner) END," \
	" 'model', r.model, 'created_at', tether_ts(r.created_at)," \
	" 'started_at', tether_ts(r.started_at), 'finished_at', tether_ts(r.finished_at)," \
	" 'output', r.output, 'error', r.error, 'usage', r.usage, 'takeovers', r.takeovers," \
	" 'required_action', CASE WHEN r.status = 'requires_action'" \
	"   THEN json_build_object('tool_calls', r.tool_calls) END," \
	" 'tool_calls', r.tool_calls, 'continues', r.continues," \
	" 'continued_by', (SELECT c.id FROM runs c WHERE c.continues = r.id))"

static int
run_lookup_idem(struct store *st, struct pgc *c, const struct run_new *in, const char *hash_src,
    struct run_created *out)
{
	static const char sql[] =
	    "SELECT id, status, attempt, request_hash = sha256(convert_to($3, 'UTF8'))"
	    " FROM runs WHERE tenant_id = $1 AND idempotency_key = $2";
	const char *p[] = { in->tenant, in->idempotency_key, hash_src };
	PGresult *res;
	int rc;

	if ((rc = st_exec(st, c, sql, 3, p, &res, NULL)) != TE_OK)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return TE_NOTFOUND;
	}
	snprintf(out->run_id, sizeof out->run_id, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->status, sizeof out->status, "%s", PQgetvalue(res, 0, 1));
	out->attempt = atoi(PQgetvalue(res, 0, 2));
	out->outcome = PQgetvalue(res, 0, 3)[0] == 't' ? RUN_REPLAYED : RUN_IDEMPOTENCY_MISMATCH;
	PQclear(res);
	return TE_OK;
}

int
store_run_create(struct store *st, const struct run_new *in, struct run_created *out)
{
	static const char lock_thread[] =
	    "SELECT 1 FROM threads WHERE id = $1 AND tenant_id = $2 FOR UPDATE";
	/* The tenant's active-run limit is check-then-insert: the count and the insert
	 * happen under a per-tenant lock held to the end of the transaction, so
	 * concurrent creations of one tenant count one after another. */
	static const char lock_tenant[] =
	    "SELECT pg_advisory_xact_lock(" TENANT_LOCK_CLASS_STR ", hashtext($1::text))";
	static const char active[] =
	    "SELECT (SELECT id FROM runs WHERE thread_id = $1"
	    "   AND status IN ('queued', 'running', 'requires_action')),"
	    " (SELECT count(*) FROM runs WHERE tenant_id = $2 AND status IN ('queued', 'running'))";
	static const char insert[] =
	    "WITH r AS (INSERT INTO runs (tenant_id, thread_id, status, owner, owner_pod, owner_pid,"
	    "   attempt, idempotency_key, request_hash, request, model, started_at)"
	    "  VALUES ($1, $2, 'running', $3, $4, $5, 1, $6,"
	    "   CASE WHEN $6::text IS NULL THEN NULL ELSE sha256(convert_to($7, 'UTF8')) END,"
	    "   $8::jsonb, $9, clock_timestamp()) RETURNING id, tenant_id, thread_id)"
	    " INSERT INTO messages (tenant_id, thread_id, role, content, run_id)"
	    " SELECT tenant_id, thread_id, 'user', $10, id FROM r RETURNING run_id";
	char worker[24], pid[16], *hash_src = NULL;
	const char *p1[] = { in->thread_id, in->tenant };
	const char *p2[] = { in->thread_id, in->tenant };
	PGresult *res = NULL;
	struct pgerr e;
	struct pgc *c;
	size_t hn;
	int rc;

	memset(out, 0, sizeof *out);
	snprintf(worker, sizeof worker, "%ld", in->worker);
	snprintf(pid, sizeof pid, "%d", (int)in->pid);
	/* The idempotency fingerprint covers the thread and the whole request. */
	hn = strlen(in->thread_id) + strlen(in->request_json) + 2;
	if (!(hash_src = malloc(hn)))
		return TE_NOMEM;
	snprintf(hash_src, hn, "%s\n%s", in->thread_id, in->request_json);

	if ((rc = st_tx_lock_row(st, lock_thread, 2, p1, &c, &res)) != TE_OK) {
		free(hash_src);
		return rc;
	}
	PQclear(res);
	res = NULL;
	if (in->idempotency_key) {
		rc = run_lookup_idem(st, c, in, hash_src, out);
		if (rc == TE_OK)
			goto rollback;          /* replay or mismatch: nothing to write */
		if (rc != TE_NOTFOUND)
			goto rollback;
	}
	{
		const char *pt[] = { in->tenant };

		if ((rc = st_exec(st, c, lock_tenant, 1, pt, NULL, NULL)) != TE_OK)
			goto rollback;
	}
	if ((rc = st_exec(st, c, active, 2, p2, &res, NULL)) != TE_OK)
		goto rollback;
	if (!PQgetisnull(res, 0, 0)) {
		out->outcome = RUN_THREAD_BUSY;
		snprintf(out->active_run_id, sizeof out->active_run_id, "%s", PQgetvalue(res, 0, 0));
		rc = TE_OK;
		goto rollback;
	}
	if (atol(PQgetvalue(res, 0, 1)) >= in->tenant_max_active) {
		out->outcome = RUN_TENANT_LIMIT;
		rc = TE_OK;
		goto rollback;
	}
	PQclear(res);
	res = NULL;
	{
		const char *p[] = { in->tenant, in->thread_id, worker, in->pod, pid,
		    in->idempotency_key, hash_src, in->request_json, in->model, in->input };

		rc = st_exec(st, c, insert, 10, p, &res, &e);
	}
	if (rc == TE_DB && !strcmp(e.state, "23505")) {
		/* A concurrent request won a unique index: report what it made. */
		st_tx(st, c, "ROLLBACK");
		if (!strcmp(e.constraint, "runs_idempotency") && in->idempotency_key) {
			rc = run_lookup_idem(st, c, in, hash_src, out);
		} else {
			if ((rc = st_exec(st, c, active, 2, p2, &res, NULL)) == TE_OK) {
				out->outcome = RUN_THREAD_BUSY;
				snprintf(out->active_run_id, sizeof out->active_run_id, "%s",
				    PQgetvalue(res, 0, 0));
			}
		}
		goto out;
	}
	if (rc != TE_OK)
		goto rollback;
	snprintf(out->run_id, sizeof out->run_id, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->status, sizeof out->status, "running");
	out->attempt = 1;
	out->outcome = RUN_CREATED;
	rc = st_tx(st, c, "COMMIT");
	goto out;
rollback:
	if (c->conn)
		st_tx(st, c, "ROLLBACK");
out:
	PQclear(res);
	pgc_release(st, c);
	free(hash_src);
	return rc;
}

/* The continuation of run_id, if any: replay when its fingerprint matches. */
static int
continuation_lookup(struct store *st, struct pgc *c, const struct run_continue *in,
    const char *hash_src, struct run_continued *out)
{
	static const char by_key[] =
	    "SELECT id, thread_id, status, attempt, request_hash = sha256(convert_to($3, 'UTF8'))"
	    " FROM runs WHERE tenant_id = $1 AND idempotency_key = $2";
	static const char by_run[] =
	    "SELECT id, thread_id, status, attempt, request_hash = sha256(convert_to($2, 'UTF8'))"
	    " FROM runs WHERE continues = $1";
	const char *pk[] = { in->tenant, in->idempotency_key, hash_src };
	const char *pr[] = { in->run_id, hash_src };
	PGresult *res;
	int rc;

	if (in->idempotency_key)
		rc = st_exec(st, c, by_key, 3, pk, &res, NULL);
	else
		rc = st_exec(st, c, by_run, 2, pr, &res, NULL);
	if (rc != TE_OK)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return TE_NOTFOUND;
	}
	snprintf(out->run_id, sizeof out->run_id, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->thread_id, sizeof out->thread_id, "%s", PQgetvalue(res, 0, 1));
	snprintf(out->status, sizeof out->status, "%s", PQgetvalue(res, 0, 2));
	out->attempt = atoi(PQgetvalue(res, 0, 3));
	out->outcome = PQgetvalue(res, 0, 4)[0] == 't' ? CONT_REPLAYED
	    : in->idempotency_key ? CONT_IDEMPOTENCY_MISMATCH : CONT_NOT_WAITING;
	PQclear(res);
	return TE_OK;
}

/* By the Idempotency-Key first, then the run's continuation made without it. */
static int
continuation_find(struct store *st, struct pgc *c, const struct run_continue *in,
    const char *hash_src, struct run_continued *out)
{
	struct run_continue any = *in;
	int rc = continuation_lookup(st, c, in, hash_src, out);

	if (rc != TE_NOTFOUND || !in->idempotency_key)
		return rc;
	any.idempotency_key = NULL;
	return continuation_lookup(st, c, &any, hash_src, out);
}

int
store_run_continue(struct store *st, const struct run_continue *in, struct run_continued *out)
{
	static const char lock_run[] =
	    "SELECT status, thread_id FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE";
	static const char lock_tenant[] =
	    "SELECT pg_advisory_xact_lock(" TENANT_LOCK_CLASS_STR ", hashtext($1::text))";
	static const char count[] =
	    "SELECT count(*) FROM runs WHERE tenant_id = $1 AND status IN ('queued', 'running')";
	/* The run is completed (its reply asked for tools and got them); the
	 * continuation inherits its model and request (tools, tool_choice, params). */
	static const char insert[] =
	    "WITH o AS (UPDATE runs SET status = 'completed' WHERE id = $1 AND status = 'requires_action'"
	    "   RETURNING id, tenant_id, thread_id, model, request),"
	    " r AS (INSERT INTO runs (tenant_id, thread_id, status, owner, owner_pod, owner_pid, attempt,"
	    "   idempotency_key, request_hash, request, model, continues, tool_outputs, started_at)"
	    "  SELECT tenant_id, thread_id, 'running', $2, $3, $4, 1, $5, sha256(convert_to($6, 'UTF8')),"
	    "   (request - 'input') || jsonb_build_object('continues', id, 'tool_outputs', $7::jsonb),"
	    "   model, id, $7::jsonb, clock_timestamp() FROM o"
	    "  RETURNING id, tenant_id, thread_id),"
	    " m AS (INSERT INTO messages (tenant_id, thread_id, role, content, tool_call_id, run_id)"
	    "  SELECT r.tenant_id, r.thread_id, 'tool', e.v->>'output', e.v->>'tool_call_id', r.id"
	    "  FROM r, jsonb_array_elements($7::jsonb) WITH ORDINALITY AS e(v, i) ORDER BY e.i"
	    "  RETURNING 1)"
	    " SELECT r.id, r.thread_id, (SELECT count(*) FROM m) FROM r";
	char worker[24], pid[16], *hash_src;
	const char *p1[] = { in->run_id, in->tenant };
	const char *pt[] = { in->tenant };
	PGresult *res = NULL;
	struct pgerr e;
	struct pgc *c;
	size_t hn;
	int rc;

	memset(out, 0, sizeof *out);
	snprintf(worker, sizeof worker, "%ld", in->worker);
	snprintf(pid, sizeof pid, "%d", (int)in->pid);
	/* The fingerprint: this run and the outputs (as the caller's order of calls). */
	hn = strlen(in->run_id) + strlen(in->outputs_json) + 32;
	if (!(hash_src = malloc(hn)))
		return TE_NOMEM;
	snprintf(hash_src, hn, "tool_outputs\n%s\n%s", in->run_id, in->outputs_json);
	if ((rc = st_tx_lock_row(st, lock_run, 2, p1, &c, &res)) != TE_OK) {
		free(hash_src);
		return rc;
	}
	snprintf(out->status, sizeof out->status, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->thread_id, sizeof out->thread_id, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	res = NULL;
	if ((rc = continuation_find(st, c, in, hash_src, out)) != TE_NOTFOUND)
		goto rollback;
	if (strcmp(out->status, "requires_action") != 0) {
		out->outcome = CONT_NOT_WAITING;
		rc = TE_OK;
		goto rollback;
	}
	if ((rc = st_exec(st, c, lock_tenant, 1, pt, NULL, NULL)) != TE_OK ||
	    (rc = st_exec(st, c, count, 1, pt, &res, NULL)) != TE_OK)
		goto rollback;
	if (atol(PQgetvalue(res, 0, 0)) >= in->tenant_max_active) {
		out->outcome = CONT_TENANT_LIMIT;
		rc = TE_OK;
		goto rollback;
	}
	PQclear(res);
	res = NULL;
	{
		const char *p[] = { in->run_id, worker, in->pod, pid, in->idempotency_key, hash_src,
		    in->outputs_json };

		rc = st_exec(st, c, insert, 7, p, &res, &e);
	}
	if (rc == TE_DB && !strcmp(e.state, "23505")) {
		/* A concurrent request won (the same key, or this run's continuation). */
		st_tx(st, c, "ROLLBACK");
		rc = continuation_find(st, c, in, hash_src, out);
		goto out;
	}
	if (rc != TE_OK)
		goto rollback;
	if (PQntuples(res) != 1) {
		rc = TE_FENCED;         /* cannot happen under the row lock */
		goto rollback;
	}
	snprintf(out->run_id, sizeof out->run_id, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->status, sizeof out->status, "running");
	out->attempt = 1;
	out->outcome = CONT_CREATED;
	rc = st_tx(st, c, "COMMIT");
	goto out;
rollback:
	if (c->conn)
		st_tx(st, c, "ROLLBACK");
out:
	PQclear(res);
	pgc_release(st, c);
	free(hash_src);
	return rc;
}

int
store_run_get(struct store *st, const char *tenant, const char *id, char **json)
{
	static const char sql[] = "SELECT " RUN_JSON " FROM runs r WHERE r.id = $1 AND r.tenant_id = $2";
	const char *p[] = { id, tenant };
	PGresult *res;
	int rc;

	if ((rc = st_query_row(st, sql, 2, p, &res)) != TE_OK)
		return rc;
	*json = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return *json ? TE_OK : TE_NOMEM;
}

int
store_run_state(struct store *st, const char *tenant, const char *id, struct run_state *out)
{
	static const char sql[] =
	    "SELECT id, thread_id, status, attempt, owner, output, error::text, tool_calls::text,"
	    " COALESCE(jsonb_array_length(tool_calls), 0) FROM runs"
	    " WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)";
	const char *p[] = { id, tenant };
	PGresult *res;
	int rc;

	if ((rc = st_query_row(st, sql, 2, p, &res)) != TE_OK)
		return rc;
	memset(out, 0, sizeof *out);
	snprintf(out->id, sizeof out->id, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->thread_id, sizeof out->thread_id, "%s", PQgetvalue(res, 0, 1));
	snprintf(out->status, sizeof out->status, "%s", PQgetvalue(res, 0, 2));
	out->attempt = atoi(PQgetvalue(res, 0, 3));
	out->owner = PQgetisnull(res, 0, 4) ? 0 : atol(PQgetvalue(res, 0, 4));
	out->terminal = strcmp(out->status, "queued") && strcmp(out->status, "running");
	out->output = pg_strdup(res, 0, 5);
	out->output_len = out->output ? (size_t)PQgetlength(res, 0, 5) : 0;
	out->error_json = pg_strdup(res, 0, 6);
	out->tool_calls_json = pg_strdup(res, 0, 7);
	out->ncalls = atoi(PQgetvalue(res, 0, 8));
	PQclear(res);
	return TE_OK;
}

void
store_run_state_free(struct run_state *s)
{
	if (!s)
		return;
	free(s->output);
	free(s->error_json);
	free(s->tool_calls_json);
	s->output = s->error_json = s->tool_calls_json = NULL;
}

int
store_run_cancel(struct store *st, const char *tenant, const char *id, struct run_cancel *out)
{
	static const char upd[] =
	    "UPDATE runs SET status = 'cancelled', finished_at = clock_timestamp()"
	    " WHERE id = $1 AND tenant_id = $2 AND status IN ('queued', 'running', 'requires_action')"
	    " RETURNING attempt, owner";
	static const char sel[] = "SELECT status, attempt, owner FROM runs WHERE id = $1 AND tenant_id = $2";
	const char *p[] = { id, tenant };
	PGresult *res;
	struct pgc *c;
	int rc;

	memset(out, 0, sizeof *out);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if ((rc = st_exec(st, c, upd, 2, p, &res, NULL)) != TE_OK)
		goto out;
	if (PQntuples(res) == 1) {
		out->changed = 1;
		snprintf(out->status, sizeof out->status, "cancelled");
		out->attempt = atoi(PQgetvalue(res, 0, 0));
		out->owner = PQgetisnull(res, 0, 1) ? 0 : atol(PQgetvalue(res, 0, 1));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	if ((rc = st_exec(st, c, sel, 2, p, &res, NULL)) != TE_OK)
		goto out;
	if (PQntuples(res) != 1) {
		rc = TE_NOTFOUND;
	} else {
		snprintf(out->status, sizeof out->status, "%s", PQgetvalue(res, 0, 0));
		out->attempt = atoi(PQgetvalue(res, 0, 1));
		out->owner = PQgetisnull(res, 0, 2) ? 0 : atol(PQgetvalue(res, 0, 2));
	}
	PQclear(res);
out:
	pgc_release(st, c);
	return rc;
}

int
store_run_context(struct store *st, const char *run_id, struct run_ctx *out)
{
	/* History ends before the run's user message, or for a continuation just
	 * after its tool messages. */
	static const char run_sql[] =
	    "SELECT thread_id, model, request->>'input', (request->'params')::text,"
	    " COALESCE((SELECT min(m.seq) FROM messages m WHERE m.run_id = r.id AND m.role = 'user'),"
	    "   (SELECT max(m.seq) + 1 FROM messages m WHERE m.run_id = r.id AND m.role = 'tool')),"
	    " COALESCE((SELECT l.max_output_bytes FROM tenant_limits l"
	    "   WHERE l.tenant_id = r.tenant_id), $2::bigint)"
	    "," " (request->'tools')::text, (request->'tool_choice')::text, r.continues IS NOT NULL"
	    " FROM runs r WHERE r.id = $1";
	/* The newest whole turns (a user message and what follows it: replies, tool
	 * calls and outputs) within $3 bytes and $4 turns, counted from the newest back;
	 * older ones are left out. A continuation ($5) keeps its own turn whatever its
	 * size: the tool loop in progress. */
	static const char hist_sql[] =
	    "SELECT role, content, tool_calls::text, tool_call_id FROM messages"
	    " WHERE thread_id = $1 AND seq < $2 AND seq >= ("
	    " SELECT min(seq) FROM (SELECT seq, role,"
	    "   sum(octet_length(COALESCE(content, '')) + COALESCE(octet_length(tool_calls::text), 0)"
	    "     + COALESCE(octet_length(tool_call_id), 0)) OVER w AS bytes,"
	    "   count(*) FILTER (WHERE role = 'user') OVER w AS turns"
	    "   FROM messages WHERE thread_id = $1 AND seq < $2"
	    "   WINDOW w AS (ORDER BY seq DESC)) h"
	    " WHERE role = 'user' AND ((bytes <= $3 AND turns <= $4) OR (turns = 1 AND $5::bool)))"
	    " ORDER BY seq";
	PGresult *res = NULL;
	char dflt[24];
	const char *p[] = { run_id, dflt };
	struct pgc *c;
	int rc, n;

	memset(out, 0, sizeof *out);
	snprintf(dflt, sizeof dflt, "%d", st->cfg->tenant_max_output_bytes);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if ((rc = st_exec(st, c, run_sql, 2, p, &res, NULL)) != TE_OK)
		goto out;
	if (PQntuples(res) != 1) {
		rc = TE_NOTFOUND;
		goto out;
	}
	snprintf(out->thread_id, sizeof out->thread_id, "%s", PQgetvalue(res, 0, 0));
	snprintf(out->model, sizeof out->model, "%s", PQgetvalue(res, 0, 1));
	out->input = pg_strdup(res, 0, 2);
	out->params_json = pg_strdup(res, 0, 3);
	out->max_output_bytes = atol(PQgetvalue(res, 0, 5));
	out->tools_json = pg_strdup(res, 0, 6);
	out->tool_choice_json = pg_strdup(res, 0, 7);
	if (!out->input && PQgetvalue(res, 0, 8)[0] != 't') {
		rc = TE_INVAL;          /* neither an input nor a continuation */
		goto out;
	}
	{
		char seq[24], bytes[24], turns[24], cont[2];
		const char *q[] = { out->thread_id, seq, bytes, turns, cont };
		long budget = (long)st->cfg->history_max_bytes -
		    (long)(out->input ? strlen(out->input) : 0);

		/* What the history may add to the input (history_max_bytes in all). */
		snprintf(bytes, sizeof bytes, "%ld", budget > 0 ? budget : 0);
		snprintf(turns, sizeof turns, "%d", st->cfg->history_max_turns);
		snprintf(cont, sizeof cont, "%c", PQgetvalue(res, 0, 8)[0] == 't' ? 't' : 'f');

		/* No user message recorded: the whole thread is history. */
		snprintf(seq, sizeof seq, "%s",
		    PQgetisnull(res, 0, 4) ? "9223372036854775807" : PQgetvalue(res, 0, 4));
		PQclear(res);
		res = NULL;
		if ((rc = st_exec(st, c, hist_sql, 5, q, &res, NULL)) != TE_OK)
			goto out;
	}
	n = PQntuples(res);
	if (n > 0 && !(out->history = calloc((size_t)n, sizeof *out->history))) {
		rc = TE_NOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		snprintf(out->history[i].role, sizeof out->history[i].role, "%s", PQgetvalue(res, i, 0));
		out->nhistory++;
		if (!(out->history[i].content = pg_strdup(res, i, 1))) {
			rc = TE_NOMEM;
			goto out;
		}
		if ((!PQgetisnull(res, i, 2) && !(out->history[i].tool_calls_json = pg_strdup(res, i, 2))) ||
		    (!PQgetisnull(res, i, 3) && !(out->history[i].tool_call_id = pg_strdup(res, i, 3)))) {
			rc = TE_NOMEM;
			goto out;
		}
	}
out:
	PQclear(res);
	pgc_release(st, c);
	if (rc != TE_OK)
		store_run_context_free(out);
	return rc;
}

void
store_run_context_free(struct run_ctx *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nhistory; i++) {
		free(c->history[i].content);
		free(c->history[i].tool_calls_json);
		free(c->history[i].tool_call_id);
	}
	free(c->history);
	free(c->input);
	free(c->params_json);
	free(c->tools_json);
	free(c->tool_choice_json);
	memset(c, 0, sizeof *c);
}

int
store_run_finish(struct store *st, const char *run_id, int attempt, long worker,
    const char *status, const char *output, size_t output_len, const char *error_json,
    const char *usage_json, const char *tool_calls_json)
{
	static const char sql[] =
	    "WITH u AS (UPDATE runs SET status = $4, output = $5, error = $6::jsonb,"
	    "   usage = COALESCE($7::jsonb, usage), tool_calls = $8::jsonb,"
	    "   finished_at = clock_timestamp()"
	    "  WHERE id = $1 AND attempt = $2 AND owner = $3 AND status = 'running'"
	    "  RETURNING id, tenant_id, thread_id),"
	    " m AS (INSERT INTO messages (tenant_id, thread_id, role, content, tool_calls, run_id)"
	    "  SELECT tenant_id, thread_id, 'assistant', COALESCE($5, ''), $8::jsonb, id FROM u"
	    "  WHERE $4 IN ('completed', 'requires_action')"
	    "  RETURNING 1)"
	    " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM m)";
	char a[16], w[24];
	const char *p[] = { run_id, a, w, status, output, error_json, usage_json, tool_calls_json };
	PGresult *res;
	int rc;

	(void)output_len;
	snprintf(a, sizeof a, "%d", attempt);
	snprintf(w, sizeof w, "%ld", worker);
	if ((rc = st_query(st, sql, 8, p, &res)) != TE_OK)
		return rc;
	rc = atoi(PQgetvalue(res, 0, 0)) == 1 ? TE_OK : TE_FENCED;
	PQclear(res);
	return rc;
}

int
store_run_release(struct store *st, const char *run_id, int attempt, long worker)
{
	static const char sql[] =
	    "UPDATE runs SET owner = NULL, owner_pod = NULL, owner_pid = NULL"
	    " WHERE id = $1 AND attempt = $2 AND owner = $3 AND status = 'running'";
	char a[16], w[24];
	const char *p[] = { run_id, a, w };
	PGresult *res;
	int rc;

	snprintf(a, sizeof a, "%d", attempt);
	snprintf(w, sizeof w, "%ld", worker);
	if ((rc = st_query(st, sql, 3, p, &res)) != TE_OK)
		return rc;
	rc = strcmp(PQcmdTuples(res), "1") == 0 ? TE_OK : TE_FENCED;
	PQclear(res);
	return rc;
}

int
store_run_charge_crash(struct store *st, const char *run_id, int attempt, int max_attempts,
    int *failed_now, int *cur_attempt, char **error_json)
{
	static const char sql[] =
	    "UPDATE runs r SET crashes = r.crashes + 1, crashed_attempt = $2,"
	    "  status = CASE WHEN f.fail THEN 'failed' ELSE r.status END,"
	    "  finished_at = CASE WHEN f.fail THEN clock_timestamp() ELSE r.finished_at END,"
	    "  error = CASE WHEN f.fail THEN jsonb_build_object('code', 'too_many_attempts',"
	    "    'message', format('the run crashed the worker generating it %s times',"
	    "    r.crashes + 1)) ELSE r.error END"
	    " FROM (SELECT id, status = 'running' AND crashes + 1 >= $3 AS fail FROM runs"
	    "   WHERE id = $1 AND crashed_attempt < $2 AND attempt >= $2 FOR UPDATE) f"
	    " WHERE r.id = f.id RETURNING f.fail, r.attempt, r.error::text";
	char a[16], m[16];
	const char *p[] = { run_id, a, m };
	PGresult *res;
	int rc;

	*failed_now = 0;
	snprintf(a, sizeof a, "%d", attempt);
	snprintf(m, sizeof m, "%d", max_attempts);
	if ((rc = st_query(st, sql, 3, p, &res)) != TE_OK)
		return rc;
	if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't') {
		*cur_attempt = atoi(PQgetvalue(res, 0, 1));
		if (!(*error_json = pg_strdup(res, 0, 2))) {
			PQclear(res);
			return TE_NOMEM;
		}
		*failed_now = 1;
	}
	rc = PQntuples(res) == 1 ? TE_OK : TE_NOTFOUND;
	PQclear(res);
	return rc;
}

int
store_runs_purge_claim(struct store *st, int grace_s, int max, char (**ids)[UUID_LEN + 1],
    size_t *n)
{
	static const char sql[] =
	    "UPDATE runs SET purged_at = clock_timestamp() WHERE id IN ("
	    " SELECT id FROM runs WHERE purged_at IS NULL"
	    "  AND status IN ('completed', 'failed', 'cancelled')"
	    "  AND finished_at < clock_timestamp() - make_interval(secs => $1::integer)"
	    "  ORDER BY finished_at LIMIT $2::integer FOR UPDATE SKIP LOCKED)"
	    " RETURNING id";
	char g[24], m[24];
	const char *p[] = { g, m };
	char (*v)[UUID_LEN + 1] = NULL;
	PGresult *res;
	int rc, rows;

	snprintf(g, sizeof g, "%d", grace_s);
	snprintf(m, sizeof m, "%d", max);
	if ((rc = st_query(st, sql, 2, p, &res)) != TE_OK)
		return rc;
	rows = PQntuples(res);
	if (rows > 0 && !(v = calloc((size_t)rows, sizeof *v))) {
		PQclear(res);
		return TE_NOMEM;
	}
	for (int i = 0; i < rows; i++)
		snprintf(v[i], sizeof v[i], "%s", PQgetvalue(res, i, 0));
	PQclear(res);
	*ids = v;
	*n = (size_t)rows;
	return TE_OK;
}

int
store_run_purge_undo(struct store *st, const char *run_id)
{
	static const char sql[] = "UPDATE runs SET purged_at = NULL WHERE id = $1";
	const char *p[] = { run_id };
	PGresult *res;
	int rc;

	if ((rc = st_query(st, sql, 1, p, &res)) != TE_OK)
		return rc;
	PQclear(res);
	return TE_OK;
}
