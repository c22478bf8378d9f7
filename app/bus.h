/* bus.h - run events on NATS JetStream (stream TETHER_EVENTS, subject
 * tether.ev.<run_id>), with fencing by expected last subject sequence; the stream
 * republishes every stored event on tether.live.<run_id> (the live tail, tail.h).
 * The only module that speaks nats.c. */
#ifndef TETHER_BUS_H
#define TETHER_BUS_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

struct config;
struct bus;
struct bus_sub;

/* TETHER_RUNS (tether.run.*) was the stream before the live tail: JetStream cannot
 * add RePublish to an existing stream, so the events moved to a new one. */
#define BUS_STREAM "TETHER_EVENTS"

enum bus_ev { EV_START = 0, EV_DELTA, EV_RESET, EV_DONE, EV_TOOL_CALL, EV_UNKNOWN, EV__MAX };

const char *bus_ev_name(enum bus_ev t);
enum bus_ev bus_ev_parse(const char *s);

/* One event as stored. data points into the message; valid until bus_event_release. */
struct bus_event {
	uint64_t sseq;          /* stream sequence */
	int attempt;
	int64_t seq;
	enum bus_ev type;
	int64_t end;            /* Tether-End: output bytes up to and including this delta
	                         * (a tool_call: the output bytes before it, all of them) */
	const char *data;
	size_t len;
	uint64_t pending;       /* messages the consumer still has to deliver */
	uint64_t prev;          /* live copies: the previous stream sequence on the subject */
	void *msg;
	struct bus *bus;        /* releases msg (batched), when set */
};

/* A callback for control messages addressed to this worker (cancel notices). */
typedef void (*bus_ctl_fn)(void *arg, const char *verb, const char *run_id);

/* Once per process, before any bus_open and before threads that publish: set up
 * nats.c (no spinning on its locks). */
TE_MUST_CHECK int bus_lib_open(void);
TE_MUST_CHECK int bus_open(struct bus **out, const struct config *cfg, const char *name);
/* Free everything. Only when no other thread can touch b any more (a failed
 * bus_open, a single-threaded program): the connection is closed first, so no
 * callback runs during the teardown. */
void bus_close(struct bus *b);
/* At process exit, with other threads possibly still inside the bus (generators
 * past the drain deadline, hub consumers, request threads): flush and close the
 * connection, so that every later call answers "connection closed", and free
 * nothing. The caller _exits next. */
void bus_shutdown(struct bus *b);
int bus_connected(struct bus *b);
/* Check the stream round trip (readiness): TE_OK or TE_BUS. */
TE_MUST_CHECK int bus_ping(struct bus *b, int timeout_ms);
/* Create the stream when missing; check subjects and storage when present. */
TE_MUST_CHECK int bus_stream_ensure(struct bus *b);

/* Publish one event with Nats-Msg-Id = msg_id (NULL: <run>:<attempt>:<seq>) and,
 * when expect > 0, expected last subject sequence = expect. Retries after
 * connection trouble until deadline_ms (dedupe keeps it once).
 * TE_FENCED: the subject moved on (a taker's reset or a cancel). */
TE_MUST_CHECK int bus_publish(struct bus *b, const char *run_id, int attempt, int64_t seq, enum bus_ev type,
    int64_t end, const char *msg_id, const char *data, size_t len, uint64_t expect,
    int64_t deadline_ms, uint64_t *sseq);
/* A publisher with one event in flight: send, go on generating, collect the ack
 * before the next send (the fencing needs the previous event's stream sequence).
 * The ack wait overlaps the model's time instead of adding to it. One per generator. */
struct bus_pub;
TE_MUST_CHECK int bus_pub_open(struct bus *b, struct bus_pub **out);
void bus_pub_close(struct bus_pub *p);
/* Send one event (as bus_publish); fails with TE_INVAL if one is still in flight.
 * A send that retrying cannot fix (TE_TOOLARGE: over the server's max_payload;
 * TE_BUS: refused) returns at once with nothing in flight; bus_pub_error says why.
 * Trouble that a resend may fix (disconnected) leaves the event in flight. */
TE_MUST_CHECK int bus_pub_send(struct bus_pub *p, const char *run_id, int attempt, int64_t seq, enum bus_ev type,
    int64_t end, const char *msg_id, const char *data, size_t len, uint64_t expect);
/* Wait for the ack of the event in flight, resending it (same Nats-Msg-Id) after
 * connection trouble until deadline_ms. TE_OK with *sseq; TE_FENCED; TE_TIMEOUT;
 * TE_TOOLARGE or TE_BUS when JetStream or the client refuses the event for good
 * (nothing is in flight then; bus_pub_error says why).
 * With nothing in flight: TE_OK and *sseq untouched. */
TE_MUST_CHECK int bus_pub_settle(struct bus_pub *p, int64_t deadline_ms, uint64_t *sseq);
int bus_pub_inflight(const struct bus_pub *p);
/* Why the last send or settle failed for good ("" when it did not); owned by p. */
const char *bus_pub_error(const struct bus_pub *p);
/* The largest event data (bytes) one publish may carry: the server's max_payload
 * less room for tether's headers. 0 when not connected. */
size_t bus_max_data(struct bus *b);

/* The last event of a run; TE_NOTFOUND when the subject is empty. Release it. */
TE_MUST_CHECK int bus_last(struct bus *b, const char *run_id, struct bus_event *ev);
void bus_event_release(struct bus_event *ev);

/* An ordered consumer of one run's events, from the first stored one. */
TE_MUST_CHECK int bus_sub_open(struct bus *b, const char *run_id, struct bus_sub **out);
/* The same, from stream sequence start (events before it are not delivered). */
TE_MUST_CHECK int bus_sub_open_at(struct bus *b, const char *run_id, uint64_t start, struct bus_sub **out);
/* The first stored event of the run at or after stream sequence from (direct get):
 * TE_OK, TE_NOTFOUND when there is none, TE_BUS. Release it. */
TE_MUST_CHECK int bus_next(struct bus *b, const char *run_id, uint64_t from, struct bus_event *ev);

/* The live tail: the stream's republished copies of a run's stored events (core
 * NATS, so copies can be lost on a reconnect; tail.c repairs that). fn runs on the
 * subscription's own delivery thread, one copy at a time, in order; it owns ev
 * (bus_event_release). Copies lost to a reconnect or a slow-consumer drop show as
 * a gap in the next copy's prev, or to the quiet-run check (bus_last). */
struct bus_live;
typedef void (*bus_live_fn)(void *arg, struct bus_event *ev);
TE_MUST_CHECK int bus_live_open(struct bus *b, const char *run_id, bus_live_fn fn, void *arg,
    struct bus_live **out);
/* Unsubscribe and wait until fn has returned for the last time; never call it
 * from fn. */
void bus_live_close(struct bus_live *l);
/* TE_OK with ev filled, TE_TIMEOUT when nothing came, TE_BUS on trouble.
 * timeout_ms 0: only a message that has already arrived. */
TE_MUST_CHECK int bus_sub_next(struct bus_sub *s, int timeout_ms, struct bus_event *ev);
void bus_sub_close(struct bus_sub *s);

/* Remove a run's events from the stream (its subject; idempotent). */
TE_MUST_CHECK int bus_run_purge(struct bus *b, const char *run_id);

/* Control messages between workers (core NATS, not stored). */
TE_MUST_CHECK int bus_ctl_listen(struct bus *b, long worker, bus_ctl_fn fn, void *arg);
TE_MUST_CHECK int bus_ctl_send(struct bus *b, long worker, const char *verb, const char *run_id);
/* "<verb> <id>" to every worker of every pod, this one included (bus_ctl_listen's fn
 * gets it); flushed to the server before returning. */
TE_MUST_CHECK int bus_ctl_broadcast(struct bus *b, const char *verb, const char *id);

#endif
