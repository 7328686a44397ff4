-- When each scheduler job last succeeded and how many rows it touched, so the
-- admin API (queue-health) and operators see it from any process, not only in
-- the scheduler's own metrics. One row per job, updated in place.
CREATE TABLE job_runs (
    job             text PRIMARY KEY,
    last_success_at timestamptz NOT NULL,
    last_rows       bigint
);
