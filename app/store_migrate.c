/* store_migrate.c - forward-only migrations: sql/NNNN_<what>.sql applied in order,
 * all pending ones in one transaction, under an advisory lock so that several
 * pods migrating at once apply each file exactly once. */
#include "store_int.h"
#include "buf.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One-bigint advisory key ('tethmigr'); liveness locks use the two-int key space. */
#define MIGRATE_LOCK "8387236093787712882"
#define MAX_MIGRATIONS 1000
#define MAX_FILE (16 << 20)

static int
is_migration(const char *name, int *version)
{
	size_t n = strlen(name);

	if (n < 10 || strcmp(name + n - 4, ".sql") != 0 || name[4] != '_')
		return 0;
	for (int i = 0; i < 4; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	*version = atoi(name);
	return *version > 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
read_file(const char *path, struct buf *b, char *err, size_t errlen)
{
	char chunk[8192];
	FILE *fp = fopen(path, "r");
	size_t n;
	int rc = TE_OK;

	if (!fp) {
		snprintf(err, errlen, "could not open %s: %s", path, strerror(errno));
		return TE_IO;
	}
	while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
		if ((rc = buf_append(b, chunk, n)) != TE_OK) {
			snprintf(err, errlen, "%s is larger than %d bytes", path, MAX_FILE);
			break;
		}
	if (rc == TE_OK && ferror(fp)) {
		snprintf(err, errlen, "could not read %s", path);
		rc = TE_IO;
	}
	fclose(fp);
	return rc;
}

static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int
exec_simple(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(conn, sql);
	int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);

	if (!ok) {
		const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
		snprintf(err, errlen, "%.*s", (int)strcspn(m, "\n"), m);
	}
	PQclear(r);
	return ok ? TE_OK : TE_DB;
}

int
store_migrate(const char *database_url, const char *sql_dir, int connect_timeout_s,
    int *applied, char *err, size_t errlen)
{
	char timeout[16], *names[MAX_MIGRATIONS];
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[4];
	size_t nnames = 0;
	struct dirent *de;
	PGconn *conn;
	PGresult *res;
	DIR *dir;
	int rc = TE_OK;

	*applied = 0;
	if (!(dir = opendir(sql_dir))) {
		snprintf(err, errlen, "could not open migrations directory %s: %s", sql_dir,
		    strerror(errno));
		return TE_IO;
	}
	while ((de = readdir(dir))) {
		int v;

		if (!is_migration(de->d_name, &v))
			continue;
		if (nnames == MAX_MIGRATIONS || !(names[nnames] = strdup(de->d_name))) {
			rc = TE_NOMEM;
			break;
		}
		nnames++;
	}
	closedir(dir);
	if (rc != TE_OK) {
		snprintf(err, errlen, "too many migration files");
		goto free_names;
	}
	qsort(names, nnames, sizeof names[0], cmp_names);

	snprintf(timeout, sizeof timeout, "%d", connect_timeout_s);
	vals[0] = database_url;
	vals[1] = timeout;
	vals[2] = "tetherctl-migrate";
	vals[3] = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		const char *m = conn ? PQerrorMessage(conn) : "out of memory";
		snprintf(err, errlen, "could not connect to PostgreSQL: %.*s", (int)strcspn(m, "\n"), m);
		PQfinish(conn);
		rc = TE_DB;
		goto free_names;
	}
	PQsetNoticeProcessor(conn, quiet_notice, NULL);
	if ((rc = exec_simple(conn, "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ");"
	    " CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
	    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())",
	    err, errlen)) != TE_OK)
		goto close;
	res = PQexec(conn, "SELECT version FROM schema_migrations");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
		PQclear(res);
		rc = TE_DB;
		goto close;
	}
	for (size_t i = 0; i < nnames && rc == TE_OK; i++) {
		char path[1024], ver[16];
		const char *p[2];
		int v, done = 0;
		struct buf b;

		is_migration(names[i], &v);
		for (int k = 0; k < PQntuples(res); k++)
			if (atoi(PQgetvalue(res, k, 0)) == v)
				done = 1;
		if (done)
			continue;
		snprintf(path, sizeof path, "%s/%s", sql_dir, names[i]);
		buf_init(&b, MAX_FILE);
		if ((rc = read_file(path, &b, err, errlen)) == TE_OK &&
		    (rc = exec_simple(conn, b.data ? b.data : "", err, errlen)) != TE_OK) {
			char tmp[512];
			snprintf(tmp, sizeof tmp, "%s", err);
			snprintf(err, errlen, "%s: %s", names[i], tmp);
		}
		buf_free(&b);
		if (rc != TE_OK)
			break;
		snprintf(ver, sizeof ver, "%d", v);
		p[0] = ver;
		p[1] = names[i];
		{
			PGresult *r = PQexecParams(conn,
			    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, NULL, p,
			    NULL, NULL, 0);
			if (PQresultStatus(r) != PGRES_COMMAND_OK) {
				snprintf(err, errlen, "%s", PQresultErrorMessage(r));
				rc = TE_DB;
			}
			PQclear(r);
		}
		if (rc == TE_OK)
			(*applied)++;
	}
	PQclear(res);
	if (rc == TE_OK)
		rc = exec_simple(conn, "COMMIT", err, errlen);
close:
	PQfinish(conn);
free_names:
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	return rc;
}

int
store_schema_version(struct store *st, int *version)
{
	PGresult *res;
	struct pgc *c;
	int rc;

	if ((rc = pgc_acquire(st, &c)) != TE_OK)
		return rc;
	rc = st_exec(st, c, "SELECT COALESCE(max(version), 0) FROM schema_migrations", 0, NULL, &res,
	    NULL);
	pgc_release(st, c);
	if (rc != TE_OK)
		return rc;
	*version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return TE_OK;
}
