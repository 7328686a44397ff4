-- Which delivery booked an appointment: the idempotency key of the tool call
-- whose transaction inserted the row. The tool-call handler sets the
-- transaction-local app.source_event_id (db.tenancy.tenant_scope), so every
-- booking path, the seeds' SQL functions included, records it without a new
-- parameter. NULL for appointments written outside a tool call.
ALTER TABLE appointments ADD COLUMN source_event_id text
    DEFAULT nullif(current_setting('app.source_event_id', true), '');

-- The console's week calendar: one org's appointments in a time range,
-- cancelled ones included (the partial scheduling indexes leave those out).
CREATE INDEX idx_appointments_org_scheduled ON appointments (org_id, scheduled_at);
