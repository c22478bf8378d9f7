/* store.c - the connection pool and the one statement primitive with a deadline. */
#include "store_int.h"
#include "config.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACQUIRE_WAIT_MS 2000

/* TCP keepalives and tcp_user_timeout on both ends of every connection: libpq's
 * parameters for ours, the session's GUCs (sent in options) for the server's. The
 * server's side is what bounds a partition: it drops a silent client's backend, and
 * with it the liveness lock, within about tcp_user_timeout (or idle + interval *
 * count when that is 0). docs/OPERATIONS.md has the measured figures. */
PGconn *
pg_connect(const struct config *cfg, const char *app_name, int liveness, char *err, size_t errlen)
{
	char timeout[16], options[256], idle[16], intvl[16], cnt[16], uto[16];
	const char *keys[] = { "dbname", "connect_timeout", "options", "application_name",
	    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
	    "tcp_user_timeout", NULL };
	const char *vals[10];
	PGconn *conn;

	snprintf(timeout, sizeof timeout, "%d", cfg->db_connect_timeout_s);
	snprintf(idle, sizeof idle, "%d", cfg->db_keepalives_idle_s);
	snprintf(intvl, sizeof intvl, "%d", cfg->db_keepalives_interval_s);
	snprintf(cnt, sizeof cnt, "%d", cfg->db_keepalives_count);
	snprintf(uto, sizeof uto, "%d", cfg->db_tcp_user_timeout_ms);
	/* The liveness connection runs no long statements; queries get the limit. */
	snprintf(options, sizeof options, "-c statement_timeout=%d -c lock_timeout=%d"
	    " -c tcp_keepalives_idle=%d -c tcp_keepalives_interval=%d -c tcp_keepalives_count=%d"
	    " -c tcp_user_timeout=%d",
	    liveness ? 0 : cfg->statement_timeout_ms, liveness ? 0 : cfg->statement_timeout_ms,
	    cfg->db_keepalives_idle_s, cfg->db_keepalives_interval_s, cfg->db_keepalives_count,
	    cfg->db_tcp_user_timeout_ms);
	vals[0] = cfg->database_url;
	vals[1] = timeout;
	vals[2] = options;
	vals[3] = app_name;
	vals[4] = "1";
	vals[5] = idle;
	vals[6] = intvl;
	vals[7] = cnt;
	vals[8] = uto;
	vals[9] = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		const char *m = PQerrorMessage(conn);
		size_t n = strcspn(m, "\n");

		snprintf(err, errlen, "%.*s", (int)n, m);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

int
store_open(struct store **out, const struct config *cfg, const char *app_name)
{
	struct store *st = calloc(1, sizeof *st);

	if (!st)
		return TE_NOMEM;
	st->cfg = cfg;
	snprintf(st->app_name, sizeof st->app_name, "%s", app_name);
	st->n = cfg->db_pool;
	st->timeout_ms = cfg->statement_timeout_ms + 1000;
	if (!(st->conns = calloc((size_t)st->n, sizeof *st->conns))) {
		free(st);
		return TE_NOMEM;
	}
	pthread_mutex_init(&st->mu, NULL);
	cond_init_monotonic(&st->cv);
	*out = st;
	return TE_OK;
}

void
store_shutdown(struct store *st)
{
	pthread_mutex_lock(&st->mu);
	st->shutdown = 1;
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

void
store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < st->n; i++)
		if (st->conns[i].conn)
			PQfinish(st->conns[i].conn);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	free(st->conns);
	free(st);
}

/* An idle pooled connection has nothing to read: anything there is PostgreSQL
 * saying goodbye (a restart's FATAL message, pg_terminate_backend) or EOF, or at
 * worst a notice nobody needs. Either way the connection is replaced here, before
 * anything is sent on it, without doubt about what ran. */
static int
pgc_idle_ok(PGconn *conn)
{
	struct pollfd p = { .fd = PQsocket(conn), .events = POLLIN };

	if (PQstatus(conn) != CONNECTION_OK || p.fd < 0)
		return 0;
	return poll(&p, 1, 0) == 0;
}

int
pgc_acquire(struct store *st, struct pgc **out)
{
	struct timespec dl;
	struct pgc *c = NULL;
	char err[256];

	deadline_ts(&dl, ACQUIRE_WAIT_MS);
	pthread_mutex_lock(&st->mu);
	while (!st->shutdown) {
		/* Prefer an open connection; else any free slot. */
		for (int i = 0; i < st->n && !c; i++)
			if (!st->conns[i].busy && st->conns[i].conn)
				c = &st->conns[i];
		for (int i = 0; i < st->n && !c; i++)
			if (!st->conns[i].busy)
				c = &st->conns[i];
		if (c)
			break;
		if (pthread_cond_timedwait(&st->cv, &st->mu, &dl) == ETIMEDOUT)
			break;
	}
	if (c)
		c->busy = 1;
	pthread_mutex_unlock(&st->mu);
	if (!c)
		return TE_TIMEOUT;
	if (c->conn && !pgc_idle_ok(c->conn)) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	c->stmts = 0;
	c->reused = c->conn != NULL;
	if (!c->conn) {
		if (!(c->conn = pg_connect(st->cfg, st->app_name, 0, err, sizeof err))) {
			tlog(LOG_WARN, "could not connect to PostgreSQL: %s", err);
			pgc_release(st, c);
			return TE_DB;
		}
		c->opened_ms = now_ms();
	}
	*out = c;
	return TE_OK;
}

void
pgc_release(struct store *st, struct pgc *c)
{
	pthread_mutex_lock(&st->mu);
	c->busy = 0;
	pthread_cond_signal(&st->cv);
	pthread_mutex_unlock(&st->mu);
}

static void
pgc_break(struct pgc *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
}

int
pg_exec(struct pgc *c, int64_t timeout_ms, const char *sql, int nparams,
    const char *const *params, PGresult **res, struct pgerr *e)
{
	int64_t deadline = now_ms() + timeout_ms;
	PGresult *r, *keep = NULL;
	int rc = TE_OK, sock;

	if (e)
		memset(e, 0, sizeof *e);
	if (res)
		*res = NULL;
	c->sent = 0;
	if (!c->conn)
		return TE_DB;
	/* A failed send wrote less than the whole message (its Sync comes last), so
	 * the server ran nothing; from here on it may have. */
	if (!PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
		if (e)
			snprintf(e->msg, sizeof e->msg, "%s", PQerrorMessage(c->conn));
		pgc_break(c);
		return TE_DB;
	}
	c->sent = 1;
	sock = PQsocket(c->conn);
	for (;;) {
		while (PQisBusy(c->conn)) {
			struct pollfd p = { .fd = sock, .events = POLLIN };
			int64_t left = deadline - now_ms();
			int n;

			if (left <= 0) {
				if (e)
					snprintf(e->msg, sizeof e->msg, "no answer within %lld ms",
					    (long long)timeout_ms);
				pgc_break(c);
				PQclear(keep);
				return TE_TIMEOUT;
			}
			n = poll(&p, 1, (int)left);
			if (n < 0 && errno != EINTR) {
				pgc_break(c);
				PQclear(keep);
				return TE_DB;
			}
			if (n > 0 && !PQconsumeInput(c->conn)) {
				if (e)
					snprintf(e->msg, sizeof e->msg, "%s", PQerrorMessage(c->conn));
				pgc_break(c);
				PQclear(keep);
				return TE_DB;
			}
		}
		if (!(r = PQgetResult(c->conn)))
			break;
		switch (PQresultStatus(r)) {
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			if (!keep && rc == TE_OK) {
				keep = r;
				r = NULL;
			}
			break;
		default: {
			const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			const char *cn = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
			const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

			if (rc == TE_OK && e) {
				snprintf(e->state, sizeof e->state, "%s", st ? st : "");
				snprintf(e->constraint, sizeof e->constraint, "%s", cn ? cn : "");
				snprintf(e->msg, sizeof e->msg, "%s", m ? m : PQerrorMessage(c->conn));
			}
			/* 57014: statement_timeout; 55P03: lock_timeout. */
			if (st && (!strcmp(st, "57014") || !strcmp(st, "55P03")))
				rc = TE_TIMEOUT;
			else if (rc == TE_OK)
				rc = TE_DB;
			break;
		}
		}
		PQclear(r);
	}
	if (PQstatus(c->conn) != CONNECTION_OK) {
		pgc_break(c);
		if (rc == TE_OK)
			rc = TE_DB;
	}
	if (rc != TE_OK) {
		PQclear(keep);
		return rc;
	}
	if (res)
		*res = keep;
	else
		PQclear(keep);
	return TE_OK;
}

int
st_exec(struct store *st, struct pgc *c, const char *sql, int nparams,
    const char *const *params, PGresult **res, struct pgerr *e)
{
	struct pgerr local;
	char err[256];
	int rc = pg_exec(c, st->timeout_ms, sql, nparams, params, res, e ? e : &local);

	/* A pooled connection found dead at its first statement before the statement
	 * left (PostgreSQL restarted while it sat idle, and the send failed): nothing
	 * ran, so retry once on a new connection. Once sent, the statement may have
	 * run and committed with only the answer lost: running it again could repeat
	 * a write, so the error goes to the caller. (Most dead idle connections are
	 * found before this, in pgc_acquire.) */
	if (rc == TE_DB && !c->conn && !c->sent && c->stmts == 0 && c->reused) {
		c->reused = 0;
		if ((c->conn = pg_connect(st->cfg, st->app_name, 0, err, sizeof err))) {
			c->opened_ms = now_ms();
			rc = pg_exec(c, st->timeout_ms, sql, nparams, params, res, e ? e : &local);
		}
	}
	c->stmts++;

	if (rc != TE_OK && log_enabled(LOG_DEBUG)) {
		const struct pgerr *pe = e ? e : &local;
		tlog(LOG_DEBUG, "statement failed (%s): %s", pe->state, pe->msg);
	}
	return rc;
}

int
st_tx(struct store *st, struct pgc *c, const char *verb)
{
	return st_exec(st, c, verb, 0, NULL, NULL, NULL);
}

int
st_tx_lock_row(struct store *st, const char *sql, int n, const char *const *p, struct pgc **c,
    PGresult **res)
{
	int rc;

	*res = NULL;
	if ((rc = pgc_acquire(st, c)) != TE_OK)
		return rc;
	if ((rc = st_tx(st, *c, "BEGIN")) != TE_OK)
		goto fail;
	if ((rc = st_exec(st, *c, sql, n, p, res, NULL)) == TE_OK && PQntuples(*res) == 1)
		return TE_OK;
	if (rc == TE_OK)
		rc = TE_NOTFOUND;
	PQclear(*res);
	*res = NULL;
	if ((*c)->conn)
		st_tx(st, *c, "ROLLBACK");
fail:
	pgc_release(st, *c);
	return rc;
}

char *
pg_strdup(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	return strdup(PQgetvalue(res, row, col));
}

int
claim_set_add(struct claim_set *s, const char *run_id, int attempt, long old_owner)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct claimed *v = realloc(s->v, cap * sizeof *v);

		if (!v)
			return TE_NOMEM;
		s->v = v;
		s->cap = cap;
	}
	snprintf(s->v[s->n].run_id, sizeof s->v[s->n].run_id, "%s", run_id);
	s->v[s->n].attempt = attempt;
	s->v[s->n].old_owner = old_owner;
	s->n++;
	return TE_OK;
}

void
claim_set_free(struct claim_set *s)
{
	if (!s)
		return;
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

int
store_ping(struct store *st)
{
	struct pgc *c;
	int rc;

	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	rc = pg_exec(c, 1000, "SELECT 1", 0, NULL, NULL, NULL);
	pgc_release(st, c);
	return rc;
}

int
st_query(struct store *st, const char *sql, int nparams, const char *const *params,
    PGresult **res)
{
	struct pgc *c;
	int rc;

	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	rc = st_exec(st, c, sql, nparams, params, res, NULL);
	pgc_release(st, c);
	return rc;
}

int
st_query_row(struct store *st, const char *sql, int nparams, const char *const *params,
    PGresult **res)
{
	int rc = st_query(st, sql, nparams, params, res);

	if (rc == TE_OK && PQntuples(*res) != 1) {
		PQclear(*res);
		*res = NULL;
		rc = TE_NOTFOUND;
	}
	return rc;
}
