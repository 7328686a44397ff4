-- Operations: replay bookkeeping, the error history of each delivery,
-- org-scoped admin API tokens, and the seeds' retention function.

ALTER TABLE webhook_delivery_log
    ADD COLUMN replay_count integer NOT NULL DEFAULT 0,
    ADD COLUMN replayed_at timestamptz,
    -- [{attempt, at, error}], newest last, at most 20 entries
    ADD COLUMN errors jsonb NOT NULL DEFAULT '[]';

-- Tokens for the admin API. Only a SHA-256 of the token is stored; the token
-- itself is printed once by `vapi-ingest tokens create`. ADMIN_TOKEN (all orgs)
-- lives in the environment, not here.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    token_sha256 text NOT NULL UNIQUE,
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

GRANT SELECT ON webhook_quarantine TO vapi_tenant;

-- Delete at most p_batch_size completed or dead_letter deliveries older than
-- p_retention_days, oldest first, and return how many went. One batch per
-- call, so locks are held only for that batch's transaction: call it until it
-- returns less than p_batch_size (the scheduler does, daily at 04:00 UTC).
CREATE FUNCTION cleanup_old_webhook_logs(p_retention_days integer DEFAULT 30, p_batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE sql AS $$
    WITH doomed AS (
        SELECT id FROM webhook_delivery_log
         WHERE status IN ('completed', 'dead_letter')
           AND received_at < now() - make_interval(days => p_retention_days)
         ORDER BY received_at
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM webhook_delivery_log d USING doomed WHERE d.id = doomed.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
