-- Appointment booking: leads (the seeds' contacts), appointments, audit_logs,
-- and the seeds' booking functions, with the no-overlap invariant held by
-- the database itself.
--
-- The seeds lock hash(org, slot start) and then look for conflicts, so
-- 10:00-11:00 and 10:30-11:30 take different locks and both succeed. Here an
-- exclusion constraint makes overlapping active appointments of one org
-- impossible for any writer; advisory transaction locks on each quarter hour
-- of the org's calendar that a booking touches still serialise contenders, so
-- they fail fast with the conflicting booking, while bookings at other times
-- of the same org run in parallel (two overlapping ranges always share one).

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Opening hours per ISO weekday name, in the org's local time.
ALTER TABLE organizations ADD COLUMN business_hours jsonb NOT NULL DEFAULT
    '{"mon": ["09:00", "17:00"], "tue": ["09:00", "17:00"], "wed": ["09:00", "17:00"],
      "thu": ["09:00", "17:00"], "fri": ["09:00", "17:00"]}';

CREATE TABLE leads (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organizations (id),
    name       text,
    phone      text NOT NULL,                 -- E.164
    email      text,
    status     text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'contacted', 'booked', 'lost')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT leads_org_phone_key UNIQUE (org_id, phone)
);

CREATE TABLE appointments (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id           uuid NOT NULL REFERENCES organizations (id),
    contact_id       uuid NOT NULL REFERENCES leads (id),
    service_type     text,
    scheduled_at     timestamptz NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 480),
    ends_at          timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'confirmed'
        CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    notes            text,
    metadata         jsonb,
    deleted_at       timestamptz,             -- soft delete (GDPR: the row and its audit trail remain)
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT appointments_ends_after_start CHECK (ends_at > scheduled_at),
    CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
        org_id WITH =, tstzrange(scheduled_at, ends_at) WITH &&
    ) WHERE (deleted_at IS NULL AND status IN ('pending', 'confirmed'))
);
CREATE INDEX idx_appointments_scheduling_lookup ON appointments (org_id, scheduled_at, status)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_appointments_time_range ON appointments (org_id, scheduled_at, duration_minutes)
    WHERE deleted_at IS NULL AND status IN ('confirmed', 'pending');
CREATE INDEX idx_appointments_contact_id ON appointments (contact_id);

CREATE TABLE audit_logs (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES organizations (id),
    action     text NOT NULL,
    entity     text NOT NULL,
    entity_id  uuid,
    details    jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_audit_logs_org_entity ON audit_logs (org_id, entity, entity_id);

SELECT enable_tenant_rls(t) FROM unnest(ARRAY['leads', 'appointments', 'audit_logs']::regclass[]) AS t;
GRANT SELECT, INSERT, UPDATE ON leads, appointments, audit_logs TO vapi_tenant;

-- Lock every quarter hour of the org's calendar that [p_start, p_end) touches,
-- in ascending order (so two lockers never deadlock), until the transaction
-- ends. Keys: (hash of the org, quarter-hour number since the epoch); a hash
-- collision between orgs only serialises more, it never lets an overlap
-- through. Quarter hours, not hours: back-to-back half-hour bookings then
-- share no lock. Returns the number of quarter hours locked.
CREATE FUNCTION lock_schedule_range(p_org_id uuid, p_start timestamptz, p_end timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_org integer := hashtext(p_org_id::text);
    v_slot bigint;
    v_count integer := 0;
BEGIN
    FOR v_slot IN SELECT generate_series(floor(extract(epoch FROM p_start) / 900)::bigint,
                                         ceil(extract(epoch FROM p_end) / 900)::bigint - 1) LOOP
        PERFORM pg_advisory_xact_lock(v_org, v_slot::integer);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- The active appointment of the org overlapping [p_start, p_end), if any, as
-- {appointment_id, scheduled_at, ends_at}; NULL when the slot is free.
CREATE FUNCTION appointment_conflict(
    p_org_id uuid, p_start timestamptz, p_end timestamptz, p_ignore uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('appointment_id', a.id, 'scheduled_at', a.scheduled_at, 'ends_at', a.ends_at)
      FROM appointments a
     WHERE a.org_id = p_org_id AND a.deleted_at IS NULL AND a.status IN ('pending', 'confirmed')
       AND tstzrange(a.scheduled_at, a.ends_at) && tstzrange(p_start, p_end)
       AND a.id IS DISTINCT FROM p_ignore
     ORDER BY a.scheduled_at
     LIMIT 1
$$;

CREATE FUNCTION _booking_error(p_error text, p_conflicting jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('success', false, 'error', p_error, 'conflicting', p_conflicting))
$$;

-- Insert one appointment for an existing contact under the org's lock.
-- The shared core of book_appointment_atomic and book_appointment_with_lock.
CREATE FUNCTION _insert_appointment(
    p_org_id uuid, p_contact_id uuid, p_service_type text, p_scheduled_at timestamptz,
    p_duration_minutes integer, p_notes text, p_metadata jsonb, p_action text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_end timestamptz := p_scheduled_at + make_interval(mins => p_duration_minutes);
    v_conflict jsonb;
    v_id uuid;
    v_constraint text;
BEGIN
    PERFORM lock_schedule_range(p_org_id, p_scheduled_at, v_end);
    v_conflict := appointment_conflict(p_org_id, p_scheduled_at, v_end);
    IF v_conflict IS NOT NULL THEN
        RETURN _booking_error('SLOT_UNAVAILABLE', v_conflict);
    END IF;
    BEGIN
        INSERT INTO appointments (org_id, contact_id, service_type, scheduled_at, duration_minutes, ends_at,
                                  notes, metadata)
        VALUES (p_org_id, p_contact_id, p_service_type, p_scheduled_at, p_duration_minutes, v_end,
                p_notes, p_metadata)
        RETURNING id INTO v_id;
    EXCEPTION WHEN exclusion_violation THEN
        -- A writer that skipped the lock got there first; the constraint held.
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'appointments_no_overlap' THEN
            RETURN _booking_error('SLOT_UNAVAILABLE', appointment_conflict(p_org_id, p_scheduled_at, v_end));
        END IF;
        RAISE;
    END;
    INSERT INTO audit_logs (org_id, action, entity, entity_id, details)
    VALUES (p_org_id, p_action, 'appointment', v_id,
            jsonb_build_object('contact_id', p_contact_id, 'scheduled_at', p_scheduled_at,
                               'ends_at', v_end, 'service_type', p_service_type));
    RETURN jsonb_build_object('success', true, 'appointment_id', v_id, 'contact_id', p_contact_id,
                              'scheduled_at', p_scheduled_at, 'ends_at', v_end);
END
$$;

CREATE FUNCTION _validate_booking(p_org_id uuid, p_scheduled_at timestamptz, p_duration_minutes integer)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM organizations WHERE id = p_org_id) THEN _booking_error('ORG_NOT_FOUND')
        WHEN p_scheduled_at IS NULL OR p_duration_minutes IS NULL
             OR p_duration_minutes NOT BETWEEN 5 AND 480 OR p_scheduled_at < now()
            THEN _booking_error('INVALID_TIME')
    END
$$;

-- The single booking function (seed 002, fix 3): upsert the lead by
-- (org, E.164 phone) and book, in one transaction, under the org's lock.
-- Returns {success: true, appointment_id, contact_id, scheduled_at, ends_at} or
-- {success: false, error: SLOT_UNAVAILABLE|INVALID_TIME|ORG_NOT_FOUND, conflicting}.
CREATE FUNCTION book_appointment_atomic(
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
    INSERT INTO leads AS l (org_id, name, phone, email)
    VALUES (p_org_id, nullif(p_name, ''), p_phone, nullif(p_email, ''))
    ON CONFLICT (org_id, phone) DO UPDATE
        SET name = coalesce(EXCLUDED.name, l.name), email = coalesce(EXCLUDED.email, l.email), updated_at = now()
    RETURNING id INTO v_contact;
    RETURN _insert_appointment(p_org_id, v_contact, p_service_type, p_scheduled_at, p_duration_minutes,
                               NULL, NULL, 'appointment.booked');
END
$$;

-- The seeds' signature, for callers that already hold a contact id.
-- p_service_id and p_lock_key are accepted for compatibility: the service id
-- is kept in metadata, and the lock is always the org's schedule lock.
CREATE FUNCTION book_appointment_with_lock(
    p_org_id uuid, p_contact_id uuid, p_scheduled_at timestamptz, p_duration_minutes integer,
    p_service_id uuid DEFAULT NULL, p_notes text DEFAULT NULL, p_metadata jsonb DEFAULT NULL,
    p_lock_key bigint DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_invalid jsonb := _validate_booking(p_org_id, p_scheduled_at, p_duration_minutes);
BEGIN
    IF v_invalid IS NOT NULL THEN
        RETURN v_invalid;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM leads WHERE id = p_contact_id AND org_id = p_org_id) THEN
        RETURN _booking_error('CONTACT_NOT_FOUND');
    END IF;
    RETURN _insert_appointment(p_org_id, p_contact_id, NULL, p_scheduled_at, p_duration_minutes, p_notes,
                               CASE WHEN p_service_id IS NULL THEN p_metadata
                                    ELSE coalesce(p_metadata, '{}') || jsonb_build_object('service_id', p_service_id)
                               END,
                               'appointment.booked');
END
$$;

-- {available: bool, conflicting?}. Advisory only: booking re-checks under the lock.
CREATE FUNCTION check_slot_availability(p_org_id uuid, p_scheduled_at timestamptz, p_duration_minutes integer)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'available', c IS NULL, 'conflicting', c))
      FROM appointment_conflict(p_org_id, p_scheduled_at,
                                p_scheduled_at + make_interval(mins => p_duration_minutes)) AS c
$$;

-- Soft delete (status cancelled, deleted_at set) and an audit row.
-- {success: true, appointment_id} or {success: false, error: NOT_FOUND}.
CREATE FUNCTION cancel_appointment(p_org_id uuid, p_appointment_id uuid, p_reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    -- No calendar lock: freeing a slot cannot create an overlap; the row lock suffices.
    UPDATE appointments SET status = 'cancelled', deleted_at = now(), updated_at = now()
     WHERE id = p_appointment_id AND org_id = p_org_id AND deleted_at IS NULL
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN _booking_error('NOT_FOUND');
    END IF;
    INSERT INTO audit_logs (org_id, action, entity, entity_id, details)
    VALUES (p_org_id, 'appointment.cancelled', 'appointment', v_id, jsonb_build_object('reason', p_reason));
    RETURN jsonb_build_object('success', true, 'appointment_id', v_id);
END
$$;

-- Cancel and book in one transaction. If the new slot is taken (by anyone
-- but this appointment), nothing changes: the old booking stays as it was.
CREATE FUNCTION reschedule_appointment(
    p_org_id uuid, p_appointment_id uuid, p_new_scheduled_at timestamptz, p_duration_minutes integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_old appointments%ROWTYPE;
    v_duration integer;
    v_invalid jsonb;
    v_conflict jsonb;
    v_result jsonb;
BEGIN
    SELECT * INTO v_old FROM appointments
     WHERE id = p_appointment_id AND org_id = p_org_id AND deleted_at IS NULL AND status <> 'cancelled'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN _booking_error('NOT_FOUND');
    END IF;
    v_duration := coalesce(p_duration_minutes, v_old.duration_minutes);
    v_invalid := _validate_booking(p_org_id, p_new_scheduled_at, v_duration);
    IF v_invalid IS NOT NULL THEN
        RETURN v_invalid;
    END IF;
    PERFORM lock_schedule_range(p_org_id, p_new_scheduled_at, p_new_scheduled_at + make_interval(mins => v_duration));
    v_conflict := appointment_conflict(p_org_id, p_new_scheduled_at,
                                       p_new_scheduled_at + make_interval(mins => v_duration), v_old.id);
    IF v_conflict IS NOT NULL THEN
        RETURN _booking_error('SLOT_UNAVAILABLE', v_conflict);
    END IF;
    UPDATE appointments SET status = 'cancelled', deleted_at = now(), updated_at = now() WHERE id = v_old.id;
    v_result := _insert_appointment(p_org_id, v_old.contact_id, v_old.service_type, p_new_scheduled_at,
                                    v_duration, v_old.notes,
                                    coalesce(v_old.metadata, '{}') || jsonb_build_object('rescheduled_from', v_old.id),
                                    'appointment.rescheduled');
    IF NOT (v_result ->> 'success')::boolean THEN
        -- Cannot happen under the lock; undo the cancellation all the same.
        RAISE EXCEPTION 'reschedule of % lost its slot', v_old.id USING ERRCODE = 'exclusion_violation';
    END IF;
    INSERT INTO audit_logs (org_id, action, entity, entity_id, details)
    VALUES (p_org_id, 'appointment.cancelled', 'appointment', v_old.id,
            jsonb_build_object('reason', 'rescheduled', 'new_appointment_id', v_result -> 'appointment_id'));
    RETURN v_result || jsonb_build_object('previous_appointment_id', v_old.id);
END
$$;
