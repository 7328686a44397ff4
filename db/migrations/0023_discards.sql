-- A dead letter that must not run (a test call, a message for a clinic that has left) can be
-- discarded from its page with a reason: status 'discarded', terminal like 'completed', and a record
-- of who, when and why. Retention deletes discarded deliveries as it does completed ones.
ALTER TABLE webhook_delivery_log
    DROP CONSTRAINT webhook_delivery_log_status_check,
    ADD CONSTRAINT webhook_delivery_log_status_check
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter', 'missed', 'discarded'));

CREATE TABLE discards (
    delivery_id  uuid PRIMARY KEY REFERENCES webhook_delivery_log (id) ON DELETE CASCADE,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    discarded_by text NOT NULL,                     -- 'admin' or 'token:<api_tokens.id>'
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    discarded_at timestamptz NOT NULL DEFAULT now()
);
SELECT enable_tenant_rls('discards');
GRANT SELECT, INSERT ON discards TO vapi_tenant;

CREATE OR REPLACE FUNCTION cleanup_old_webhook_logs(p_retention_days integer DEFAULT 30, p_batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE sql AS $$
    WITH doomed AS (
        SELECT id FROM webhook_delivery_log
         WHERE status IN ('completed', 'dead_letter', 'discarded')
           AND received_at < now() - make_interval(days => p_retention_days)
         ORDER BY received_at
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM webhook_delivery_log d USING doomed WHERE d.id = doomed.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
