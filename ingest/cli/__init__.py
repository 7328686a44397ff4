"""The ``vapi-ingest`` command: services, tenants, deliveries, quarantine, and a sender.

Loads ``.env`` from the working directory (``make run`` writes one), then
reads settings per command. A bad setting is one line naming the variable
and exit code 2; a service or port that is not available is one line and
exit code 1; ``LOG_LEVEL=DEBUG`` adds the traceback.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import click
from dotenv import load_dotenv

from ingest.cli import deliveries, quarantine, retention, reveals, send, services, tenants
from ingest.preflight import Unavailable, explain
from ingest.settings import ConfigError

#: Exit codes: a setting to fix, or something to wait for or free up.
EXIT_BAD_SETTING = 2
EXIT_UNAVAILABLE = 1


class Main(click.Group):
    """The root group; turns setting and connect failures of any command into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, Unavailable) as exc:
            _fail(ctx, exc, exc)
        except Exception as exc:
            problem = explain(exc)
            if problem is None:
                raise
            _fail(ctx, problem, exc)


def _fail(ctx: click.Context, problem: ConfigError | Unavailable, cause: BaseException) -> None:
    if os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG":
        traceback.print_exception(cause)
    click.echo(f"Error: {problem}", err=True)
    ctx.exit(EXIT_BAD_SETTING if isinstance(problem, ConfigError) else EXIT_UNAVAILABLE)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vapi-ingest")
def main() -> None:
    """Receive Vapi server messages, store them once, process them with Dramatiq workers."""
    load_dotenv(Path.cwd() / ".env", override=False)


for _command in (
    *services.COMMANDS,
    *tenants.COMMANDS,
    deliveries.deliveries,
    quarantine.quarantine,
    retention.retention,
    reveals.reveals,
    send.send,
):
    main.add_command(_command)
