"""Vapi's encrypted tool arguments (FINDINGS.md §7, Vapi's "Tool argument encryption").

A clinic may have Vapi encrypt chosen tool arguments with our RSA public key: each such value arrives as
a base64 string of its RSA-OAEP ciphertext (OAEP and MGF1 with SHA-256, no label), in place of the
value, and nothing in the message says which values are encrypted. They are decrypted here, in memory,
where the tool runs; the stored message keeps the ciphertext.

Which values are ciphertext is recognised, not configured: a string of base64 characters alone, at
least :data:`MIN_CIPHERTEXT_CHARS` long (the base64 of 128 bytes, the smallest RSA block; Vapi's 2048-bit
keys give 344). No name, phone number, date, service or note is such a string (each has spaces,
punctuation or is far shorter), so a look-alike plain value (``SGVsbG8=``) stays plain, while a value
that is ciphertext-shaped must open under one of our keys or the tool refuses it. The alternative,
listing each tool's encrypted paths beside our tool definitions, would have to match what every clinic
ticks in Vapi's dashboard, per clinic; a path it missed would book under ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from workers.errors import ToolError

#: The shortest string taken for ciphertext: base64 of 128 bytes (a 1024-bit RSA block).
MIN_CIPHERTEXT_CHARS = 172
_CIPHERTEXT_SHAPE = re.compile(rf"[A-Za-z0-9+/=_-]{{{MIN_CIPHERTEXT_CHARS},}}")
#: What the caller hears when an argument cannot be read (the assistant reads the error aloud).
UNREADABLE_SAID = "I could not read some of the details securely; the clinic will call you back to finish this"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class UnreadableArgument(ToolError):
    """An argument is ciphertext that no configured key opens, or not valid ciphertext.

    Attributes:
        path: The argument's dotted path (``payment.cardNumber``); never its value.
        reason: Why, in a few words.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            "UNREADABLE_ARGUMENT", f"UNREADABLE_ARGUMENT: {path} could not be decrypted ({reason}). {UNREADABLE_SAID}"
        )
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Keyring:
    """The private keys Vapi's encrypted arguments may be under: the current one first, then older ones kept
    for rotation (``VAPI_ENCRYPTION_PRIVATE_KEYS``). Never printed: ``repr`` names only their sizes."""

    keys: tuple[rsa.RSAPrivateKey, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"Keyring({', '.join(f'RSA-{k.key_size}' for k in self.keys) or 'empty'})"

    @classmethod
    def from_files(cls, paths: Iterable[str]) -> Keyring:
        """Load unencrypted PEM private keys (PKCS#8 or PKCS#1).

        Raises:
            ValueError: a file cannot be read, is not a PEM private key, or not RSA; the message names the
                file, never its content.
        """
        keys = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError):
                raise ValueError(f"{path} is not an unencrypted PEM private key") from None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{path} is not an RSA key (Vapi encrypts with RSA-OAEP-256)")
            keys.append(key)
        return cls(tuple(keys))


@dataclass(frozen=True)
class Decrypted:
    """Arguments with every ciphertext value replaced by its plaintext.

    Attributes:
        arguments: The arguments as the tool should see them.
        paths: Dotted paths of the values that were encrypted, in the order met.
        plaintexts: Those values' plaintexts, to keep out of anything stored (:func:`redact`).
    """

    arguments: dict[str, Any]
    paths: tuple[str, ...] = ()
    plaintexts: tuple[str, ...] = field(default=(), repr=False)


def decrypt_arguments(arguments: dict[str, Any], keyring: Keyring) -> Decrypted:
    """Decrypt every ciphertext-shaped string in ``arguments``, at any depth of objects and lists.

    Raises:
        UnreadableArgument: a ciphertext-shaped value is not base64, or no key opens it (wrong key,
            truncated, tampered, or no key configured).
    """
    paths: list[str] = []
    plaintexts: list[str] = []

    def opened(path: str, text: str) -> str:
        plain = _decrypt(text, keyring, path)
        paths.append(path)
        plaintexts.append(plain)
        return plain

    return Decrypted(_replacing_ciphertexts(arguments, "", opened), tuple(paths), tuple(plaintexts))


def _replacing_ciphertexts(value: Any, path: str, replace: Callable[[str, str], str]) -> Any:
    """``value`` rebuilt with each ciphertext-shaped string, at any depth, replaced by ``replace(path, it)``."""
    if isinstance(value, dict):
        return {k: _replacing_ciphertexts(v, f"{path}.{k}" if path else str(k), replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_replacing_ciphertexts(v, f"{path}[{i}]", replace) for i, v in enumerate(value)]
    if isinstance(value, str) and _CIPHERTEXT_SHAPE.fullmatch(value):
        return replace(path, value)
    return value


def _decrypt(text: str, keyring: Keyring, path: str) -> str:
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableArgument(path, "not valid base64") from None
    sized = [k for k in keyring.keys if k.key_size // 8 == len(blob)]
    if not keyring.keys:
        raise UnreadableArgument(path, "it is encrypted and VAPI_ENCRYPTION_PRIVATE_KEYS is not set")
    if not sized:
        raise UnreadableArgument(path, f"{len(blob)} bytes fit no configured key (truncated or another key)")
    for key in sized:
        try:
            plain = key.decrypt(blob, _OAEP)
        except ValueError:
            continue  # OAEP's padding check: not under this key
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadableArgument(path, "it decrypts to bytes that are not text") from None
    raise UnreadableArgument(path, "no configured key opens it")


def encrypted_paths(arguments: dict[str, Any]) -> tuple[str, ...]:
    """Dotted paths of the ciphertext-shaped values in ``arguments`` (nothing is decrypted)."""
    return tuple(path for path, _ in _ciphertexts(arguments))


def open_each(arguments: dict[str, Any], keyring: Keyring) -> list[tuple[str, str | None, str | None]]:
    """For a person allowed to read them (the console's recorded reveal): each encrypted value as
    ``(path, plaintext, None)``, or ``(path, None, why)`` for one that does not open; never raises."""
    opened: list[tuple[str, str | None, str | None]] = []
    for path, value in _ciphertexts(arguments):
        try:
            opened.append((path, _decrypt(value, keyring, path), None))
        except UnreadableArgument as exc:
            opened.append((path, None, exc.reason))
    return opened


def _ciphertexts(arguments: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def seen(path: str, text: str) -> str:
        found.append((path, text))
        return text

    _replacing_ciphertexts(arguments, "", seen)
    return found


def redact(value: Any, plaintexts: Iterable[str]) -> Any:
    """``value`` (text, or JSON-like objects and lists of it) with every occurrence of each plaintext
    replaced by ``<encrypted>``: what is stored or logged never holds a decrypted value."""
    secrets = sorted((p for p in plaintexts if p), key=len, reverse=True)
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<encrypted>")
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value
