/* quota.h - per-tenant quotas across the cluster: open streams and requests per
 * second (active runs are counted by PostgreSQL in store_run_create, output bytes
 * by the run's generator).
 *
 * Each worker counts its own tenants' open streams and requests exactly; every
 * QUOTA_SYNC_MS it writes them to its workers row and reads the sum of the other
 * workers' (store_tenant_usage_sync). A request is admitted when this worker's
 * count plus the others' last report stays within the quota: cluster-wide, with
 * the lag of one sync; and within one sync interval no worker admits more than
 * that interval's share of requests_per_s, so workers that cannot see each other
 * yet overshoot by at most one share each (docs/OPERATIONS.md "Tenant quotas"). */
#ifndef TETHER_QUOTA_H
#define TETHER_QUOTA_H

#include "util.h"

#define QUOTA_SYNC_MS 100

/* A tenant's effective quotas (its overrides, else the TETHER_TENANT_* defaults). */
struct tenant_limits {
	int max_active_runs;
	int max_streams;
	long max_output_bytes;
	int requests_per_s;
};

struct quota;

int quota_new(struct quota **out);
void quota_free(struct quota *q);
/* Count one request; 0 when it is over requests_per_s (not counted then). */
int quota_request(struct quota *q, const char *tenant, int limit);
/* Take one stream slot; 0 when the tenant has max_streams open. */
int quota_stream_enter(struct quota *q, const char *tenant, int limit);
void quota_stream_leave(struct quota *q, const char *tenant);
/* This worker's usage, {"<tenant>":[streams, requests in the last second]...}
 * (tenants with none left out); caller frees. NULL when out of memory. */
char *quota_usage_json(struct quota *q);
/* The other workers' summed usage, in the same form (from PostgreSQL). */
void quota_others_set(struct quota *q, const char *json);

#endif
