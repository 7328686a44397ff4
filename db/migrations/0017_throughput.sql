-- The console's overview draws deliveries processed per minute over the last
-- hour. completed_at is set once, when a delivery finishes, so the index only
-- grows at the time-ordered end; rows not yet completed are not in it, and
-- the receiver's insert of a new delivery never touches it.
CREATE INDEX idx_delivery_log_completed_at ON webhook_delivery_log (completed_at)
    WHERE completed_at IS NOT NULL;
