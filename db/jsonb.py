"""jsonb on the wire: JSON text both ways, numbers beyond double range kept as written.

Python reads ``1e400`` as ``inf``, which ``json.dumps`` writes as ``Infinity``,
which PostgreSQL refuses; jsonb itself stores such numbers exactly (as
numeric). The message parser wraps them in :class:`RawNumber`, and
:func:`encode` writes their original text back.
"""

from __future__ import annotations

import json
import re
from typing import Any

# NUL never reaches stored text (PostgreSQL cannot hold it; parsing replaces it
# with U+FFFD), so a marker made of NULs cannot collide with a real string.
_MARK = "\x00raw-number\x00"
_MARKED = re.compile(r'"\\u0000raw-number\\u0000([^"\\]*)"')


class RawNumber:
    """A JSON number that Python's float or int cannot hold; ``text`` is its JSON text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _default(value: Any) -> Any:
    if isinstance(value, RawNumber):
        return _MARK + value.text
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode(value: Any) -> str:
    """JSON text of ``value``; :class:`RawNumber` values are written as the numbers they hold.

    Raises:
        TypeError: for values JSON cannot represent.
    """
    text = json.dumps(value, default=_default)
    if "\\u0000raw-number\\u0000" in text:
        text = _MARKED.sub(r"\1", text)
    return text


_INF = float("inf")
_NONZERO_DIGIT = re.compile("[1-9]")


def _float(text: str) -> float | RawNumber:
    """A number with a fraction or exponent; kept as text where a float would turn it into inf or 0."""
    value = float(text)
    if value in (_INF, -_INF) or (value == 0.0 and _NONZERO_DIGIT.search(re.split("[eE]", text)[0])):
        return RawNumber(text)
    return value


def _int(text: str) -> int | RawNumber:
    """An integer; kept as text beyond Python's int-parsing limit (4,300 digits)."""
    if len(text) > 4000:
        return RawNumber(text)
    return int(text)


def lossless_decoder(**kwargs: Any) -> json.JSONDecoder:
    """A decoder that returns numbers Python cannot hold as :class:`RawNumber` (``kwargs`` go to ``JSONDecoder``).

    Its ``decode`` raises ValueError for text that is not JSON and RecursionError beyond the parser's depth.
    """
    return json.JSONDecoder(parse_float=_float, parse_int=_int, **kwargs)


_LOSSLESS = lossless_decoder()


def decode(text: str) -> Any:
    """jsonb text to Python, numbers Python cannot hold as :class:`RawNumber`.

    Always the hooked parse: PostgreSQL writes ``1e-400`` in full (``0.000...1``), which a plain
    ``json.loads`` reads as 0.0 without an error, so trying the plain parse first would lose it.
    """
    return _LOSSLESS.decode(text)
