/* master.c - prefork: one listening socket, N worker processes, restarts with
 * backoff (a worker that dies at once is not restarted in a tight loop), and
 * a drain on SIGTERM. Single-threaded on purpose: it forks. */
#include "master.h"
#include "config.h"
#include "crash.h"
#include "fault.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKLOG 1024
#define MAX_WORKERS 64
#define QUICK_DEATH_MS 2000
#define MAX_RESPAWN_DELAY_MS 5000

struct slot {
	pid_t pid;
	int64_t started_ms;
	int64_t respawn_at_ms;          /* 0: not waiting */
	int64_t delay_ms;
};

static int
is_unix(const char *addr)
{
	return addr[0] == '/' || addr[0] == '.' || strncmp(addr, "unix:", 5) == 0;
}

int
master_listen(const char *addr, char *err, size_t errlen)
{
	int fd, one = 1;

	if (is_unix(addr)) {
		struct sockaddr_un sun;
		const char *path = strncmp(addr, "unix:", 5) == 0 ? addr + 5 : addr;

		if (strlen(path) >= sizeof sun.sun_path) {
			snprintf(err, errlen, "socket path too long: %s", path);
			return -1;
		}
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, path, strlen(path) + 1);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
			snprintf(err, errlen, "socket: %s", strerror(errno));
			return -1;
		}
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
		    chmod(path, 0666) < 0 || listen(fd, BACKLOG) < 0) {
			snprintf(err, errlen, "could not listen on %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		return fd;
	} else {
		char host[256];
		const char *colon = strrchr(addr, ':');
		struct addrinfo hints, *res = NULL;
		int gai;

		if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
			snprintf(err, errlen, "listen address must be a path or HOST:PORT: %s", addr);
			return -1;
		}
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		memset(&hints, 0, sizeof hints);
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		if ((gai = getaddrinfo(strcmp(host, "*") ? host : NULL, colon + 1, &hints, &res)) != 0) {
			snprintf(err, errlen, "could not resolve %s: %s", addr, gai_strerror(gai));
			return -1;
		}
		fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0) {
			snprintf(err, errlen, "could not listen on %s: %s", addr, strerror(errno));
			if (fd >= 0)
				close(fd);
			freeaddrinfo(res);
			return -1;
		}
		freeaddrinfo(res);
		return fd;
	}
}

static pid_t
spawn(const struct config *cfg, int fd, sigset_t *oldmask, struct crash_slot *cs)
{
	pid_t master = getpid(), pid;

	if (fault_hit("fork")) {
		errno = EAGAIN;
		pid = -1;
	} else {
		pid = fork();
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, oldmask, NULL);
		signal(SIGCHLD, SIG_DFL);
		_exit(worker_main(cfg, fd, master, cs));
	}
	if (pid > 0)
		tlog(LOG_INFO, "started worker process %d", (int)pid);
	return pid;
}

/* Start slot i's worker. A failed fork (out of processes or memory) leaves the
 * slot empty with a respawn due after a growing delay, like a worker that died
 * at once: the slot is never lost. */
static void
slot_start(const struct config *cfg, struct slot *sl, int fd, sigset_t *oldmask,
    struct crash_slot *cs)
{
	int64_t now = now_ms();

	sl->pid = spawn(cfg, fd, oldmask, cs);
	sl->started_ms = now;
	sl->respawn_at_ms = 0;
	if (sl->pid > 0)
		return;
	sl->pid = 0;
	sl->delay_ms = sl->delay_ms * 2 > MAX_RESPAWN_DELAY_MS ? MAX_RESPAWN_DELAY_MS
	    : sl->delay_ms * 2;
	sl->respawn_at_ms = now + sl->delay_ms;
	tlog(LOG_ERROR, "could not fork a worker: %s; trying again in %lld ms", strerror(errno),
	    (long long)sl->delay_ms);
}

static void
describe(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else
		snprintf(buf, n, "stopped (status %d)", status);
}

static void
drain(const struct config *cfg, struct slot *slots, int n, int fd)
{
	int64_t deadline = now_ms() + (int64_t)cfg->drain_s * 1000 + 10000;
	int left;

	tlog(LOG_INFO, "pod draining: closing the socket, asking %d workers to finish", n);
	if (is_unix(cfg->listen))
		unlink(strncmp(cfg->listen, "unix:", 5) == 0 ? cfg->listen + 5 : cfg->listen);
	/* Refuse new connections at once, in every process sharing the socket. */
	shutdown(fd, SHUT_RDWR);
	close(fd);
	for (int i = 0; i < n; i++)
		if (slots[i].pid > 0)
			kill(slots[i].pid, SIGTERM);
	for (;;) {
		int status;
		pid_t pid;

		left = 0;
		for (int i = 0; i < n; i++)
			if (slots[i].pid > 0)
				left++;
		if (left == 0 || now_ms() > deadline)
			break;
		pid = waitpid(-1, &status, WNOHANG);
		if (pid > 0) {
			char why[128];

			describe(status, why, sizeof why);
			for (int i = 0; i < n; i++)
				if (slots[i].pid == pid) {
					slots[i].pid = 0;
					tlog(LOG_INFO, "worker %d %s", (int)pid, why);
				}
			continue;
		}
		sleep_ms(20);
	}
	for (int i = 0; i < n; i++)
		if (slots[i].pid > 0) {
			tlog(LOG_WARN, "worker %d did not stop in time; killing it", (int)slots[i].pid);
			kill(slots[i].pid, SIGKILL);
			waitpid(slots[i].pid, NULL, 0);
		}
	tlog(LOG_INFO, "pod stopped");
}

int
master_run(const struct config *cfg)
{
	struct slot slots[MAX_WORKERS];
	struct crash_slot *crashes;
	sigset_t set, old;
	char err[256];
	int fd, n = cfg->workers;

	if ((fd = master_listen(cfg->listen, err, sizeof err)) < 0) {
		tlog(LOG_ERROR, "%s", err);
		return 1;
	}
	/* Workers inherit the socket through fork (no exec: close-on-exec does not matter). */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &old);
	memset(slots, 0, sizeof slots);
	/* One poison-run record per slot, shared with its workers (docs/DESIGN.md). */
	if (!(crashes = crash_slots_map(n)))
		tlog(LOG_WARN, "could not map the crash records (%s): crashes will not count "
		    "toward max_attempts", strerror(errno));
	tlog(LOG_INFO, "pod %s listening on %s with %d workers", cfg->pod, cfg->listen, n);
	for (int i = 0; i < n; i++) {
		slots[i].delay_ms = 125;
		slot_start(cfg, &slots[i], fd, &old, crashes ? &crashes[i] : NULL);
		if (slots[i].pid > 0)
			slots[i].delay_ms = 250;
	}
	for (;;) {
		struct timespec ts = { 0, 200 * 1000000 };
		int sig = sigtimedwait(&set, NULL, &ts), status;
		int64_t now = now_ms();
		pid_t pid;

		if (sig == SIGTERM || sig == SIGINT) {
			drain(cfg, slots, n, fd);
			return 0;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			char why[128];

			describe(status, why, sizeof why);
			for (int i = 0; i < n; i++) {
				if (slots[i].pid != pid)
					continue;
				slots[i].pid = 0;
				if (now - slots[i].started_ms < QUICK_DEATH_MS) {
					slots[i].delay_ms = slots[i].delay_ms * 2 > MAX_RESPAWN_DELAY_MS
					    ? MAX_RESPAWN_DELAY_MS : slots[i].delay_ms * 2;
				} else {
					slots[i].delay_ms = 250;
				}
				slots[i].respawn_at_ms = now + (now - slots[i].started_ms < QUICK_DEATH_MS
				    ? slots[i].delay_ms : 0);
				tlog(LOG_WARN, "worker %d %s; starting a new worker%s", (int)pid, why,
				    slots[i].respawn_at_ms > now ? " after a delay" : "");
				if (crashes && crash_slot_reaped(&crashes[i], status))
					tlog(LOG_WARN, "worker %d crashed generating run %s (attempt %d); "
					    "the next worker charges the run a crash", (int)pid,
					    crashes[i].run_id, crashes[i].attempt);
			}
		}
		for (int i = 0; i < n; i++) {
			if (slots[i].pid == 0 && slots[i].respawn_at_ms && now >= slots[i].respawn_at_ms)
				slot_start(cfg, &slots[i], fd, &old, crashes ? &crashes[i] : NULL);
		}
	}
}
