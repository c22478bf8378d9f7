/* master.h - the prefork master of a pod. */
#ifndef TETHER_MASTER_H
#define TETHER_MASTER_H

#include <stddef.h>

struct config;

/* Open the FastCGI socket, fork the workers, keep them running; on SIGTERM or SIGINT
 * drain and return 0. Never calls FCGX_Init or starts a thread (fork safety). */
int master_run(const struct config *cfg);
/* Open a listening socket: a unix path (mode 0666) or HOST:PORT. Returns fd or -1. */
int master_listen(const char *addr, char *err, size_t errlen);

#endif
