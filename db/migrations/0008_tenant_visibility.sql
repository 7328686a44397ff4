-- The tenant role sees only its own organization, and no quarantined
-- message (those belong to no tenant yet).
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY organizations_org_isolation ON organizations
    USING (id = nullif(current_setting('app.org_id', true), '')::uuid)
    WITH CHECK (id = nullif(current_setting('app.org_id', true), '')::uuid);
CREATE POLICY organizations_service_role_bypass ON organizations
    USING (current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (current_setting('app.bypass_rls', true) = 'on');
REVOKE ALL ON webhook_quarantine FROM vapi_tenant;
ALTER TABLE webhook_quarantine ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_quarantine FORCE ROW LEVEL SECURITY;
CREATE POLICY webhook_quarantine_service_role_bypass ON webhook_quarantine
    USING (current_setting('app.bypass_rls', true) = 'on')
    WITH CHECK (current_setting('app.bypass_rls', true) = 'on');
