/* tetherd - the pod: wiring only. */
#include "config.h"
#include "log.h"
#include "master.h"
#include "util.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
	static struct config cfg;
	char err[512];
	int rc;

	char fit[512];
	long nofile;
	int fitted;

	rc = config_load(&cfg, argc, argv, err, sizeof err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "tetherd: %s\n", err);
		return 2;
	}
	/* Descriptors stay below FD_SETSIZE (config.h), for libfcgi's select(). */
	if ((nofile = nofile_cap(CONFIG_FD_LIMIT)) < 0) {
		fprintf(stderr, "tetherd: could not set RLIMIT_NOFILE to %d\n", CONFIG_FD_LIMIT);
		return 2;
	}
	if ((fitted = config_fit_fds(&cfg, nofile, fit, sizeof fit)) < 0) {
		fprintf(stderr, "tetherd: %s\n", fit);
		return 2;
	}
	log_init(cfg.pod, cfg.log_level);
	if (fitted)
		tlog(LOG_WARN, "%s", fit);
	return master_run(&cfg);
}
