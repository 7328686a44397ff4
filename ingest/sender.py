"""``vapi-ingest send``: post payload files signed exactly as Vapi would.

Each request is signed under the current settings with a fresh timestamp,
so the same files can be sent again and again (duplicates are the point).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ingest import auth
from ingest.settings import Settings


@dataclass
class SendReport:
    """What came back: counts per HTTP status, and every tool-call reply by file name."""

    statuses: Counter[int] = field(default_factory=Counter)
    tool_replies: list[tuple[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


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
    settings: Settings, files: list[Path], url: str, *, concurrency: int = 8, repeat: int = 1, timeout_s: float = 30.0
) -> SendReport:
    """Post each file ``repeat`` times with up to ``concurrency`` requests in flight."""
    report = SendReport()
    bodies = [(f.name, f.read_bytes()) for f in files]
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
                    report.statuses[resp.status] += 1
                    text = await resp.text()
                    if name.startswith(("tool-calls", "function-call")):
                        report.tool_replies.append((name, _json_or_text(text)))
            except (TimeoutError, aiohttp.ClientError) as exc:
                report.errors.append((name, f"{type(exc).__name__}: {exc}"))

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(max(1, concurrency))))
    return report


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
