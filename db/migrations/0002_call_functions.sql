-- The seeds' atomic call handlers. Each is one statement (or one function
-- call inside the worker's transaction), idempotent, and safe under any
-- delivery order: Vapi guarantees none (FINDINGS.md §2, "Ordering").

-- Lifecycle rank of a Vapi call status; a status never moves to a lower rank.
CREATE FUNCTION call_status_rank(p_status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_status
        WHEN 'scheduled' THEN 0
        WHEN 'queued' THEN 1
        WHEN 'ringing' THEN 2
        WHEN 'in-progress' THEN 3
        WHEN 'forwarding' THEN 4
        WHEN 'ended' THEN 5
        WHEN 'not-found' THEN 5
        WHEN 'deletion-failed' THEN 5
        ELSE -1
    END
$$;

-- From a status-update: create the call or move its status forward.
-- A late 'ringing' after 'ended' changes nothing. Returns the call's id.
CREATE FUNCTION create_inbound_call_atomically(
    p_org_id uuid,
    p_vapi_call_id text,
    p_status text,
    p_type text DEFAULT NULL,
    p_customer_number text DEFAULT NULL,
    p_assistant_id text DEFAULT NULL,
    p_phone_number_id text DEFAULT NULL,
    p_ended_reason text DEFAULT NULL,
    p_event_at timestamptz DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    INSERT INTO calls AS c (org_id, vapi_call_id, status, type, customer_number, assistant_id,
                            phone_number_id, ended_reason, started_at, ended_at)
    VALUES (p_org_id, p_vapi_call_id, p_status, p_type, p_customer_number, p_assistant_id,
            p_phone_number_id,
            CASE WHEN call_status_rank(p_status) = 5 THEN p_ended_reason END,
            CASE WHEN p_status = 'in-progress' THEN p_event_at END,
            CASE WHEN call_status_rank(p_status) = 5 THEN p_event_at END)
    ON CONFLICT (org_id, vapi_call_id) DO UPDATE SET
        status = CASE WHEN call_status_rank(EXCLUDED.status) > coalesce(call_status_rank(c.status), -1)
                      THEN EXCLUDED.status ELSE c.status END,
        type = coalesce(c.type, EXCLUDED.type),
        customer_number = coalesce(c.customer_number, EXCLUDED.customer_number),
        assistant_id = coalesce(c.assistant_id, EXCLUDED.assistant_id),
        phone_number_id = coalesce(c.phone_number_id, EXCLUDED.phone_number_id),
        ended_reason = coalesce(c.ended_reason, EXCLUDED.ended_reason),
        started_at = coalesce(c.started_at, EXCLUDED.started_at),
        ended_at = coalesce(c.ended_at, EXCLUDED.ended_at),
        updated_at = now()
    RETURNING c.id
$$;

-- From an end-of-call-report: the report's values win over what status
-- updates guessed; duration is computed from the times when not given.
CREATE FUNCTION update_call_completed_atomically(
    p_org_id uuid,
    p_vapi_call_id text,
    p_ended_reason text,
    p_started_at timestamptz,
    p_ended_at timestamptz,
    p_cost numeric,
    p_duration_seconds numeric,
    p_transcript text,
    p_summary text,
    p_type text DEFAULT NULL,
    p_customer_number text DEFAULT NULL,
    p_assistant_id text DEFAULT NULL,
    p_phone_number_id text DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    INSERT INTO calls AS c (org_id, vapi_call_id, status, ended_reason, started_at, ended_at, cost,
                            duration_seconds, transcript, summary, type, customer_number,
                            assistant_id, phone_number_id)
    VALUES (p_org_id, p_vapi_call_id, 'ended', p_ended_reason, p_started_at, p_ended_at, p_cost,
            coalesce(p_duration_seconds, extract(epoch FROM p_ended_at - p_started_at)),
            p_transcript, p_summary, p_type, p_customer_number, p_assistant_id, p_phone_number_id)
    ON CONFLICT (org_id, vapi_call_id) DO UPDATE SET
        status = CASE WHEN coalesce(call_status_rank(c.status), -1) >= 5 THEN c.status ELSE 'ended' END,
        ended_reason = coalesce(EXCLUDED.ended_reason, c.ended_reason),
        started_at = coalesce(EXCLUDED.started_at, c.started_at),
        ended_at = coalesce(EXCLUDED.ended_at, c.ended_at),
        cost = coalesce(EXCLUDED.cost, c.cost),
        duration_seconds = coalesce(EXCLUDED.duration_seconds, c.duration_seconds),
        transcript = coalesce(EXCLUDED.transcript, c.transcript),
        summary = coalesce(EXCLUDED.summary, c.summary),
        type = coalesce(c.type, EXCLUDED.type),
        customer_number = coalesce(c.customer_number, EXCLUDED.customer_number),
        assistant_id = coalesce(c.assistant_id, EXCLUDED.assistant_id),
        phone_number_id = coalesce(c.phone_number_id, EXCLUDED.phone_number_id),
        updated_at = now()
    RETURNING c.id
$$;

-- Store the recording URLs and queue one upload per call, once.
-- Returns true when this call queued the upload, false when it was queued before.
CREATE FUNCTION update_call_with_recording_atomically(
    p_org_id uuid,
    p_vapi_call_id text,
    p_recording_url text,
    p_stereo_recording_url text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_call_id uuid;
    v_queued integer;
BEGIN
    UPDATE calls SET recording_url = coalesce(p_recording_url, recording_url),
                     stereo_recording_url = coalesce(p_stereo_recording_url, stereo_recording_url),
                     updated_at = now()
     WHERE org_id = p_org_id AND vapi_call_id = p_vapi_call_id
    RETURNING id INTO v_call_id;
    IF v_call_id IS NULL THEN
        RAISE EXCEPTION 'call % not found for org %', p_vapi_call_id, p_org_id
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO recording_upload_queue (org_id, call_id, vapi_call_id, recording_url)
    VALUES (p_org_id, v_call_id, p_vapi_call_id, p_recording_url)
    ON CONFLICT (org_id, vapi_call_id) DO NOTHING;
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    RETURN v_queued = 1;
END
$$;

-- From a hang message: count the stall on the call (creating it if needed).
CREATE FUNCTION record_call_hang(p_org_id uuid, p_vapi_call_id text) RETURNS integer
LANGUAGE sql AS $$
    INSERT INTO calls AS c (org_id, vapi_call_id, hang_count)
    VALUES (p_org_id, p_vapi_call_id, 1)
    ON CONFLICT (org_id, vapi_call_id) DO UPDATE SET hang_count = c.hang_count + 1, updated_at = now()
    RETURNING c.hang_count
$$;
