-- Dead letters grouped by what went wrong (the operator console): the last
-- error with ids, numbers and quoted values replaced, so "relation calls_x
-- does not exist" errors of 9,000 deliveries are one group, not 9,000. Stored
-- (computed on write) and indexed over dead letters only, so grouping reads
-- the dead letters, never the whole log.
ALTER TABLE webhook_delivery_log ADD COLUMN error_fingerprint text GENERATED ALWAYS AS (
    left(
        regexp_replace(
            regexp_replace(
                regexp_replace(
                    coalesce(error_message, ''),
                    '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<id>', 'g'),
                '''[^'']*''|"[^"]*"', '<value>', 'g'),
            '[0-9]+(\.[0-9]+)?', '<n>', 'g'),
        300)
) STORED;

CREATE INDEX idx_delivery_log_dead_letter_groups
    ON webhook_delivery_log (error_fingerprint, received_at)
    WHERE status = 'dead_letter';
