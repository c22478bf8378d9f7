/* worker.c - a worker process. Identity: a workers row whose liveness lock is held
 * on a dedicated connection for the life of the process (DESIGN.md). Threads: the
 * main thread waits for signals; one heartbeat thread owns the liveness connection;
 * `threads` request threads accept FastCGI requests; one thread per active run. */
#include "worker.h"
#include "app.h"
#include "auth.h"
#include "bus.h"
#include "config.h"
#include "crash.h"
#include "err.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "quota.h"
#include "recovery.h"
#include "run.h"
#include "store.h"
#include "util.h"
#include "watcher.h"
#include "../handlers/routes.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <unistd.h>

#define REQ_STACK (256 * 1024)

static struct app app;
static int listen_fd = -1;
static atomic_int stop_accept;
static atomic_int stop_heartbeat;
static struct store_live *live;
static pthread_t hb_thread;           /* the liveness connection's heartbeat */
static atomic_int *in_accept;           /* per request thread: blocked in accept */
/* One thread per worker waits in accept() at a time. The kernel queues accepting
 * tasks FIFO, so with every thread in accept() one worker would take `threads`
 * connections in a row before the next got any; one waiter per worker makes the
 * workers of a pod take turns. */
static pthread_mutex_t accept_mu = PTHREAD_MUTEX_INITIALIZER;

static void
on_usr2(int sig)
{
	(void)sig;      /* interrupts accept(): FCGI_FAIL_ACCEPT_ON_INTR */
}

/* accept(2) here, not in libfcgi: libfcgi select()s the descriptors it accepts
 * and closes, and one at or above FD_SETSIZE would overflow its fd_set. Streams
 * in the loop live above 1024 (watcher.c), so accepted descriptors come from the
 * room below; if that ever runs out the connection is closed (nginx tries the next
 * server) and said so, never handed to libfcgi. */
static int
accept_fd(void)
{
	static atomic_llong refused;
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC), one = 1;

	if (fd < 0)
		return -1;
	if (fd >= FD_SETSIZE) {
		close(fd);
		if (atomic_fetch_add(&refused, 1) % 1000 == 0)
			tlog(LOG_ERROR, "a FastCGI connection got descriptor %d (>= %d, libfcgi's select() "
			    "limit): closed it; lower threads, max_runs or db_pool", fd, FD_SETSIZE);
		errno = EMFILE;
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* TCP only */
	return fd;
}

static void *
request_thread(void *arg)
{
	atomic_int *accepting = arg;
	FCGX_Request fr;
	int rc;

	if (FCGX_InitRequest(&fr, listen_fd, FCGI_FAIL_ACCEPT_ON_INTR) != 0)
		return NULL;
	while (!atomic_load(&stop_accept)) {
		struct req r;

		pthread_mutex_lock(&accept_mu);
		atomic_store(accepting, 1);
		rc = atomic_load(&stop_accept) ? -1 : accept_fd();
		atomic_store(accepting, 0);
		pthread_mutex_unlock(&accept_mu);
		if (rc >= 0) {
			/* FCGX_Accept_r reads the request from it: with keepConnection set,
			 * its leading FCGX_Finish_r keeps the descriptor open. */
			fr.ipcFd = rc;
			fr.keepConnection = 1;
			rc = FCGX_Accept_r(&fr);
		}
		if (rc < 0) {
			if (atomic_load(&stop_accept))
				break;
			sleep_ms(errno == EINTR ? 0 : 10);
			continue;
		}
		atomic_fetch_add(&app.ctr.requests, 1);
		http_req_init(&r, &app, app.cfg, &fr);
		route_dispatch(&r);
		if (log_enabled(LOG_DEBUG))
			tlog(LOG_DEBUG, "%s %s %d %lldus", r.method_str ? r.method_str : "-", r.path,
			    r.status, (long long)(now_us() - r.started_us));
		http_req_free(&r);
		FCGX_Finish_r(&fr);
		atomic_fetch_sub(&app.ctr.requests, 1);
	}
	FCGX_Free(&fr, 1);
	return NULL;
}

static void
on_ctl(void *arg, const char *verb, const char *run_id)
{
	(void)arg;
	if (!strcmp(verb, "cancel")) {
		runner_cancel(app.runner, run_id, 0);
	} else if (!strcmp(verb, "revoke")) {
		/* run_id is a key id here: refuse it from now on, end its streams. */
		auth_revoke(app.auth, run_id);
		wloop_revoked(app.wloop);
	}
}

/* Tenant quotas across the cluster: publish this worker's usage, read the others'
 * (quota.h). On failure the last figures stay. */
static void
quota_sync(void)
{
	char *mine = quota_usage_json(app.quota), *others = NULL;

	if (mine && store_tenant_usage_sync(app.store, app.worker, mine, &others) == TE_OK)
		quota_others_set(app.quota, others);
	free(mine);
	free(others);
}

/* Finished runs' events leave JetStream after TETHER_PURGE_GRACE_S (they replay
 * from PostgreSQL). Every worker takes a share (SKIP LOCKED); a purge that fails
 * is handed back for a later pass. */
static void
purge_finished(void)
{
	char (*ids)[UUID_LEN + 1] = NULL;
	size_t n = 0;

	if (!bus_connected(app.bus) ||
	    store_runs_purge_claim(app.store, app.cfg->purge_grace_s, 64, &ids, &n) != TE_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		if (bus_run_purge(app.bus, ids[i]) == TE_OK)
			continue;
		tlog_run(LOG_WARN, ids[i], 0, "could not purge the finished run's events from "
		    "JetStream; a later pass retries");
		if (store_run_purge_undo(app.store, ids[i]) != TE_OK)
			tlog_run(LOG_WARN, ids[i], 0, "could not mark the run for a later purge; its "
			    "events leave with the stream's max age or size");
	}
	free(ids);
}

/* The liveness connection: heartbeat, re-lock after PostgreSQL comes back,
 * and exit when this worker has been declared dead. */
static void *
heartbeat_thread(void *arg)
{
	pid_t master = *(pid_t *)arg;
	int64_t backoff = 100;

	while (!atomic_load(&stop_heartbeat)) {
		char *counters = app_counters_json(&app,
		    app.runner ? runner_reserved(app.runner) : 0);
		int rc = store_live_heartbeat(live, counters ? counters : "{}");

		free(counters);
		if (rc == TE_DB) {
			tlog(LOG_WARN, "liveness connection lost; reconnecting");
			while (!atomic_load(&stop_heartbeat) &&
			    (rc = store_live_reconnect(live)) == TE_DB) {
				sleep_ms(backoff);
				backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
			}
			if (rc == TE_OK) {
				tlog(LOG_INFO, "liveness lock re-taken");
				backoff = 100;
			}
		}
		if (rc == TE_NOTFOUND) {
			tlog(LOG_ERROR, "this worker was declared dead (its row is gone): its runs "
			    "belong to others now; exiting so the master starts a fresh worker");
			runner_abort_all(app.runner);
			_exit(3);
		}
		if (getppid() != master)
			kill(getpid(), SIGTERM);
		for (int waited = 0; waited < app.cfg->worker_heartbeat_ms &&
		    !atomic_load(&stop_heartbeat); waited += 50) {
			if (waited % QUOTA_SYNC_MS == 0)
				quota_sync();
			if (waited % 1000 == 0)
				purge_finished();
			sleep_ms(50);
		}
	}
	return NULL;
}

static void
retry_until(const char *what, int (*fn)(void), const sigset_t *stopset)
{
	int64_t backoff = 200;
	struct timespec ts = { 0, 0 };

	while (fn() != TE_OK) {
		tlog(LOG_WARN, "%s failed; retrying in %lld ms", what, (long long)backoff);
		ts.tv_sec = backoff / 1000;
		ts.tv_nsec = (backoff % 1000) * 1000000;
		if (sigtimedwait(stopset, NULL, &ts) > 0) {
			tlog(LOG_INFO, "stopping before start");
			_exit(0);
		}
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
}

/* Streams in the loop live on descriptors from 1024 up (libfcgi's select() sees
 * only those below): the soft limit must leave room for max_watchers of them. */
static void
raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_watchers + 1024 + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < want)
		tlog(LOG_WARN, "descriptor limit %llu is below max_watchers + 1280 (%llu): streams past "
		    "it stay in request threads or are refused", (unsigned long long)rl.rlim_cur,
		    (unsigned long long)want);
}

static int
do_live(void)
{
	return store_live_open(&live, app.cfg, app.pod, app.pid, &app.worker);
}

static int
do_bus(void)
{
	char name[96];
	int rc;

	snprintf(name, sizeof name, "tetherd/%s/%d", app.pod, (int)app.pid);
	if (!app.bus && (rc = bus_open(&app.bus, app.cfg, name)) != TE_OK)
		return rc;
	return bus_stream_ensure(app.bus);
}

/* The run the previous worker of this slot crashed on (crash.h): charge it one
 * crash; at max_attempts crashes it fails here, and its watchers get done. */
static void
charge_crash(struct crash_slot *cs)
{
	char run_id[UUID_LEN + 1], *error_json = NULL;
	int attempt, failed_now = 0, cur = 0, rc;
	int64_t backoff = 200, deadline = now_ms() + 30000;

	if (!crash_take(cs, run_id, &attempt))
		return;
	while ((rc = store_run_charge_crash(app.store, run_id, attempt, app.cfg->max_attempts,
	    &failed_now, &cur, &error_json)) == TE_DB || rc == TE_TIMEOUT) {
		if (now_ms() > deadline) {
			tlog_run(LOG_ERROR, run_id, attempt, "could not charge the run the crash of the "
			    "previous worker within 30 s: %s; the crash is not counted", te_strerror(rc));
			return;
		}
		tlog_run(LOG_WARN, run_id, attempt, "could not charge the run its crash (%s); retrying",
		    te_strerror(rc));
		sleep_ms(backoff);
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
	if (rc != TE_OK) {
		tlog_run(LOG_INFO, run_id, attempt, "the run that crashed the previous worker was "
		    "charged already (%s)", te_strerror(rc));
		return;
	}
	tlog_run(LOG_WARN, run_id, attempt, "charged the run a crash of the previous worker%s",
	    failed_now ? "; it reached max_attempts and failed (too_many_attempts)" : "");
	if (failed_now)
		run_announce_terminal(app.runner, run_id, cur, "failed", error_json, "final");
	free(error_json);
}

/* Returns how many threads may still run: generators past the deadline and
 * request threads that did not leave accept(). */
static int
drain(pthread_t *threads, int nthreads)
{
	const struct config *cfg = app.cfg;
	int64_t deadline;
	int left, stuck = 0;

	tlog(LOG_INFO, "draining: new runs refused, streams closed, %d runs get %d s to finish",
	    runner_reserved(app.runner), cfg->drain_s);
	atomic_store(&app.draining, 1);
	atomic_store(&app.closing, 1);
	atomic_store(&stop_accept, 1);
	wloop_close(app.wloop);
	FCGX_ShutdownPending();
	/* Threads blocked in accept() need a signal; retry until every one has left. */
	deadline = now_ms() + 5000;
	for (int i = 0; i < nthreads; i++) {
		int rc;

		while ((rc = pthread_tryjoin_np(threads[i], NULL)) == EBUSY && now_ms() < deadline) {
			if (atomic_load(&in_accept[i]))
				pthread_kill(threads[i], SIGUSR2);
			sleep_ms(5);
		}
		stuck += rc == EBUSY;
	}
	left = runner_wait(app.runner, now_ms() + (int64_t)cfg->drain_s * 1000);
	if (left > 0) {
		tlog(LOG_WARN, "drain deadline: aborting %d runs; survivors take them over", left);
		runner_abort_all(app.runner);
		left = runner_wait(app.runner, now_ms() + 2000);
	}
	/* The heartbeat thread uses the liveness connection: stop it before closing
	 * that (ThreadSanitizer found the two racing). */
	atomic_store(&stop_heartbeat, 1);
	pthread_join(hb_thread, NULL);
	/* Release the lock last: survivors may take over only what we no longer run. */
	store_live_close(live, left == 0);
	live = NULL;
	tlog(LOG_INFO, "drained; exiting");
	return left + stuck;
}

int
worker_main(const struct config *cfg, int fd, pid_t master, struct crash_slot *crash)
{
	sigset_t stopset, usr2;
	struct sigaction sa;
	pthread_attr_t attr;
	pthread_t *threads;
	int nthreads = 0, sig, remain;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master)
		return 0;
	memset(&app, 0, sizeof app);
	app.cfg = cfg;
	app.pod = cfg->pod;
	app.pid = getpid();
	listen_fd = fd;

	/* Signals: SIGTERM/SIGINT/SIGHUP are taken by sigwait in this thread only. */
	sigemptyset(&stopset);
	sigaddset(&stopset, SIGTERM);
	sigaddset(&stopset, SIGINT);
	sigaddset(&stopset, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stopset, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;                /* no SA_RESTART: accept() must return EINTR */
	sigaction(SIGUSR2, &sa, NULL);
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);

	crash_handlers_install(crash);
	if (FCGX_Init() != 0) {
		tlog(LOG_ERROR, "FCGX_Init failed");
		return 1;
	}
	/* Once per process, before any thread: the provider's transfers need it. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		tlog(LOG_ERROR, "curl_global_init failed");
		return 1;
	}
	if (store_open(&app.store, cfg, "tetherd") != TE_OK ||
	    authcache_new(&app.auth, app.cfg->auth_cache_ms) != TE_OK ||
	    quota_new(&app.quota) != TE_OK) {
		tlog(LOG_ERROR, "out of memory at start");
		return 1;
	}
	retry_until("registering this worker in PostgreSQL", do_live, &stopset);
	log_set_worker(app.worker);
	{
		struct gen_ops gops;
		struct recovery_ops ops;

		/* After registering: generators fence their writes by this worker's id. */
		gen_ops_for_app(&gops, &app);
		if (runner_new(&app.runner, &gops, cfg->max_runs) != TE_OK) {
			tlog(LOG_ERROR, "out of memory at start");
			return 1;
		}

		/* After registering: recovery knows this worker by its id. */
		recovery_ops_for_app(&ops, &app);
		if (recovery_new(&app.recovery, &ops) != TE_OK) {
			tlog(LOG_ERROR, "out of memory at start");
			return 1;
		}
	}
	if (bus_lib_open() != TE_OK)
		return 1;
	retry_until("connecting to NATS JetStream", do_bus, &stopset);
	charge_crash(crash);
	if (hub_new(&app.hub, app.bus, (size_t)cfg->hub_max_bytes) != TE_OK)
		return 1;
	raise_fd_limit(cfg);
	{
		struct watcher_env env;

		/* After the hub and the recovery: the engine is handed both. */
		watcher_env_for_app(&env, &app);
		if (wloop_open(&app.wloop, &env) != TE_OK) {
			tlog(LOG_ERROR, "could not start the stream loop");
			return 1;
		}
	}
	if (bus_ctl_listen(app.bus, app.worker, on_ctl, NULL) != TE_OK)
		tlog(LOG_WARN, "could not listen for control messages; cancels act at the next publish, "
		    "revocations when the key cache expires");

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, REQ_STACK);
	if (pthread_create(&hb_thread, &attr, heartbeat_thread, &master) != 0) {
		tlog(LOG_ERROR, "could not start the heartbeat thread");
		return 1;
	}
	threads = calloc((size_t)cfg->threads, sizeof *threads);
	in_accept = calloc((size_t)cfg->threads, sizeof *in_accept);
	if (!threads || !in_accept)
		return 1;
	for (int i = 0; i < cfg->threads; i++) {
		if (pthread_create(&threads[i], &attr, request_thread, &in_accept[i]) != 0) {
			tlog(LOG_WARN, "started only %d of %d request threads", i, cfg->threads);
			break;
		}
		nthreads++;
	}
	pthread_attr_destroy(&attr);
	tlog(LOG_INFO, "worker ready: %d request threads, max_runs %d, max_watchers %d", nthreads,
	    cfg->max_runs, cfg->max_watchers);

	while (sigwait(&stopset, &sig) != 0 || (sig != SIGTERM && sig != SIGINT)) {
		if (sig == SIGHUP)
			tlog(LOG_INFO, "SIGHUP ignored");
	}
	remain = drain(threads, nthreads);
	store_shutdown(app.store);
	/* Generators past the drain deadline, request threads still unwinding a
	 * response and hub consumers (which outlive their last watcher by up to a
	 * poll) may still be inside the bus and the store: close the NATS connection
	 * so they fail fast, free nothing they could touch, and leave. */
	if (remain > 0)
		tlog(LOG_INFO, "%d threads still running; exiting without tearing down", remain);
	bus_shutdown(app.bus);
	_exit(0);
}
