/* worker.h - one worker process: request threads, generators, liveness. */
#ifndef TETHER_WORKER_H
#define TETHER_WORKER_H

#include <sys/types.h>

struct config;
struct crash_slot;

/* Run a worker on the listening socket; returns the process exit code. crash is
 * the slot's poison-run record shared with the master (crash.h), or NULL. */
int worker_main(const struct config *cfg, int listen_fd, pid_t master, struct crash_slot *crash);

#endif
