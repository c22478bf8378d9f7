/* The settings table: defaults, environment, flags, bounds and cross checks. */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Every variable config_load reads: cleared so the host's environment
 * (HOSTNAME, DATABASE_URL, a developer's TETHER_*) cannot leak into a test. */
static const char *const env_names[] = {
	"TETHER_LISTEN", "TETHER_WORKERS", "TETHER_POD", "HOSTNAME", "TETHER_LOG_LEVEL",
	"TETHER_DATABASE_URL", "DATABASE_URL", "TETHER_NATS_URL", "NATS_URL",
	"TETHER_ADMIN_TOKEN", "TETHER_DB_POOL", "TETHER_DB_CONNECT_TIMEOUT_S",
	"TETHER_DB_KEEPALIVES_IDLE_S", "TETHER_DB_KEEPALIVES_INTERVAL_S", "TETHER_DB_KEEPALIVES_COUNT",
	"TETHER_DB_TCP_USER_TIMEOUT_MS",
	"TETHER_STATEMENT_TIMEOUT_MS", "TETHER_NATS_TIMEOUT_MS", "TETHER_THREADS",
	"TETHER_MAX_RUNS", "TETHER_MAX_WATCHERS", "TETHER_TENANT_MAX_ACTIVE_RUNS",
	"TETHER_MAX_BODY", "TETHER_MAX_INPUT", "TETHER_JSON_DEPTH", "TETHER_MAX_OUTPUT",
	"TETHER_HEARTBEAT_S", "TETHER_STALL_MS", "TETHER_STREAM_MAX_AGE_S",
	"TETHER_DUP_WINDOW_S", "TETHER_STREAM_REPLICAS", "TETHER_WORKER_HEARTBEAT_MS",
	"TETHER_DRAIN_S", "TETHER_MAX_ATTEMPTS", "TETHER_MAX_RUN_S", "TETHER_PG_GRACE_S",
	"TETHER_PROVIDER_URL", "TETHER_PROVIDER_KEY", "TETHER_PROVIDER_MODEL",
	"TETHER_PROVIDER_MODELS", "TETHER_SYSTEM_PROMPT", "TETHER_PROVIDER_CONNECT_MS",
	"TETHER_PROVIDER_FIRST_TOKEN_MS", "TETHER_PROVIDER_IDLE_MS", "TETHER_PROVIDER_TOTAL_S",
	"TETHER_PROVIDER_RETRIES", "TETHER_PROVIDER_MAX_LINE", "TETHER_BENCH_ROUTES",
	"TETHER_ADMIN_TOKEN_FILE", "TETHER_DATABASE_URL_FILE", "DATABASE_URL_FILE",
	"TETHER_PROVIDER_KEY_FILE", "TETHER_NATS_USER", "TETHER_NATS_PASSWORD", "TETHER_NATS_PASSWORD_FILE",
};

static void
env_clear(void)
{
	for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
		unsetenv(env_names[i]);
	/* A fixed pod name: the host name is not under the test's control. */
	setenv("TETHER_POD", "unit-pod", 1);
}

/* config_load with a NULL-terminated argument list (argv[0] is added). */
static int
load(struct config *cfg, char *err, size_t errlen, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	char *a;

	argv[argc++] = (char *)"tetherd";
	va_start(ap, errlen);
	while ((a = va_arg(ap, char *)) != NULL && argc < 31)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return config_load(cfg, argc, argv, err, errlen);
}

/* Secrets: never from the command line; from the environment or a file. */
static void
test_secrets_not_in_argv(void)
{
	char path[] = "/tmp/tether-unit-secret-XXXXXX";
	struct config c;
	char err[512];
	int fd;

	env_clear();
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--admin-token=0123456789abcdef0123456789abcdef",
	    NULL), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not taken on the command line"));
	CU_ASSERT_PTR_NULL(strstr(err, "0123456789abcdef"));
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--database-url", "postgresql://u:pw@h/db", NULL), -1);
	CU_ASSERT_PTR_NULL(strstr(err, "pw@"));
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--provider-key=sk-x", NULL), -1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--nats-url=nats://u:pw@h:4222", NULL), -1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--nats-url=nats://h:4222", NULL), 0);
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "fedcba9876543210fedcba9876543210\n", 33), 33);
	close(fd);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--admin-token-file", path, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.admin_token, "fedcba9876543210fedcba9876543210");
	setenv("TETHER_ADMIN_TOKEN_FILE", path, 1);
	setenv("DATABASE_URL_FILE", path, 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.admin_token, "fedcba9876543210fedcba9876543210");
	CU_ASSERT_STRING_EQUAL(c.database_url, "fedcba9876543210fedcba9876543210");
	/* The variable itself wins over its file. */
	setenv("TETHER_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.admin_token, "0123456789abcdef0123456789abcdef");
	unlink(path);
	unsetenv("DATABASE_URL_FILE");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);   /* the variable, not the file */
	unsetenv("TETHER_ADMIN_TOKEN");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "could not read"));
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--admin-token-file", "/nonexistent/x", NULL), -1);
	env_clear();
}

static void
test_defaults(void)
{
	struct config c;

	config_defaults(&c);
	CU_ASSERT_STRING_EQUAL(c.listen, "127.0.0.1:9000");
	CU_ASSERT_EQUAL(c.workers, 2);
	CU_ASSERT_STRING_EQUAL(c.pod, "");
	CU_ASSERT_EQUAL(c.log_level, LOG_INFO);
	CU_ASSERT_STRING_EQUAL(c.database_url, "postgresql://postgres@127.0.0.1:5432/tether");
	CU_ASSERT_STRING_EQUAL(c.nats_url, "nats://127.0.0.1:4222");
	CU_ASSERT_STRING_EQUAL(c.admin_token, "");
	CU_ASSERT_EQUAL(c.db_pool, 4);
	CU_ASSERT_EQUAL(c.db_connect_timeout_s, 3);
	CU_ASSERT_EQUAL(c.statement_timeout_ms, 5000);
	CU_ASSERT_EQUAL(c.nats_timeout_ms, 2000);
	CU_ASSERT_EQUAL(c.threads, 256);
	CU_ASSERT_EQUAL(c.max_runs, 128);
	CU_ASSERT_EQUAL(c.max_watchers, 16384);
	CU_ASSERT_EQUAL(c.tenant_max_active_runs, 256);
	CU_ASSERT_EQUAL(c.tenant_max_streams, 4096);
	CU_ASSERT_EQUAL(c.tenant_max_output_bytes, 1 << 20);
	CU_ASSERT_EQUAL(c.tenant_requests_per_s, 1000);
	CU_ASSERT_EQUAL(c.max_body, 1 << 20);
	CU_ASSERT_EQUAL(c.max_input, 256 << 10);
	CU_ASSERT_EQUAL(c.json_depth, 32);
	CU_ASSERT_EQUAL(c.max_output, 16 << 20);
	CU_ASSERT_EQUAL(c.heartbeat_s, 15);
	CU_ASSERT_EQUAL(c.stall_ms, 250);
	CU_ASSERT_EQUAL(c.stream_max_age_s, 7 * 86400);
	CU_ASSERT_EQUAL(c.dup_window_s, 120);
	CU_ASSERT_EQUAL(c.stream_replicas, 1);
	CU_ASSERT_EQUAL(c.worker_heartbeat_ms, 2000);
	CU_ASSERT_EQUAL(c.drain_s, 10);
	CU_ASSERT_EQUAL(c.max_attempts, 3);
	CU_ASSERT_EQUAL(c.max_run_s, 3600);
	CU_ASSERT_EQUAL(c.pg_grace_s, 15);
	CU_ASSERT_STRING_EQUAL(c.provider_url, "");
	CU_ASSERT_STRING_EQUAL(c.provider_key, "");
	CU_ASSERT_STRING_EQUAL(c.provider_model, "");
	CU_ASSERT_STRING_EQUAL(c.provider_models, "");
	CU_ASSERT_STRING_EQUAL(c.system_prompt, "");
	CU_ASSERT_EQUAL(c.provider_connect_ms, 5000);
	CU_ASSERT_EQUAL(c.provider_first_token_ms, 60000);
	CU_ASSERT_EQUAL(c.provider_idle_ms, 30000);
	CU_ASSERT_EQUAL(c.provider_total_s, 600);
	CU_ASSERT_EQUAL(c.provider_retries, 3);
	CU_ASSERT_EQUAL(c.provider_max_line, 1 << 20);
	CU_ASSERT_EQUAL(c.bench_routes, 0);
}

static void
test_load_defaults(void)
{
	struct config c;
	char err[256];

	env_clear();
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_STRING_EQUAL(c.pod, "unit-pod");
	CU_ASSERT_EQUAL(c.workers, 2);
	CU_ASSERT_EQUAL(c.threads, 256);
	CU_ASSERT_EQUAL(c.max_body, 1 << 20);
	CU_ASSERT_STRING_EQUAL(c.database_url, "postgresql://postgres@127.0.0.1:5432/tether");

	/* No pod anywhere: the host name (which must pass the pod check). */
	unsetenv("TETHER_POD");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT(c.pod[0] != '\0');
	env_clear();
}

static void
test_env(void)
{
	struct config c;
	char err[256];

	env_clear();
	setenv("TETHER_WORKERS", "8", 1);
	setenv("TETHER_LISTEN", "/run/tether.sock", 1);
	setenv("TETHER_LOG_LEVEL", "WARN", 1);
	setenv("TETHER_BENCH_ROUTES", "on", 1);
	setenv("TETHER_MAX_BODY", "2m", 1);
	setenv("TETHER_MAX_INPUT", "512k", 1);
	setenv("TETHER_STALL_MS", "", 1);      /* empty: ignored */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_EQUAL(c.workers, 8);
	CU_ASSERT_STRING_EQUAL(c.listen, "/run/tether.sock");
	CU_ASSERT_EQUAL(c.log_level, LOG_WARN);
	CU_ASSERT_EQUAL(c.bench_routes, 1);
	CU_ASSERT_EQUAL(c.max_body, 2 * 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_input, 512 * 1024);
	CU_ASSERT_EQUAL(c.stall_ms, 250);
	env_clear();
}

static void
test_env_alternates(void)
{
	struct config c;
	char err[256];

	env_clear();
	setenv("DATABASE_URL", "postgresql://alt/db", 1);
	setenv("NATS_URL", "nats://alt:1", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.database_url, "postgresql://alt/db");
	CU_ASSERT_STRING_EQUAL(c.nats_url, "nats://alt:1");
	/* The TETHER_ name wins over the alternate. */
	setenv("TETHER_DATABASE_URL", "postgresql://primary/db", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.database_url, "postgresql://primary/db");
	/* ... unless it is empty. */
	setenv("TETHER_DATABASE_URL", "", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.database_url, "postgresql://alt/db");
	/* HOSTNAME names the pod when TETHER_POD is not set. */
	unsetenv("TETHER_POD");
	setenv("HOSTNAME", "host-7", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.pod, "host-7");
	env_clear();
}

static void
test_env_rejected(void)
{
	struct config c;
	char err[256];

	env_clear();
	setenv("TETHER_WORKERS", "many", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "workers (TETHER_WORKERS): \"many\" is not an integer");
	setenv("TETHER_WORKERS", "65", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "workers (TETHER_WORKERS): 65 is out of range [1, 64]");
	env_clear();
	setenv("TETHER_LOG_LEVEL", "verbose", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err,
	    "log_level (TETHER_LOG_LEVEL): \"verbose\" is not debug, info, warn or error");
	env_clear();
	setenv("TETHER_BENCH_ROUTES", "maybe", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "bench_routes (TETHER_BENCH_ROUTES): \"maybe\" is not a boolean");
	env_clear();
}

static void
test_flags(void)
{
	struct config c;
	char err[256];

	env_clear();
	setenv("TETHER_WORKERS", "8", 1);
	setenv("TETHER_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef", 1);
	/* --name value, --name=value, dashes or underscores; flags beat the environment. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers", "3", "--max-body=4m",
	    "--max_input", "1k", "--db-pool=7", "--log_level=debug", "--bench-routes", "yes",
	    "--pod", "pod-9", NULL), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_EQUAL(c.workers, 3);
	CU_ASSERT_EQUAL(c.max_body, 4 * 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_input, 1024);
	CU_ASSERT_EQUAL(c.db_pool, 7);
	CU_ASSERT_EQUAL(c.log_level, LOG_DEBUG);
	CU_ASSERT_EQUAL(c.bench_routes, 1);
	CU_ASSERT_STRING_EQUAL(c.admin_token, "0123456789abcdef0123456789abcdef");
	CU_ASSERT_STRING_EQUAL(c.pod, "pod-9");
	/* A value may hold '=' and an empty string value is allowed. */
	unsetenv("TETHER_ADMIN_TOKEN");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--provider-url=http://h/v1?a=b",
	    "--system-prompt=", NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.provider_url, "http://h/v1?a=b");
	CU_ASSERT_STRING_EQUAL(c.system_prompt, "");
	/* Later flags win. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers=4", "--workers=5", NULL), 0);
	CU_ASSERT_EQUAL(c.workers, 5);
	env_clear();
}

static void
test_suffixes(void)
{
	struct config c;
	char err[256];

	env_clear();
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-output=3K", "--max-body", "1M",
	    "--max-input=1m", "--provider-max-line=64k", NULL), 0);
	CU_ASSERT_EQUAL(c.max_output, 3 * 1024);
	CU_ASSERT_EQUAL(c.max_body, 1024 * 1024);
	CU_ASSERT_EQUAL(c.max_input, 1024 * 1024);
	CU_ASSERT_EQUAL(c.provider_max_line, 64 * 1024);
	/* Only one suffix, only k and m, nothing after it. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=1kk", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "max_body (command line): \"1kk\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=1g", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "max_body (command line): \"1g\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=1k ", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "max_body (command line): \"1k \" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=k", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "max_body (command line): \"k\" is not an integer");
	/* A suffix can push a value out of range: 65m > 64m. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=65m", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err,
	    "max_body (command line): 68157440 is out of range [1024, 67108864]");
	/* The multiplication must not overflow into range. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=9223372036854775807k", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err,
	    "max_body (command line): \"9223372036854775807k\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=18014398509481984m", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err,
	    "max_body (command line): \"18014398509481984m\" is not an integer");
	env_clear();
}

static void
test_range_and_type(void)
{
	struct config c;
	char err[256];

	env_clear();
	/* Bounds are inclusive. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers=1", "--drain-s=0",
	    "--provider-retries=10", NULL), 0);
	CU_ASSERT_EQUAL(c.workers, 1);
	CU_ASSERT_EQUAL(c.drain_s, 0);
	CU_ASSERT_EQUAL(c.provider_retries, 10);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers=64", NULL), 0);
	CU_ASSERT_EQUAL(c.workers, 64);

	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers=0", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "workers (command line): 0 is out of range [1, 64]");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers", "-1", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "workers (command line): -1 is out of range [1, 64]");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--json-depth=257", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "json_depth (command line): 257 is out of range [2, 256]");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--threads=1.5", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "threads (command line): \"1.5\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--threads=", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "threads (command line): \"\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--threads=0x10", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "threads (command line): \"0x10\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--threads=99999999999999999999", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err,
	    "threads (command line): \"99999999999999999999\" is not an integer");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--log-level=loud", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err,
	    "log_level (command line): \"loud\" is not debug, info, warn or error");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--bench-routes=2", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "bench_routes (command line): \"2\" is not a boolean");
	env_clear();
}

static void
test_string_bound(void)
{
	struct config c;
	char err[256], pod[80];

	env_clear();
	memset(pod, 'p', 63);
	pod[63] = '\0';
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--pod", pod, NULL), 0);
	CU_ASSERT_EQUAL(strlen(c.pod), 63);
	memset(pod, 'p', 64);
	pod[64] = '\0';
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--pod", pod, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "pod (command line): value longer than 63 bytes");
	env_clear();
}

static void
test_unknown_and_malformed(void)
{
	struct config c;
	char err[256];

	env_clear();
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--bogus=1", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown option --bogus (try --help)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--bogus", "1", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown option --bogus (try --help)");
	/* Prefixes and extensions of a name are not the name. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--work=2", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown option --work (try --help)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workersx=2", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown option --workersx (try --help)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--=2", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown option -- (try --help)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "-workers=2", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unexpected argument \"-workers=2\" (try --help)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "workers", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unexpected argument \"workers\" (try --help)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "option --workers needs a value");
	/* Env names are not flags. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--TETHER_WORKERS=2", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown option --TETHER_WORKERS (try --help)");
	env_clear();
}

static void
test_cross_checks(void)
{
	struct config c;
	char err[256];

	env_clear();
	/* Open streams live in the stream loop, not in request threads: more streams
	 * than threads is the normal case. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--threads=100", "--max-watchers=10000", NULL), 0);
	CU_ASSERT_EQUAL(c.max_watchers, 10000);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-watchers=65537", NULL), -1);

	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=2048", "--max-input=2049", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "max_input (2049) must not exceed max_body (2048)");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--max-body=2048", "--max-input=2048", NULL), 0);
	/* The admin token: 32 characters at least, never the example file's. */
	setenv("TETHER_ADMIN_TOKEN", "0123456789abcdef0123456789abcde", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "shorter than 32 characters"));
	setenv("TETHER_ADMIN_TOKEN", "change-me-admin", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	setenv("TETHER_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	unsetenv("TETHER_ADMIN_TOKEN");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), 0);
	/* The default max_input (256 KiB) against a small body limit, set by env. */
	setenv("TETHER_MAX_BODY", "128k", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "max_input (262144) must not exceed max_body (131072)");
	env_clear();

	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--pod=a b", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "pod: \"a b\" may only hold letters, digits, '-', '_', '.'");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--pod=a/b", NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "pod: \"a/b\" may only hold letters, digits, '-', '_', '.'");
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--pod=p\xc3\xa9", NULL), -1);
	setenv("TETHER_POD", "pod;rm", 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, NULL), -1);
	CU_ASSERT_STRING_EQUAL(err, "pod: \"pod;rm\" may only hold letters, digits, '-', '_', '.'");
	env_clear();
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--pod=Pod_1.a-b", NULL), 0);
	CU_ASSERT_STRING_EQUAL(c.pod, "Pod_1.a-b");
	env_clear();
}

static void
test_help(void)
{
	struct config c;
	char err[256], out[1 << 16];
	FILE *tmp = tmpfile();
	int saved;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(tmp);
	env_clear();
	/* Capture stdout: usage goes there. */
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	CU_ASSERT_FATAL(saved >= 0);
	dup2(fileno(tmp), STDOUT_FILENO);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--help", NULL), 1);
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--workers=3", "-h", NULL), 1);
	/* --help stops reading: a bad flag after it is never seen. */
	CU_ASSERT_EQUAL(load(&c, err, sizeof err, "--help", "--bogus", NULL), 1);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, sizeof out - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	CU_ASSERT(strncmp(out, "usage: tetherd [--name value ...]\n", 34) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "--max-body"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "TETHER_MAX_BODY"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "[default 1048576, min 1024, max 67108864]"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "TETHER_DATABASE_URL or DATABASE_URL"));
	CU_ASSERT_PTR_NULL(strstr(out, "--max_body"));
	env_clear();
}

static void
test_set(void)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	CU_ASSERT_EQUAL(config_set(&c, "workers", "9", err, sizeof err), 0);
	CU_ASSERT_EQUAL(c.workers, 9);
	CU_ASSERT_EQUAL(config_set(&c, "max-output", "2m", err, sizeof err), 0);
	CU_ASSERT_EQUAL(c.max_output, 2 * 1024 * 1024);
	CU_ASSERT_EQUAL(config_set(&c, "provider_url", "http://x/v1", err, sizeof err), 0);
	CU_ASSERT_STRING_EQUAL(c.provider_url, "http://x/v1");
	CU_ASSERT_EQUAL(config_set(&c, "log-level", "error", err, sizeof err), 0);
	CU_ASSERT_EQUAL(c.log_level, LOG_ERROR);
	CU_ASSERT_EQUAL(config_set(&c, "bench_routes", "TRUE", err, sizeof err), 0);
	CU_ASSERT_EQUAL(c.bench_routes, 1);
	CU_ASSERT_EQUAL(config_set(&c, "bench_routes", "off", err, sizeof err), 0);
	CU_ASSERT_EQUAL(c.bench_routes, 0);

	CU_ASSERT_EQUAL(config_set(&c, "nope", "1", err, sizeof err), -1);
	CU_ASSERT_STRING_EQUAL(err, "unknown setting \"nope\"");
	CU_ASSERT_EQUAL(config_set(&c, "workers", "100", err, sizeof err), -1);
	CU_ASSERT_STRING_EQUAL(err, "workers (set): 100 is out of range [1, 64]");
	CU_ASSERT_EQUAL(c.workers, 9);        /* unchanged on error */
	CU_ASSERT_EQUAL(config_set(&c, "workers", "x", err, sizeof err), -1);
	CU_ASSERT_STRING_EQUAL(err, "workers (set): \"x\" is not an integer");
	CU_ASSERT_EQUAL(c.workers, 9);
}

static void
test_dump_masks_secrets(void)
{
	struct config c;
	char err[256], out[1 << 14];
	FILE *tmp = tmpfile();
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(tmp);
	config_defaults(&c);
	CU_ASSERT_EQUAL(config_set(&c, "admin_token", "hunter2", err, sizeof err), 0);
	CU_ASSERT_EQUAL(config_set(&c, "provider_key", "sk-abc", err, sizeof err), 0);
	config_dump(&c, tmp);
	rewind(tmp);
	n = fread(out, 1, sizeof out - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	CU_ASSERT_PTR_NULL(strstr(out, "hunter2"));
	CU_ASSERT_PTR_NULL(strstr(out, "sk-abc"));
	CU_ASSERT_PTR_NULL(strstr(out, "postgresql://"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nadmin_token=(set)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nprovider_key=(set)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nworkers=2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nprovider_url=\n"));
}

/* The documented maxima (tetherd --help) under the 1024-descriptor cap. */
static void
test_fit_fds(void)
{
	struct config cfg;
	char msg[512];

	config_defaults(&cfg);
	cfg.threads = 900;
	cfg.db_pool = 64;
	cfg.max_runs = 4096;
	/* Mock only: runs hold no descriptor; threads + pool + reserve fit. */
	CU_ASSERT_EQUAL(config_fit_fds(&cfg, CONFIG_FD_LIMIT, msg, sizeof msg), 0);
	CU_ASSERT_EQUAL(cfg.max_runs, 4096);
	/* With a provider: max_runs shrinks to what the descriptors allow. */
	snprintf(cfg.provider_url, sizeof cfg.provider_url, "http://127.0.0.1:9/v1");
	CU_ASSERT_EQUAL(config_fit_fds(&cfg, CONFIG_FD_LIMIT, msg, sizeof msg), 1);
	CU_ASSERT_EQUAL(cfg.max_runs, (CONFIG_FD_LIMIT - 900 - 64 - CONFIG_FD_RESERVE) / CONFIG_FDS_PER_RUN);
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "using max_runs 9"));
	CU_ASSERT((long)cfg.threads + cfg.db_pool + CONFIG_FD_RESERVE +
	    (long)cfg.max_runs * CONFIG_FDS_PER_RUN <= CONFIG_FD_LIMIT);
	/* Defaults fit as they are. */
	config_defaults(&cfg);
	snprintf(cfg.provider_url, sizeof cfg.provider_url, "http://127.0.0.1:9/v1");
	CU_ASSERT_EQUAL(config_fit_fds(&cfg, CONFIG_FD_LIMIT, msg, sizeof msg), 0);
	CU_ASSERT_EQUAL(cfg.max_runs, 128);
	/* A lower process limit than threads need: refused, clearly. */
	cfg.threads = 900;
	CU_ASSERT_EQUAL(config_fit_fds(&cfg, 512, msg, sizeof msg), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "lower threads"));
}

static const struct unit_case cases[] = {
	{ "defaults", test_defaults },
	{ "load defaults", test_load_defaults },
	{ "environment", test_env },
	{ "environment alternates", test_env_alternates },
	{ "environment rejected", test_env_rejected },
	{ "flags", test_flags },
	{ "k and m suffixes", test_suffixes },
	{ "range and type", test_range_and_type },
	{ "string bound", test_string_bound },
	{ "unknown and malformed flags", test_unknown_and_malformed },
	{ "cross checks", test_cross_checks },
	{ "help", test_help },
	{ "config_set", test_set },
	{ "dump masks secrets", test_dump_masks_secrets },
	{ "secrets not in argv", test_secrets_not_in_argv },
	{ "file descriptor budget", test_fit_fds },
};

UNIT_MAIN("config", cases)
