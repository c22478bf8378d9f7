/* store_int.h - internals shared by the store_*.c files only. */
#ifndef TETHER_STORE_INT_H
#define TETHER_STORE_INT_H

#include <libpq-fe.h>
#include <pthread.h>

#include "store.h"

/* Advisory lock class of worker liveness locks (two-int form; the migration
 * lock uses the one-bigint form, a separate key space). */
#define LIVENESS_LOCK_CLASS 1952805748
/* Advisory lock class of the per-tenant run-creation lock (key: hashtext(tenant)). */
#define TENANT_LOCK_CLASS_STR "1952805749"

struct pgc {
	PGconn *conn;
	int busy;
	int64_t opened_ms;
	int stmts;                      /* statements since this acquisition */
	int reused;                     /* the connection was open before this acquisition */
	int sent;                       /* the last statement reached the socket (it may have run) */
};

struct store {
	const struct config *cfg;
	char app_name[64];
	pthread_mutex_t mu;             /* guards conns[].busy and shutdown */
	pthread_cond_t cv;
	int shutdown;
	int n;
	struct pgc *conns;
	int64_t timeout_ms;             /* client-side deadline of one statement */
};

/* A failed statement, for callers that branch on SQLSTATE or constraint. */
struct pgerr {
	char state[6];
	char constraint[64];
	char msg[256];
};

int pgc_acquire(struct store *st, struct pgc **out);
void pgc_release(struct store *st, struct pgc *c);
/* Open a connection with the settings every tether connection uses. */
PGconn *pg_connect(const struct config *cfg, const char *app_name, int liveness, char *err,
    size_t errlen);
/* Run one statement with a deadline. On TE_OK *res holds a TUPLES_OK or COMMAND_OK
 * result (caller PQclears; res may be NULL to discard). A SQL error returns TE_DB
 * with e filled and the connection kept; a broken or late connection is closed. */
int pg_exec(struct pgc *c, int64_t timeout_ms, const char *sql, int nparams,
    const char *const *params, PGresult **res, struct pgerr *e);
/* Convenience: exec on c with the pool's deadline. */
int st_exec(struct store *st, struct pgc *c, const char *sql, int nparams,
    const char *const *params, PGresult **res, struct pgerr *e);
int st_tx(struct store *st, struct pgc *c, const char *verb);
/* Acquire a connection, BEGIN, and lock one row with sql (a SELECT … FOR UPDATE):
 * TE_OK with *c in the transaction and *res the row (the caller clears it, then
 * commits or rolls back, and releases *c). TE_NOTFOUND when no row, or the
 * failure: then nothing is held. */
int st_tx_lock_row(struct store *st, const char *sql, int n, const char *const *p, struct pgc **c,
    PGresult **res);
/* One statement on a pooled connection: acquire, exec, release. On TE_OK *res is
 * the result (caller PQclears). */
int st_query(struct store *st, const char *sql, int nparams, const char *const *params,
    PGresult **res);
/* The same, for exactly one row: TE_NOTFOUND (nothing to clear) for none or more. */
int st_query_row(struct store *st, const char *sql, int nparams, const char *const *params,
    PGresult **res);
/* Duplicate a column value (caller frees). */
char *pg_strdup(const PGresult *res, int row, int col);

#endif
