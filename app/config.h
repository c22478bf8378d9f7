/* config.h - every setting in one table with min, max and default (config.c).
 * Sources, later ones winning: defaults, environment (TETHER_*), command-line flags. */
#ifndef TETHER_CONFIG_H
#define TETHER_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct config {
	/* process */
	char listen[256];
	int workers;
	char pod[64];
	int log_level;
	/* dependencies */
	char database_url[1024];
	char nats_url[512];
	char nats_user[128];
	char nats_password[256];
	char admin_token[256];
	int auth_cache_ms;
	int auth_negative_ms;
	int db_pool;
	int db_connect_timeout_s;
	int db_keepalives_idle_s;
	int db_keepalives_interval_s;
	int db_keepalives_count;
	int db_tcp_user_timeout_ms;
	int statement_timeout_ms;
	int nats_timeout_ms;
	/* capacity and input bounds */
	int threads;
	int max_runs;
	int max_watchers;
	int tenant_max_active_runs;
	int tenant_max_streams;
	int tenant_max_output_bytes;
	int tenant_requests_per_s;
	int max_body;
	int max_input;
	int history_max_bytes;
	int history_max_turns;
	int json_depth;
	int max_output;
	/* streaming */
	int heartbeat_s;
	int stall_ms;
	int stream_max_age_s;
	int dup_window_s;
	int stream_replicas;
	int stream_max_mb;
	int purge_grace_s;
	int mock;
	int hub_max_bytes;
	int live_pending_msgs;
	/* ownership and takeover */
	int worker_heartbeat_ms;
	int drain_s;
	int max_attempts;
	int max_run_s;
	int pg_grace_s;
	/* model provider */
	char provider_url[512];
	char provider_key[512];
	char provider_model[128];
	char provider_models[1024];
	char system_prompt[4096];
	int provider_connect_ms;
	int provider_first_token_ms;
	int provider_idle_ms;
	int provider_total_s;
	int provider_retries;
	int provider_max_line;
	/* benchmarks */
	int bench_routes;
};

/* Fill cfg from defaults, the environment and argv. On error writes a message
 * to err and returns -1; returns 1 when --help was asked (usage printed). */
int config_load(struct config *cfg, int argc, char **argv, char *err, size_t errlen);
void config_defaults(struct config *cfg);
void config_usage(FILE *fp, const char *prog);
/* Set one value by its name (as in --name); for tests and the CLI. */
int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen);
/* File descriptors. libfcgi select()s on the connections it accepts and closes, and
 * select() cannot see a descriptor at or past FD_SETSIZE (1024): tetherd lowers its
 * soft RLIMIT_NOFILE to CONFIG_FD_LIMIT at start (nofile_cap), and every descriptor
 * a worker may hold besides its open streams must fit under it (a worker raises
 * its soft limit again for the stream loop, whose streams move above 1024; the
 * accept path refuses a connection that would land there): one connection per
 * request thread, the
 * database pool, CONFIG_FD_RESERVE for the rest (stdio, the listening socket, the
 * liveness connection, NATS, curl's and libc's own), and with a provider
 * configured CONFIG_FDS_PER_RUN per generating run (a connection and curl's
 * wakeup pair). */
#define CONFIG_FD_LIMIT 1024
#define CONFIG_FD_RESERVE 32
#define CONFIG_FDS_PER_RUN 3
/* Fit the settings under nofile descriptors: 0 when they fit; 1 when max_runs was
 * lowered to fit (msg says so); -1 when threads and db_pool alone do not fit
 * (msg says why). */
int config_fit_fds(struct config *cfg, long nofile, char *msg, size_t msglen);
/* Print every value (secrets masked) as name=value lines. */
void config_dump(const struct config *cfg, FILE *fp);

#endif
