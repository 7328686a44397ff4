"""What the receiver answers: one status, outcome label and body per request (logged and counted once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.errors import Refused


@dataclass
class Answer:
    """An HTTP answer: ``status``, the metrics ``outcome`` label, the JSON ``body``."""

    status: int
    outcome: str
    body: dict[str, Any]
    #: Close the connection after answering (a stalled or abandoned body).
    close: bool = False


#: Response header with the receiver's outcome for the request (``accepted``, ``duplicate``, ``invalid`` ...),
#: as ``vapi_webhooks_received_total{outcome}`` counts it.
OUTCOME_HEADER = "X-Vapi-Ingest-Outcome"


class Reject(Refused):
    """Stop handling a webhook and answer it with ``status`` and ``{"error": reason}``, counted as ``outcome``."""

    def __init__(self, status: int, outcome: str, reason: str, *, close: bool = False) -> None:
        super().__init__(status, reason)
        self.answer = Answer(status, outcome, {"error": reason}, close)
