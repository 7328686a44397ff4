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

-- Dead letters by group. A group is named by error_group, md5(error_fingerprint) (URL-safe),
-- written with the fingerprint by the same trigger (only when error_message changes). The index
-- holds what the dead-letter pages count and page through, so at hundreds of thousands of dead
-- letters they read the index alone: the groups with their counts, types and clinics, one group
-- newest first by (received_at, id), and what a replay would refuse (answer_by: synchronous tool
-- calls). Partial: rows that never fail never get an entry.
ALTER TABLE webhook_delivery_log ADD COLUMN error_group text;
UPDATE webhook_delivery_log SET error_group = md5(error_fingerprint) WHERE error_fingerprint IS NOT NULL;
CREATE OR REPLACE FUNCTION _set_error_fingerprint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.error_fingerprint := error_fingerprint(NEW.error_message);
    NEW.error_group := md5(NEW.error_fingerprint);
    RETURN NEW;
END
$$;
DROP INDEX idx_delivery_log_dead_letter_groups;
CREATE INDEX idx_delivery_log_dead_letter_groups ON webhook_delivery_log (org_id, error_group, received_at, id)
    INCLUDE (event_type, answer_by) WHERE status = 'dead_letter';

-- Missed tool calls, newest first.
DROP INDEX idx_webhook_delivery_log_missed;
CREATE INDEX idx_delivery_log_missed ON webhook_delivery_log (org_id, received_at) WHERE status = 'missed';

-- The backlog by status (the overview's counts, /metrics).
DROP INDEX idx_delivery_log_backlog;
CREATE INDEX idx_delivery_log_backlog ON webhook_delivery_log (org_id, status) WHERE status <> 'completed';
