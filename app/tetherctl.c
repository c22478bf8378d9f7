/* tetherctl - the command-line client for people, scripts and the cron. */
#include "buf.h"
#include "client.h"
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
	    "  chat [--thread ID] [--model M] [--raw] TEXT...\n"
	    "                     start a run (a new thread unless --thread) and print the\n"
	    "                     reply as it streams; survives pod death (reconnects)\n"
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
		else if (!strcmp(argv[i], "--database-url") && i + 1 < argc)
			url = argv[++i];
		else {
			fprintf(stderr, "tetherctl migrate: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!url) {
		fprintf(stderr, "tetherctl migrate: set DATABASE_URL or --database-url\n");
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

struct chat_state {
	int raw;
	int status_ok;
	char status[32];
};

static int
chat_event(void *arg, const struct sse_event *ev)
{
	struct chat_state *cs = arg;
	struct json_object *o = json_tokener_parse(ev->data), *v;

	if (cs->raw) {
		printf("%s %s %s\n", ev->id, ev->event, ev->data);
	} else if (!strcmp(ev->event, "delta") && o && json_object_object_get_ex(o, "text", &v)) {
		fputs(json_object_get_string(v), stdout);
	} else if (!strcmp(ev->event, "reset") && o && json_object_object_get_ex(o, "attempt", &v)) {
		printf("\n[the server generating this reply was lost; attempt %d restarts it]\n",
		    json_object_get_int(v));
	}
	if (!strcmp(ev->event, "done") && o && json_object_object_get_ex(o, "status", &v)) {
		snprintf(cs->status, sizeof cs->status, "%s", json_object_get_string(v));
		cs->status_ok = !strcmp(cs->status, "completed");
		if (!cs->raw) {
			struct json_object *e;
			printf("\n");
			if (!cs->status_ok)
				fprintf(stderr, "run %s%s%s\n", cs->status,
				    json_object_object_get_ex(o, "error", &e) ? ": " : "",
				    json_object_object_get_ex(o, "error", &e) ?
				    json_object_to_json_string(e) : "");
		}
	}
	fflush(stdout);
	json_object_put(o);
	return 0;
}

static const char *
json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static int
cmd_chat(struct client *c, int argc, char **argv)
{
	const char *thread = NULL, *model = NULL;
	struct chat_state cs = { 0 };
	struct client_stream s;
	struct buf text, body, resp;
	char err[1024], path[256], idem[40], thread_id[UUID_LEN + 1];
	struct json_object *o = NULL;
	int st = -1, rc = 1;

	buf_init(&text, 1 << 20);
	/* The text escaped (a control byte takes six), the model too, and the braces. */
	buf_init(&body, JSON_STR_MAX(1 << 20) + JSON_STR_MAX(1024) + 64);
	buf_init(&resp, 1 << 20);
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--thread") && i + 1 < argc)
			thread = argv[++i];
		else if (!strcmp(argv[i], "--model") && i + 1 < argc)
			model = argv[++i];
		else if (!strcmp(argv[i], "--raw"))
			cs.raw = 1;
		else if (buf_printf(&text, "%s%s", text.len ? " " : "", argv[i]) != TE_OK) {
			fprintf(stderr, "tetherctl chat: the text is longer than 1 MiB\n");
			goto out;
		}
	}
	if (!text.len) {
		fprintf(stderr, "tetherctl chat: what should I send? (tetherctl chat TEXT...)\n");
		goto out;
	}
	if (thread) {
		snprintf(thread_id, sizeof thread_id, "%s", thread);
	} else {
		st = client_json(c, "POST", "/v1/threads", "{}", &resp, err, sizeof err);
		o = json_tokener_parse(resp.data ? resp.data : "");
		if (st != 201 || !json_str(o, "id")) {
			fprintf(stderr, "tetherctl chat: could not create a thread: %s\n",
			    st < 0 ? err : resp.data);
			goto out;
		}
		snprintf(thread_id, sizeof thread_id, "%s", json_str(o, "id"));
		json_object_put(o);
		o = NULL;
		fprintf(stderr, "thread %s\n", thread_id);
	}
	if (model && strlen(model) > 1024) {
		fprintf(stderr, "tetherctl chat: the model name is longer than 1024 bytes\n");
		goto out;
	}
	if (buf_puts(&body, "{\"input\":") != TE_OK ||
	    buf_json_str(&body, text.data, text.len) != TE_OK ||
	    (model && (buf_puts(&body, ",\"model\":") != TE_OK ||
	    buf_json_str(&body, model, strlen(model)) != TE_OK)) || buf_puts(&body, "}") != TE_OK) {
		fprintf(stderr, "tetherctl chat: could not build the request (out of memory)\n");
		goto out;
	}
	/* Retried POSTs carry the same Idempotency-Key: at most one run is created. */
	random_hex(idem, 16);
	snprintf(path, sizeof path, "/v1/threads/%s/runs", thread_id);
	for (int tries = 0; tries < 10; tries++) {
		buf_reset(&resp);
		st = client_json_idem(c, "POST", path, body.data, idem, &resp, err, sizeof err);
		if (st == 200 || st == 202 || (st >= 400 && st < 500))
			break;
		sleep_ms(300 * (tries + 1));
	}
	o = json_tokener_parse(resp.data ? resp.data : "");
	if ((st != 200 && st != 202) || !json_str(o, "run_id")) {
		fprintf(stderr, "tetherctl chat: could not start the run: %s\n", st < 0 ? err : resp.data);
		goto out;
	}
	fprintf(stderr, "run %s\n", json_str(o, "run_id"));
	memset(&s, 0, sizeof s);
	s.on_event = chat_event;
	s.arg = &cs;
	snprintf(path, sizeof path, "/v1/runs/%s/events", json_str(o, "run_id"));
	if (client_stream(c, path, &s, 30, err, sizeof err) < 0) {
		fprintf(stderr, "tetherctl chat: the stream ended without done: %s\n", err);
		goto out;
	}
	rc = cs.status_ok ? 0 : 1;
out:
	json_object_put(o);
	buf_free(&text);
	buf_free(&body);
	buf_free(&resp);
	return rc;
}

static int
cmd_watch(struct client *c, int argc, char **argv)
{
	struct chat_state cs = { .raw = 1 };
	struct client_stream s;
	const char *run = NULL;
	char path[256], err[1024];

	memset(&s, 0, sizeof s);
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc)
			snprintf(s.last_id, sizeof s.last_id, "%s", argv[++i]);
		else if (!run)
			run = argv[i];
		else {
			fprintf(stderr, "tetherctl watch: unexpected %s\n", argv[i]);
			return 2;
		}
	}
	if (!run || !uuid_valid(run)) {
		fprintf(stderr, "tetherctl watch: give a run id (a lower-case UUID)\n");
		return 2;
	}
	s.on_event = chat_event;
	s.arg = &cs;
	snprintf(path, sizeof path, "/v1/runs/%s/events", run);
	if (client_stream(c, path, &s, 30, err, sizeof err) < 0) {
		fprintf(stderr, "tetherctl watch: the stream ended without done: %s\n", err);
		return 1;
	}
	return cs.status_ok ? 0 : 1;
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
		rc = !strcmp(cmd, "chat") ? cmd_chat(&c, argc - i, argv + i)
		    : cmd_watch(&c, argc - i, argv + i);
	} else {
		fprintf(stderr, "tetherctl: unknown command %s\n", cmd);
		usage(stderr);
		rc = 2;
	}
	curl_global_cleanup();
	return rc;
}
