/* tetherd - the pod: wiring only. */
#include "config.h"
#include "log.h"
#include "master.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
	static struct config cfg;
	char err[512];
	int rc;

	rc = config_load(&cfg, argc, argv, err, sizeof err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "tetherd: %s\n", err);
		return 2;
	}
	log_init(cfg.pod, cfg.log_level);
	return master_run(&cfg);
}
