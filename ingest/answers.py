"""What the receiver answers: one status, outcome label and body per request (logged and counted once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    """An HTTP answer: ``status``, the metrics ``outcome`` label, the JSON ``body``."""

    status: int
    outcome: str
    body: dict[str, Any]
    #: Close the connection after answering (a stalled or abandoned body).
    close: bool = False


class Reject(Exception):
    """Stop handling a request and answer it with ``status`` and ``{"error": reason}``."""

    def __init__(self, status: int, outcome: str, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.answer = Answer(status, outcome, {"error": reason}, close)
