#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The admin token: at least this long, and not docker/tether.env.example's value. */
#define ADMIN_TOKEN_MIN 32
#define ADMIN_TOKEN_EXAMPLE "change-me-admin"

enum cfg_type { CFG_INT, CFG_STR, CFG_BOOL, CFG_LEVEL };

struct cfg_entry {
	const char *name;       /* --name */
	const char *env;        /* primary environment variable */
	const char *env_alt;    /* accepted too (DATABASE_URL, NATS_URL) */
	enum cfg_type type;
	size_t off;
	size_t size;            /* strings: buffer size */
	long min, max, def;
	const char *sdef;
	int secret;
	const char *help;
};

#define I(n, e, mn, mx, d, h) { #n, e, NULL, CFG_INT, offsetof(struct config, n), 0, mn, mx, d, NULL, 0, h }
#define B(n, e, d, h) { #n, e, NULL, CFG_BOOL, offsetof(struct config, n), 0, 0, 1, d, NULL, 0, h }
#define S(n, e, alt, d, sec, h) \
	{ #n, e, alt, CFG_STR, offsetof(struct config, n), sizeof(((struct config *)0)->n), 0, 0, 0, d, sec, h }

static const struct cfg_entry entries[] = {
	S(listen, "TETHER_LISTEN", NULL, "127.0.0.1:9000", 0,
	  "FastCGI socket: a unix socket path or HOST:PORT"),
	I(workers, "TETHER_WORKERS", 1, 64, 2, "worker processes per pod"),
	S(pod, "TETHER_POD", "HOSTNAME", "", 0, "pod name (default: the host name)"),
	{ "log_level", "TETHER_LOG_LEVEL", NULL, CFG_LEVEL, offsetof(struct config, log_level), 0,
	  0, 3, LOG_INFO, NULL, 0, "debug, info, warn or error" },
	S(database_url, "TETHER_DATABASE_URL", "DATABASE_URL",
	  "postgresql://postgres@127.0.0.1:5432/tether", 1, "PostgreSQL connection URI"),
	S(nats_url, "TETHER_NATS_URL", "NATS_URL", "nats://127.0.0.1:4222", 0,
	  "NATS server URL, or several comma-separated (a cluster's servers)"),
	S(nats_user, "TETHER_NATS_USER", NULL, "", 0,
	  "NATS user name (with TETHER_NATS_PASSWORD; empty: none, or the URL's)"),
	S(nats_password, "TETHER_NATS_PASSWORD", NULL, "", 1, "NATS password of TETHER_NATS_USER"),
	S(admin_token, "TETHER_ADMIN_TOKEN", NULL, "", 1,
	  "token for /v1/admin/ routes (empty: admin routes always answer 401)"),
	I(auth_cache_ms, "TETHER_AUTH_CACHE_MS", 0, 30000, 1000,
	  "how long a worker trusts a checked API key without asking PostgreSQL (ms): the "
	  "bound on a revocation whose broadcast was lost (0: ask every time)"),
	I(auth_negative_ms, "TETHER_AUTH_NEGATIVE_MS", 0, 10000, 1000,
	  "how long a worker remembers (by hash) an API key PostgreSQL did not know (ms): a "
	  "flood of bad keys costs one lookup per key per worker per this time (0: off)"),
	I(db_pool, "TETHER_DB_POOL", 1, 64, 4, "PostgreSQL query connections per worker"),
	I(db_connect_timeout_s, "TETHER_DB_CONNECT_TIMEOUT_S", 2, 60, 3,
	  "libpq connect_timeout (seconds)"),
	I(db_keepalives_idle_s, "TETHER_DB_KEEPALIVES_IDLE_S", 1, 3600, 2,
	  "TCP keepalive idle time on PostgreSQL connections, both ends (s)"),
	I(db_keepalives_interval_s, "TETHER_DB_KEEPALIVES_INTERVAL_S", 1, 600, 1,
	  "TCP keepalive probe interval on PostgreSQL connections, both ends (s)"),
	I(db_keepalives_count, "TETHER_DB_KEEPALIVES_COUNT", 1, 100, 3,
	  "unanswered keepalive probes before a PostgreSQL connection is dropped"),
	I(db_tcp_user_timeout_ms, "TETHER_DB_TCP_USER_TIMEOUT_MS", 0, 3600000, 5000,
	  "tcp_user_timeout on PostgreSQL connections, both ends (ms; 0: the kernel's)"),
	I(statement_timeout_ms, "TETHER_STATEMENT_TIMEOUT_MS", 100, 600000, 5000,
	  "statement_timeout and client-side query deadline (ms)"),
	I(nats_timeout_ms, "TETHER_NATS_TIMEOUT_MS", 100, 60000, 2000,
	  "NATS connect and JetStream request timeout (ms)"),
	I(threads, "TETHER_THREADS", 4, 900, 256,
	  "FastCGI request threads per worker; an event stream holds one while it catches up "
	  "(max 900: libfcgi select()s what it accepts and closes, fds must stay below 1024)"),
	I(max_runs, "TETHER_MAX_RUNS", 1, 4096, 128, "active generating runs per worker"),
	I(max_watchers, "TETHER_MAX_WATCHERS", 1, 65536, 16384,
	  "open event streams per worker (held by the stream loop, on descriptors above 1024)"),
	I(tenant_max_active_runs, "TETHER_TENANT_MAX_ACTIVE_RUNS", 0, 1000000, 256,
	  "default quota: active runs per tenant across the cluster (429 quota_exceeded beyond; "
	  "per tenant: PUT /v1/admin/tenants/NAME/limits)"),
	I(tenant_max_streams, "TETHER_TENANT_MAX_STREAMS", 0, 10000000, 4096,
	  "default quota: open event streams per tenant across the cluster"),
	I(tenant_max_output_bytes, "TETHER_TENANT_MAX_OUTPUT_BYTES", 0, 256 << 20, 1 << 20,
	  "default quota: output bytes per run (beyond: the run fails with output_limit; "
	  "max_output bounds it too)"),
	I(tenant_requests_per_s, "TETHER_TENANT_REQUESTS_PER_S", 1, 1000000, 1000,
	  "default quota: API requests per second per tenant across the cluster"),
	I(max_body, "TETHER_MAX_BODY", 1024, 64 << 20, 1 << 20, "request body limit (bytes)"),
	I(max_input, "TETHER_MAX_INPUT", 1, 16 << 20, 256 << 10, "run input limit (bytes)"),
	I(history_max_bytes, "TETHER_HISTORY_MAX_BYTES", 1024, 64 << 20, 1 << 20,
	  "conversation sent to the model per run (bytes): the run's input and the newest "
	  "earlier turns that fit, oldest turns left out; an input longer than this is "
	  "refused (400 invalid_field)"),
	I(history_max_turns, "TETHER_HISTORY_MAX_TURNS", 0, 100000, 100,
	  "earlier turns (a user message and the replies after it) sent to the model per run; "
	  "older turns are left out (0: the input alone)"),
	I(json_depth, "TETHER_JSON_DEPTH", 2, 256, 32, "JSON nesting depth limit"),
	I(max_output, "TETHER_MAX_OUTPUT", 1024, 256 << 20, 16 << 20,
	  "largest run output kept (bytes); beyond it the run fails"),
	I(heartbeat_s, "TETHER_HEARTBEAT_S", 1, 300, 15, "event-stream ping after this much quiet (s)"),
	I(stall_ms, "TETHER_STALL_MS", 50, 60000, 250,
	  "a watched running run silent this long gets its owner probed (ms)"),
	I(stream_max_age_s, "TETHER_STREAM_MAX_AGE_S", 60, 365 * 86400, 7 * 86400,
	  "JetStream max age of run events (s)"),
	I(dup_window_s, "TETHER_DUP_WINDOW_S", 1, 86400, 120, "JetStream duplicate window (s)"),
	I(stream_replicas, "TETHER_STREAM_REPLICAS", 1, 5, 1, "JetStream stream replicas"),
	I(stream_max_mb, "TETHER_STREAM_MAX_MB", 1, 1048576, 2048,
	  "JetStream stream size limit (MiB; the oldest events go first; applied when the stream "
	  "is created)"),
	I(purge_grace_s, "TETHER_PURGE_GRACE_S", 0, 7 * 86400, 300,
	  "a finished run's events leave JetStream this long after its end (s; it replays "
	  "from PostgreSQL)"),
	B(mock, "TETHER_MOCK", 0, "offer the \"mock\" model (and its crash: directive) even with a "
	  "provider configured: tests and demos"),
	I(hub_max_bytes, "TETHER_HUB_MAX_BYTES", 1024, 1 << 30, 16 << 20,
	  "events of one run a worker keeps in memory for its watchers (bytes); "
	  "watchers behind that window read JetStream themselves"),
	I(live_pending_msgs, "TETHER_LIVE_PENDING_MSGS", 1, 1000000, 65536,
	  "live-tail copies a worker queues per watched run before NATS drops them (the hub "
	  "then fetches the gap from the stream)"),
	I(worker_heartbeat_ms, "TETHER_WORKER_HEARTBEAT_MS", 100, 60000, 2000,
	  "worker row heartbeat period (ms), also the liveness connection check"),
	I(drain_s, "TETHER_DRAIN_S", 0, 3600, 10, "SIGTERM: time runs get to finish (s)"),
	I(max_attempts, "TETHER_MAX_ATTEMPTS", 1, 100, 3,
	  "crashes of the worker generating a run before the run fails with too_many_attempts "
	  "(pod deaths, drains and outside kills do not count; docs/DESIGN.md)"),
	I(max_run_s, "TETHER_MAX_RUN_S", 1, 7 * 86400, 3600, "runs older than this are failed by the sweep (s)"),
	I(pg_grace_s, "TETHER_PG_GRACE_S", 1, 600, 15,
	  "after a PostgreSQL restart, workers this long to re-take their locks (s)"),
	S(provider_url, "TETHER_PROVIDER_URL", NULL, "", 0,
	  "OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 (empty: mock only)"),
	S(provider_key, "TETHER_PROVIDER_KEY", NULL, "", 1, "provider API key (never logged)"),
	S(provider_model, "TETHER_PROVIDER_MODEL", NULL, "", 0,
	  "upstream model for runs that name none"),
	S(provider_models, "TETHER_PROVIDER_MODELS", NULL, "", 0,
	  "models runs may name besides the default, comma-separated NAME or NAME=UPSTREAM "
	  "(empty: the default model only; *: any name)"),
	S(system_prompt, "TETHER_SYSTEM_PROMPT", NULL, "", 0, "system message sent first to the provider"),
	I(provider_connect_ms, "TETHER_PROVIDER_CONNECT_MS", 100, 60000, 5000, "provider connect timeout (ms)"),
	I(provider_first_token_ms, "TETHER_PROVIDER_FIRST_TOKEN_MS", 100, 600000, 60000,
	  "provider time to first token (ms)"),
	I(provider_idle_ms, "TETHER_PROVIDER_IDLE_MS", 100, 600000, 30000,
	  "provider silence allowed between chunks (ms)"),
	I(provider_total_s, "TETHER_PROVIDER_TOTAL_S", 1, 86400, 600, "provider call total time (s)"),
	I(provider_retries, "TETHER_PROVIDER_RETRIES", 0, 10, 3, "retries before the first token"),
	I(provider_max_line, "TETHER_PROVIDER_MAX_LINE", 1024, 16 << 20, 1 << 20,
	  "longest provider SSE line (bytes)"),
	B(bench_routes, "TETHER_BENCH_ROUTES", 0, "enable the benchmark-only baseline route"),
};

#define NENTRIES (sizeof entries / sizeof entries[0])

static const struct cfg_entry *
entry_find(const char *name, size_t n)
{
	for (size_t i = 0; i < NENTRIES; i++) {
		const char *en = entries[i].name;
		size_t k;

		for (k = 0; k < n && en[k]; k++) {
			char c = name[k] == '-' ? '_' : name[k];
			if (c != en[k])
				break;
		}
		if (k == n && en[k] == '\0')
			return &entries[i];
	}
	return NULL;
}

static int
parse_long(const char *s, long *out)
{
	char *end;
	long v, mul = 1;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || errno)
		return -1;
	if (*end == 'k' || *end == 'K')
		mul = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024, end++;
	if (*end != '\0')
		return -1;
	if (v > LONG_MAX / mul || v < LONG_MIN / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int
entry_set(struct config *cfg, const struct cfg_entry *e, const char *value, const char *src,
    char *err, size_t errlen)
{
	char *base = (char *)cfg + e->off;
	long v;

	switch (e->type) {
	case CFG_STR:
		if (strlen(value) >= e->size) {
			snprintf(err, errlen, "%s (%s): value longer than %zu bytes", e->name, src,
			    e->size - 1);
			return -1;
		}
		memcpy(base, value, strlen(value) + 1);
		return 0;
	case CFG_LEVEL:
		if ((v = log_level_parse(value)) < 0) {
			snprintf(err, errlen, "%s (%s): \"%s\" is not debug, info, warn or error",
			    e->name, src, value);
			return -1;
		}
		*(int *)base = (int)v;
		return 0;
	case CFG_BOOL:
		if (!strcmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
		    !strcasecmp(value, "on"))
			v = 1;
		else if (!strcmp(value, "0") || !strcasecmp(value, "false") ||
		    !strcasecmp(value, "no") || !strcasecmp(value, "off"))
			v = 0;
		else {
			snprintf(err, errlen, "%s (%s): \"%s\" is not a boolean", e->name, src, value);
			return -1;
		}
		*(int *)base = (int)v;
		return 0;
	case CFG_INT:
		if (parse_long(value, &v) < 0) {
			snprintf(err, errlen, "%s (%s): \"%s\" is not an integer", e->name, src, value);
			return -1;
		}
		if (v < e->min || v > e->max) {
			snprintf(err, errlen, "%s (%s): %ld is out of range [%ld, %ld]", e->name, src,
			    v, e->min, e->max);
			return -1;
		}
		*(int *)base = (int)v;
		return 0;
	}
	return -1;
}

/* A secret from a file (docker/Kubernetes secrets, a 0600 file): its content
 * without the trailing newline. */
static int
entry_set_file(struct config *cfg, const struct cfg_entry *e, const char *path, const char *src,
    char *err, size_t errlen)
{
	char val[4096];
	size_t n;
	FILE *fp = fopen(path, "r");

	if (!fp) {
		snprintf(err, errlen, "%s (%s): could not read %s: %s", e->name, src, path,
		    strerror(errno));
		return -1;
	}
	n = fread(val, 1, sizeof val - 1, fp);
	if (ferror(fp) || (n == sizeof val - 1 && fgetc(fp) != EOF)) {
		snprintf(err, errlen, "%s (%s): %s is unreadable or longer than %zu bytes", e->name,
		    src, path, sizeof val - 2);
		fclose(fp);
		return -1;
	}
	fclose(fp);
	while (n > 0 && (val[n - 1] == '\n' || val[n - 1] == '\r'))
		n--;
	val[n] = '\0';
	if (strlen(val) != n) {
		snprintf(err, errlen, "%s (%s): %s holds a NUL byte", e->name, src, path);
		return -1;
	}
	return entry_set(cfg, e, val, src, err, errlen);
}

/* A secret's environment: VAR, else VAR_FILE (a path), for the primary and the
 * alternative name. 1 when set, 0 when absent, -1 on error. */
static int
secret_from_env(struct config *cfg, const struct cfg_entry *e, char *err, size_t errlen)
{
	const char *names[2] = { e->env, e->env_alt };

	for (int i = 0; i < 2 && names[i]; i++) {
		char var[96];
		const char *v = getenv(names[i]);

		if (v && *v)
			return entry_set(cfg, e, v, names[i], err, errlen) < 0 ? -1 : 1;
		snprintf(var, sizeof var, "%s_FILE", names[i]);
		if ((v = getenv(var)) && *v)
			return entry_set_file(cfg, e, v, var, err, errlen) < 0 ? -1 : 1;
	}
	return 0;
}

void
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < NENTRIES; i++) {
		const struct cfg_entry *e = &entries[i];
		char *base = (char *)cfg + e->off;

		if (e->type == CFG_STR)
			snprintf(base, e->size, "%s", e->sdef ? e->sdef : "");
		else
			*(int *)base = (int)e->def;
	}
}

int
config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	const struct cfg_entry *e = entry_find(name, strlen(name));

	if (!e) {
		snprintf(err, errlen, "unknown setting \"%s\"", name);
		return -1;
	}
	return entry_set(cfg, e, value, "set", err, errlen);
}

static int
config_check(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->max_input > cfg->max_body) {
		snprintf(err, errlen, "max_input (%d) must not exceed max_body (%d)", cfg->max_input,
		    cfg->max_body);
		return -1;
	}
	if (cfg->admin_token[0] && (strlen(cfg->admin_token) < ADMIN_TOKEN_MIN ||
	    !strcmp(cfg->admin_token, ADMIN_TOKEN_EXAMPLE))) {
		snprintf(err, errlen, "admin_token: %s; make one with `openssl rand -hex 24` (or "
		    "leave it empty: admin routes off)",
		    strlen(cfg->admin_token) < ADMIN_TOKEN_MIN ? "shorter than 32 characters"
		    : "still the example's value (docker/tether.env.example)");
		return -1;
	}
	if (cfg->pod[0] == '\0' && gethostname(cfg->pod, sizeof cfg->pod - 1) < 0)
		snprintf(cfg->pod, sizeof cfg->pod, "pod");
	for (const char *p = cfg->pod; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
			snprintf(err, errlen, "pod: \"%s\" may only hold letters, digits, '-', '_', '.'",
			    cfg->pod);
			return -1;
		}
	}
	return 0;
}

int
config_fit_fds(struct config *cfg, long nofile, char *msg, size_t msglen)
{
	long fixed = (long)cfg->threads + cfg->db_pool + CONFIG_FD_RESERVE, room;

	if (fixed > nofile) {
		snprintf(msg, msglen, "threads (%d) and db_pool (%d) need %ld file descriptors; the "
		    "limit is %ld (RLIMIT_NOFILE, at most %d): lower threads", cfg->threads,
		    cfg->db_pool, fixed, nofile, CONFIG_FD_LIMIT);
		return -1;
	}
	if (!cfg->provider_url[0])
		return 0;               /* mock runs hold no descriptor */
	room = (nofile - fixed) / CONFIG_FDS_PER_RUN;
	if (cfg->max_runs <= room)
		return 0;
	snprintf(msg, msglen, "max_runs %d would need %ld file descriptors with threads %d and "
	    "db_pool %d; the limit is %ld (RLIMIT_NOFILE, at most %d): using max_runs %ld",
	    cfg->max_runs, fixed + (long)cfg->max_runs * CONFIG_FDS_PER_RUN, cfg->threads,
	    cfg->db_pool, nofile, CONFIG_FD_LIMIT, room > 0 ? room : 1);
	cfg->max_runs = room > 0 ? (int)room : 1;
	return 1;
}

int
config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	config_defaults(cfg);
	for (size_t i = 0; i < NENTRIES; i++) {
		const struct cfg_entry *e = &entries[i];
		const char *v = getenv(e->env);
		const char *src = e->env;

		if (e->secret) {
			if (secret_from_env(cfg, e, err, errlen) < 0)
				return -1;
			continue;
		}
		if ((!v || !*v) && e->env_alt) {
			v = getenv(e->env_alt);
			src = e->env_alt;
		}
		if (v && *v && entry_set(cfg, e, v, src, err, errlen) < 0)
			return -1;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *value;
		const struct cfg_entry *e = NULL;
		size_t n;
		int file;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			config_usage(stdout, argv[0]);
			return 1;
		}
		if (strncmp(a, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument \"%s\" (try --help)", a);
			return -1;
		}
		a += 2;
		eq = strchr(a, '=');
		n = eq ? (size_t)(eq - a) : strlen(a);
		/* --SECRET-file PATH: secrets are never taken on the command line (every
		 * user of the machine reads it in /proc). */
		file = n > 5 && (!strncmp(a + n - 5, "-file", 5) || !strncmp(a + n - 5, "_file", 5)) &&
		    (e = entry_find(a, n - 5)) && e->secret;
		if (!file && !(e = entry_find(a, n))) {
			snprintf(err, errlen, "unknown option --%.*s (try --help)", (int)n, a);
			return -1;
		}
		if (e->secret && !file) {
			snprintf(err, errlen, "--%.*s: a secret is not taken on the command line (any user "
			    "can read it there); set %s or pass --%.*s-file PATH", (int)n, a, e->env,
			    (int)n, a);
			return -1;
		}
		if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(err, errlen, "option --%s needs a value", e->name);
			return -1;
		}
		if (!file && !strcmp(e->name, "nats_url") && strchr(value, '@')) {
			snprintf(err, errlen, "--nats-url: credentials are not taken on the command line "
			    "(any user can read them there); set NATS_URL");
			return -1;
		}
		if ((file ? entry_set_file(cfg, e, value, "command line", err, errlen)
		    : entry_set(cfg, e, value, "command line", err, errlen)) < 0)
			return -1;
	}
	return config_check(cfg, err, errlen);
}

void
config_usage(FILE *fp, const char *prog)
{
	fprintf(fp, "usage: %s [--name value ...]\n\n"
	    "Every option can also be set by its environment variable.\n\n", prog);
	for (size_t i = 0; i < NENTRIES; i++) {
		const struct cfg_entry *e = &entries[i];
		char flag[64];
		size_t k;

		snprintf(flag, sizeof flag, "--%s", e->name);
		for (k = 2; flag[k]; k++)
			if (flag[k] == '_')
				flag[k] = '-';
		fprintf(fp, "  %-28s %s%s%s\n", flag, e->env, e->env_alt ? " or " : "",
		    e->env_alt ? e->env_alt : "");
		fprintf(fp, "      %s", e->help);
		if (e->type == CFG_INT)
			fprintf(fp, " [default %ld, min %ld, max %ld]\n", e->def, e->min, e->max);
		else if (e->type == CFG_BOOL)
			fprintf(fp, " [default %s]\n", e->def ? "on" : "off");
		else if (e->type == CFG_LEVEL)
			fprintf(fp, " [default info]\n");
		else if (e->secret)
			fprintf(fp, "; secret: from %s, %s_FILE (a file holding it) or --%s-file, "
			    "never as --%s [secret]\n", e->env, e->env, flag + 2, flag + 2);
		else
			fprintf(fp, " [default \"%s\"]\n", e->sdef ? e->sdef : "");
	}
}

void
config_dump(const struct config *cfg, FILE *fp)
{
	for (size_t i = 0; i < NENTRIES; i++) {
		const struct cfg_entry *e = &entries[i];
		const char *base = (const char *)cfg + e->off;

		char masked[1024];

		if (e->type == CFG_STR)
			fprintf(fp, "%s=%s\n", e->name, e->secret && *base ? "(set)"
			    : strstr(e->name, "_url") ? url_mask(masked, sizeof masked, base) : base);
		else
			fprintf(fp, "%s=%d\n", e->name, *(const int *)base);
	}
}
