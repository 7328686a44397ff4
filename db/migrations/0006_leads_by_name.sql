-- Patients keep their names: one lead per (org, phone, name), so a
-- second person booking from the same phone gets a lead of their own and
-- the first keeps the name they booked under. Existing leads are unique per
-- (org, phone), hence per (org, phone, name) too: nothing to move.
ALTER TABLE leads ADD COLUMN name_key text GENERATED ALWAYS AS (lower(coalesce(name, ''))) STORED;
ALTER TABLE leads DROP CONSTRAINT leads_org_phone_key,
    ADD CONSTRAINT leads_org_phone_name_key UNIQUE (org_id, phone, name_key);

CREATE OR REPLACE FUNCTION book_appointment_atomic(
    p_org_id uuid, p_name text, p_email text, p_phone text, p_service_type text,
    p_scheduled_at timestamptz, p_duration_minutes integer
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_invalid jsonb := _validate_booking(p_org_id, p_scheduled_at, p_duration_minutes);
    v_conflict jsonb;
    v_contact uuid;
BEGIN
    IF v_invalid IS NOT NULL THEN
        RETURN v_invalid;
    END IF;
    IF p_phone IS NULL OR p_phone = '' THEN
        RAISE EXCEPTION 'p_phone is required' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Check before touching the lead, so a refused booking writes nothing.
    PERFORM lock_schedule_range(p_org_id, p_scheduled_at, p_scheduled_at + make_interval(mins => p_duration_minutes));
    v_conflict := appointment_conflict(p_org_id, p_scheduled_at,
                                       p_scheduled_at + make_interval(mins => p_duration_minutes));
    IF v_conflict IS NOT NULL THEN
        RETURN _booking_error('SLOT_UNAVAILABLE', v_conflict);
    END IF;
    -- The same person (phone and name) reuses their lead; the name is never overwritten.
    INSERT INTO leads AS l (org_id, name, phone, email)
    VALUES (p_org_id, nullif(p_name, ''), p_phone, nullif(p_email, ''))
    ON CONFLICT (org_id, phone, name_key) DO UPDATE
        SET email = coalesce(EXCLUDED.email, l.email), updated_at = now()
    RETURNING id INTO v_contact;
    RETURN _insert_appointment(p_org_id, v_contact, p_service_type, p_scheduled_at, p_duration_minutes,
                               NULL, NULL, 'appointment.booked');
END
$$;
