"""The ``vapi-ingest`` command: services, tenants, deliveries, quarantine, and a sender.

Loads ``.env`` from the working directory (``make run`` writes one), then
reads settings per command, so a bad value is one line naming the variable.
"""

from __future__ import annotations

from pathlib import Path

import click
from dotenv import load_dotenv

from ingest.cli import deliveries, quarantine, retention, send, services, tenants


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Receive Vapi server messages, store them once, process them with Dramatiq workers."""
    load_dotenv(Path.cwd() / ".env", override=False)


for _command in (
    *services.COMMANDS,
    *tenants.COMMANDS,
    deliveries.deliveries,
    quarantine.quarantine,
    retention.retention,
    send.send,
):
    main.add_command(_command)
