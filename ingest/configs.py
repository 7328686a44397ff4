"""From the environment's settings to the workers' configuration objects (the workers never read the environment)."""

from __future__ import annotations

from ingest.settings import Settings
from workers.broker import Lane
from workers.encryption import Keyring
from workers.processing import ProcessingConfig
from workers.retry import RetryPolicy
from workers.sweeper import SweepConfig


def processing_config(settings: Settings) -> ProcessingConfig:
    """The processing knobs the environment defines (shared by the web and worker processes)."""
    return ProcessingConfig(
        lease_s=settings.delivery_lease_s,
        retry=RetryPolicy(
            min_backoff_ms=settings.retry_min_backoff_ms,
            max_backoff_ms=settings.retry_max_backoff_ms,
        ),
        keyring=Keyring.from_files(settings.vapi_encryption_private_keys),
    )


def sweep_config(settings: Settings) -> SweepConfig:
    """Derive the sweep's timing from the settings.

    A delivery whose enqueue failed is sent after two sweep intervals (at
    least 1 s). A message sent but not claimed within two leases counts as
    lost (a killed worker's prefetched messages, Redis restarted empty) and is
    sent again; a duplicate is harmless, the claim lets one through.
    """
    return SweepConfig(
        enqueue_grace_s=max(1.0, 2 * settings.sweep_interval_s),
        resend_after_s=max(2.0, 2.0 * settings.delivery_lease_s),
    )


def bulk_concurrency(settings: Settings) -> dict[Lane, int]:
    """Messages of each bulk lane a worker process runs at once (``OVERFLOW_CONCURRENCY``, ``REPLAY_CONCURRENCY``)."""
    return {Lane.OVERFLOW: settings.overflow_concurrency, Lane.REPLAY: settings.replay_concurrency}
