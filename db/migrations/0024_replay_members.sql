-- A console replay's members, and counters that cannot drift.
--
-- A replay froze its deliveries into one uuid[] (200,000 ids: a 3.2 MB value read whole by every
-- batch and every progress poll), counted `replayed` in a separate statement after the batch had
-- been sent (a SIGKILL between the two lost a batch from the count: "sent 550 of 600"), counted
-- "completed" over deliveries anyone had replayed since (a losing concurrent confirm showed
-- "replayed 0, completed 600"), and held its lease only per batch, so a runner waiting for the
-- workers lost it to a second process and both sent.
--
-- Now each member is a row; a batch marks the members it replays (with the delivery's replay
-- number, so later replays by anyone else are not counted as ours) and adds to `replayed` in the
-- same transaction that puts the deliveries back to pending; and a lease has an owner, which every
-- batch and renewal checks, so a runner that lost its lease stops instead of sending.
-- No foreign keys and no primary key: checking three keys per member (and key-share locking each
-- delivery row) made confirming 200,000 members take 6.4 s; members are written once, by one
-- statement, from distinct deliveries, and a member whose delivery retention deleted joins nothing.
CREATE TABLE replay_members (
    replay_id    uuid NOT NULL,
    delivery_id  uuid NOT NULL,
    org_id       uuid NOT NULL,
    replay_count integer,                            -- the delivery's replay_count once this replay ran it
    outcome      text CHECK (outcome IN ('completed', 'failed', 'superseded'))  -- once settled
);
-- A run walks the members it has not run yet, in id order, from where it stopped.
CREATE INDEX idx_replay_members_todo ON replay_members (replay_id, delivery_id) WHERE replay_count IS NULL;
-- Progress looks only at the members run and not settled yet: the ones in flight.
CREATE INDEX idx_replay_members_in_flight ON replay_members (replay_id, delivery_id)
    WHERE replay_count IS NOT NULL AND outcome IS NULL;
SELECT enable_tenant_rls('replay_members');
GRANT SELECT, INSERT, UPDATE ON replay_members TO vapi_tenant;

INSERT INTO replay_members (replay_id, delivery_id, org_id, replay_count)
SELECT r.id, d.id, d.org_id, CASE WHEN d.replayed_at >= r.created_at THEN d.replay_count END
  FROM replays r CROSS JOIN LATERAL unnest(r.delivery_ids) AS m(id)
  JOIN webhook_delivery_log d ON d.id = m.id;

-- Outcomes are counted as members settle (completed, failed for good, or replayed since by another
-- run), so showing progress reads the members in flight, not all of them.
ALTER TABLE replays
    DROP COLUMN delivery_ids,
    ADD COLUMN lease_owner uuid,
    ADD COLUMN completed integer NOT NULL DEFAULT 0,
    ADD COLUMN failed integer NOT NULL DEFAULT 0,
    ADD COLUMN superseded integer NOT NULL DEFAULT 0;
