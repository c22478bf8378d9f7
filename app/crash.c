/* crash.c - the poison-run record; see crash.h and docs/DESIGN.md "Poison runs". */
#include "crash.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static struct crash_slot *self;         /* this worker's record, set before any thread */
static __thread const char *cur_run;    /* the run this thread generates, or NULL */
static __thread int cur_attempt;

static const int crash_sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
#if defined(__SANITIZE_ADDRESS__)
/* AddressSanitizer reports SIGSEGV, SIGBUS and SIGFPE itself (then exits 1): its
 * handlers stay, so such a crash is reported rather than charged. */
static const int handled_sigs[] = { SIGILL, SIGABRT };
#else
static const int handled_sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
#endif

int
crash_signal(int sig)
{
	for (size_t i = 0; i < sizeof crash_sigs / sizeof crash_sigs[0]; i++)
		if (sig == crash_sigs[i])
			return 1;
	return 0;
}

struct crash_slot *
crash_slots_map(int n)
{
	void *p = mmap(NULL, (size_t)n * sizeof(struct crash_slot), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int
crash_slot_reaped(struct crash_slot *s, int wait_status)
{
	if (!s)
		return 0;
	if (s->set && WIFSIGNALED(wait_status) && crash_signal(WTERMSIG(wait_status)))
		return 1;
	s->set = 0;
	return 0;
}

/* Async-signal-safe: plain stores into the shared record, then the default action. */
static void
on_crash(int sig)
{
	const char *run = cur_run;

	if (self && run && !self->set) {
		size_t i;

		for (i = 0; i < UUID_LEN && run[i]; i++)
			self->run_id[i] = run[i];
		self->run_id[i] = '\0';
		self->attempt = cur_attempt;
		self->set = 1;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void
crash_handlers_install(struct crash_slot *s)
{
	struct sigaction sa;

	if (!s)
		return;
	self = s;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_crash;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND | SA_NODEFER;
	for (size_t i = 0; i < sizeof handled_sigs / sizeof handled_sigs[0]; i++)
		sigaction(handled_sigs[i], &sa, NULL);
}

void
crash_generating(const char *run_id, int attempt)
{
	cur_run = run_id;
	cur_attempt = attempt;
}

int
crash_take(struct crash_slot *s, char run_id[UUID_LEN + 1], int *attempt)
{
	int had;

	if (!s)
		return 0;
	had = s->set && uuid_valid(s->run_id);
	if (had) {
		memcpy(run_id, s->run_id, UUID_LEN + 1);
		*attempt = s->attempt;
	}
	s->set = 0;
	return had;
}
