"""One error vocabulary for the outer layer: every error ``ingest/`` defines is an ``IngestError``, and a
failure below the web layer becomes the same answer in the receiver, the admin API and the console."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import asyncpg
import pytest

import ingest
from db.errors import RowRefused
from db.filters import InvalidFilter
from ingest.errors import OUTAGE, IngestError, Refused, refusal_of


def _ingest_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(ingest.__path__, "ingest.")]
    assert "ingest.webhook.receiver" in names and "ingest.cli.deliveries" in names
    return names


@pytest.mark.parametrize("name", _ingest_modules())
def test_every_error_ingest_defines_is_an_ingest_error(name):
    """No exception class defined in ``ingest/`` stands outside the root."""
    module = importlib.import_module(name)
    defined = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == name and issubclass(cls, BaseException)
    ]

    assert [] == [cls.__qualname__ for cls in defined if not issubclass(cls, IngestError)]


def test_failures_below_the_web_layer_have_one_answer_each():
    """A refused row or value is 400 naming what could not be stored (never the DETAIL, which may quote it);
    an unreadable filter 400 with its reason; an outage 503 with one wording; a bug is not answered."""
    data_error = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence\nDETAIL: the secret")
    encoder_error = asyncpg.exceptions.DataError("invalid input for query argument $1")

    answers = [
        refusal_of(RowRefused("numeric field overflow"), what="message"),
        refusal_of(data_error),
        refusal_of(encoder_error),
        refusal_of(InvalidFilter("since: not a time")),
        refusal_of(ConnectionRefusedError()),
        refusal_of(asyncpg.exceptions.CannotConnectNowError("starting up")),
        refusal_of(Refused(403, "tenant management needs an admin token")),
        refusal_of(KeyError("bug")),
    ]

    assert [
        (400, "message cannot be stored: numeric field overflow"),
        (400, "value cannot be stored: invalid byte sequence"),
        (400, "value cannot be stored: invalid input for query argument $1"),
        (400, "since: not a time"),
        (503, OUTAGE),
        (503, OUTAGE),
        (403, "tenant management needs an admin token"),
    ] == [(a.status, a.reason) for a in answers if a is not None]
    assert answers[-1] is None
