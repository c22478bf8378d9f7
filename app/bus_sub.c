/* bus_sub.c - reading run events: an event from a message, direct gets (last,
 * next by subject), ordered consumers for catch-up, and the live tail's core
 * subscription to the stream's republished copies. */
#include "bus.h"
#include "bus_int.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <json-c/json.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int
event_from_msg(natsMsg *m, struct bus_event *ev, uint64_t sseq)
{
	const char *v = NULL;
	int64_t n;

	memset(ev, 0, sizeof *ev);
	ev->msg = m;
	ev->sseq = sseq;
	ev->data = natsMsg_GetData(m);
	ev->len = (size_t)natsMsg_GetDataLength(m);
	if (!ev->data)
		ev->data = "";
	ev->type = natsMsgHeader_Get(m, "Tether-Event", &v) == NATS_OK ? bus_ev_parse(v) : EV_UNKNOWN;
	if (natsMsgHeader_Get(m, "Tether-Attempt", &v) != NATS_OK ||
	    parse_int64(v, strlen(v), 0, 1000000, &n) < 0)
		return TE_INVAL;
	ev->attempt = (int)n;
	if (natsMsgHeader_Get(m, "Tether-Seq", &v) != NATS_OK ||
	    parse_int64(v, strlen(v), 0, INT64_MAX, &ev->seq) < 0)
		return TE_INVAL;
	if (natsMsgHeader_Get(m, "Tether-End", &v) == NATS_OK)
		parse_int64(v, strlen(v), 0, INT64_MAX, &ev->end);
	return TE_OK;
}

/* One message by direct get (any replica answers; no JetStream API round trip). */
static int
direct_get(struct bus *b, jsDirectGetMsgOptions *dg, struct bus_event *ev)
{
	jsOptions jo;
	natsMsg *m = NULL;
	natsStatus s;

	jsOptions_Init(&jo);
	jo.Wait = b->cfg->nats_timeout_ms;
	s = js_DirectGetMsg(&m, b->js, BUS_STREAM, &jo, dg);
	if (s == NATS_NOT_FOUND) {
		natsMsg_Destroy(m);
		return TE_NOTFOUND;
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return TE_BUS;
	}
	if (event_from_msg(m, ev, natsMsg_GetSequence(m)) != TE_OK) {
		natsMsg_Destroy(m);
		memset(ev, 0, sizeof *ev);
		return TE_INVAL;
	}
	return TE_OK;
}

int
bus_last(struct bus *b, const char *run_id, struct bus_event *ev)
{
	char subject[64];
	jsDirectGetMsgOptions dg;

	snprintf(subject, sizeof subject, SUBJECT_PREFIX "%s", run_id);
	jsDirectGetMsgOptions_Init(&dg);
	dg.LastBySubject = subject;
	return direct_get(b, &dg, ev);
}

int
bus_next(struct bus *b, const char *run_id, uint64_t from, struct bus_event *ev)
{
	char subject[64];
	jsDirectGetMsgOptions dg;

	snprintf(subject, sizeof subject, SUBJECT_PREFIX "%s", run_id);
	jsDirectGetMsgOptions_Init(&dg);
	dg.Sequence = from ? from : 1;
	dg.NextBySubject = subject;
	return direct_get(b, &dg, ev);
}

void
bus_event_release(struct bus_event *ev)
{
	if (ev && ev->msg) {
		if (ev->bus)
			msg_bury(ev->bus, ev->msg);
		else
			natsMsg_Destroy(ev->msg);
		ev->msg = NULL;
	}
}

int
bus_sub_open(struct bus *b, const char *run_id, struct bus_sub **out)
{
	return bus_sub_open_at(b, run_id, 0, out);
}

int
bus_sub_open_at(struct bus *b, const char *run_id, uint64_t start, struct bus_sub **out)
{
	char subject[64];
	struct bus_sub *s = calloc(1, sizeof *s);
	jsSubOptions so;
	jsErrCode ec = 0;
	natsStatus st;

	if (!s)
		return TE_NOMEM;
	s->b = b;
	snprintf(subject, sizeof subject, SUBJECT_PREFIX "%s", run_id);
	jsSubOptions_Init(&so);
	so.Stream = BUS_STREAM;
	so.Ordered = true;
	so.Config.DeliverPolicy = start > 1 ? js_DeliverByStartSequence : js_DeliverAll;
	if (start > 1)
		so.Config.OptStartSeq = start;
	st = js_SubscribeSync(&s->sub, b->js, subject, NULL, &so, &ec);
	if (st != NATS_OK) {
		tlog_run(LOG_WARN, run_id, 0, "could not subscribe: %s (%d)", natsStatus_GetText(st),
		    (int)ec);
		free(s);
		return TE_BUS;
	}
	*out = s;
	return TE_OK;
}

int
bus_sub_next(struct bus_sub *s, int timeout_ms, struct bus_event *ev)
{
	jsMsgMetaData *md = NULL;
	natsMsg *m = NULL;
	natsStatus st;
	int rc;

	if (timeout_ms <= 0) {
		/* Only what has arrived already: no waiting. */
		int msgs = 0, bytes = 0;

		if (natsSubscription_GetPending(s->sub, &msgs, &bytes) != NATS_OK || msgs <= 0)
			return TE_TIMEOUT;
		timeout_ms = 1;
	}
	st = natsSubscription_NextMsg(&m, s->sub, timeout_ms);
	if (st == NATS_TIMEOUT)
		return TE_TIMEOUT;
	if (st == NATS_MISMATCH)
		return TE_TIMEOUT;      /* the ordered consumer resets itself */
	if (st != NATS_OK)
		return TE_BUS;
	if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
		natsMsg_Destroy(m);
		return TE_BUS;
	}
	rc = event_from_msg(m, ev, md->Sequence.Stream);
	ev->pending = md->NumPending;
	ev->bus = s->b;
	jsMsgMetaData_Destroy(md);
	if (rc != TE_OK) {
		natsMsg_Destroy(m);
		memset(ev, 0, sizeof *ev);
	}
	return rc;
}

void
bus_sub_close(struct bus_sub *s)
{
	if (!s)
		return;
	if (s->sub) {
		natsSubscription_Unsubscribe(s->sub);
		natsSubscription_Destroy(s->sub);
	}
	free(s);
}


static void
on_live(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	struct bus_live *l = closure;
	struct bus_event ev;
	const char *v = NULL;
	int64_t sseq = 0, prev = -1;

	(void)nc;
	(void)sub;
	/* Nats-Sequence and Nats-Last-Sequence come from the server's republish. */
	if (natsMsgHeader_Get(m, "Nats-Sequence", &v) == NATS_OK)
		parse_int64(v, strlen(v), 1, INT64_MAX, &sseq);
	if (natsMsgHeader_Get(m, "Nats-Last-Sequence", &v) == NATS_OK)
		parse_int64(v, strlen(v), 0, INT64_MAX, &prev);
	if (sseq < 1 || prev < 0 || event_from_msg(m, &ev, (uint64_t)sseq) != TE_OK) {
		tlog(LOG_WARN, "dropped a malformed live copy on %s", natsMsg_GetSubject(m));
		natsMsg_Destroy(m);
		return;
	}
	ev.prev = (uint64_t)prev;
	ev.bus = l->b;
	l->fn(l->arg, &ev);
}

static void
on_live_complete(void *closure)
{
	struct bus_live *l = closure;

	pthread_mutex_lock(&l->mu);
	l->complete = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

int
bus_live_open(struct bus *b, const char *run_id, bus_live_fn fn, void *arg, struct bus_live **out)
{
	char subject[64];
	struct bus_live *l = calloc(1, sizeof *l);
	natsStatus s;

	if (!l)
		return TE_NOMEM;
	l->b = b;
	l->fn = fn;
	l->arg = arg;
	pthread_mutex_init(&l->mu, NULL);
	cond_init_monotonic(&l->cv);
	snprintf(subject, sizeof subject, LIVE_PREFIX "%s", run_id);
	s = natsConnection_Subscribe(&l->sub, b->nc, subject, on_live, l);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(l->sub, on_live_complete, l);
	/* Past this many queued copies nats.c drops them (a slow consumer): the next
	 * copy's previous sequence shows the gap, and the hub fetches it. */
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(l->sub, b->cfg->live_pending_msgs, 64 << 20);
	/* The subscription must be known to the server before the catch-up reads the
	 * stream, or a copy could fall between the two. */
	if (s == NATS_OK)
		s = natsConnection_FlushTimeout(b->nc, b->cfg->nats_timeout_ms);
	if (s != NATS_OK) {
		tlog_run(LOG_WARN, run_id, 0, "could not subscribe to the live tail: %s",
		    natsStatus_GetText(s));
		if (l->sub) {
			natsSubscription_Unsubscribe(l->sub);
			natsSubscription_Destroy(l->sub);
		}
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		free(l);
		return s == NATS_NO_MEMORY ? TE_NOMEM : TE_BUS;
	}
	*out = l;
	return TE_OK;
}

void
bus_live_close(struct bus_live *l)
{
	if (!l)
		return;
	/* After Unsubscribe, nats.c calls on_live_complete once the delivery thread has
	 * returned from the last callback (also when the connection is closed). */
	int complete;

	natsSubscription_Unsubscribe(l->sub);
	pthread_mutex_lock(&l->mu);
	for (int64_t dl = now_ms() + LIVE_CLOSE_MS; !l->complete && now_ms() < dl;) {
		struct timespec ts;

		deadline_ts(&ts, 1000);
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
	}
	complete = l->complete;
	pthread_mutex_unlock(&l->mu);
	if (!complete) {
		/* A callback still running after this long: keep l (leaked, not freed
		 * under it) rather than risk a use after free. */
		tlog(LOG_ERROR, "live tail subscription did not complete in %d ms; leaking it",
		    LIVE_CLOSE_MS);
		return;
	}
	natsSubscription_Destroy(l->sub);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	free(l);
}

