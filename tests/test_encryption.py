"""Vapi's encrypted tool arguments (issue 19, part 1): values encrypted exactly as Vapi's docs describe
(RSA-OAEP with SHA-256, base64), with keys made here; decrypted in memory where the tool runs, through the
real receiver and a real worker; the stored message and the row's result keep no plaintext."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from ingest.settings import ConfigError, Settings
from tests.helpers import book_args, business_day, make_settings, post, tool_call, wait_until
from workers.encryption import Keyring, UnreadableArgument, decrypt_arguments, encrypted_paths, open_each, redact

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
CURRENT = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OLDER = rsa.generate_private_key(public_exponent=65537, key_size=3072)
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def vapi_encrypts(value: str, key: rsa.RSAPrivateKey = CURRENT) -> str:
    """What Vapi sends in place of a listed argument: base64 of RSA-OAEP-256 under our public key."""
    return base64.b64encode(key.public_key().encrypt(value.encode(), _OAEP)).decode()


def _pem(key: Any, path: Path) -> str:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path)


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[str, str]:
    return _pem(CURRENT, tmp_path / "current.pem"), _pem(OLDER, tmp_path / "older.pem")


@pytest.fixture
def settings(db_dsn: str, org_id: Any, key_files: tuple[str, str]) -> Settings:
    """The suite's settings with both keys configured: the web app and the worker fixtures use these."""
    return make_settings(db_dsn, default_org_id=org_id, vapi_encryption_private_keys=key_files)


KEYRING = Keyring((CURRENT, OLDER))


def test_nested_values_under_either_key_open_and_plain_ones_stay():
    """Values at any depth, under the current or the older key, open; plain values, look-alikes of base64
    included, are left as they are."""
    arguments = {
        "name": vapi_encrypts("Ada Lovelace"),
        "payment": {"cardNumber": vapi_encrypts("4111 1111 1111 1111", OLDER), "brand": "visa"},
        "contacts": [{"phone": vapi_encrypts("+44 20 7183 8750")}],
        "token": "SGVsbG8gV29ybGQ=",
        "notes": "Prefers mornings; " + "very " * 60 + "anxious about needles.",
    }

    opened = decrypt_arguments(arguments, KEYRING)

    assert {
        "name": "Ada Lovelace",
        "payment": {"cardNumber": "4111 1111 1111 1111", "brand": "visa"},
        "contacts": [{"phone": "+44 20 7183 8750"}],
        "token": "SGVsbG8gV29ybGQ=",
        "notes": arguments["notes"],
    } == opened.arguments
    assert ("name", "payment.cardNumber", "contacts[0].phone") == opened.paths


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (vapi_encrypts("Ada", STRANGER), "no configured key opens it"),
        (vapi_encrypts("Ada")[:-43], "not valid base64"),
        (vapi_encrypts("Ada")[:-4], "fit no configured key"),
        (vapi_encrypts("Ada").replace("/", "_").replace("+", "-") + "-_", "not valid base64"),
        (base64.b64encode(bytes(256)).decode(), "no configured key opens it"),
    ],
    ids=["another key", "truncated mid-block", "truncated whole quads", "url-safe alphabet", "zeros"],
)
def test_ciphertext_no_key_opens_is_refused_by_path_never_value(value, reason):
    """A ciphertext-shaped value that does not open is refused, naming the argument and why, never the value."""
    with pytest.raises(UnreadableArgument) as refused:
        decrypt_arguments({"patient": {"dateOfBirth": value}}, KEYRING)

    assert "patient.dateOfBirth" == refused.value.path and reason in refused.value.reason
    assert value not in str(refused.value) and "UNREADABLE_ARGUMENT" == refused.value.code


def test_without_keys_ciphertext_is_refused_and_names_the_setting():
    with pytest.raises(UnreadableArgument, match="VAPI_ENCRYPTION_PRIVATE_KEYS is not set"):
        decrypt_arguments({"name": vapi_encrypts("Ada")}, Keyring())


@given(st.text(max_size=400).filter(lambda t: " " in t or len(t) < 172))
def test_text_with_a_space_or_shorter_than_a_block_is_never_taken_for_ciphertext(text):
    assert {"v": text} == decrypt_arguments({"v": text}, KEYRING).arguments


def test_redact_removes_every_plaintext_from_nested_results():
    stored = redact({"result": "Booked for Ada Lovelace (+442071838750).", "n": 1}, ["Ada Lovelace", "+442071838750"])
    assert {"result": "Booked for <encrypted> (<encrypted>).", "n": 1} == stored


@pytest.mark.parametrize("bad", ["missing", "not-pem", "ec"])
def test_a_bad_key_stops_start_up_with_one_line_naming_the_setting(tmp_path, bad):
    path = tmp_path / "key.pem"
    if bad == "not-pem":
        path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    elif bad == "ec":
        _pem(ec.generate_private_key(ec.SECP256R1()), path)

    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"VAPI_ENCRYPTION_PRIVATE_KEYS": f"{path}"})

    assert str(refused.value).startswith("VAPI_ENCRYPTION_PRIVATE_KEYS: ") and "\n" not in str(refused.value)
    assert "BEGIN" not in str(refused.value)


async def test_a_synchronous_booking_with_encrypted_name_and_phone_books_the_patient(client, settings, pool):
    """Name and phone encrypted by Vapi: the appointment is booked for the decrypted patient, the caller
    hears their name, and neither the stored message nor the stored result holds a plaintext."""
    day = business_day()
    args = book_args(day, "11:00", name=vapi_encrypts("Ada Lovelace"), phone=vapi_encrypts("020 7183 8750"))

    resp = await post(client, settings, tool_call("t-enc", "bookClinicAppointment", args))
    entry = (await resp.json())["results"][0]
    lead = await pool.fetchrow("SELECT name, phone FROM leads")
    row = await pool.fetchrow(
        "SELECT payload::text AS payload, result::text AS result FROM webhook_delivery_log WHERE event_id = $1",
        "tool-call:t-enc",
    )

    assert entry["result"].startswith("Booked cleaning for Ada Lovelace")
    assert ("Ada Lovelace", "+442071838750") == (lead["name"], lead["phone"])
    assert args["name"] in row["payload"] and "Ada Lovelace" not in row["payload"]
    assert "Ada Lovelace" not in row["result"] and "<encrypted>" in row["result"]


async def test_an_argument_no_key_opens_is_answered_aloud_counted_and_books_nothing(client, settings, pool):
    from prometheus_client import REGISTRY

    def counted() -> float:
        value = REGISTRY.get_sample_value("vapi_tool_arguments_unreadable_total", {"tool": "bookClinicAppointment"})
        return value or 0.0

    before = counted()
    args = book_args(business_day(), "11:00", name=vapi_encrypts("Ada Lovelace", STRANGER))

    entry = (await (await post(client, settings, tool_call("t-bad", "bookClinicAppointment", args))).json())["results"][
        0
    ]
    stored = await pool.fetchval("SELECT result::text FROM webhook_delivery_log WHERE event_id = 'tool-call:t-bad'")

    assert entry["error"].startswith("UNREADABLE_ARGUMENT: name could not be decrypted (no configured key opens it)")
    assert "call you back" in entry["error"] and args["name"] not in entry["error"]
    assert "name could not be decrypted" in stored
    assert 0 == await pool.fetchval("SELECT count(*) FROM appointments")
    assert 1 == counted() - before


async def test_an_async_tool_decrypts_in_the_worker(client, settings, pool):
    """An async tool's encrypted argument (under the older key, mid-rotation) opens in the worker; its row
    keeps the ciphertext and a result without the plaintext."""
    args = book_args(business_day(), "12:00", name=vapi_encrypts("Grace Hopper", OLDER))
    body = tool_call("t-async-enc", "bookClinicAppointment", args)
    body["message"]["toolWithToolCallList"] = [
        {
            "type": "function",
            "async": True,
            "function": {"name": "bookClinicAppointment"},
            "toolCall": {"id": "t-async-enc"},
        }
    ]

    resp = await post(client, settings, body)
    key = "tool-call:t-async-enc"
    await wait_until(
        lambda: pool.fetchval("SELECT status = 'completed' FROM webhook_delivery_log WHERE event_id = $1", key)
    )
    row = await pool.fetchrow(
        "SELECT payload::text AS payload, result::text AS result FROM webhook_delivery_log WHERE event_id = $1", key
    )

    assert "accepted" == (await resp.json())["results"][0]["result"]
    assert "Grace Hopper" == await pool.fetchval("SELECT name FROM leads")
    assert "Grace Hopper" not in row["payload"] and "Grace Hopper" not in row["result"]
    assert json.loads(row["result"])["result"].startswith("Booked cleaning for <encrypted>")


def test_the_console_names_encrypted_paths_and_opens_each_without_failing_on_one():
    """Paths by shape alone; opening reports a value no key opens beside the ones that open."""
    arguments = {"name": vapi_encrypts("Ada"), "list": [{"dob": vapi_encrypts("1815", STRANGER)}], "day": "mon"}

    assert ("name", "list[0].dob") == encrypted_paths(arguments)
    assert [("name", "Ada", None), ("list[0].dob", None, "no configured key opens it")] == open_each(arguments, KEYRING)
