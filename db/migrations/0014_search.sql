-- Console search: a Vapi call id finds its deliveries in one index probe
-- (tool-call rows keep call.id too), and a phone number finds its calls.
-- Tool-call ids, assistant and phone-number ids are found through the
-- existing unique indexes.
CREATE INDEX idx_delivery_log_call_id ON webhook_delivery_log ((payload->'call'->>'id'));
CREATE INDEX idx_calls_customer_number ON calls (customer_number);
