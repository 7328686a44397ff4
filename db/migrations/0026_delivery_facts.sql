-- Issue 20: the delivery log's readers filter on columns, not on Vapi's JSON.
--
-- The tool a tool call asks for and the caller's number, set at insert from the Python message model
-- (workers.messages.Envelope.facts), as vapi_call_id is (0018). The console's tool outcomes and
-- missed-call list read them; no index: both read rows found by (org_id, status) or time.
ALTER TABLE webhook_delivery_log ADD COLUMN tool_name text, ADD COLUMN customer_number text;

-- Backfill. Rows stored before this migration: only tool calls are read for these columns, so only
-- they are filled, by the model's rules (tests/test_delivery_facts.py holds the two to each other): a
-- non-empty string only; the first tool call with an id and a name (function.name, else the flattened
-- name), or a legacy functionCall.name; call.customer.number, else customer.number.
CREATE FUNCTION pg_temp.string_at(v jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN nullif(v #>> '{}', '') END
$$;
UPDATE webhook_delivery_log
   SET tool_name = CASE
           WHEN event_type = 'function-call' THEN pg_temp.string_at(payload->'functionCall'->'name')
           WHEN jsonb_typeof(payload->'toolCallList') = 'array' THEN (
               SELECT coalesce(pg_temp.string_at(e->'function'->'name'), pg_temp.string_at(e->'name'))
                 FROM jsonb_array_elements(payload->'toolCallList') WITH ORDINALITY AS t(e, n)
                WHERE pg_temp.string_at(e->'id') IS NOT NULL
                  AND coalesce(pg_temp.string_at(e->'function'->'name'), pg_temp.string_at(e->'name')) IS NOT NULL
                ORDER BY n LIMIT 1)
       END,
       customer_number = coalesce(pg_temp.string_at(payload->'call'->'customer'->'number'),
                                  pg_temp.string_at(payload->'customer'->'number'))
 WHERE event_type IN ('tool-calls', 'function-call');
