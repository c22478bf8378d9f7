/* crash.h - the poison-run record (docs/DESIGN.md "Poison runs").
 *
 * The master maps one record per worker slot, shared with the workers it forks.
 * A generator thread names the run it generates (crash_generating); when that
 * thread takes a crash signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) the
 * handler writes the run and attempt into the worker's record and lets the signal
 * kill the process. The master, reaping a worker killed by such a signal, keeps
 * the record for the worker it starts next in that slot, which charges the run one
 * crash in PostgreSQL (crash_take). Any other death clears the record: deaths of
 * a whole pod, drains and SIGKILLs from outside charge nothing. */
#ifndef TETHER_CRASH_H
#define TETHER_CRASH_H

#include <signal.h>

#include "util.h"

struct crash_slot {
	volatile sig_atomic_t set;      /* 1: run_id and attempt name the culprit */
	char run_id[UUID_LEN + 1];
	int attempt;
};

/* Master: n records in memory shared with children (anonymous MAP_SHARED), zeroed.
 * NULL when the mapping fails (then no crash is ever charged). */
struct crash_slot *crash_slots_map(int n);

/* Master, after reaping slot s's worker: keep the record when the worker died of a
 * crash signal and named a culprit, else clear it. Returns 1 when kept. */
int crash_slot_reaped(struct crash_slot *s, int wait_status);

/* Worker: install the crash signal handlers that fill s. NULL s: nothing. */
void crash_handlers_install(struct crash_slot *s);

/* Generator thread: the run this thread generates now (NULL when done). */
void crash_generating(const char *run_id, int attempt);

/* Worker at start: the culprit its predecessor in the slot left, if any (returns 1
 * and copies it), and clears the record. */
int crash_take(struct crash_slot *s, char run_id[UUID_LEN + 1], int *attempt);

/* The signals that count as a crash. */
int crash_signal(int sig);

#endif
