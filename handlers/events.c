/* GET /v1/runs/{id}/events, GET /v1/threads/{id}/events, and the stream of
 * POST /v1/threads/{id}/runs with Accept: text/event-stream.
 *
 * One watcher = one request thread. It reads the run's events through this worker's
 * hub (one JetStream consumer per run per worker, shared by its local watchers):
 * first it catches up from the hub's copy itself, then it subscribes and the hub's
 * consumer thread writes each new event to it (deliver(), under the watcher's write
 * lock), so a new event costs one wakeup per worker, not one per watcher. A watcher
 * that falls behind the hub's window reads JetStream itself. What to send for each
 * stored event is decided by watch.c (the exactly-once rules). When the
 * run is silent for stall_ms while running, the owner is probed (recovery.c) with
 * backoff; when the row is terminal but the stream has no done, the end is
 * completed from PostgreSQL. */
#include "routes.h"
#include "app.h"
#include "bus.h"
#include "buf.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "recovery.h"
#include "sse.h"
#include "store.h"
#include "watch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLICE_MS 1000
#define MAX_BACKOFF_MS 5000
#define DRAIN_RECHECK_MS 50
#define MAX_BATCH 256
#define OUT_MAX (64 << 20)
/* A subscribed stream's unsent bytes: past this its client is not reading, and the
 * stream is closed (the client resumes with Last-Event-ID) rather than grow. */
#define WIRE_MAX (256 << 10)
#define SEND_TIMEOUT_MS 5000
#define END_DRAIN_MS 1000

struct watcher {
	struct req *r;
	struct app *a;
	const char *run;
	char thread_id[UUID_LEN + 1];
	struct watch w;
	struct hub_run *hr;             /* the hub's cursor: event number idx */
	size_t idx;
	struct bus_sub *sub;            /* or a private consumer, after falling behind */
	struct hub_sub hs;              /* subscribed: the hub's thread delivers */
	int pushed;                     /* hs is registered */
	pthread_mutex_t wmu;            /* guards w, out, the response stream and below */
	pthread_cond_t wcv;
	int dead;                       /* a delivery could not be written */
	unsigned long delivered;        /* events handed over by the hub */
	struct buf out;                 /* formatted events not yet framed */
	struct sse_wire wire;           /* framed, not yet sent */
	int64_t last_write_ms;
	int64_t last_event_ms;
	int64_t next_check_ms;
	int64_t backoff_ms;
};

/* Queue one event; flush() writes what is queued. */
static int
send_event(struct watcher *x, int attempt, int64_t seq, const char *event, const char *data,
    size_t len)
{
	char id[48];

	snprintf(id, sizeof id, "%d:%lld", attempt, (long long)seq);
	return sse_format(&x->out, id, event, data, len) == TE_OK ? TE_OK : TE_CLOSED;
}

/* Frame what is queued and send it. block: wait until it is sent (this thread
 * alone writes); else send what the socket takes now, keep the rest within
 * WIRE_MAX, and let the watcher's thread finish the write. */
static int
flush(struct watcher *x, int block)
{
	int rc;

	if (x->out.len == 0)
		return TE_OK;
	rc = http_wire_put(x->r, &x->wire, x->out.data, x->out.len, !block);
	buf_reset(&x->out);
	if (rc == TE_TOOLARGE)
		tlog_run(LOG_INFO, x->run, x->w.cur, "watcher not reading (%zu bytes unsent): "
		    "closing its stream", http_wire_pending(&x->wire));
	if (rc != TE_OK)
		return TE_CLOSED;
	rc = block ? http_wire_drain(x->r, &x->wire, SEND_TIMEOUT_MS) : http_wire_push(x->r, &x->wire);
	x->last_write_ms = now_ms();
	return rc == TE_AGAIN ? TE_OK : rc == TE_OK ? TE_OK : TE_CLOSED;
}

/* The next stored event: from the hub, or from a private consumer. */
static int
src_next(struct watcher *x, int timeout_ms, struct bus_event *ev, struct hub_event **he)
{
	int rc;

	*he = NULL;
	if (x->hr) {
		rc = hub_get(x->hr, x->idx, timeout_ms, he);
		if (rc == TE_OK) {
			*ev = (*he)->ev;
			x->idx++;
			return TE_OK;
		}
		if (rc != TE_NOTFOUND)
			return rc;
		/* Behind the hub's window: read the subject from the start; watch.c skips
		 * everything the client already holds. */
		tlog_run(LOG_INFO, x->run, x->w.cur, "watcher behind the hub's window (event %zu): "
		    "reading JetStream itself", x->idx);
		hub_detach(x->a->hub, x->hr);
		x->hr = NULL;
		if ((rc = bus_sub_open(x->a->bus, x->run, &x->sub)) != TE_OK)
			return rc;
	}
	return bus_sub_next(x->sub, timeout_ms, ev);
}

static void
src_release(struct bus_event *ev, struct hub_event *he)
{
	if (he)
		hub_event_put(he);
	else
		bus_event_release(ev);
}

static int
send_opener(struct watcher *x, int attempt, int as_reset)
{
	char data[192];
	int n;

	if (as_reset)
		n = snprintf(data, sizeof data, "{\"attempt\":%d,\"reason\":\"owner_lost\"}", attempt);
	else
		n = snprintf(data, sizeof data, "{\"run_id\":\"%s\",\"thread_id\":\"%s\",\"attempt\":%d}",
		    x->run, x->thread_id, attempt);
	return send_event(x, attempt, 0, as_reset ? "reset" : "start", data, (size_t)n);
}

static int
relay(struct watcher *x, const struct bus_event *ev)
{
	int prefix_reset = 0, rc = TE_OK;
	enum watch_action act = watch_feed(&x->w, ev, &prefix_reset);

	switch (act) {
	case W_SKIP:
		return TE_OK;
	case W_SEND_START:
		return send_opener(x, ev->attempt, 0);
	case W_SEND_RESET:
		return send_opener(x, ev->attempt, 1);
	case W_SEND_PREFIXED:
		if ((rc = send_opener(x, ev->attempt, prefix_reset)) != TE_OK)
			return rc;
		/* fall through */
	case W_SEND:
		return send_event(x, ev->attempt, ev->seq, bus_ev_name(ev->type), ev->data, ev->len);
	}
	return rc;
}

/* The row is terminal and the stream holds nothing more for us: finish from it. */
static int
synthesise(struct watcher *x, const struct run_state *rs)
{
	struct watch_synth s;
	struct buf b;
	int completed = !strcmp(rs->status, "completed"), rc = TE_OK;

	watch_synthesise(&x->w, rs->attempt, completed, (int64_t)rs->output_len, &s);
	tlog_run(LOG_INFO, x->run, rs->attempt, "completing a watcher from PostgreSQL (%s)",
	    rs->status);
	buf_init(&b, rs->output_len * 2 + 8192);
	if (s.opener)
		rc = send_opener(x, s.attempt, s.opener == 2);
	if (rc == TE_OK && s.delta_from >= 0) {
		const char *p = rs->output + s.delta_from;

		if ((rc = buf_puts(&b, "{\"text\":")) == TE_OK &&
		    (rc = buf_json_str(&b, p, rs->output_len - (size_t)s.delta_from)) == TE_OK &&
		    (rc = buf_puts(&b, "}")) == TE_OK)
			rc = send_event(x, s.attempt, s.delta_seq, "delta", b.data, b.len);
		buf_reset(&b);
	}
	if (rc == TE_OK) {
		if (rs->error_json)
			rc = buf_printf(&b, "{\"status\":\"%s\",\"error\":%s}", rs->status, rs->error_json);
		else
			rc = buf_printf(&b, "{\"status\":\"%s\"}", rs->status);
		if (rc == TE_OK)
			rc = send_event(x, s.attempt, s.done_seq, "done", b.data, b.len);
	}
	buf_free(&b);
	return rc == TE_OK ? flush(x, 1) : rc;
}

static int
watch_cur(struct watcher *x)
{
	int cur;

	pthread_mutex_lock(&x->wmu);
	cur = x->w.cur;
	pthread_mutex_unlock(&x->wmu);
	return cur;
}

/* The hub's consumer thread, for each new event of a subscribed watcher. */
static void
deliver(void *arg, const struct hub_event *he)
{
	struct watcher *x = arg;
	int rc;

	pthread_mutex_lock(&x->wmu);
	if (!x->dead && !x->w.done) {
		rc = relay(x, &he->ev);
		if (rc == TE_OK)
			rc = flush(x, 0);
		if (rc != TE_OK)
			x->dead = 1;
		x->delivered++;
		x->last_event_ms = now_ms();
		if (x->dead || x->w.done || http_wire_pending(&x->wire))
			pthread_cond_signal(&x->wcv);
	}
	pthread_mutex_unlock(&x->wmu);
}

/* Quiet for a while: look at the row; complete it, wait, or probe the owner.
 * Returns 1 when the stream is finished. */
static int
check(struct watcher *x, int *failed)
{
	struct app *a = x->a;
	struct run_state rs;
	int64_t now = now_ms();
	int rc, finished = 0;

	*failed = 0;
	rc = store_run_state(a->store, NULL, x->run, &rs);
	if (rc != TE_OK) {
		x->next_check_ms = now + x->backoff_ms;
		return 0;
	}
	if (rs.terminal) {
		struct bus_event last;
		int lrc = bus_last(a->bus, x->run, &last);
		uint64_t seen;

		pthread_mutex_lock(&x->wmu);
		seen = x->w.last_sseq;
		pthread_mutex_unlock(&x->wmu);
		if (lrc == TE_OK && last.sseq > seen) {
			/* The stream has more for us (done in flight, or copies of the live
			 * tail lost to a reconnect): fetch it, keep reading. */
			bus_event_release(&last);
			if (x->hr)
				hub_repair(x->hr);
			x->next_check_ms = now + DRAIN_RECHECK_MS;
		} else if (lrc == TE_OK || lrc == TE_NOTFOUND) {
			if (lrc == TE_OK)
				bus_event_release(&last);
			/* No more deliveries: this thread writes the end itself. */
			if (x->pushed) {
				hub_unsubscribe(x->hr, &x->hs);
				x->pushed = 0;
			}
			if (!x->w.done && !x->dead)
				*failed = synthesise(x, &rs) != TE_OK;
			finished = 1;
		} else {
			x->next_check_ms = now + x->backoff_ms;
		}
	} else if (!strcmp(rs.status, "running") && rs.attempt <= watch_cur(x) && rs.owner) {
		enum recover_rc rr;
		int64_t last_event;

		pthread_mutex_lock(&x->wmu);
		last_event = x->last_event_ms;
		pthread_mutex_unlock(&x->wmu);
		rr = recovery_check_run(a->recovery, x->run, rs.owner, rs.attempt, now - last_event);

		if (rr == RECOVER_CLAIMED || rr == RECOVER_LOST || rr == RECOVER_FAILED) {
			/* Someone owns it now: the reset (or done) is on its way. */
			x->next_check_ms = now + DRAIN_RECHECK_MS;
		} else {
			/* Alive (or another watcher here is probing): look again later, less
			 * often while the run stays silent; recovery.c also paces the probes
			 * of this run across this worker's watchers. A live copy lost to a
			 * reconnect would also look like silence: read what the stream has. */
			if (x->hr && rr == RECOVER_ALIVE)
				hub_repair(x->hr);
			x->next_check_ms = now + x->backoff_ms;
			x->backoff_ms = x->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
			    : x->backoff_ms * 2;
		}
	} else {
		/* queued, or claimed and its reset not yet published */
		x->next_check_ms = now + x->backoff_ms;
	}
	store_run_state_free(&rs);
	return finished;
}

/* Catch up from the hub's copy (or a private consumer) and write what is ready in
 * one go. Returns TE_OK after events, TE_TIMEOUT when caught up, else an error. */
static int
pull(struct watcher *x, int wait_ms)
{
	struct bus_event ev;
	struct hub_event *he;
	int rc, n = 0;

	while ((rc = src_next(x, n ? 0 : wait_ms, &ev, &he)) == TE_OK) {
		rc = relay(x, &ev);
		src_release(&ev, he);
		n++;
		if (rc != TE_OK || x->w.done || n == MAX_BATCH)
			break;
	}
	if (n == 0)
		return rc;
	if (rc != TE_OK && rc != TE_TIMEOUT)
		return rc;
	if (flush(x, 1) != TE_OK)
		return TE_CLOSED;
	x->last_event_ms = now_ms();
	return TE_OK;
}

static void
stream_loop(struct watcher *x)
{
	const struct config *cfg = x->a->cfg;
	int64_t ping_ms = (int64_t)cfg->heartbeat_s * 1000;
	unsigned long seen = 0;

	x->last_event_ms = x->last_write_ms = now_ms();
	x->backoff_ms = cfg->stall_ms;
	x->next_check_ms = x->last_event_ms + cfg->stall_ms;
	for (;;) {
		int64_t now = now_ms(), wait;
		int rc, failed, quiet = 1;

		if (atomic_load(&x->a->closing))
			return;
		wait = x->next_check_ms - now;
		if (x->last_write_ms + ping_ms - now < wait)
			wait = x->last_write_ms + ping_ms - now;
		if (wait > MAX_SLICE_MS)
			wait = MAX_SLICE_MS;
		if (wait < 1)
			wait = 1;
		if (x->pushed) {
			int dead, done;
			unsigned long got;
			int64_t last;

			pthread_mutex_lock(&x->wmu);
			if (!x->dead && http_wire_pending(&x->wire)) {
				/* The client is slower than the run: finish the write here, without
				 * holding the hub's delivery thread. */
				int prc = http_wire_push(x->r, &x->wire);

				if (prc == TE_AGAIN) {
					pthread_mutex_unlock(&x->wmu);
					http_wire_wait(x->r, (int)(wait < 50 ? wait : 50));
					pthread_mutex_lock(&x->wmu);
				} else if (prc != TE_OK) {
					x->dead = 1;
				}
			} else if (!x->dead && !x->w.done && x->delivered == seen) {
				struct timespec ts;

				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += wait / 1000;
				ts.tv_nsec += (wait % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&x->wcv, &x->wmu, &ts);
			}
			dead = x->dead;
			done = x->w.done;
			got = x->delivered;
			last = x->last_event_ms;
			pthread_mutex_unlock(&x->wmu);
			if (dead || done)
				return;
			if (got != seen) {
				/* Events came while this thread slept: the stall clock runs from
				 * the last of them, not from this wakeup. */
				seen = got;
				x->backoff_ms = cfg->stall_ms;
				x->next_check_ms = last + cfg->stall_ms;
			}
			if (hub_failed(x->hr)) {
				tlog_run(LOG_WARN, x->run, watch_cur(x), "event stream interrupted: consumer failed");
				return;
			}
		} else {
			/* On the hub and caught up: subscribe (TE_AGAIN: more came meanwhile). */
			if (x->hr && hub_subscribe(x->hr, x->idx, &x->hs, deliver, x) == TE_OK) {
				x->pushed = 1;
				continue;
			}
			rc = pull(x, x->hr ? 0 : (int)wait);
			if (rc == TE_OK) {
				if (x->w.done)
					return;
				quiet = 0;
			} else if (rc != TE_TIMEOUT) {
				tlog_run(LOG_WARN, x->run, x->w.cur, "event stream interrupted: %s",
				    te_strerror(rc));
				return;
			} else if (x->hr) {
				continue;       /* caught up: subscribe */
			}
		}
		now = now_ms();
		if (!quiet) {
			x->backoff_ms = cfg->stall_ms;
			x->next_check_ms = now + cfg->stall_ms;
			continue;
		}
		if (http_client_gone(x->r)) {
			tlog_run(LOG_DEBUG, x->run, watch_cur(x), "watcher gone: the client closed its stream");
			return;
		}
		pthread_mutex_lock(&x->wmu);
		if (now - x->last_write_ms >= ping_ms && !x->dead) {
			if (sse_comment(&x->out, "ping") != TE_OK || flush(x, !x->pushed) != TE_OK)
				x->dead = 1;
			x->last_write_ms = now;
		}
		rc = x->dead;
		pthread_mutex_unlock(&x->wmu);
		if (rc)
			return;
		if (now >= x->next_check_ms && check(x, &failed))
			return;
	}
}

void
events_serve(struct req *r, const char *run_id, struct run_state *given)
{
	struct app *a = r->app;
	const struct config *cfg = a->cfg;
	struct run_state local, *rs = given;
	struct watcher x;
	int last_attempt = 0, rc, counted = 0;
	int64_t last_seq = -1;
	char after[64];
	const char *lei = r->last_event_id;
	int n;

	memset(&x, 0, sizeof x);
	if (!rs) {
		rc = store_run_state(a->store, r->tenant, run_id, &local);
		if (rc == TE_NOTFOUND) {
			http_error(r, API_NOT_FOUND, "no run %s", run_id);
			return;
		}
		if (rc != TE_OK) {
			http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
			    "could not read the run: PostgreSQL is unavailable");
			return;
		}
		rs = &local;
	}
	n = http_query_get(r->query, "after", after, sizeof after);
	if (n == -2) {
		http_error(r, API_BAD_REQUEST, "after must be an event id: <attempt>:<seq>");
		goto out;
	}
	if (n >= 0)
		lei = after;
	if (lei && event_id_parse(lei, strlen(lei), &last_attempt, &last_seq) < 0) {
		http_error(r, API_BAD_REQUEST, "%s must be an event id: <attempt>:<seq>",
		    n >= 0 ? "after" : "Last-Event-ID");
		goto out;
	}
	if (last_attempt > rs->attempt) {
		http_error(r, API_BAD_REQUEST, "event id %d:%lld names attempt %d; the run is at attempt %d",
		    last_attempt, (long long)last_seq, last_attempt, rs->attempt);
		goto out;
	}
	if (atomic_fetch_add(&a->ctr.watchers, 1) >= cfg->max_watchers) {
		atomic_fetch_sub(&a->ctr.watchers, 1);
		http_error_ex(r, API_AT_CAPACITY, NULL, NULL, "Retry-After: 1\r\n",
		    "this worker has as many open event streams as it may (max_watchers)");
		goto out;
	}
	counted = 1;
	atomic_fetch_add(&a->ctr.watchers_total, 1);
	if (!bus_connected(a->bus) || hub_attach(a->hub, run_id, &x.hr) != TE_OK) {
		http_error_ex(r, API_UNAVAILABLE, NULL, NULL, "Retry-After: 1\r\n",
		    "NATS is unavailable: cannot read the run's events");
		goto out;
	}
	buf_init(&x.out, OUT_MAX);
	http_wire_init(&x.wire, WIRE_MAX);
	pthread_mutex_init(&x.wmu, NULL);
	pthread_cond_init(&x.wcv, NULL);
	x.r = r;
	x.a = a;
	x.run = run_id;
	snprintf(x.thread_id, sizeof x.thread_id, "%s", rs->thread_id);
	watch_init(&x.w, rs->attempt, last_attempt, last_seq);
	if (http_sse_start(r) != TE_OK)
		goto out;
	stream_loop(&x);
out:
	if (x.pushed)
		hub_unsubscribe(x.hr, &x.hs);
	/* Everything framed goes out before libfcgi ends the request; a stream that
	 * cannot be finished is cut, and its client resumes. */
	if (x.r && http_wire_pending(&x.wire) &&
	    (x.dead || http_wire_drain(r, &x.wire, END_DRAIN_MS) != TE_OK))
		http_wire_abort(r);
	http_wire_free(&x.wire);
	hub_detach(a->hub, x.hr);
	bus_sub_close(x.sub);
	buf_free(&x.out);
	if (x.r) {
		pthread_mutex_destroy(&x.wmu);
		pthread_cond_destroy(&x.wcv);
	}
	if (counted)
		atomic_fetch_sub(&a->ctr.watchers, 1);
	if (rs == &local)
		store_run_state_free(&local);
}

void
h_run_events(struct req *r)
{
	events_serve(r, r->id, NULL);
}

void
h_thread_events(struct req *r)
{
	char run_id[UUID_LEN + 1];
	int rc = store_thread_run(r->app->store, r->tenant, r->id, run_id);

	if (rc == TE_NOTFOUND) {
		http_error(r, API_NOT_FOUND, "no thread %s", r->id);
		return;
	}
	if (rc != TE_OK) {
		http_error_ex(r, api_err_from_te(rc), NULL, NULL, "Retry-After: 1\r\n",
		    "could not read the thread: PostgreSQL is unavailable");
		return;
	}
	if (!run_id[0]) {
		http_respond(r, 204, NULL, NULL, "", 0);
		return;
	}
	events_serve(r, run_id, NULL);
}
