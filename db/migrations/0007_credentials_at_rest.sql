-- No credentials at rest. The receiver redacts before storing
-- (ingest/sanitize.py); this applies the same key rule to what is already
-- stored. JSON-string tool arguments are left to the receiver's rule.
CREATE FUNCTION _is_credential_key(p_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT k LIKE '%token' OR k IN ('listenurl', 'controlurl')
           OR k ~ '(secret|password|passwd|apikey|privatekey|authorization|credential)'
      FROM regexp_replace(lower(p_key), '[^a-z0-9]', '', 'g') AS k
$$;

CREATE FUNCTION _redact_credentials(p_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(p_value)
        WHEN 'object' THEN coalesce((
            SELECT jsonb_object_agg(key, CASE
                       WHEN _is_credential_key(key) AND jsonb_typeof(value) IN ('string', 'object', 'array')
                           THEN '"[redacted]"'::jsonb
                       ELSE _redact_credentials(value) END)
              FROM jsonb_each(p_value)), '{}'::jsonb)
        WHEN 'array' THEN coalesce((
            SELECT jsonb_agg(_redact_credentials(value) ORDER BY n)
              FROM jsonb_array_elements(p_value) WITH ORDINALITY AS e(value, n)), '[]'::jsonb)
        ELSE p_value
    END
$$;

UPDATE webhook_delivery_log SET payload = _redact_credentials(payload)
 WHERE payload::text ~* '(secret|passw|api.?key|private.?key|authoriz|credential|listenurl|controlurl|token")';
UPDATE webhook_quarantine SET payload = _redact_credentials(payload)
 WHERE payload::text ~* '(secret|passw|api.?key|private.?key|authoriz|credential|listenurl|controlurl|token")';
