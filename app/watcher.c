/* watcher.c - see watcher.h. What to send for each stored event is decided by
 * watch.c (the exactly-once rules). When the run is silent for stall_ms while
 * running, the owner is probed (recovery.c) with backoff; when the row is terminal
 * but the stream has no done, the end is completed from PostgreSQL.
 *
 * Locking: x->mu guards a stream's state (w, out, wire, dead, delivered, times);
 * the hub's delivery thread takes it to write an event, the loop to ping and to
 * finish slow writes, a check on libuv's thread pool to complete from PostgreSQL.
 * The loop's handles and the fields marked (loop) belong to the loop thread.
 * l->mu guards the kick list; lock order x->mu, then l->mu. */
#include "watcher.h"
#include "aisdk.h"
#include "auth.h"
#include "bus.h"
#include "buf.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "quota.h"
#include "sse.h"
#include "stall.h"
#include "store.h"
#include "util.h"
#include "watch.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define MAX_SLICE_MS 1000
#define MAX_BACKOFF_MS 5000
#define DRAIN_RECHECK_MS 50
#define MAX_BATCH 256
#define OUT_MAX (64 << 20)
/* A subscribed stream's unsent bytes: past this its client is not reading (or
 * reads far slower than the run writes), and the stream is closed (the client
 * resumes with Last-Event-ID) rather than grow. One event more always fits, so a
 * reading client is never cut by one large event (deltas go up to max_payload). */
#define WIRE_MAX (1 << 20)
#define SEND_TIMEOUT_MS 5000
#define END_DRAIN_MS 1000
/* libfcgi select()s the descriptors it accepts and closes: a stream that moves to
 * the loop moves above this, so accepted descriptors stay below it. */
#define LOOP_MIN_FD 1024
#define CLOSE_WAIT_MS 3000
/* A stream in its request thread looks for its key's revocation this often. */
#define REVOKE_LOOK_MS 100

enum flush_mode {
	FLUSH_BLOCK,            /* wait until sent: only this thread writes */
	FLUSH_TRY,              /* send what the socket takes; the rest within WIRE_MAX */
	FLUSH_QUEUE,            /* send what the socket takes; keep the rest, unbounded */
};

enum finish { FIN_NONE = 0, FIN_CLEAN, FIN_CUT };

struct watcher {
	const struct watcher_env *e;    /* the loop's */
	struct wloop *l;
	struct req *r;                  /* until the loop has it */
	char run[UUID_LEN + 1];
	char thread_id[UUID_LEN + 1];
	char key_id[UUID_LEN + 1];      /* the API key that opened it: revoked, it ends */
	char tenant[UUID_LEN + 1];      /* holds one of its tenant's stream slots (quota.h) */
	unsigned auth_gen;              /* revocations looked at (auth_revoked_since) */
	struct watch w;
	int aisdk;                      /* format=ai-sdk: events framed by aisdk.c */
	struct aisdk ai;                /* guarded by mu, like w */
	struct hub_run *hr;             /* the hub's cursor: event number idx */
	size_t idx;
	struct bus_sub *sub;            /* or a private consumer, after falling behind */
	struct hub_sub hs;              /* subscribed: the hub's thread delivers */
	int pushed;                     /* hs is registered */
	pthread_mutex_t mu;             /* guards w, out, wire, the fields below */
	pthread_cond_t cv;
	int dead;                       /* a delivery could not be written */
	int looped;                     /* the loop has it: deliveries kick the loop */
	unsigned long delivered;        /* events handed over by the hub */
	struct buf out;                 /* formatted events not yet framed */
	struct sse_wire wire;           /* framed, not yet sent */
	int64_t last_write_ms;
	int64_t last_event_ms;
	int64_t next_check_ms;
	int64_t backoff_ms;
	/* (loop) */
	uv_poll_t poll;
	uv_timer_t timer;
	uv_work_t work;
	int handles;                    /* open handles */
	int registered;
	int checking;                   /* a check is on the pool (it uses x and work) */
	int close_after_check;
	int check_finished, check_failed;
	enum finish finishing;
	int closing;
	unsigned long seen;
	struct watcher *prev, *next;    /* the loop's streams */
	struct watcher *next_look;      /* (loop) this wakeup's kicked streams */
	/* guarded by l->mu */
	int kicked;
	struct watcher *next_kick;
};

struct wloop {
	struct watcher_env env;
	uv_loop_t loop;
	uv_async_t wake;
	pthread_t th;
	int devnull;
	pthread_mutex_t mu;             /* guards kicks, closing, done */
	pthread_cond_t cv;
	struct watcher *kicks;
	int closing;
	int done;
	struct watcher *all;            /* (loop) */
	unsigned revoke_gen;            /* (loop) revocations looked at */
	atomic_int streams;
};

static void kick(struct watcher *x);

/* Queue one event; flush() writes what is queued. */
static int
send_event(struct watcher *x, int attempt, int64_t seq, const char *event, const char *data,
    size_t len)
{
	char id[48];

	if (x->aisdk)
		return aisdk_event(&x->ai, &x->out, attempt, seq, event, data, len) == TE_OK ? TE_OK
		    : TE_CLOSED;
	snprintf(id, sizeof id, "%d:%lld", attempt, (long long)seq);
	return sse_format(&x->out, id, event, data, len) == TE_OK ? TE_OK : TE_CLOSED;
}

/* Frame what is queued and send it (see enum flush_mode). */
static int
flush(struct watcher *x, enum flush_mode mode)
{
	int rc;

	if (x->out.len == 0)
		return TE_OK;
	rc = http_wire_put(&x->wire, x->out.data, x->out.len, mode == FLUSH_TRY);
	buf_reset(&x->out);
	if (rc == TE_TOOLARGE)
		tlog_run(LOG_INFO, x->run, x->w.cur, "watcher not reading (%zu bytes unsent): "
		    "closing its stream", http_wire_pending(&x->wire));
	if (rc != TE_OK)
		return TE_CLOSED;
	rc = mode == FLUSH_BLOCK ? http_wire_drain(&x->wire, SEND_TIMEOUT_MS) : http_wire_push(&x->wire);
	x->last_write_ms = now_ms();
	return rc == TE_OK || rc == TE_AGAIN ? TE_OK : TE_CLOSED;
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
		hub_detach(x->e->hub, x->hr);
		x->hr = NULL;
		if ((rc = bus_sub_open(x->e->bus, x->run, &x->sub)) != TE_OK)
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
	struct buf data;
	int rc;

	buf_init(&data, 256);
	rc = as_reset ? event_reset_json(&data, attempt)
	    : event_start_json(&data, x->run, x->thread_id, attempt);
	if (rc == TE_OK)
		rc = send_event(x, attempt, 0, as_reset ? "reset" : "start", data.data, data.len);
	buf_free(&data);
	return rc;
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

/* The tool calls from..ncalls-1 of the row, as tool_call events from seq on. */
static int
synth_calls(struct watcher *x, const struct run_state *rs, const struct watch_synth *s)
{
	struct json_object *arr = json_tokener_parse(rs->tool_calls_json);
	int rc = arr && json_object_is_type(arr, json_type_array) ? TE_OK : TE_INVAL;

	for (int i = s->calls_from; rc == TE_OK && i < rs->ncalls; i++) {
		const char *ev = json_object_to_json_string_ext(json_object_array_get_idx(arr, (size_t)i),
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

		rc = send_event(x, s->attempt, s->calls_seq + (i - s->calls_from), "tool_call", ev,
		    strlen(ev));
	}
	json_object_put(arr);
	return rc;
}

/* The row is terminal and the stream holds nothing more for us: finish from it.
 * A run that ended asking for tools ended its stream with done{requires_action},
 * whatever it became since (continued, or cancelled while it waited). */
static int
synthesise(struct watcher *x, const struct run_state *rs)
{
	struct watch_synth s;
	struct buf b;
	int asked = rs->tool_calls_json && rs->ncalls > 0 && strcmp(rs->status, "failed") != 0;
	int completed = asked || !strcmp(rs->status, "completed"), rc = TE_OK;
	const char *status = asked ? "requires_action" : rs->status;

	watch_synthesise(&x->w, rs->attempt, completed, (int64_t)rs->output_len,
	    asked ? rs->ncalls : 0, &s);
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
	if (rc == TE_OK && asked)
		rc = synth_calls(x, rs, &s);
	if (rc == TE_OK) {
		rc = event_done_json(&b, status, asked ? NULL : rs->error_json);
		if (rc == TE_OK)
			rc = send_event(x, s.attempt, s.done_seq, "done", b.data, b.len);
	}
	buf_free(&b);
	return rc == TE_OK ? flush(x, x->looped ? FLUSH_QUEUE : FLUSH_BLOCK) : rc;
}

static int
watch_cur(struct watcher *x)
{
	int cur;

	pthread_mutex_lock(&x->mu);
	cur = x->w.cur;
	pthread_mutex_unlock(&x->mu);
	return cur;
}

/* The hub's delivery thread, for each new event of a subscribed watcher. */
static void
deliver(void *arg, const struct hub_event *he)
{
	struct watcher *x = arg;
	int rc;

	pthread_mutex_lock(&x->mu);
	if (!x->dead && !x->w.done) {
		rc = relay(x, &he->ev);
		if (rc == TE_OK)
			rc = flush(x, FLUSH_TRY);
		if (rc != TE_OK)
			x->dead = 1;
		x->delivered++;
		x->last_event_ms = now_ms();
		if (x->dead || x->w.done || http_wire_pending(&x->wire)) {
			if (x->looped)
				kick(x);
			else
				pthread_cond_signal(&x->cv);
		}
	}
	pthread_mutex_unlock(&x->mu);
}

static uint64_t
watch_seen_sseq(void *arg)
{
	struct watcher *x = arg;
	uint64_t seen;

	pthread_mutex_lock(&x->mu);
	seen = x->w.last_sseq;
	pthread_mutex_unlock(&x->mu);
	return seen;
}

static int
watch_attempt(void *arg)
{
	return watch_cur(arg);
}

static int64_t
watch_last_event_ms(void *arg)
{
	struct watcher *x = arg;
	int64_t last;

	pthread_mutex_lock(&x->mu);
	last = x->last_event_ms;
	pthread_mutex_unlock(&x->mu);
	return last;
}

/* Quiet for a while: look at the row (stall.c's rules); complete it, wait, or
 * probe the owner. Returns 1 when the stream is finished. */
static int
check(struct watcher *x, int *failed)
{
	const struct stall_watch sw = { x, watch_seen_sseq, watch_attempt, watch_last_event_ms };
	struct stall_verdict v;
	struct run_state rs;
	int64_t now = now_ms();
	int finished = 0;

	*failed = 0;
	if (stall_check(&x->e->stall, &sw, x->run, now, &rs, &v) != TE_OK) {
		x->next_check_ms = now + x->backoff_ms;
		return 0;
	}
	if (v.repair && x->hr && hub_repair(x->hr) != TE_OK)
		tlog_run(LOG_DEBUG, x->run, rs.attempt, "could not read the stream's rest");
	switch (v.next) {
	case STALL_FINISH:
		/* No more deliveries: this thread writes the end itself. */
		if (x->pushed) {
			hub_unsubscribe(x->hr, &x->hs);
			x->pushed = 0;
		}
		pthread_mutex_lock(&x->mu);
		if (!x->w.done && !x->dead)
			*failed = synthesise(x, &rs) != TE_OK;
		pthread_mutex_unlock(&x->mu);
		finished = 1;
		break;
	case STALL_SOON:
		x->next_check_ms = now + DRAIN_RECHECK_MS;
		break;
	case STALL_BACKOFF_LONGER:
		x->next_check_ms = now + x->backoff_ms;
		x->backoff_ms = x->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
		    : x->backoff_ms * 2;
		break;
	case STALL_BACKOFF:
		x->next_check_ms = now + x->backoff_ms;
		break;
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
	if (flush(x, FLUSH_BLOCK) != TE_OK)
		return TE_CLOSED;
	x->last_event_ms = now_ms();
	return TE_OK;
}

static int handoff(struct watcher *x);

/* The request thread's part: catch up, subscribe, then hand the stream to the
 * loop. A stream that cannot move (behind the hub's window, no descriptor above
 * libfcgi's range) is served here to its end. Returns 1 when the loop has it. */
static int
stream_loop(struct watcher *x)
{
	const struct watcher_env *e = x->e;
	int64_t ping_ms = (int64_t)e->heartbeat_s * 1000;
	unsigned long seen = 0;

	x->last_event_ms = x->last_write_ms = now_ms();
	x->backoff_ms = e->stall_ms;
	x->next_check_ms = x->last_event_ms + e->stall_ms;
	for (;;) {
		int64_t now = now_ms(), wait;
		int rc, failed, quiet = 1;

		if (atomic_load(x->e->closing))
			return 0;
		if (auth_revoked_since(x->e->auth, x->key_id, &x->auth_gen)) {
			tlog_run(LOG_INFO, x->run, watch_cur(x), "event stream ended: its API key was revoked");
			return 0;
		}
		wait = x->next_check_ms - now;
		if (x->last_write_ms + ping_ms - now < wait)
			wait = x->last_write_ms + ping_ms - now;
		if (wait > REVOKE_LOOK_MS)
			wait = REVOKE_LOOK_MS;
		if (wait < 1)
			wait = 1;
		if (x->pushed) {
			int dead, done;
			unsigned long got;
			int64_t last;

			pthread_mutex_lock(&x->mu);
			if (!x->dead && http_wire_pending(&x->wire)) {
				/* The client is slower than the run: finish the write here, without
				 * holding the hub's delivery thread. */
				int prc = http_wire_push(&x->wire);

				if (prc == TE_AGAIN) {
					pthread_mutex_unlock(&x->mu);
					http_wire_wait(&x->wire, (int)(wait < 50 ? wait : 50));
					pthread_mutex_lock(&x->mu);
				} else if (prc != TE_OK) {
					x->dead = 1;
				}
			} else if (!x->dead && !x->w.done && x->delivered == seen) {
				struct timespec ts;

				deadline_ts(&ts, wait);
				pthread_cond_timedwait(&x->cv, &x->mu, &ts);
			}
			dead = x->dead;
			done = x->w.done;
			got = x->delivered;
			last = x->last_event_ms;
			pthread_mutex_unlock(&x->mu);
			if (dead || done)
				return 0;
			if (got != seen) {
				/* Events came while this thread slept: the stall clock runs from
				 * the last of them, not from this wakeup. */
				seen = got;
				x->backoff_ms = e->stall_ms;
				x->next_check_ms = last + e->stall_ms;
			}
			if (hub_failed(x->hr)) {
				tlog_run(LOG_WARN, x->run, watch_cur(x), "event stream interrupted: live tail failed");
				return 0;
			}
		} else {
			/* On the hub and caught up: subscribe (TE_AGAIN: more came meanwhile). */
			if (x->hr && hub_subscribe(x->hr, x->idx, &x->hs, deliver, x) == TE_OK) {
				x->pushed = 1;
				if (x->l && handoff(x) == TE_OK)
					return 1;
				continue;
			}
			rc = pull(x, x->hr ? 0 : (int)wait);
			if (rc == TE_OK) {
				if (x->w.done)
					return 0;
				quiet = 0;
			} else if (rc != TE_TIMEOUT) {
				tlog_run(LOG_WARN, x->run, x->w.cur, "event stream interrupted: %s",
				    te_strerror(rc));
				return 0;
			} else if (x->hr) {
				continue;       /* caught up: subscribe */
			}
		}
		now = now_ms();
		if (!quiet) {
			x->backoff_ms = e->stall_ms;
			x->next_check_ms = now + e->stall_ms;
			continue;
		}
		if (http_client_gone(x->r)) {
			tlog_run(LOG_DEBUG, x->run, watch_cur(x), "watcher gone: the client closed its stream");
			return 0;
		}
		pthread_mutex_lock(&x->mu);
		if (now - x->last_write_ms >= ping_ms && !x->dead) {
			if (sse_comment(&x->out, "ping") != TE_OK ||
			    flush(x, x->pushed ? FLUSH_TRY : FLUSH_BLOCK) != TE_OK)
				x->dead = 1;
			x->last_write_ms = now;
		}
		rc = x->dead;
		pthread_mutex_unlock(&x->mu);
		if (rc)
			return 0;
		if (now >= x->next_check_ms && check(x, &failed))
			return 0;
	}
}


/* ---- the stream loop ---- */

/* Any thread: have the loop look at x (new, writable wanted, done, dead). */
static void
kick(struct watcher *x)
{
	struct wloop *l = x->l;

	pthread_mutex_lock(&l->mu);
	if (!x->kicked) {
		x->kicked = 1;
		x->next_kick = l->kicks;
		l->kicks = x;
	}
	pthread_mutex_unlock(&l->mu);
	uv_async_send(&l->wake);
}

static void w_finish(struct watcher *x, enum finish how);
static void w_schedule(struct watcher *x);

/* The stream's connection is closed: its slots (this worker's, its tenant's) are
 * free now, before the hub is left on the pool. */
static void
w_release_slots(struct watcher *x)
{
	quota_stream_leave(x->e->quota, x->tenant);
	atomic_fetch_sub(x->e->watchers, 1);
}

static void
w_free(struct watcher *x)
{
	struct wloop *l = x->l;

	buf_free(&x->out);
	http_wire_free(&x->wire);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	free(x);
	if (atomic_fetch_sub(&l->streams, 1) == 1) {
		pthread_mutex_lock(&l->mu);
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
	}
}

/* The pool: leave the hub (the last watcher of a run closes its live tail, which
 * waits for the tail's delivery thread). */
static void
detach_work(uv_work_t *w)
{
	struct watcher *x = w->data;

	hub_detach(x->e->hub, x->hr);
	bus_sub_close(x->sub);
}

static void
detach_done(uv_work_t *w, int status)
{
	(void)status;
	w_free(w->data);
}

static void
on_handle_closed(uv_handle_t *h)
{
	struct watcher *x = h->data;

	if (--x->handles > 0)
		return;
	close(x->wire.fd);
	w_release_slots(x);
	x->work.data = x;
	if (uv_queue_work(&x->l->loop, &x->work, detach_work, detach_done) != 0) {
		detach_work(&x->work);
		w_free(x);
	}
}

static void
w_close(struct watcher *x)
{
	if (x->closing)
		return;
	if (x->checking) {
		/* The check uses x (and x->work, which the detach needs): after it. */
		x->close_after_check = 1;
		return;
	}
	x->closing = 1;
	if (x->pushed) {
		/* After this the hub's delivery thread no longer touches x. */
		hub_unsubscribe(x->hr, &x->hs);
		x->pushed = 0;
	}
	if (x->prev)
		x->prev->next = x->next;
	else
		x->l->all = x->next;
	if (x->next)
		x->next->prev = x->prev;
	pthread_mutex_lock(&x->l->mu);
	if (x->kicked) {
		for (struct watcher **p = &x->l->kicks; *p; p = &(*p)->next_kick)
			if (*p == x) {
				*p = x->next_kick;
				break;
			}
		x->kicked = 0;
	}
	pthread_mutex_unlock(&x->l->mu);
	uv_close((uv_handle_t *)&x->poll, on_handle_closed);
	uv_close((uv_handle_t *)&x->timer, on_handle_closed);
}

static void
on_end_timeout(uv_timer_t *t)
{
	struct watcher *x = t->data;

	tlog_run(LOG_DEBUG, x->run, x->w.cur, "watcher's last bytes not taken in %d ms: cut",
	    END_DRAIN_MS);
	w_close(x);
}

static void
on_poll(uv_poll_t *p, int status, int events)
{
	struct watcher *x = p->data;
	int rc = TE_OK;
	size_t left;

	if (x->closing)
		return;
	if (status < 0 || (events & UV_DISCONNECT)) {
		tlog_run(LOG_DEBUG, x->run, x->w.cur, "watcher gone: the client closed its stream");
		pthread_mutex_lock(&x->mu);
		x->dead = 1;
		pthread_mutex_unlock(&x->mu);
		if (x->finishing)
			w_close(x);
		else
			w_finish(x, FIN_CUT);
		return;
	}
	pthread_mutex_lock(&x->mu);
	if (events & UV_WRITABLE)
		rc = http_wire_push(&x->wire);
	if (rc == TE_CLOSED)
		x->dead = 1;
	left = http_wire_pending(&x->wire);
	pthread_mutex_unlock(&x->mu);
	if (rc == TE_CLOSED || (x->finishing && left == 0)) {
		if (x->finishing)
			w_close(x);
		else
			w_finish(x, FIN_CUT);
	} else if (left == 0) {
		uv_poll_start(&x->poll, UV_DISCONNECT, on_poll);
	}
}

/* End the stream: FIN_CLEAN ends the response (the client sees the stream end and,
 * without done, resumes), FIN_CUT cuts the connection. */
static void
w_finish(struct watcher *x, enum finish how)
{
	int rc = TE_OK;
	size_t left;

	if (x->closing)
		return;
	if (x->finishing == FIN_NONE || how == FIN_CUT)
		x->finishing = how;
	if (x->checking)
		return;         /* check_done comes back here */
	if (x->pushed) {
		hub_unsubscribe(x->hr, &x->hs);
		x->pushed = 0;
	}
	uv_timer_stop(&x->timer);
	pthread_mutex_lock(&x->mu);
	if (x->finishing == FIN_CLEAN && !x->dead) {
		if ((rc = flush(x, FLUSH_QUEUE)) == TE_OK && (rc = http_wire_end(&x->wire)) == TE_OK)
			rc = http_wire_push(&x->wire);
	}
	left = http_wire_pending(&x->wire);
	pthread_mutex_unlock(&x->mu);
	if (x->finishing == FIN_CLEAN && rc == TE_AGAIN && left > 0) {
		uv_poll_start(&x->poll, UV_DISCONNECT | UV_WRITABLE, on_poll);
		uv_timer_start(&x->timer, on_end_timeout, END_DRAIN_MS, 0);
		return;
	}
	if (left > 0 || x->finishing == FIN_CUT)
		http_wire_abort(&x->wire);
	w_close(x);
}

static void
check_work(uv_work_t *w)
{
	struct watcher *x = w->data;

	x->check_finished = check(x, &x->check_failed);
}

static void
check_done(uv_work_t *w, int status)
{
	struct watcher *x = w->data;

	(void)status;
	x->checking = 0;
	if (x->close_after_check)
		w_close(x);
	else if (x->finishing)
		w_finish(x, x->finishing);
	else if (x->check_finished)
		w_finish(x, x->check_failed ? FIN_CUT : FIN_CLEAN);
	else
		w_schedule(x);
}

static void
on_timer(uv_timer_t *t)
{
	struct watcher *x = t->data;
	const struct watcher_env *e = x->e;
	int64_t now = now_ms(), ping_ms = (int64_t)e->heartbeat_s * 1000;
	int dead, done;

	if (x->finishing || x->closing)
		return;
	pthread_mutex_lock(&x->mu);
	if (!x->dead && !x->w.done && now - x->last_write_ms >= ping_ms) {
		if (sse_comment(&x->out, "ping") != TE_OK || flush(x, FLUSH_TRY) != TE_OK)
			x->dead = 1;
		x->last_write_ms = now;
	}
	if (x->delivered != x->seen) {
		/* Events came since the last look: the stall clock runs from the last. */
		x->seen = x->delivered;
		x->backoff_ms = e->stall_ms;
		x->next_check_ms = x->last_event_ms + e->stall_ms;
	}
	dead = x->dead;
	done = x->w.done;
	pthread_mutex_unlock(&x->mu);
	if (dead || done) {
		w_finish(x, dead ? FIN_CUT : FIN_CLEAN);
		return;
	}
	if (hub_failed(x->hr)) {
		tlog_run(LOG_WARN, x->run, x->w.cur, "event stream interrupted: live tail failed");
		w_finish(x, FIN_CLEAN);
		return;
	}
	if (now >= x->next_check_ms && !x->checking) {
		x->checking = 1;
		x->work.data = x;
		if (uv_queue_work(&x->l->loop, &x->work, check_work, check_done) == 0)
			return;
		x->checking = 0;
		x->next_check_ms = now + x->backoff_ms;
	}
	w_schedule(x);
}

static void
w_schedule(struct watcher *x)
{
	int64_t now = now_ms(), ping_ms = (int64_t)x->e->heartbeat_s * 1000, wait;

	pthread_mutex_lock(&x->mu);
	wait = x->next_check_ms - now;
	if (x->last_write_ms + ping_ms - now < wait)
		wait = x->last_write_ms + ping_ms - now;
	pthread_mutex_unlock(&x->mu);
	if (wait > MAX_SLICE_MS)
		wait = MAX_SLICE_MS;
	if (wait < 1)
		wait = 1;
	uv_timer_start(&x->timer, on_timer, (uint64_t)wait, 0);
}

/* The loop: a kicked stream. */
static void
w_look(struct watcher *x)
{
	size_t left;
	int dead, done;

	if (!x->registered) {
		x->registered = 1;
		if (uv_poll_init(&x->l->loop, &x->poll, x->wire.fd) != 0) {
			/* Not pollable: nothing was opened; end it here. */
			tlog_run(LOG_WARN, x->run, x->w.cur, "could not poll a stream's connection");
			hub_unsubscribe(x->hr, &x->hs);
			http_wire_abort(&x->wire);
			close(x->wire.fd);
			hub_detach(x->e->hub, x->hr);
			w_release_slots(x);
			w_free(x);
			return;
		}
		uv_timer_init(&x->l->loop, &x->timer);
		x->poll.data = x->timer.data = x;
		x->handles = 2;
		x->next = x->l->all;
		if (x->next)
			x->next->prev = x;
		x->l->all = x;
		w_schedule(x);
		if (auth_revoked_since(x->e->auth, x->key_id, &x->auth_gen)) {
			tlog_run(LOG_INFO, x->run, x->w.cur, "event stream ended: its API key was revoked");
			w_finish(x, FIN_CLEAN);
			return;
		}
	}
	if (x->closing)
		return;
	pthread_mutex_lock(&x->mu);
	dead = x->dead;
	done = x->w.done;
	left = http_wire_pending(&x->wire);
	pthread_mutex_unlock(&x->mu);
	if (x->finishing) {
		if (left == 0 || dead)
			w_close(x);
	} else if (dead || done) {
		w_finish(x, dead ? FIN_CUT : FIN_CLEAN);
	} else {
		uv_poll_start(&x->poll, UV_DISCONNECT | (left ? UV_WRITABLE : 0), on_poll);
	}
}

static void
on_wake(uv_async_t *h)
{
	struct wloop *l = h->data;
	struct watcher *list;
	int closing;

	/* A stream may be kicked again as soon as the lock is let go, which rewrites
	 * next_kick: walk this wakeup's list by next_look. */
	pthread_mutex_lock(&l->mu);
	list = l->kicks;
	l->kicks = NULL;
	for (struct watcher *x = list; x; x = x->next_kick) {
		x->kicked = 0;
		x->next_look = x->next_kick;
	}
	closing = l->closing;
	pthread_mutex_unlock(&l->mu);
	while (list) {
		struct watcher *x = list;

		list = x->next_look;
		w_look(x);
	}
	if (auth_revocations(l->env.auth) != l->revoke_gen) {
		/* A key was revoked (wloop_revoked): end the streams it opened. */
		l->revoke_gen = auth_revocations(l->env.auth);
		for (struct watcher *x = l->all, *nx; x; x = nx) {
			nx = x->next;
			if (!x->finishing && !x->closing &&
			    auth_revoked_since(l->env.auth, x->key_id, &x->auth_gen)) {
				tlog_run(LOG_INFO, x->run, x->w.cur,
				    "event stream ended: its API key was revoked");
				w_finish(x, FIN_CLEAN);
			}
		}
	}
	if (closing) {
		for (struct watcher *x = l->all, *nx; x; x = nx) {
			nx = x->next;
			w_finish(x, FIN_CLEAN);
		}
		uv_close((uv_handle_t *)&l->wake, NULL);
	}
}

static void *
loop_main(void *arg)
{
	struct wloop *l = arg;

	uv_run(&l->loop, UV_RUN_DEFAULT);
	pthread_mutex_lock(&l->mu);
	l->done = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

int
wloop_open(struct wloop **out, const struct watcher_env *env)
{
	struct wloop *l = calloc(1, sizeof *l);

	if (!l)
		return TE_NOMEM;
	l->env = *env;
	/* The pool runs stall checks (PostgreSQL) and hub detaches; libuv's default 4
	 * would queue checks behind one slow PostgreSQL round trip. */
	setenv("UV_THREADPOOL_SIZE", "8", 0);
	if ((l->devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 || uv_loop_init(&l->loop) != 0) {
		if (l->devnull >= 0)
			close(l->devnull);
		free(l);
		return TE_IO;
	}
	pthread_mutex_init(&l->mu, NULL);
	cond_init_monotonic(&l->cv);
	uv_async_init(&l->loop, &l->wake, on_wake);
	l->wake.data = l;
	if (pthread_create(&l->th, NULL, loop_main, l) != 0) {
		uv_close((uv_handle_t *)&l->wake, NULL);
		uv_run(&l->loop, UV_RUN_NOWAIT);
		uv_loop_close(&l->loop);
		close(l->devnull);
		free(l);
		return TE_NOMEM;
	}
	*out = l;
	return TE_OK;
}

void
wloop_close(struct wloop *l)
{
	struct timespec ts;
	int done;

	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->closing = 1;
	pthread_mutex_unlock(&l->mu);
	uv_async_send(&l->wake);
	/* Streams end within END_DRAIN_MS; a loop that does not stop in time is left
	 * to the process exit (nothing is freed under it). */
	deadline_ts(&ts, CLOSE_WAIT_MS);
	pthread_mutex_lock(&l->mu);
	while (!l->done && pthread_cond_timedwait(&l->cv, &l->mu, &ts) == 0)
		;
	done = l->done;
	pthread_mutex_unlock(&l->mu);
	if (done)
		pthread_join(l->th, NULL);
	else
		tlog(LOG_WARN, "stream loop did not stop in %d ms", CLOSE_WAIT_MS);
}

void
wloop_revoked(struct wloop *l)
{
	if (l)
		uv_async_send(&l->wake);
}

int
wloop_streams(struct wloop *l)
{
	return l ? atomic_load(&l->streams) : 0;
}

/* The request thread: move a subscribed stream to the loop. */
static int
handoff(struct watcher *x)
{
	int rc;

	pthread_mutex_lock(&x->mu);
	pthread_mutex_lock(&x->l->mu);
	rc = x->l->closing ? TE_CLOSED : TE_OK;
	pthread_mutex_unlock(&x->l->mu);
	if (rc == TE_OK && !x->dead && !x->w.done &&
	    (rc = http_wire_detach(&x->wire, x->r, LOOP_MIN_FD, x->l->devnull)) == TE_OK) {
		x->looped = 1;
		x->r = NULL;
		atomic_fetch_add(&x->l->streams, 1);
	}
	pthread_mutex_unlock(&x->mu);
	if (rc != TE_OK)
		return rc;
	kick(x);
	return TE_OK;
}

void
watcher_serve(struct wloop *l, struct req *r, struct hub_run *hr, const char *run_id,
    const char *thread_id, int attempt, int last_attempt, int64_t last_seq, int aisdk)
{
	const struct watcher_env *e = &l->env;
	struct watcher *x = calloc(1, sizeof *x);

	if (!x) {
		hub_detach(e->hub, hr);
		quota_stream_leave(e->quota, r->tenant);
		atomic_fetch_sub(e->watchers, 1);
		return;
	}
	x->e = e;
	x->l = l;
	x->r = r;
	x->hr = hr;
	snprintf(x->run, sizeof x->run, "%s", run_id);
	snprintf(x->thread_id, sizeof x->thread_id, "%s", thread_id);
	snprintf(x->key_id, sizeof x->key_id, "%s", r->key_id);
	snprintf(x->tenant, sizeof x->tenant, "%s", r->tenant);
	x->auth_gen = r->auth_gen;
	buf_init(&x->out, OUT_MAX);
	http_wire_init(&x->wire, r, WIRE_MAX);
	pthread_mutex_init(&x->mu, NULL);
	cond_init_monotonic(&x->cv);
	watch_init(&x->w, attempt, last_attempt, last_seq);
	x->aisdk = aisdk;
	if (aisdk)
		aisdk_init(&x->ai, run_id, last_attempt);
	if (stream_loop(x))
		return;         /* the loop has it now */
	if (x->pushed)
		hub_unsubscribe(x->hr, &x->hs);
	/* Everything framed goes out before libfcgi ends the request; a stream that
	 * cannot be finished is cut, and its client resumes. */
	if (http_wire_pending(&x->wire) &&
	    (x->dead || http_wire_drain(&x->wire, END_DRAIN_MS) != TE_OK))
		http_wire_abort(&x->wire);
	hub_detach(e->hub, x->hr);
	bus_sub_close(x->sub);
	buf_free(&x->out);
	http_wire_free(&x->wire);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	quota_stream_leave(e->quota, x->tenant);
	free(x);
	atomic_fetch_sub(e->watchers, 1);
}
