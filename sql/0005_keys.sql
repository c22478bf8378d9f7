-- 0005: key ids are listed per tenant (GET /v1/admin/tenants/{name}/keys) and
-- revoked by id (DELETE /v1/admin/keys/{id}): list them by tenant in order.
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at, id);
