"""Prometheus metrics of delivery processing (workers, and inline tool calls in the web process).

Worker processes run under prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``vapi-ingest worker``), so these
module-level metrics aggregate across processes on one port.
"""

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES_PROCESSED = Counter(
    "vapi_deliveries_processed_total",
    "Delivery processing attempts by message type and outcome (workers.outcomes.ProcessingOutcome: completed, "
    "retried, dead_lettered, skipped, missed).",
    ["type", "outcome"],
)
PROCESSING_DURATION = Histogram(
    "vapi_delivery_processing_duration_seconds",
    "Time to process one delivery attempt, claim to outcome.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_WAIT = Histogram(
    "vapi_delivery_queue_wait_seconds",
    "Time from when a delivery became due (received, or its backoff ended) to its claim.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BOOKING_ATTEMPTS = Counter(
    "vapi_booking_attempts_total",
    "Booking tool calls by tool and outcome (booked, cancelled, checked, slot_unavailable, invalid, not_found, error).",
    ["tool", "outcome"],
)
BOOKING_DURATION = Histogram(
    "vapi_booking_duration_seconds",
    "Time to run one booking tool call, arguments to reply.",
    ["tool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5),
)
TOOL_ARGUMENTS_UNREADABLE = Counter(
    "vapi_tool_arguments_unreadable_total",
    "Tool calls refused because an encrypted argument could not be decrypted (no key opens it, or not valid"
    " ciphertext), by tool.",
    ["tool"],
)
REPLAYS = Counter(
    "vapi_replays_total",
    "Replayed deliveries by how their processing ended (completed, dead_lettered).",
    ["outcome"],
)
RETENTION_DELETED = Counter(
    "vapi_retention_deleted_total", "Deliveries deleted by retention (cleanup_old_webhook_logs)."
)
JOB_LAST_SUCCESS = Gauge(
    "vapi_scheduler_job_last_success_timestamp_seconds",
    "Unix time, in seconds, of the last successful run of each scheduler task (sweep, retention).",
    # not "job": Prometheus sets that label on every scraped series (the scrape job).
    ["task"],
)
JOB_LAST_ROWS = Gauge(
    "vapi_scheduler_job_last_rows",
    "Rows the last successful run of each task touched (sweep: deliveries sent; retention: deliveries deleted).",
    ["task"],
)
