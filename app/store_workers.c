/* store_workers.c - worker liveness (advisory locks) and the takeover claims.
 * DESIGN.md "Ownership, liveness and takeover" is the specification. */
#include "store_int.h"
#include "config.h"
#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCK_CLASS_STR "1952805748"
/* max_attempts counts crashes (docs/DESIGN.md "Poison runs"), not takeovers. */
#define TOO_MANY_ATTEMPTS \
	"jsonb_build_object('code', 'too_many_attempts', 'message'," \
	" format('the run crashed the worker generating it %s times', crashes))"

struct store_live {
	const struct config *cfg;
	struct pgc c;
	long id;
	char pod[64];
	pid_t pid;
	char app_name[64];
};

static int
live_lock_and_mark(struct store_live *lv, int insert)
{
	static const char lock[] = "SELECT pg_advisory_lock(" LOCK_CLASS_STR ", $1::int)";
	static const char ins[] =
	    "INSERT INTO workers (id, pod, pid, backend_pid, pg_start)"
	    " VALUES ($1, $2, $3, pg_backend_pid(), pg_postmaster_start_time())";
	static const char upd[] =
	    "UPDATE workers SET backend_pid = pg_backend_pid(), pg_start = pg_postmaster_start_time(),"
	    " heartbeat_at = clock_timestamp() WHERE id = $1";
	char id[24], pid[16];
	const char *p[] = { id, lv->pod, pid };
	PGresult *res;
	int rc;

	snprintf(id, sizeof id, "%ld", lv->id);
	snprintf(pid, sizeof pid, "%d", (int)lv->pid);
	/* Lock before row: no prober can see the row without the lock held. A prober's
	 * transaction may hold it for a moment; pg_advisory_lock waits that out. */
	if ((rc = pg_exec(&lv->c, (int64_t)lv->cfg->statement_timeout_ms + 1000, lock, 1, p, NULL,
	    NULL)) != TE_OK)
		return rc;
	if (insert)
		return pg_exec(&lv->c, lv->cfg->statement_timeout_ms, ins, 3, p, NULL, NULL);
	if ((rc = pg_exec(&lv->c, lv->cfg->statement_timeout_ms, upd, 1, p, &res, NULL)) != TE_OK)
		return rc;
	rc = strcmp(PQcmdTuples(res), "1") == 0 ? TE_OK : TE_NOTFOUND;
	PQclear(res);
	return rc;
}

static int
live_connect(struct store_live *lv)
{
	char err[256];

	if (lv->c.conn)
		PQfinish(lv->c.conn);
	if (!(lv->c.conn = pg_connect(lv->cfg, lv->app_name, 1, err, sizeof err))) {
		tlog(LOG_WARN, "could not open the liveness connection: %s", err);
		return TE_DB;
	}
	return TE_OK;
}

int
store_live_open(struct store_live **out, const struct config *cfg, const char *pod, pid_t pid,
    long *worker_id)
{
	struct store_live *lv = calloc(1, sizeof *lv);
	PGresult *res;
	int rc;

	if (!lv)
		return TE_NOMEM;
	lv->cfg = cfg;
	lv->pid = pid;
	snprintf(lv->pod, sizeof lv->pod, "%s", pod);
	snprintf(lv->app_name, sizeof lv->app_name, "tetherd-live/%s/%d", pod, (int)pid);
	if ((rc = live_connect(lv)) != TE_OK)
		goto fail;
	if ((rc = pg_exec(&lv->c, cfg->statement_timeout_ms, "SELECT nextval('worker_seq')", 0, NULL,
	    &res, NULL)) != TE_OK)
		goto fail;
	lv->id = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	if ((rc = live_lock_and_mark(lv, 1)) != TE_OK)
		goto fail;
	*worker_id = lv->id;
	*out = lv;
	return TE_OK;
fail:
	if (lv->c.conn)
		PQfinish(lv->c.conn);
	free(lv);
	return rc;
}

int
store_live_heartbeat(struct store_live *lv, const char *counters_json)
{
	static const char sql[] =
	    "UPDATE workers SET heartbeat_at = clock_timestamp(), counters = $2::jsonb WHERE id = $1";
	char id[24];
	const char *p[] = { id, counters_json };
	PGresult *res;
	int rc;

	if (!lv->c.conn || PQstatus(lv->c.conn) != CONNECTION_OK)
		return TE_DB;
	snprintf(id, sizeof id, "%ld", lv->id);
	if ((rc = pg_exec(&lv->c, lv->cfg->statement_timeout_ms, sql, 2, p, &res, NULL)) != TE_OK)
		return rc == TE_TIMEOUT ? TE_DB : rc;
	rc = strcmp(PQcmdTuples(res), "1") == 0 ? TE_OK : TE_NOTFOUND;
	PQclear(res);
	return rc;
}

int
store_live_reconnect(struct store_live *lv)
{
	int rc;

	if ((rc = live_connect(lv)) != TE_OK)
		return rc;
	return live_lock_and_mark(lv, 0);
}

void
store_live_close(struct store_live *lv, int delete_row)
{
	if (!lv)
		return;
	if (delete_row && lv->c.conn) {
		char id[24];
		const char *p[] = { id };

		snprintf(id, sizeof id, "%ld", lv->id);
		pg_exec(&lv->c, 2000, "DELETE FROM workers WHERE id = $1", 1, p, NULL, NULL);
	}
	if (lv->c.conn)
		PQfinish(lv->c.conn);
	free(lv);
}

static int
collect(PGresult *res, struct claim_set *s, long old_owner)
{
	for (int i = 0; i < PQntuples(res); i++) {
		long owner = PQnfields(res) > 2 && !PQgetisnull(res, i, 2) ? atol(PQgetvalue(res, i, 2))
		    : old_owner;
		int rc = claim_set_add(s, PQgetvalue(res, i, 0), atoi(PQgetvalue(res, i, 1)), owner);
		if (rc != TE_OK)
			return rc;
	}
	return TE_OK;
}

int
store_probe_claim(struct store *st, long me, const char *pod, pid_t pid, long dead,
    const char *run_id, int seen_attempt, int max_claim, int max_attempts, int grace_s,
    enum probe_result *result, struct claim_set *claimed, struct claim_set *failed)
{
	/* Committed on its own (the probe's transaction may roll back): the first time
	 * anyone saw this server incarnation. */
	static const char seen[] =
	    "INSERT INTO pg_incarnations (started) VALUES (pg_postmaster_start_time())"
	    " ON CONFLICT DO NOTHING";
	/* In grace: the worker took its lock on another server incarnation (before a
	 * restart or a failover) and this one was first seen less than grace_s ago. */
	static const char probe[] =
	    "SELECT w.pg_start <> pg_postmaster_start_time()"
	    "   AND clock_timestamp() < COALESCE((SELECT first_seen FROM pg_incarnations"
	    "     WHERE started = pg_postmaster_start_time()), clock_timestamp())"
	    "     + make_interval(secs => $2),"
	    " pg_try_advisory_xact_lock(" LOCK_CLASS_STR ", w.id::int)"
	    " FROM workers w WHERE w.id = $1";
	/* The compare-and-swap: owner, attempt and status as read. */
	static const char claim[] =
	    "UPDATE runs SET attempt = attempt + 1, owner = $2, owner_pod = $3, owner_pid = $4,"
	    "  takeovers = takeovers + 1"
	    " WHERE id IN (SELECT id FROM runs WHERE owner = $1 AND status = 'running'"
	    "   AND crashes < $6 AND ($7::uuid IS NULL OR (id = $7 AND attempt = $8))"
	    "   ORDER BY created_at LIMIT $5 FOR UPDATE SKIP LOCKED)"
	    "  AND owner = $1 AND status = 'running'"
	    " RETURNING id, attempt";
	static const char fail[] =
	    "UPDATE runs SET status = 'failed', finished_at = clock_timestamp(), error = "
	    TOO_MANY_ATTEMPTS
	    " WHERE owner = $1 AND status = 'running' AND crashes >= $2"
	    "  AND ($3::uuid IS NULL OR id = $3) RETURNING id, attempt";
	static const char del[] = "DELETE FROM workers WHERE id = $1";
	char d[24], m[24], pd[16], lim[16], ma[16], sa[16], gr[16];
	PGresult *res = NULL;
	struct pgc *c;
	int rc, alive = 0;

	*result = PROBE_ALIVE;
	snprintf(d, sizeof d, "%ld", dead);
	snprintf(m, sizeof m, "%ld", me);
	snprintf(pd, sizeof pd, "%d", (int)pid);
	snprintf(lim, sizeof lim, "%d", max_claim);
	snprintf(ma, sizeof ma, "%d", max_attempts);
	snprintf(sa, sizeof sa, "%d", seen_attempt);
	snprintf(gr, sizeof gr, "%d", grace_s);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if ((rc = st_exec(st, c, seen, 0, NULL, NULL, NULL)) != TE_OK ||
	    (rc = st_tx(st, c, "BEGIN")) != TE_OK)
		goto out;
	{
		const char *p[] = { d, gr };

		if ((rc = st_exec(st, c, probe, 2, p, &res, NULL)) != TE_OK)
			goto rollback;
	}
	if (PQntuples(res) == 1) {
		/* In the grace window after a PostgreSQL restart, a free lock proves nothing. */
		if (PQgetvalue(res, 0, 0)[0] == 't' || PQgetvalue(res, 0, 1)[0] != 't')
			alive = 1;
		*result = PROBE_DEAD;
	} else {
		*result = PROBE_GONE;
	}
	PQclear(res);
	res = NULL;
	if (alive) {
		*result = PROBE_ALIVE;
		goto rollback;
	}
	{
		const char *p[] = { d, m, pod, pd, lim, ma, run_id, sa };

		if ((rc = st_exec(st, c, claim, 8, p, &res, NULL)) != TE_OK)
			goto rollback;
		if ((rc = collect(res, claimed, dead)) != TE_OK)
			goto rollback;
		PQclear(res);
		res = NULL;
	}
	{
		const char *p[] = { d, ma, run_id };

		if ((rc = st_exec(st, c, fail, 3, p, &res, NULL)) != TE_OK)
			goto rollback;
		if ((rc = collect(res, failed, dead)) != TE_OK)
			goto rollback;
		PQclear(res);
		res = NULL;
	}
	if (*result == PROBE_DEAD) {
		const char *p[] = { d };

		if ((rc = st_exec(st, c, del, 1, p, NULL, NULL)) != TE_OK)
			goto rollback;
	}
	rc = st_tx(st, c, "COMMIT");
	goto out;
rollback:
	if (c->conn)
		st_tx(st, c, "ROLLBACK");
out:
	PQclear(res);
	pgc_release(st, c);
	return rc;
}

int
store_workers_list(struct store *st, struct worker_ref **v, size_t *n)
{
	PGresult *res;
	int rc, k;

	if ((rc = st_query(st, "SELECT id, pod, pid FROM workers ORDER BY id", 0, NULL, &res)) != TE_OK)
		return rc;
	k = PQntuples(res);
	*v = calloc(k ? (size_t)k : 1, sizeof **v);
	if (!*v) {
		PQclear(res);
		return TE_NOMEM;
	}
	for (int i = 0; i < k; i++) {
		(*v)[i].id = atol(PQgetvalue(res, i, 0));
		snprintf((*v)[i].pod, sizeof (*v)[i].pod, "%s", PQgetvalue(res, i, 1));
		(*v)[i].pid = atoi(PQgetvalue(res, i, 2));
	}
	*n = (size_t)k;
	PQclear(res);
	return TE_OK;
}

int
store_worker_get(struct store *st, long id, struct worker_ref *out)
{
	char d[24];
	const char *p[] = { d };
	PGresult *res;
	int rc;

	snprintf(d, sizeof d, "%ld", id);
	if ((rc = st_query_row(st, "SELECT id, pod, pid FROM workers WHERE id = $1", 1, p, &res)) != TE_OK)
		return rc;
	out->id = id;
	snprintf(out->pod, sizeof out->pod, "%s", PQgetvalue(res, 0, 1));
	out->pid = atoi(PQgetvalue(res, 0, 2));
	PQclear(res);
	return TE_OK;
}

int
store_claim_orphans(struct store *st, long me, const char *pod, pid_t pid, int max_claim,
    int max_attempts, struct claim_set *claimed, struct claim_set *failed)
{
	/* Owner without a workers row: already declared dead by a taker that did not
	 * claim everything. Each claim is a CAS on the owner and attempt as read. */
	static const char claim[] =
	    "WITH o AS (SELECT id, owner, attempt FROM runs r WHERE status = 'running'"
	    "   AND crashes < $5"
	    "   AND (owner IS NULL OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = r.owner))"
	    "   ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
	    " UPDATE runs r SET attempt = r.attempt + 1, owner = $1, owner_pod = $2, owner_pid = $3,"
	    "  takeovers = r.takeovers + (o.owner IS NOT NULL)::int"
	    " FROM o WHERE r.id = o.id AND r.status = 'running' AND r.attempt = o.attempt"
	    "  AND r.owner IS NOT DISTINCT FROM o.owner"
	    "  AND (o.owner IS NULL OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = o.owner))"
	    " RETURNING r.id, r.attempt, o.owner";
	static const char fail[] =
	    "UPDATE runs r SET status = 'failed', finished_at = clock_timestamp(), error = "
	    TOO_MANY_ATTEMPTS
	    " WHERE status = 'running' AND crashes >= $1"
	    "  AND (owner IS NULL OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = r.owner))"
	    " RETURNING id, attempt, owner";
	char m[24], pd[16], lim[16], ma[16];
	const char *p[] = { m, pod, pd, lim, ma };
	const char *pf[] = { ma };
	PGresult *res;
	struct pgc *c;
	int rc;

	snprintf(m, sizeof m, "%ld", me);
	snprintf(pd, sizeof pd, "%d", (int)pid);
	snprintf(lim, sizeof lim, "%d", max_claim);
	snprintf(ma, sizeof ma, "%d", max_attempts);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if (max_claim > 0 && (rc = st_exec(st, c, claim, 5, p, &res, NULL)) == TE_OK) {
		rc = collect(res, claimed, 0);
		PQclear(res);
	}
	if (rc == TE_OK && (rc = st_exec(st, c, fail, 1, pf, &res, NULL)) == TE_OK) {
		rc = collect(res, failed, 0);
		PQclear(res);
	}
	pgc_release(st, c);
	return rc;
}

int
store_start_queued(struct store *st, long me, const char *pod, pid_t pid, int max_start,
    struct claim_set *started)
{
	static const char sql[] =
	    "UPDATE runs SET status = 'running', attempt = attempt + 1, owner = $1, owner_pod = $2,"
	    "  owner_pid = $3, started_at = clock_timestamp()"
	    " WHERE id IN (SELECT id FROM runs WHERE status = 'queued' ORDER BY created_at"
	    "   LIMIT $4 FOR UPDATE SKIP LOCKED) AND status = 'queued'"
	    " RETURNING id, attempt";
	char m[24], pd[16], lim[16];
	const char *p[] = { m, pod, pd, lim };
	PGresult *res;
	struct pgc *c;
	int rc;

	if (max_start <= 0)
		return TE_OK;
	snprintf(m, sizeof m, "%ld", me);
	snprintf(pd, sizeof pd, "%d", (int)pid);
	snprintf(lim, sizeof lim, "%d", max_start);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if ((rc = st_exec(st, c, sql, 4, p, &res, NULL)) == TE_OK) {
		rc = collect(res, started, 0);
		PQclear(res);
	}
	pgc_release(st, c);
	return rc;
}

int
store_reap(struct store *st, int max_run_s, struct claim_set *failed)
{
	static const char sql[] =
	    "UPDATE runs SET status = 'failed', finished_at = clock_timestamp(),"
	    " error = jsonb_build_object('code', 'timeout', 'message',"
	    "   format('the run exceeded the %s s limit', $1::int))"
	    " WHERE status IN ('queued', 'running')"
	    "  AND created_at < clock_timestamp() - make_interval(secs => $1::int)"
	    " RETURNING id, attempt, owner";
	char s[16];
	const char *p[] = { s };
	PGresult *res;
	struct pgc *c;
	int rc;

	snprintf(s, sizeof s, "%d", max_run_s);
	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	if ((rc = st_exec(st, c, sql, 1, p, &res, NULL)) == TE_OK) {
		rc = collect(res, failed, 0);
		PQclear(res);
	}
	pgc_release(st, c);
	return rc;
}
