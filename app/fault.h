/* fault.h - fault injection for tests. Compiled in only with ./configure
 * --enable-fault-injection (scripts/build asan, which the integration and faults
 * suites run); in other builds fault_hit is 0 and TETHER_FAULTS is ignored.
 *
 * TETHER_FAULTS="NAME:COUNT[,NAME:COUNT...]": the first COUNT times a process
 * reaches the fault point NAME, it fails. Points: "fork" (the master's fork of a
 * worker fails with EAGAIN), "spawn_takeover" (a worker cannot start the generator
 * thread of a run it claimed). Counts are per process. */
#ifndef TETHER_FAULT_H
#define TETHER_FAULT_H

#ifdef TETHER_FAULT_INJECTION
int fault_hit(const char *name);
#else
static inline int
fault_hit(const char *name)
{
	(void)name;
	return 0;
}
#endif

#endif
