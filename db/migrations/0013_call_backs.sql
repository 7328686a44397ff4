-- A missed tool call is a patient the clinic must call back. The console
-- records who marked one called back, and when; one record per delivery.
CREATE TABLE call_backs (
    delivery_id uuid PRIMARY KEY REFERENCES webhook_delivery_log (id) ON DELETE CASCADE,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    called_by   text NOT NULL,                      -- 'admin' or 'token:<api_tokens.id>'
    note        text CHECK (length(note) <= 500),
    called_at   timestamptz NOT NULL DEFAULT now()
);
SELECT enable_tenant_rls('call_backs');
GRANT SELECT, INSERT ON call_backs TO vapi_tenant;
