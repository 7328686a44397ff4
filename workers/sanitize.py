"""What a stored message may hold: text PostgreSQL can store, and no credentials.

Two rules, applied to a parsed message before it is stored (README, "What is
stored"):

* **Text jsonb cannot hold is replaced, and the row says so.** NUL
  characters and unpaired UTF-16 surrogates (what JavaScript emits when a
  string is cut mid-emoji) become U+FFFD; the kinds replaced are returned so
  the delivery row can record them.
* **Credentials never reach a row.** The value of every credential-like key
  (:func:`is_credential_key`), at any depth and inside JSON-string tool
  arguments, becomes ``"[redacted]"``. Vapi echoes such values in payloads:
  ``serverUrlSecret``, ``server.secret``, ``twilioAuthToken``, OAuth client
  secrets, and ``monitor.listenUrl``/``controlUrl``, which let anyone listen
  to or steer a live call (FINDINGS.md §1, §2).

Both walks run only when one scan of the body's text (an Aho-Corasick
automaton, :func:`scan`) says they may find something, so an ordinary message
costs one pass over its text (about 10 µs for 4 KB).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import ahocorasick_rs

REDACTED = "[redacted]"

#: Parts of a key (lower-cased, punctuation removed) that mark a credential.
_CREDENTIAL_PARTS = ("secret", "password", "passwd", "apikey", "privatekey", "authorization", "credential")
#: Keys that are credentials though they name no secret: they open a live call.
_CREDENTIAL_KEYS = frozenset({"listenurl", "controlurl"})
#: Lower-cased substrings of a body in which a credential-like key may hide (the JSON text of every
#: key :func:`is_credential_key` accepts contains one; ``token\\"`` is a key inside a JSON string).
_CREDENTIAL_HINTS = (
    "secret",
    "passw",
    "apikey",
    "api_key",
    "api-key",
    "privatekey",
    "private_key",
    "authoriz",
    "credential",
    "listenurl",
    "controlurl",
    'token"',
    'token\\"',
)
#: Lower-cased JSON escapes of NUL and of UTF-16 surrogates (paired ones are merged by the parser; the walk
#: then finds nothing to replace).
_TEXT_HINTS = ("\\u0000", *(f"\\ud{c}" for c in "89abcdef"))
_HINTS = ahocorasick_rs.AhoCorasick(
    [*_CREDENTIAL_HINTS, *_TEXT_HINTS],
    matchkind=ahocorasick_rs.MatchKind.LeftmostFirst,
    implementation=ahocorasick_rs.Implementation.DFA,
)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NON_ALNUM = re.compile(r"[^a-z0-9]")
#: Keys whose string value is itself JSON (Vapi's tool arguments; FINDINGS.md §1).
_JSON_STRING_KEYS = frozenset({"arguments", "parameters"})


def is_credential_key(key: str) -> bool:
    """True if a value under ``key`` is treated as a credential.

    Case and punctuation are ignored; a key is credential-like if it contains
    secret, password, passwd, api key, private key, authorization or
    credential, ends with ``token`` (``accessToken``, ``twilioAuthToken``; not
    ``promptTokens``, a count), or is ``listenUrl``/``controlUrl``.
    """
    k = _NON_ALNUM.sub("", key.lower())
    return k.endswith("token") or k in _CREDENTIAL_KEYS or any(part in k for part in _CREDENTIAL_PARTS)


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass over a body's JSON text found: where :func:`scrub` has work (False: certainly none)."""

    unstorable_text: bool
    credentials: bool


def scan(text: str) -> Scan:
    """One pass over a body's JSON text for NUL or surrogate escapes and credential-like key names."""
    found = _HINTS.find_matches_as_indexes(text.lower())
    if not found:
        return Scan(False, False)
    kinds = {index >= len(_CREDENTIAL_HINTS) for index, _, _ in found}
    return Scan(unstorable_text=True in kinds, credentials=False in kinds)


def scrub(message: dict[str, Any], *, fix_text: bool, redact: bool) -> set[str]:
    """Make ``message`` storable, in place; see the module docstring for the rules.

    Iterative, so any depth the JSON parser accepted is walked without
    recursion. Keys are renamed where their text changes (jsonb keeps no key order).

    Args:
        fix_text: Replace NUL and unpaired surrogates with U+FFFD.
        redact: Replace credential values with ``"[redacted]"``.

    Returns:
        The kinds of text replaced: ``"nul"``, ``"unpaired_surrogate"`` (empty if none).
    """
    found: set[str] = set()
    stack: list[Any] = [message]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                if fix_text and _UNSTORABLE.search(key):
                    del node[key]
                    key = _fixed(key, found)
                    node[key] = value
                if redact and is_credential_key(key) and isinstance(value, (str, dict, list)):
                    node[key] = REDACTED
                elif isinstance(value, str):
                    if fix_text and _UNSTORABLE.search(value):
                        value = node[key] = _fixed(value, found)
                    if redact and key in _JSON_STRING_KEYS:
                        node[key] = _scrub_json_string(value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    if fix_text and _UNSTORABLE.search(value):
                        node[i] = _fixed(value, found)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
    return found


def redact(value: Any) -> Any:
    """A redacted copy of ``value`` (for log events and display; stored payloads are scrubbed already)."""
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and is_credential_key(k) and v is not None else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _fixed(text: str, found: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        found.add("nul" if match.group() == "\x00" else "unpaired_surrogate")
        return "\ufffd"

    return _UNSTORABLE.sub(replace, text)


def _scrub_json_string(text: str) -> str:
    """Tool arguments sent as a JSON string: redact inside, re-encode only if something changed."""
    if not text.lstrip().startswith(("{", "[")) or not scan(text).credentials:
        return text
    try:
        inner = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if not isinstance(inner, (dict, list)):
        return text
    before = json.dumps(inner)
    scrub({"_": inner}, fix_text=False, redact=True)
    after = json.dumps(inner)
    return text if after == before else after
