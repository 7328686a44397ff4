-- Tenants, routing, the delivery log, quarantine, calls and the recording queue.
-- Names and columns follow the seeds (webhook_delivery_log, calls,
-- recording_upload_queue); the additions are noted per column.

CREATE TABLE organizations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL CHECK (name <> ''),
    timezone          text NOT NULL DEFAULT 'UTC',     -- IANA name
    default_region    text NOT NULL DEFAULT 'US',      -- ISO 3166 alpha-2, for phone numbers
    vapi_assistant_id text,                            -- answer to assistant-request
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    vapi_assistant_id text NOT NULL UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_agents_org_id ON agents (org_id);

CREATE TABLE phone_numbers (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    vapi_phone_number_id text NOT NULL UNIQUE,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_phone_numbers_org_id ON phone_numbers (org_id);

CREATE TABLE webhook_delivery_log (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id           uuid NOT NULL REFERENCES organizations (id),
    event_type       text NOT NULL,
    event_id         text NOT NULL,                   -- idempotency key (FINDINGS.md §4)
    received_at      timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_delivery_log_status_check
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter')),
    attempts         integer NOT NULL DEFAULT 0,      -- also the fencing token of a claim
    max_attempts     integer NOT NULL DEFAULT 5,
    last_attempt_at  timestamptz,
    completed_at     timestamptz,
    error_message    text,
    job_id           text,                            -- Dramatiq message id
    created_at       timestamptz NOT NULL DEFAULT now(),
    payload          jsonb NOT NULL,                  -- the message object as received
    result           jsonb,                           -- what processing produced (tool replies)
    lease_expires_at timestamptz,                     -- while processing; the sweeper reclaims after it
    next_attempt_at  timestamptz,                     -- when a failed delivery may run again
    enqueued_at      timestamptz,                     -- NULL: no message is known to be in Redis
    CONSTRAINT webhook_delivery_log_org_event_key UNIQUE (org_id, event_id)
);
CREATE INDEX idx_webhook_delivery_log_org_id ON webhook_delivery_log (org_id);
CREATE INDEX idx_webhook_delivery_log_status ON webhook_delivery_log (status);
CREATE INDEX idx_webhook_delivery_log_created_at ON webhook_delivery_log (created_at DESC);
CREATE INDEX idx_webhook_delivery_log_job_id ON webhook_delivery_log (job_id);
CREATE INDEX idx_webhook_delivery_log_failed ON webhook_delivery_log (status, last_attempt_at)
    WHERE status IN ('failed', 'dead_letter');
-- The sweeper's scan: only rows that are not finished.
CREATE INDEX idx_webhook_delivery_log_unfinished ON webhook_delivery_log (received_at)
    WHERE status IN ('pending', 'processing', 'failed');

CREATE TABLE webhook_quarantine (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type      text NOT NULL,
    event_id        text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    assistant_id    text,
    phone_number_id text,
    payload         jsonb NOT NULL,
    routed_at       timestamptz,
    delivery_id     uuid REFERENCES webhook_delivery_log (id) ON DELETE SET NULL,
    CONSTRAINT webhook_quarantine_event_key UNIQUE (event_id)
);

CREATE TABLE calls (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid NOT NULL REFERENCES organizations (id),
    vapi_call_id         text NOT NULL,
    type                 text,
    status               text,
    customer_number      text,
    assistant_id         text,
    phone_number_id      text,
    started_at           timestamptz,
    ended_at             timestamptz,
    ended_reason         text,                         -- free text: 627+ values, docs use others
    cost                 numeric,                      -- USD
    duration_seconds     numeric,
    transcript           text,
    summary              text,
    recording_url        text,
    stereo_recording_url text,
    hang_count           integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT calls_org_vapi_call_id_key UNIQUE (org_id, vapi_call_id)
);

CREATE TABLE recording_upload_queue (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid NOT NULL REFERENCES organizations (id),
    call_id       uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    vapi_call_id  text NOT NULL,
    recording_url text NOT NULL,
    status        text NOT NULL DEFAULT 'pending',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recording_upload_queue_call_key UNIQUE (org_id, vapi_call_id)
);

-- Row-level security. Tenant sessions set app.org_id per transaction
-- (SET LOCAL app.org_id = '<uuid>'). The service's own connections set
-- app.bypass_rls = 'on' explicitly (db/pool.py), so bypassing is a visible
-- choice, not an accident of connecting as the table owner. FORCE makes the
-- policies apply to the owner too; superusers still bypass RLS by design.
-- Later migrations call this for their tenant tables.
CREATE FUNCTION enable_tenant_rls(p_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', p_table);
    EXECUTE format($p$CREATE POLICY %I ON %s
        USING (org_id = nullif(current_setting('app.org_id', true), '')::uuid)
        WITH CHECK (org_id = nullif(current_setting('app.org_id', true), '')::uuid)$p$,
        p_table::text || '_org_isolation', p_table);
    EXECUTE format($p$CREATE POLICY %I ON %s
        USING (current_setting('app.bypass_rls', true) = 'on')
        WITH CHECK (current_setting('app.bypass_rls', true) = 'on')$p$,
        p_table::text || '_service_role_bypass', p_table);
END
$$;

SELECT enable_tenant_rls(t) FROM unnest(ARRAY['webhook_delivery_log', 'calls', 'recording_upload_queue',
                                              'agents', 'phone_numbers']::regclass[]) AS t;

-- A role without superuser or BYPASSRLS, for tenant-scoped sessions
-- (SET LOCAL ROLE vapi_tenant). Roles are cluster-wide, hence the guard.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vapi_tenant') THEN
        CREATE ROLE vapi_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_delivery_log, calls, recording_upload_queue,
    agents, phone_numbers TO vapi_tenant;
GRANT SELECT ON organizations TO vapi_tenant;
