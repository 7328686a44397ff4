-- Issue 19: an access record with a person behind it.
--
-- Operators get admin tokens of their own (`tokens create --admin --name`), so a record names who
-- looked, not "admin"; ADMIN_TOKEN stays as the break-glass credential. An admin token belongs to
-- no organization.
ALTER TABLE api_tokens ALTER COLUMN org_id DROP NOT NULL;
ALTER TABLE api_tokens ADD COLUMN admin boolean NOT NULL DEFAULT false;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_admin_or_org CHECK (admin = (org_id IS NULL));

-- Every access to patient data from a stored message is a row here: a delivery's payload or its
-- caller's details (delivery_id set), or a page listing a clinic's patients (delivery_id NULL,
-- one row per clinic shown). `revealed_by` names the person as the service knew them (an admin
-- token's label, "ADMIN_TOKEN (break-glass)", a clinic token, or the CLI's user@host); `client`
-- is where from (the client address, or the CLI's user@host).
ALTER TABLE reveals ALTER COLUMN delivery_id DROP NOT NULL;
ALTER TABLE reveals
    ADD COLUMN what text NOT NULL DEFAULT 'payload',
    ADD COLUMN via text NOT NULL DEFAULT 'console' CHECK (via IN ('console', 'api', 'cli')),
    ADD COLUMN token_id uuid,
    ADD COLUMN client text;
-- Listing by clinic and time (a clinic's own view under row-level security), and by time for the admin.
CREATE INDEX idx_reveals_org_time ON reveals (org_id, revealed_at DESC);
CREATE INDEX idx_reveals_time ON reveals (revealed_at DESC);
