-- 0006: per-tenant quota overrides (PUT /v1/admin/tenants/{name}/limits); NULL
-- means the TETHER_TENANT_* default. Each worker's open streams and recent
-- requests per tenant ({"<tenant id>":[streams, requests in the last second]}),
-- written by the worker every 100 ms, so every worker sees the cluster's.
CREATE TABLE tenant_limits (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_active_runs   integer CHECK (max_active_runs >= 0),
    max_streams       integer CHECK (max_streams >= 0),
    max_output_bytes  bigint CHECK (max_output_bytes >= 0),
    requests_per_s    integer CHECK (requests_per_s >= 0)
);
ALTER TABLE workers ADD COLUMN tenant_usage jsonb NOT NULL DEFAULT '{}';
