/* tetherctl - the command-line client for people, scripts and the cron. */
#include "buf.h"
#include "client.h"
#include "ctlchat.h"
#include "err.h"
#include "store.h"
#include "util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: tetherctl COMMAND [options]\n\n"
	    "  chat [--thread ID] [--model M] [--raw] [TOOL OPTIONS] TEXT...\n"
	    "                     start a run (a new thread unless --thread) and print the\n"
	    "                     reply as it streams; survives pod death (reconnects).\n"
	    "                     Tool calls show as [tool call NAME ARGS, id ID]; when the run\n"
	    "                     ends asking for them (requires_action), chat answers each,\n"
	    "                     sends the outputs and follows the continuation (at most 16\n"
	    "                     rounds). An answer comes from, in this order:\n"
	    "    --tool NAME=CMD  run CMD with /bin/sh, the call's arguments (JSON, one\n"
	    "                     line) on its stdin; its stdout is the output (trailing\n"
	    "                     newlines removed, at most 64 KiB); a failure, a non-zero\n"
	    "                     exit or the timeout sends an error text instead and says\n"
	    "                     so. Repeatable; each NAME is also declared to the model\n"
	    "                     as a tool\n"
	    "    --tool-output TEXT  the output of every call (for scripts)\n"
	    "                     else a prompt on the terminal for each call's output; with\n"
	    "                     no terminal, chat stops with exit status 3\n"
	    "    --tool-timeout S seconds CMD may take (default 30)\n"
	    "    --tools FILE     declare the tools in FILE (a JSON array of tool definitions)\n"
	    "    --tool-choice C  auto, none, required, or a tool's name\n"
	    "  watch RUN_ID [--from EVENT_ID]\n"
	    "                     print a run's events (id, event, data), resuming after EVENT_ID\n"
	    "  key TENANT         create an API key for TENANT (admin token)\n"
	    "  key list TENANT    list TENANT's keys: id, created_at, revoked_at (admin token)\n"
	    "  key revoke ID      revoke the key with that id, on every pod (admin token)\n"
	    "  recover            run the recovery sweep once (admin token; what the cron does)\n"
	    "  migrate [--sql-dir DIR]\n"
	    "                     apply pending sql/NNNN_*.sql migrations (DATABASE_URL)\n"
	    "  free-port          print a free TCP port on 127.0.0.1 (for scripts)\n\n"
	    "Environment: TETHER_URL (default http://127.0.0.1:8080), TETHER_KEY (API key),\n"
	    "TETHER_ADMIN_TOKEN, DATABASE_URL. Options --url and --key override them.\n");
}

static const char *
env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

static int
cmd_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("tetherctl free-port");
		return 1;
	}
	printf("%d\n", ntohs(sa.sin_port));
	close(fd);
	return 0;
}

static int
cmd_migrate(int argc, char **argv)
{
	const char *dir = env_or("TETHER_SQL_DIR", TETHER_SQL_DIR_DEFAULT);
	const char *url = env_or("DATABASE_URL", NULL);
	char err[1024];
	int applied = 0;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--sql-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--database-url")) {
			fprintf(stderr, "tetherctl migrate: --database-url is gone (a password on the "
			    "command line is visible to every user): set DATABASE_URL\n");
			return 2;
		} else {
			fprintf(stderr, "tetherctl migrate: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!url) {
		fprintf(stderr, "tetherctl migrate: set DATABASE_URL\n");
		return 2;
	}
	if (store_migrate(url, dir, 5, &applied, err, sizeof err) != TE_OK) {
		fprintf(stderr, "tetherctl migrate: %s\n", err);
		return 1;
	}
	printf("migrations applied: %d\n", applied);
	return 0;
}

static int
admin_call(const struct client *c, const char *method, const char *path, int expect)
{
	struct buf resp;
	char err[512];
	int st;

	buf_init(&resp, 16 << 20);
	st = client_json(c, method, path, NULL, &resp, err, sizeof err);
	if (st < 0) {
		fprintf(stderr, "tetherctl: %s\n", err);
		buf_free(&resp);
		return 1;
	}
	printf("%s\n", resp.data ? resp.data : "");
	buf_free(&resp);
	return st == expect ? 0 : 1;
}


int
main(int argc, char **argv)
{
	struct client c = { env_or("TETHER_URL", "http://127.0.0.1:8080"), NULL, 30 };
	const char *cmd;
	int i = 1, rc;

	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--url") && i + 1 < argc) {
			c.url = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "--key") && i + 1 < argc) {
			c.key = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "tetherctl: unknown option %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[i++];
	if (!strcmp(cmd, "free-port"))
		return cmd_free_port();
	if (!strcmp(cmd, "migrate"))
		return cmd_migrate(argc - i, argv + i);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(cmd, "key") || !strcmp(cmd, "recover")) {
		char path[256];

		if (!c.key)
			c.key = env_or("TETHER_ADMIN_TOKEN", NULL);
		if (!strcmp(cmd, "key")) {
			if (i >= argc) {
				fprintf(stderr, "tetherctl key: give a tenant name\n");
				return 2;
			}
			if (i + 1 < argc && !strcmp(argv[i], "list")) {
				snprintf(path, sizeof path, "/v1/admin/tenants/%s/keys", argv[i + 1]);
				rc = admin_call(&c, "GET", path, 200);
			} else if (i + 1 < argc && !strcmp(argv[i], "revoke")) {
				snprintf(path, sizeof path, "/v1/admin/keys/%s", argv[i + 1]);
				rc = admin_call(&c, "DELETE", path, 200);
			} else {
				snprintf(path, sizeof path, "/v1/admin/tenants/%s/keys", argv[i]);
				rc = admin_call(&c, "POST", path, 201);
			}
		} else {
			rc = admin_call(&c, "POST", "/v1/admin/recover", 200);
		}
	} else if (!strcmp(cmd, "chat") || !strcmp(cmd, "watch")) {
		if (!c.key)
			c.key = env_or("TETHER_KEY", NULL);
		if (!c.key) {
			fprintf(stderr, "tetherctl %s: set TETHER_KEY (tetherctl key TENANT makes one)\n", cmd);
			return 2;
		}
		rc = !strcmp(cmd, "chat") ? ctlchat_chat(&c, argc - i, argv + i)
		    : ctlchat_watch(&c, argc - i, argv + i);
	} else {
		fprintf(stderr, "tetherctl: unknown command %s\n", cmd);
		usage(stderr);
		rc = 2;
	}
	curl_global_cleanup();
	return rc;
}
