/* bus_int.h - what the bus_*.c files share: the connection, the subscription
 * types and the subject names. Nothing outside the bus includes it. */
#ifndef TETHER_BUS_INT_H
#define TETHER_BUS_INT_H

#include <nats/nats.h>
#include <pthread.h>

#include "bus.h"

#define SUBJECT_PREFIX "tether.ev."
#define LIVE_PREFIX "tether.live."
#define LIVE_CLOSE_MS 10000
/* Room for an event's headers within max_payload: Tether-Event/-Attempt/-Seq/-End,
 * Nats-Msg-Id (a run id and two numbers, or a reason) and the expected sequence
 * take under 300 bytes; the rest is margin. */
#define HEADER_ROOM 1024
#define CTL_PREFIX "tether.ctl."
/* Control messages for every worker of every pod (key revocations). */
#define CTL_ALL "tether.ctl.all"

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
	natsSubscription *ctl_all;
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

/* Destroy a message later, in a batch (bus.c's gravedigger). */
void msg_bury(struct bus *b, natsMsg *m);

#endif
