-- Tenant reads at index speed (issue 17). Under row-level security a clinic's
-- session filters by the policy (an OR over settings, which no index can
-- serve), so an index that does not lead with org_id makes a clinic read every
-- clinic's rows in the range it asks for. Each read now names its clinics
-- (db.tenancy.IN_VISIBLE_ORGS: organizations, as row-level security shows
-- them) and probes these indexes once per clinic; the admin probes once per
-- clinic too. Same number of indexes as before, so a delivery costs no more
-- to write.

-- Received per minute, tool calls of the last hour, delivery lists newest first.
-- (received_at, not created_at: a delivery routed out of quarantine keeps when it was received.)
DROP INDEX idx_webhook_delivery_log_created_at;
CREATE INDEX idx_delivery_log_org_received ON webhook_delivery_log (org_id, received_at);

-- Completed per minute.
DROP INDEX idx_delivery_log_completed_at;
CREATE INDEX idx_delivery_log_org_completed ON webhook_delivery_log (org_id, completed_at)
    WHERE completed_at IS NOT NULL;

-- Dead letters by group: the console names a group by md5(error_fingerprint) (URL-safe),
-- lists its members newest first and replays them oldest first.
DROP INDEX idx_delivery_log_dead_letter_groups;
CREATE INDEX idx_delivery_log_dead_letter_groups ON webhook_delivery_log (org_id, md5(error_fingerprint), received_at)
    WHERE status = 'dead_letter';

-- Missed tool calls, newest first.
DROP INDEX idx_webhook_delivery_log_missed;
CREATE INDEX idx_delivery_log_missed ON webhook_delivery_log (org_id, received_at) WHERE status = 'missed';

-- The backlog by status (the overview's counts, /metrics).
DROP INDEX idx_delivery_log_backlog;
CREATE INDEX idx_delivery_log_backlog ON webhook_delivery_log (org_id, status) WHERE status <> 'completed';
