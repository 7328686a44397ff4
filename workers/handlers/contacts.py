"""Normalise what a caller said about themselves before it reaches the database (seed 002, fix 2).

Phone numbers go to E.164 with ``phonenumbers`` (Google's libphonenumber),
e-mail addresses are syntax-checked with ``email-validator`` (no DNS), and
names get a title case that keeps deliberate capitals.
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from workers.errors import ToolError

_NAME_PARTS = re.compile(r"([\s\-'’]+)")


def normalise_phone(raw: str, region: str) -> str:
    """E.164 form of ``raw``, read in ``region`` (ISO 3166 alpha-2) when it has no country code.

    Raises:
        ToolError: ``INVALID_PHONE`` if it is not a possible number.
    """
    try:
        parsed = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException:
        raise ToolError("INVALID_PHONE", f"INVALID_PHONE: {raw!r} is not a phone number I can use") from None
    if not phonenumbers.is_possible_number(parsed) or not phonenumbers.is_valid_number(parsed):
        raise ToolError("INVALID_PHONE", f"INVALID_PHONE: {raw!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """Trimmed, lower-cased, syntax-checked address (no DNS look-up).

    Raises:
        ToolError: ``INVALID_EMAIL`` with the validator's reason.
    """
    text = raw.strip().lower()
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ToolError("INVALID_EMAIL", f"INVALID_EMAIL: {text!r} is not a valid e-mail address ({exc})") from None


def normalise_name(raw: str) -> str:
    """Trim, collapse spaces, and title-case each part that was typed all in one case.

    A part typed in mixed case is kept as typed (``McDonald``, ``DeVito``);
    parts are split at spaces, hyphens and apostrophes, so ``o'brien`` becomes
    ``O'Brien`` and ``ANNE-MARIE`` becomes ``Anne-Marie``. Letters outside
    ASCII follow Unicode case rules (``josé`` becomes ``José``).
    """
    text = " ".join(raw.split())
    out = []
    for part in _NAME_PARTS.split(text):
        if not part or _NAME_PARTS.fullmatch(part):
            out.append(part)
        elif part.islower() or part.isupper():
            out.append(part[0].upper() + part[1:].lower())
        else:
            out.append(part)
    return "".join(out)
