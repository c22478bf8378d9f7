/* bus.c - nats.c glue: one connection per worker, JetStream publish with fencing,
 * ordered consumers for watchers, core subjects for control notices. */
#include "bus.h"
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

#define SUBJECT_PREFIX "tether.ev."
#define LIVE_PREFIX "tether.live."
#define LIVE_CLOSE_MS 10000
/* Room for an event's headers within max_payload: Tether-Event/-Attempt/-Seq/-End,
 * Nats-Msg-Id (a run id and two numbers, or a reason) and the expected sequence
 * take under 300 bytes; the rest is margin. */
#define HEADER_ROOM 1024
#define CTL_PREFIX "tether.ctl."

/* nats.c hands every destroyed message to its garbage-collector thread and wakes
 * that thread whenever it sleeps: three messages per chunk made three wakeups. We
 * collect them here and destroy them in batches, so the collector wakes about once
 * per batch instead (see bench: context switches per chunk). */
#define GRAVE_MS 20
#define GRAVE_MAX 65536

struct bus {
	const struct config *cfg;
	pthread_mutex_t grave_mu;       /* guards grave, ngrave, grave_stop */
	pthread_cond_t grave_cv;
	natsMsg **grave;
	size_t ngrave;
	int grave_stop;
	pthread_t grave_th;
	int grave_started;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *ctl;
	bus_ctl_fn ctl_fn;
	void *ctl_arg;
};

struct bus_sub {
	struct bus *b;
	natsSubscription *sub;
};

struct bus_live {
	struct bus *b;
	natsSubscription *sub;
	bus_live_fn fn;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int complete;           /* the delivery thread is done with fn */
};

static const char *const ev_names[EV__MAX] = { "start", "delta", "reset", "done", "unknown" };

const char *
bus_ev_name(enum bus_ev t)
{
	return (unsigned)t < EV__MAX ? ev_names[t] : "unknown";
}

enum bus_ev
bus_ev_parse(const char *s)
{
	if (!s)
		return EV_UNKNOWN;
	for (int i = 0; i < EV_UNKNOWN; i++)
		if (!strcmp(s, ev_names[i]))
			return (enum bus_ev)i;
	return EV_UNKNOWN;
}

static void
on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
	tlog(LOG_WARN, "disconnected from NATS; reconnecting");
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
	tlog(LOG_INFO, "reconnected to NATS");
}

static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	tlog(LOG_WARN, "NATS asynchronous error: %s", natsStatus_GetText(err));
}

static void
msg_bury(struct bus *b, natsMsg *m)
{
	int now = 0;

	if (!m)
		return;
	pthread_mutex_lock(&b->grave_mu);
	if (!b->grave_started || b->ngrave == GRAVE_MAX)
		now = 1;
	else
		b->grave[b->ngrave++] = m;
	pthread_mutex_unlock(&b->grave_mu);
	if (now)
		natsMsg_Destroy(m);
}

static void *
gravedigger(void *arg)
{
	struct bus *b = arg;
	natsMsg **batch = calloc(GRAVE_MAX, sizeof *batch);

	pthread_mutex_lock(&b->grave_mu);
	while (batch) {
		struct timespec ts;
		size_t n;

		deadline_ts(&ts, GRAVE_MS);
		if (!b->grave_stop)
			pthread_cond_timedwait(&b->grave_cv, &b->grave_mu, &ts);
		n = b->ngrave;
		memcpy(batch, b->grave, n * sizeof *batch);
		b->ngrave = 0;
		pthread_mutex_unlock(&b->grave_mu);
		for (size_t i = 0; i < n; i++)
			natsMsg_Destroy(batch[i]);
		pthread_mutex_lock(&b->grave_mu);
		if (b->grave_stop && b->ngrave == 0)
			break;
	}
	pthread_mutex_unlock(&b->grave_mu);
	free(batch);
	return NULL;
}

/* NATS_URL may list several servers, comma-separated (a cluster's seeds). */
static natsStatus
bus_set_servers(natsOptions *opts, const char *urls)
{
	char copy[512], *list[16], *save = NULL, *tok;
	int n = 0;

	snprintf(copy, sizeof copy, "%s", urls);
	for (tok = strtok_r(copy, ", ", &save); tok && n < 16; tok = strtok_r(NULL, ", ", &save))
		list[n++] = tok;
	if (n <= 1)
		return natsOptions_SetURL(opts, urls);
	return natsOptions_SetServers(opts, (const char **)list, n);
}

int
bus_open(struct bus **out, const struct config *cfg, const char *name)
{
	struct bus *b = calloc(1, sizeof *b);
	jsOptions jo;
	natsStatus s;

	if (!b)
		return TE_NOMEM;
	b->cfg = cfg;
	pthread_mutex_init(&b->grave_mu, NULL);
	cond_init_monotonic(&b->grave_cv);
	if ((b->grave = calloc(GRAVE_MAX, sizeof *b->grave)) &&
	    pthread_create(&b->grave_th, NULL, gravedigger, b) == 0)
		b->grave_started = 1;
	if ((s = natsOptions_Create(&b->opts)) != NATS_OK)
		goto fail;
	s = bus_set_servers(b->opts, cfg->nats_url);
	if (s == NATS_OK)
		s = natsOptions_SetName(b->opts, name);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(b->opts, cfg->nats_timeout_ms);
	/* Latency path: flush every publish at once (FIELD-NOTES: ~90 us vs ~0.6 ms). */
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(b->opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(b->opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(b->opts, 250);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(b->opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(b->opts, 2);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(b->opts, on_disconnected, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(b->opts, on_reconnected, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(b->opts, on_error, NULL);
	if (s != NATS_OK)
		goto fail;
	if ((s = natsConnection_Connect(&b->nc, b->opts)) != NATS_OK) {
		tlog(LOG_WARN, "could not connect to NATS at %s: %s", cfg->nats_url,
		    natsStatus_GetText(s));
		goto fail;
	}
	jsOptions_Init(&jo);
	jo.Wait = cfg->nats_timeout_ms;
	if ((s = natsConnection_JetStream(&b->js, b->nc, &jo)) != NATS_OK)
		goto fail;
	*out = b;
	return TE_OK;
fail:
	bus_close(b);
	return s == NATS_NO_MEMORY ? TE_NOMEM : TE_BUS;
}

int
bus_lib_open(void)
{
	/* No spinning on nats.c's locks: on a couple of shared cores, spinning threads
	 * (every generator publishes on the worker's one connection) burn the CPU the
	 * lock holder needs. */
	natsStatus s = nats_Open(0);

	if (s != NATS_OK) {
		tlog(LOG_ERROR, "could not initialize the NATS library: %s", natsStatus_GetText(s));
		return TE_BUS;
	}
	return TE_OK;
}

/* Stop the gravedigger after destroying what it holds; later burials are
 * destroyed at once (msg_bury sees grave_started == 0). */
static void
grave_stop(struct bus *b)
{
	if (!b->grave_started)
		return;
	pthread_mutex_lock(&b->grave_mu);
	b->grave_stop = 1;
	pthread_cond_signal(&b->grave_cv);
	pthread_mutex_unlock(&b->grave_mu);
	pthread_join(b->grave_th, NULL);
	pthread_mutex_lock(&b->grave_mu);
	b->grave_started = 0;
	for (size_t i = 0; i < b->ngrave; i++)
		natsMsg_Destroy(b->grave[i]);
	b->ngrave = 0;
	pthread_mutex_unlock(&b->grave_mu);
}

void
bus_shutdown(struct bus *b)
{
	if (b && b->nc)
		natsConnection_Close(b->nc);
}

void
bus_close(struct bus *b)
{
	if (!b)
		return;
	/* Close first: no control callback, no delivery runs past this point. */
	if (b->nc)
		natsConnection_Close(b->nc);
	if (b->ctl)
		natsSubscription_Destroy(b->ctl);
	if (b->js)
		jsCtx_Destroy(b->js);
	grave_stop(b);
	free(b->grave);
	natsConnection_Destroy(b->nc);
	natsOptions_Destroy(b->opts);
	pthread_mutex_destroy(&b->grave_mu);
	pthread_cond_destroy(&b->grave_cv);
	free(b);
}

int
bus_connected(struct bus *b)
{
	return b && b->nc && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

int
bus_ping(struct bus *b, int timeout_ms)
{
	jsStreamInfo *si = NULL;
	jsOptions jo;
	jsErrCode ec = 0;
	natsStatus s;

	if (!bus_connected(b))
		return TE_BUS;
	/* Ready means runs can stream: the server answers and the stream exists (a NATS
	 * that came back without its store gets the stream again here). */
	jsOptions_Init(&jo);
	jo.Wait = timeout_ms;
	s = js_GetStreamInfo(&si, b->js, BUS_STREAM, &jo, &ec);
	jsStreamInfo_Destroy(si);
	if (s == NATS_OK)
		return TE_OK;
	if (s == NATS_NOT_FOUND || ec == JSStreamNotFoundErr)
		return bus_stream_ensure(b);
	return TE_BUS;
}

int
bus_stream_ensure(struct bus *b)
{
	const char *subjects[] = { SUBJECT_PREFIX "*" };
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsRePublish rp;
	jsErrCode ec = 0;
	natsStatus s;
	int found = 0;

	s = js_GetStreamInfo(&si, b->js, BUS_STREAM, NULL, &ec);
	if (s == NATS_OK) {
		const jsRePublish *have = si->Config->RePublish;

		for (int i = 0; i < si->Config->SubjectsLen; i++)
			if (!strcmp(si->Config->Subjects[i], subjects[0]))
				found = 1;
		if (!found)
			tlog(LOG_ERROR, "stream %s exists without subject %s", BUS_STREAM, subjects[0]);
		else if (!have || !have->Destination || strcmp(have->Destination, LIVE_PREFIX ">") ||
		    have->HeadersOnly) {
			tlog(LOG_ERROR, "stream %s exists without RePublish %s> -> %s> (delete it; "
			    "OPERATIONS.md, upgrades)", BUS_STREAM, SUBJECT_PREFIX, LIVE_PREFIX);
			found = 0;
		}
		jsStreamInfo_Destroy(si);
		return found ? TE_OK : TE_BUS;
	}
	if (s != NATS_NOT_FOUND && ec != JSStreamNotFoundErr) {
		tlog(LOG_WARN, "could not read stream %s: %s (%d)", BUS_STREAM, natsStatus_GetText(s),
		    (int)ec);
		return TE_BUS;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = BUS_STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Retention = js_LimitsPolicy;
	sc.Discard = js_DiscardOld;
	sc.MaxAge = (int64_t)b->cfg->stream_max_age_s * 1000000000LL;
	sc.Duplicates = (int64_t)b->cfg->dup_window_s * 1000000000LL;
	sc.Replicas = b->cfg->stream_replicas;
	sc.MaxMsgsPerSubject = -1;
	sc.AllowDirect = true;
	/* The live tail: every stored event is republished, with its sequence and the
	 * previous one on its subject (tail.h), after the store succeeded. */
	jsRePublish_Init(&rp);
	rp.Source = SUBJECT_PREFIX ">";
	rp.Destination = LIVE_PREFIX ">";
	sc.RePublish = &rp;
	s = js_AddStream(&si, b->js, &sc, NULL, &ec);
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK) {
		/* Another worker may have created it a moment ago. */
		si = NULL;
		if (js_GetStreamInfo(&si, b->js, BUS_STREAM, NULL, NULL) == NATS_OK) {
			jsStreamInfo_Destroy(si);
			return TE_OK;
		}
		tlog(LOG_WARN, "could not create stream %s: %s (%d)", BUS_STREAM,
		    natsStatus_GetText(s), (int)ec);
		return TE_BUS;
	}
	tlog(LOG_INFO, "created stream %s", BUS_STREAM);
	return TE_OK;
}

static int
retryable(natsStatus s)
{
	return s == NATS_TIMEOUT || s == NATS_CONNECTION_CLOSED || s == NATS_NO_RESPONDERS ||
	    s == NATS_CONNECTION_DISCONNECTED || s == NATS_IO_ERROR || s == NATS_STALE_CONNECTION ||
	    s == NATS_NO_SERVER;
}

/* A publish refused with "wrong last sequence" may be our own resend: on a
 * replicated stream (nats-server 2.9.10, R3) the expected-last-subject-sequence
 * check runs before the Nats-Msg-Id dedupe, so when the ack of a stored message is
 * lost (leader killed, ack timed out in an election) its resend is refused instead
 * of acked as a duplicate. A single server acks it as a duplicate. So: if the
 * subject's last message is the one we sent (same Nats-Msg-Id), it was stored and
 * this is no fence. Returns 1 and its sequence in *sseq when it is ours. */
static int
pub_stored_already(struct bus *b, const char *subject, const char *msg_id, uint64_t *sseq)
{
	const char *id = NULL;
	jsOptions jo;
	natsMsg *m = NULL;
	int ours = 0;

	jsOptions_Init(&jo);
	jo.Wait = b->cfg->nats_timeout_ms;
	if (js_GetLastMsg(&m, b->js, BUS_STREAM, subject, &jo, NULL) == NATS_OK &&
	    natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id && !strcmp(id, msg_id)) {
		*sseq = natsMsg_GetSequence(m);
		ours = *sseq > 0;
	}
	natsMsg_Destroy(m);
	return ours;
}

int
bus_publish(struct bus *b, const char *run_id, int attempt, int64_t seq, enum bus_ev type,
    int64_t end, const char *msg_id, const char *data, size_t len, uint64_t expect,
    int64_t deadline_ms, uint64_t *sseq)
{
	char subject[64], idbuf[96], abuf[16], sbuf[24], ebuf[24];
	int64_t backoff = 50;
	int rc = TE_BUS;

	snprintf(subject, sizeof subject, SUBJECT_PREFIX "%s", run_id);
	if (!msg_id) {
		snprintf(idbuf, sizeof idbuf, "%s:%d:%lld", run_id, attempt, (long long)seq);
		msg_id = idbuf;
	}
	snprintf(abuf, sizeof abuf, "%d", attempt);
	snprintf(sbuf, sizeof sbuf, "%lld", (long long)seq);
	snprintf(ebuf, sizeof ebuf, "%lld", (long long)end);
	for (;;) {
		jsPubOptions po;
		jsPubAck *pa = NULL;
		jsErrCode ec = 0;
		natsMsg *m = NULL;
		natsStatus s;
		int64_t left = deadline_ms - now_ms();

		if (left <= 0)
			return rc == TE_BUS ? TE_TIMEOUT : rc;
		s = natsMsg_Create(&m, subject, NULL, data, (int)len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Tether-Event", bus_ev_name(type));
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Tether-Attempt", abuf);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Tether-Seq", sbuf);
		if (s == NATS_OK && type == EV_DELTA)
			s = natsMsgHeader_Set(m, "Tether-End", ebuf);
		if (s != NATS_OK) {
			natsMsg_Destroy(m);
			return TE_NOMEM;
		}
		jsPubOptions_Init(&po);
		po.MsgId = msg_id;
		po.ExpectLastSubjectSeq = expect;
		po.MaxWait = left < b->cfg->nats_timeout_ms ? left : b->cfg->nats_timeout_ms;
		s = js_PublishMsg(&pa, b->js, m, &po, &ec);
		natsMsg_Destroy(m);
		if (s == NATS_OK) {
			*sseq = pa->Sequence;
			jsPubAck_Destroy(pa);
			return TE_OK;
		}
		jsPubAck_Destroy(pa);
		if (ec == JSStreamWrongLastSequenceErr) {
			if (pub_stored_already(b, subject, msg_id, sseq)) {
				tlog_run(LOG_INFO, run_id, attempt, "a resent %s %lld was stored already "
				    "(its ack was lost); going on", bus_ev_name(type), (long long)seq);
				return TE_OK;
			}
			return TE_FENCED;
		}
		if (s == NATS_MAX_PAYLOAD || ec == JSStreamMessageExceedsMaximumErr) {
			tlog_run(LOG_ERROR, run_id, attempt, "could not publish %s %lld: %zu bytes of "
			    "data exceed the server's max_payload (%lld bytes)", bus_ev_name(type),
			    (long long)seq, len, (long long)natsConnection_GetMaxPayload(b->nc));
			return TE_TOOLARGE;
		}
		if (s == NATS_NO_RESPONDERS || ec == JSStreamNotFoundErr) {
			/* No stream for the subject: NATS lost its store (a new volume, say).
			 * Create it again; the retry below publishes into it. */
			tlog_run(LOG_WARN, run_id, attempt, "stream %s is missing; creating it", BUS_STREAM);
			if (bus_stream_ensure(b) != TE_OK)
				tlog_run(LOG_WARN, run_id, attempt, "could not create stream %s; "
				    "retrying the publish", BUS_STREAM);
		}
		if (!retryable(s)) {
			tlog_run(LOG_WARN, run_id, attempt, "could not publish %s %lld: %s (%d)",
			    bus_ev_name(type), (long long)seq, natsStatus_GetText(s), (int)ec);
			return TE_BUS;
		}
		/* Same Nats-Msg-Id on every retry: JetStream stores it once. */
		sleep_ms(backoff < left ? backoff : left);
		if (backoff < 1000)
			backoff *= 2;
	}
}

/* ---- the pipelined publisher ---- */

struct bus_pub {
	struct bus *b;
	natsInbox *inbox;
	natsSubscription *sub;          /* <inbox>.* */
	uint64_t token;                 /* reply subject suffix of the send in flight */
	int inflight;
	/* the event in flight, to send again after connection trouble */
	char subject[64], reply[160], msg_id[128], abuf[16], sbuf[24], ebuf[24];
	enum bus_ev type;
	uint64_t expect;
	char *data;
	size_t len, cap;
	int64_t sent_ms;
	char err[256];                  /* why the event was given up ("": it was not) */
};

size_t
bus_max_data(struct bus *b)
{
	int64_t max;

	if (!b || !b->nc)
		return 0;
	max = natsConnection_GetMaxPayload(b->nc);
	return max > HEADER_ROOM ? (size_t)(max - HEADER_ROOM) : 0;
}

int
bus_pub_open(struct bus *b, struct bus_pub **out)
{
	struct bus_pub *p = calloc(1, sizeof *p);
	char wild[160];

	if (!p)
		return TE_NOMEM;
	p->b = b;
	if (natsInbox_Create(&p->inbox) != NATS_OK) {
		free(p);
		return TE_NOMEM;
	}
	snprintf(wild, sizeof wild, "%s.*", p->inbox);
	if (natsConnection_SubscribeSync(&p->sub, b->nc, wild) != NATS_OK) {
		natsInbox_Destroy(p->inbox);
		free(p);
		return TE_BUS;
	}
	*out = p;
	return TE_OK;
}

void
bus_pub_close(struct bus_pub *p)
{
	if (!p)
		return;
	natsSubscription_Destroy(p->sub);
	natsInbox_Destroy(p->inbox);
	free(p->data);
	free(p);
}

int
bus_pub_inflight(const struct bus_pub *p)
{
	return p->inflight;
}

const char *
bus_pub_error(const struct bus_pub *p)
{
	return p->err;
}

/* Give the event in flight up: retrying cannot make it succeed. */
static int
pub_give_up(struct bus_pub *p, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
pub_give_up(struct bus_pub *p, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof p->err, fmt, ap);
	va_end(ap);
	p->inflight = 0;
	tlog(LOG_ERROR, "could not publish to %s: %s", p->subject, p->err);
	return rc;
}

/* Send the event in flight. TE_OK: sent, or not sent for a reason a resend may
 * fix (disconnected, the reconnect buffer full): bus_pub_settle resends it.
 * Otherwise the event is given up (see pub_give_up). */
static int
pub_transmit(struct bus_pub *p)
{
	natsMsg *m = NULL;
	char expect[24];
	natsStatus s;

	p->token++;
	snprintf(p->reply, sizeof p->reply, "%s.%llu", p->inbox, (unsigned long long)p->token);
	s = natsMsg_Create(&m, p->subject, p->reply, p->data, (int)p->len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Tether-Event", bus_ev_name(p->type));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Tether-Attempt", p->abuf);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Tether-Seq", p->sbuf);
	if (s == NATS_OK && p->type == EV_DELTA)
		s = natsMsgHeader_Set(m, "Tether-End", p->ebuf);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", p->msg_id);
	if (s == NATS_OK && p->expect > 0) {
		snprintf(expect, sizeof expect, "%llu", (unsigned long long)p->expect);
		s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", expect);
	}
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(p->b->nc, m);
	msg_bury(p->b, m);
	p->sent_ms = now_ms();
	if (s == NATS_OK || retryable(s) || s == NATS_INSUFFICIENT_BUFFER)
		return TE_OK;
	if (s == NATS_MAX_PAYLOAD)
		return pub_give_up(p, TE_TOOLARGE, "the %s event (%zu bytes of data) exceeds the "
		    "server's max_payload (%lld bytes)", bus_ev_name(p->type), p->len,
		    (long long)natsConnection_GetMaxPayload(p->b->nc));
	return pub_give_up(p, s == NATS_NO_MEMORY ? TE_NOMEM : TE_BUS, "the %s event: %s",
	    bus_ev_name(p->type), natsStatus_GetText(s));
}

int
bus_pub_send(struct bus_pub *p, const char *run_id, int attempt, int64_t seq, enum bus_ev type,
    int64_t end, const char *msg_id, const char *data, size_t len, uint64_t expect)
{
	if (p->inflight)
		return TE_INVAL;
	p->err[0] = '\0';
	if (len + 1 > p->cap) {
		char *d = realloc(p->data, len + 1);

		if (!d)
			return TE_NOMEM;
		p->data = d;
		p->cap = len + 1;
	}
	memcpy(p->data, data, len);
	p->data[len] = '\0';
	p->len = len;
	p->type = type;
	p->expect = expect;
	snprintf(p->subject, sizeof p->subject, SUBJECT_PREFIX "%s", run_id);
	if (msg_id)
		snprintf(p->msg_id, sizeof p->msg_id, "%s", msg_id);
	else
		snprintf(p->msg_id, sizeof p->msg_id, "%s:%d:%lld", run_id, attempt, (long long)seq);
	snprintf(p->abuf, sizeof p->abuf, "%d", attempt);
	snprintf(p->sbuf, sizeof p->sbuf, "%lld", (long long)seq);
	snprintf(p->ebuf, sizeof p->ebuf, "%lld", (long long)end);
	p->inflight = 1;
	return pub_transmit(p);
}

/* A JetStream PubAck: {"stream":..,"seq":N[,"duplicate":true]} or
 * {"error":{"code":C,"err_code":E,"description":D}}. Returns 0 with *sseq (a
 * stored event) or *err_code != 0 (a refusal, D copied to desc); -1 when the
 * reply is neither. */
static int
pub_ack_parse(const char *d, int n, uint64_t *sseq, int *err_code, char *desc, size_t desclen)
{
	struct json_tokener *tok;
	struct json_object *o, *e, *v;
	int rc = -1;

	if (!d || n <= 0 || !(tok = json_tokener_new()))
		return -1;
	o = json_tokener_parse_ex(tok, d, n);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object))
		goto out;
	*err_code = 0;
	desc[0] = '\0';
	if (json_object_object_get_ex(o, "error", &e)) {
		*err_code = -1;
		if (json_object_is_type(e, json_type_object)) {
			if (json_object_object_get_ex(e, "err_code", &v) &&
			    json_object_is_type(v, json_type_int) && json_object_get_int(v) > 0)
				*err_code = json_object_get_int(v);
			if (json_object_object_get_ex(e, "description", &v) &&
			    json_object_is_type(v, json_type_string))
				snprintf(desc, desclen, "%s", json_object_get_string(v));
		}
		rc = 0;
		goto out;
	}
	if (json_object_object_get_ex(o, "seq", &v) && json_object_is_type(v, json_type_int) &&
	    json_object_get_int64(v) > 0) {
		*sseq = (uint64_t)json_object_get_int64(v);
		rc = 0;
	}
out:
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}

/* JetStream refusals that the same message will meet again. */
static int
ack_err_final(int code)
{
	return code == JSStreamMessageExceedsMaximumErr;
}

int
bus_pub_settle(struct bus_pub *p, int64_t deadline_ms, uint64_t *sseq)
{
	int64_t backoff = 50;

	while (p->inflight) {
		int64_t left = deadline_ms - now_ms(), wait;
		natsMsg *m = NULL;
		natsStatus s;
		int rc;

		if (left <= 0)
			return TE_TIMEOUT;
		wait = p->sent_ms + p->b->cfg->nats_timeout_ms - now_ms();
		if (wait > left)
			wait = left;
		s = wait > 0 ? natsSubscription_NextMsg(&m, p->sub, (int)wait) : NATS_TIMEOUT;
		if (s == NATS_OK) {
			const char *subj = natsMsg_GetSubject(m);
			const char *dot = subj ? strrchr(subj, '.') : NULL;
			char desc[160];
			uint64_t seq = 0;
			int code = 0;

			if (!dot || strtoull(dot + 1, NULL, 10) != p->token) {
				msg_bury(p->b, m);     /* the ack of an earlier, resent try */
				continue;
			}
			if (natsMsg_IsNoResponders(m)) {
				msg_bury(p->b, m);
				tlog(LOG_WARN, "stream %s is missing; creating it", BUS_STREAM);
				if (bus_stream_ensure(p->b) != TE_OK)
					tlog(LOG_WARN, "could not create stream %s; resending", BUS_STREAM);
				goto resend;
			}
			rc = pub_ack_parse(natsMsg_GetData(m), natsMsg_GetDataLength(m), &seq, &code, desc,
			    sizeof desc);
			msg_bury(p->b, m);
			if (rc < 0) {
				tlog(LOG_WARN, "JetStream answered a publish to %s with an unreadable "
				    "acknowledgement; sending it again", p->subject);
				goto resend;
			}
			if (code == JSStreamWrongLastSequenceErr) {
				p->inflight = 0;
				if (pub_stored_already(p->b, p->subject, p->msg_id, sseq)) {
					tlog(LOG_INFO, "a resent publish (%s) was stored already (its ack "
					    "was lost); going on", p->msg_id);
					return TE_OK;
				}
				return TE_FENCED;
			}
			if (ack_err_final(code))
				return pub_give_up(p, TE_TOOLARGE, "JetStream refused the %s event "
				    "(%zu bytes of data): %s (error %d)", bus_ev_name(p->type), p->len,
				    desc[0] ? desc : "too large", code);
			if (code != 0) {
				tlog(LOG_WARN, "JetStream refused a publish to %s: %s (error %d); retrying",
				    p->subject, desc[0] ? desc : "no description", code);
				goto resend;
			}
			p->inflight = 0;
			*sseq = seq;
			return TE_OK;
		}
		if (s != NATS_TIMEOUT)
			sleep_ms(backoff < left ? backoff : left);
resend:
		/* No ack in time, or trouble: send it again. The same Nats-Msg-Id makes
		 * JetStream store it once and ack the original sequence. */
		if (backoff < 1000)
			backoff *= 2;
		if ((rc = pub_transmit(p)) != TE_OK)
			return rc;
	}
	return TE_OK;
}

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
on_ctl(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	struct bus *b = closure;
	const char *d = natsMsg_GetData(m);
	int n = natsMsg_GetDataLength(m);
	char line[64], *sp;

	(void)nc;
	(void)sub;
	/* "<verb> <run_id>" from another worker; anything else is dropped. */
	if (d && n > 0 && n < (int)sizeof line) {
		memcpy(line, d, (size_t)n);
		line[n] = '\0';
		if ((sp = strchr(line, ' ')) && uuid_valid(sp + 1) && strlen(sp + 1) == UUID_LEN) {
			*sp = '\0';
			b->ctl_fn(b->ctl_arg, line, sp + 1);
		}
	}
	natsMsg_Destroy(m);
}

int
bus_ctl_listen(struct bus *b, long worker, bus_ctl_fn fn, void *arg)
{
	char subject[64];

	snprintf(subject, sizeof subject, CTL_PREFIX "%ld", worker);
	b->ctl_fn = fn;
	b->ctl_arg = arg;
	return natsConnection_Subscribe(&b->ctl, b->nc, subject, on_ctl, b) == NATS_OK ? TE_OK
	    : TE_BUS;
}

int
bus_ctl_send(struct bus *b, long worker, const char *verb, const char *run_id)
{
	char subject[64], data[64];

	snprintf(subject, sizeof subject, CTL_PREFIX "%ld", worker);
	snprintf(data, sizeof data, "%s %s", verb, run_id);
	return natsConnection_PublishString(b->nc, subject, data) == NATS_OK ? TE_OK : TE_BUS;
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
	pthread_cond_init(&l->cv, NULL);
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

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
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
