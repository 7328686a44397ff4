-- A delivery's payload can hold a patient's words (transcripts, names,
-- numbers). The console shows it collapsed and opens it only on request;
-- each opening is recorded here: who, when. Kept as long as the delivery.
CREATE TABLE reveals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_delivery_log (id) ON DELETE CASCADE,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    revealed_by text NOT NULL,                      -- 'admin' or 'token:<api_tokens.id>'
    revealed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_reveals_delivery ON reveals (delivery_id, revealed_at DESC);
SELECT enable_tenant_rls('reveals');
GRANT SELECT, INSERT ON reveals TO vapi_tenant;
