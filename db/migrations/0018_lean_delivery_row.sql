-- A lean hot row. A delivery's row is written three times (insert, claim,
-- outcome) and none of those updates is HOT (each changes status, which
-- partial indexes read), so every full index on webhook_delivery_log gets a
-- new entry per version. Keep only the indexes a query needs:

-- org_id alone: the unique key (org_id, event_id) leads with it.
DROP INDEX idx_webhook_delivery_log_org_id;
-- (created_at stays: the console counts deliveries received per minute through it.)
-- job_id: nothing looks a delivery up by its Dramatiq message id (a message now carries many).
DROP INDEX idx_webhook_delivery_log_job_id;
-- status: only the backlog is counted through it (db.deliveries.count_by_status), and completed
-- rows, nearly all of them, are the ones it never needs.
DROP INDEX idx_webhook_delivery_log_status;
CREATE INDEX idx_delivery_log_backlog ON webhook_delivery_log (status) WHERE status <> 'completed';

-- Console search by Vapi call id: a column set once at insert instead of an expression index, which
-- read (and de-TOASTed) the whole payload for every new row version.
ALTER TABLE webhook_delivery_log ADD COLUMN vapi_call_id text;
UPDATE webhook_delivery_log SET vapi_call_id = payload->'call'->>'id' WHERE payload->'call'->>'id' IS NOT NULL;
DROP INDEX idx_delivery_log_call_id;
CREATE INDEX idx_delivery_log_vapi_call_id ON webhook_delivery_log (vapi_call_id) WHERE vapi_call_id IS NOT NULL;
-- The service's insert sets it (db/deliveries.py); any other writer (a script, a fixture) gets it here.
CREATE FUNCTION _set_vapi_call_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.vapi_call_id := NEW.payload->'call'->>'id';
    RETURN NEW;
END
$$;
CREATE TRIGGER webhook_delivery_log_vapi_call_id
    BEFORE INSERT ON webhook_delivery_log
    FOR EACH ROW WHEN (NEW.vapi_call_id IS NULL)
    EXECUTE FUNCTION _set_vapi_call_id();

-- error_fingerprint (0011) was a generated column, recomputed (three regular expressions) on every
-- UPDATE. Now it is written only when error_message is: on insert with an error, or an update
-- that changes it. The expression is 0011's, unchanged.
CREATE FUNCTION error_fingerprint(p_error text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT left(
        regexp_replace(
            regexp_replace(
                regexp_replace(
                    p_error,
                    '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<id>', 'g'),
                '''[^'']*''|"[^"]*"', '<value>', 'g'),
            '[0-9]+(\.[0-9]+)?', '<n>', 'g'),
        300)
$$;

ALTER TABLE webhook_delivery_log ALTER COLUMN error_fingerprint DROP EXPRESSION;

CREATE FUNCTION _set_error_fingerprint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.error_fingerprint := error_fingerprint(NEW.error_message);
    RETURN NEW;
END
$$;

-- The WHEN conditions are checked without calling the function, so an insert or update that
-- writes no error costs nothing here.
CREATE TRIGGER webhook_delivery_log_error_fingerprint_insert
    BEFORE INSERT ON webhook_delivery_log
    FOR EACH ROW WHEN (NEW.error_message IS NOT NULL)
    EXECUTE FUNCTION _set_error_fingerprint();
CREATE TRIGGER webhook_delivery_log_error_fingerprint_update
    BEFORE UPDATE OF error_message ON webhook_delivery_log
    FOR EACH ROW WHEN (OLD.error_message IS DISTINCT FROM NEW.error_message)
    EXECUTE FUNCTION _set_error_fingerprint();
