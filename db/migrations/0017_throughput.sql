-- The console's overview draws deliveries completed per minute over the last
-- hour. completed_at is set once, when a delivery finishes, so the index only
-- grows at its time-ordered end; a delivery stored pending (nearly every new
-- one) enters it only when it completes, so the receiver's insert rarely
-- touches it.
CREATE INDEX idx_delivery_log_completed_at ON webhook_delivery_log (completed_at)
    WHERE completed_at IS NOT NULL;
