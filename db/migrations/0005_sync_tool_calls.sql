-- Tool calls act only while their caller waits, and what a stored row says about its own text.

-- Synchronous tool calls. answer_by is when the caller stops waiting;
-- rows with one are run only inside the request that received them (never
-- claimed by a worker, swept to Redis or replayed). 'missed' is terminal: the
-- caller was not served and a person should call back.
ALTER TABLE webhook_delivery_log
    ADD COLUMN answer_by  timestamptz,
    -- kinds of text replaced so PostgreSQL could store the message (invalid_utf8,nul,unpaired_surrogate)
    ADD COLUMN normalised text,
    DROP CONSTRAINT webhook_delivery_log_status_check,
    ADD CONSTRAINT webhook_delivery_log_status_check
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter', 'missed'));

-- Tool calls stored before this migration were answered inline: any that did
-- not complete were not served, whatever their status said.
UPDATE webhook_delivery_log
   SET answer_by = received_at + interval '15 seconds',
       status = CASE WHEN status = 'completed' THEN status ELSE 'missed' END,
       lease_expires_at = NULL, next_attempt_at = NULL, enqueued_at = NULL
 WHERE event_type IN ('tool-calls', 'function-call') AND event_id NOT LIKE 'tool-calls:message:%';

CREATE INDEX idx_webhook_delivery_log_missed ON webhook_delivery_log (received_at) WHERE status = 'missed';
-- The sweeper's second scan: synchronous tool calls whose caller has stopped waiting.
CREATE INDEX idx_webhook_delivery_log_answer_by ON webhook_delivery_log (answer_by)
    WHERE answer_by IS NOT NULL AND status IN ('pending', 'processing');
DROP INDEX idx_webhook_delivery_log_unfinished;
CREATE INDEX idx_webhook_delivery_log_unfinished ON webhook_delivery_log (received_at)
    WHERE status IN ('pending', 'processing', 'failed') AND answer_by IS NULL;
