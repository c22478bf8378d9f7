/* fault.c - see fault.h. */
#include "fault.h"

#ifdef TETHER_FAULT_INJECTION
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAULTS 8

static struct {
	char name[32];
	long left;
} faults[MAX_FAULTS];
static int nfaults;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;  /* guards faults[].left */

static void
fault_parse(void)
{
	const char *spec = getenv("TETHER_FAULTS");
	char copy[256], *save = NULL, *tok;

	if (!spec || !*spec)
		return;
	snprintf(copy, sizeof copy, "%s", spec);
	for (tok = strtok_r(copy, ",", &save); tok && nfaults < MAX_FAULTS;
	    tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');

		if (!colon || colon == tok || (size_t)(colon - tok) >= sizeof faults[0].name) {
			tlog(LOG_WARN, "TETHER_FAULTS: ignoring \"%s\" (NAME:COUNT expected)", tok);
			continue;
		}
		memcpy(faults[nfaults].name, tok, (size_t)(colon - tok));
		faults[nfaults].name[colon - tok] = '\0';
		faults[nfaults].left = strtol(colon + 1, NULL, 10);
		nfaults++;
	}
}

int
fault_hit(const char *name)
{
	int hit = 0;

	pthread_once(&once, fault_parse);
	pthread_mutex_lock(&mu);
	for (int i = 0; i < nfaults; i++)
		if (!strcmp(faults[i].name, name) && faults[i].left > 0) {
			faults[i].left--;
			hit = 1;
		}
	pthread_mutex_unlock(&mu);
	if (hit)
		tlog(LOG_WARN, "fault injection: %s fails (TETHER_FAULTS)", name);
	return hit;
}
#else
typedef int fault_c_is_empty_without_fault_injection;
#endif
