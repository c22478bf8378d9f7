/* worker.h - one worker process: request threads, generators, liveness. */
#ifndef TETHER_WORKER_H
#define TETHER_WORKER_H

#include <sys/types.h>

struct config;

/* Run a worker on the listening socket; returns the process exit code. */
int worker_main(const struct config *cfg, int listen_fd, pid_t master);

#endif
