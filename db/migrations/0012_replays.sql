-- Replays started from the operator console: who asked, the filter they saw,
-- the deliveries it matched when they confirmed (frozen), and how far it got.
-- A web process runs each under a lease it renews, so a replay whose process
-- died is taken up by another (or by the same one after a restart).
CREATE TABLE replays (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid REFERENCES organizations (id) ON DELETE CASCADE,  -- NULL: started by the admin, all orgs
    requested_by  text NOT NULL,                                          -- 'admin' or 'token:<api_tokens.id>'
    description   text NOT NULL,                                          -- the filter, as the operator saw it
    delivery_ids  uuid[] NOT NULL,
    matched       integer NOT NULL,
    refused       integer NOT NULL DEFAULT 0,                             -- synchronous tool calls, never replayed
    rate_per_s    real,
    replayed      integer NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'cancelled')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    lease_until   timestamptz
);
CREATE INDEX idx_replays_running ON replays (lease_until) WHERE status = 'running';
CREATE INDEX idx_replays_created ON replays (created_at DESC);

-- An org's session sees and starts its own replays only; admin replays (org_id NULL) are the service's.
SELECT enable_tenant_rls('replays');
GRANT SELECT, INSERT, UPDATE ON replays TO vapi_tenant;
