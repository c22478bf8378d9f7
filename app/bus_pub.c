/* bus_pub.c - fenced publishing: one event with an expected last subject sequence
 * and a Nats-Msg-Id (bus_publish), and the pipelined publisher of a generator
 * (bus_pub_*), which collects the previous ack before the next send. */
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


/* One event as a message: its data and the Tether-* headers (event_from_msg in
 * bus_sub.c reads them back). */
static natsStatus
event_msg(natsMsg **out, const char *subject, const char *reply, enum bus_ev type,
    const char *abuf, const char *sbuf, const char *ebuf, const char *data, size_t len)
{
	natsMsg *m = NULL;
	natsStatus s = natsMsg_Create(&m, subject, reply, data, (int)len);

	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Tether-Event", bus_ev_name(type));
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Tether-Attempt", abuf);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Tether-Seq", sbuf);
	if (s == NATS_OK && (type == EV_DELTA || type == EV_TOOL_CALL))
		s = natsMsgHeader_Set(m, "Tether-End", ebuf);
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		return s;
	}
	*out = m;
	return NATS_OK;
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
		s = event_msg(&m, subject, NULL, type, abuf, sbuf, ebuf, data, len);
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
	s = event_msg(&m, p->subject, p->reply, p->type, p->abuf, p->sbuf, p->ebuf, p->data, p->len);
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

