"""``vapi-ingest send``: post payload files signed exactly as Vapi would.

Each request is signed under the current settings with a fresh timestamp,
so the same files can be sent again and again (duplicates are the point).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ingest.settings import Settings
from ingest.webhook import auth
from ingest.webhook.answers import OUTCOME_HEADER
from workers import parsing
from workers.messages import InvalidEnvelope

#: What a 2xx answer's ``status`` field says happened (the receiver's outcomes), and how ``send`` names
#: each; an answer with none was answered inline.
_LABELS = {"accepted": "new", "duplicate": "duplicate", "quarantined": "quarantined"}


@dataclass
class SendReport:
    """What came back.

    Attributes:
        statuses: Answers per HTTP status.
        outcomes: 2xx answers per outcome: ``new`` (accepted), ``duplicate``, ``quarantined``, ``answered``
            (tool calls and assistant requests, answered inline).
        per_file: Per file name, its answers as ``"200 new"`` labels with counts.
        tool_replies: Every tool-call reply by file name.
        failures: ``(file name, status, body)`` of each non-2xx answer.
        errors: ``(file name, reason)`` of each request that got no answer.
    """

    statuses: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    per_file: dict[str, Counter[str]] = field(default_factory=dict)
    tool_replies: list[tuple[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Requests that got a non-2xx answer or none."""
        return len(self.failures) + len(self.errors)

    def record(self, name: str, status: int, text: str, *, message_type: str | None, outcome: str | None) -> None:
        """Count one answer to the request for file ``name``, whose message is of ``message_type``;
        ``outcome`` is the receiver's :data:`ingest.webhook.answers.OUTCOME_HEADER`, if it sent one."""
        self.statuses[status] += 1
        body = _json_or_text(text)
        if 200 <= status < 300:
            said = body.get("status") if isinstance(body, dict) else None
            if said not in _LABELS:
                # Answered inline (tool calls, assistant requests): the body is Vapi's reply alone, and
                # only the header says that a repeated tool call was a duplicate.
                said = "duplicate" if outcome == "duplicate" else None
            outcome = _LABELS.get(str(said), "answered")
            self.outcomes[outcome] += 1
            if message_type in ("tool-calls", "function-call"):
                self.tool_replies.append((name, body))
        else:
            outcome = "failed"
            self.failures.append((name, status, text))
        self.per_file.setdefault(name, Counter())[f"{status} {outcome}"] += 1


def collect_files(paths: list[Path]) -> list[Path]:
    """Expand directories to their ``*.json`` files, sorted.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return files


async def send(
    settings: Settings,
    files: list[Path],
    url: str,
    *,
    concurrency: int = 8,
    repeat: int = 1,
    timeout_s: float = 30.0,
    on_done: Callable[[], None] | None = None,
) -> SendReport:
    """Post each file ``repeat`` times with up to ``concurrency`` requests in flight.

    Args:
        on_done: Called after each request (a progress bar).
    """
    report = SendReport()
    bodies = [(f.name, f.read_bytes()) for f in files]
    types = {name: _message_type(body) for name, body in bodies}
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for _ in range(repeat):
        for item in bodies:
            queue.put_nowait(item)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            name, body = queue.get_nowait()
            headers = {"Content-Type": "application/json", **auth.sign(settings, body)}
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    report.record(
                        name,
                        resp.status,
                        await resp.text(),
                        message_type=types[name],
                        outcome=resp.headers.get(OUTCOME_HEADER),
                    )
            except (TimeoutError, aiohttp.ClientError) as exc:
                report.errors.append((name, f"{type(exc).__name__}: {exc}"))
                report.per_file.setdefault(name, Counter())["no answer"] += 1
            if on_done:
                on_done()

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))
    return report


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message_type(body: bytes) -> str | None:
    """The message type a file sends, as the receiver reads it; None when the file is no Vapi message."""
    try:
        return parsing.parse(body).type
    except InvalidEnvelope:
        return None
