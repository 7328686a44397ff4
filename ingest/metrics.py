"""Prometheus metrics of the receiver, and gauges read from PostgreSQL at scrape time."""

from __future__ import annotations

import os

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from db import deliveries, quarantine
from db.statuses import DeliveryStatus
from workers.messages import KNOWN_TYPES

WEBHOOKS_RECEIVED = Counter(
    "vapi_webhooks_received_total",
    "Requests to POST /webhooks/vapi by message type and outcome.",
    ["type", "outcome"],
)
DELIVERIES_OVERFLOWED = Counter(
    "vapi_deliveries_overflowed_total",
    "New deliveries sent on the overflow lane: their clinic was over ORG_LIVE_RATE_PER_S (workers.admission).",
)
CONSOLE_SIGNINS = Counter(
    "vapi_console_signins_total",
    "Console sign-ins by outcome: ok, failed (wrong token), limited (too many failures from one address).",
    ["outcome"],
)
REQUEST_DURATION = Histogram(
    "vapi_webhook_request_duration_seconds",
    "Time to answer POST /webhooks/vapi, by message type.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Read from PostgreSQL by whichever web process serves the scrape; with several
# web processes the most recent reading wins ("mostrecent").
DELIVERIES_BY_STATUS = Gauge(
    "vapi_deliveries",
    "Deliveries in the log by status, read from PostgreSQL at scrape time: exact but for completed, which is"
    " the table's live rows (PostgreSQL's statistics, about a second behind) less the other statuses.",
    ["status"],
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS = Gauge(
    "vapi_dead_letters", "Deliveries in dead_letter (read at scrape time).", multiprocess_mode="mostrecent"
)
OLDEST_PENDING_AGE = Gauge(
    "vapi_oldest_pending_delivery_age_seconds",
    "Age of the oldest pending delivery; 0 when none (read at scrape time).",
    multiprocess_mode="mostrecent",
)
QUARANTINED = Gauge(
    "vapi_quarantined_deliveries",
    "Unroutable messages waiting in quarantine (read at scrape time).",
    multiprocess_mode="mostrecent",
)


def exposition() -> bytes:
    """The metrics text: this process's registry, or every web process's under multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def type_label(message_type: str | None) -> str:
    """Bound the label's values: Vapi's known types, ``other``, or ``none`` before parsing."""
    if message_type is None:
        return "none"
    return message_type if message_type in KNOWN_TYPES else "other"


async def refresh_db_gauges(pool: asyncpg.Pool) -> None:
    """Read the gauges' values from PostgreSQL (one connection, three small queries)."""
    async with pool.acquire() as conn:
        counts = await deliveries.count_by_status(conn)
        oldest = await deliveries.oldest_pending_age_s(conn)
        unrouted = await quarantine.count_unrouted(conn)
    for status, n in counts.items():
        DELIVERIES_BY_STATUS.labels(status).set(n)
    DEAD_LETTERS.set(counts[DeliveryStatus.DEAD_LETTER])
    OLDEST_PENDING_AGE.set(oldest)
    QUARANTINED.set(unrouted)
