/* bus.c - the NATS connection of a worker: options, reconnects, the stream and its
 * configuration, message disposal, and the control subjects between workers.
 * Publishing is in bus_pub.c, reading in bus_sub.c; bus_int.h is what they share. */
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


static const char *const ev_names[EV__MAX] = { "start", "delta", "reset", "done", "tool_call",
    "unknown" };

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

void
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
	if (s == NATS_OK && cfg->nats_user[0])
		s = natsOptions_SetUserInfo(b->opts, cfg->nats_user, cfg->nats_password);
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
		char where[sizeof cfg->nats_url];

		tlog(LOG_WARN, "could not connect to NATS at %s: %s",
		    url_mask(where, sizeof where, cfg->nats_url), natsStatus_GetText(s));
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
	if (b->ctl_all)
		natsSubscription_Destroy(b->ctl_all);
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
	sc.MaxBytes = (int64_t)b->cfg->stream_max_mb << 20;
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
bus_run_purge(struct bus *b, const char *run_id)
{
	char subject[64];
	jsOptions o;
	jsErrCode ec = 0;

	if (!uuid_valid(run_id))
		return TE_INVAL;
	snprintf(subject, sizeof subject, SUBJECT_PREFIX "%s", run_id);
	jsOptions_Init(&o);
	o.Wait = b->cfg->nats_timeout_ms;
	o.Stream.Purge.Subject = subject;
	return js_PurgeStream(b->js, BUS_STREAM, &o, &ec) == NATS_OK ? TE_OK : TE_BUS;
}

int
bus_ctl_listen(struct bus *b, long worker, bus_ctl_fn fn, void *arg)
{
	char subject[64];

	snprintf(subject, sizeof subject, CTL_PREFIX "%ld", worker);
	b->ctl_fn = fn;
	b->ctl_arg = arg;
	if (natsConnection_Subscribe(&b->ctl, b->nc, subject, on_ctl, b) != NATS_OK ||
	    natsConnection_Subscribe(&b->ctl_all, b->nc, CTL_ALL, on_ctl, b) != NATS_OK)
		return TE_BUS;
	/* A revocation must reach this worker within a second: flush the interest to the
	 * server now rather than with the next PING. */
	return natsConnection_FlushTimeout(b->nc, b->cfg->nats_timeout_ms) == NATS_OK ? TE_OK
	    : TE_BUS;
}

int
bus_ctl_broadcast(struct bus *b, const char *verb, const char *id)
{
	char data[64];

	snprintf(data, sizeof data, "%s %s", verb, id);
	if (natsConnection_PublishString(b->nc, CTL_ALL, data) != NATS_OK)
		return TE_BUS;
	return natsConnection_FlushTimeout(b->nc, b->cfg->nats_timeout_ms) == NATS_OK ? TE_OK
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

