"""jsonb both ways: numbers Python cannot hold survive, and the body's own text stores what encoding would."""

from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db import deliveries
from db.deliveries import NewDelivery
from db.jsonb import LosslessDecoder, RawNumber, _float, _int
from workers import parsing

_HOOKED = json.JSONDecoder(parse_float=_float, parse_int=_int)

#: JSON number texts of every shape: any sign, integer part, fraction and exponent (leading zeros too).
number_texts = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.sampled_from(["0"]) | st.from_regex(r"[1-9][0-9]{0,400}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"\.[0-9]{1,400}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"[eE][+-]?[0-9]{1,5}", fullmatch=True),
)


@given(st.lists(number_texts, min_size=1, max_size=5))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_the_fast_parse_agrees_with_the_hooked_one_on_every_number(numbers):
    """The C parser without hooks is taken only where it gives what the hooked, lossless one gives."""
    text = "[" + ",".join(numbers) + "]"

    assert _HOOKED.decode(text) == LosslessDecoder().decode(text)


async def test_numbers_read_back_from_postgresql_keep_what_python_cannot_hold(pool):
    """PostgreSQL writes 1e-400 in full; reading it back gives its text, not 0.0 (and 1e400 as an exact int)."""
    row = await pool.fetchval("""SELECT '{"tiny": 1e-400, "huge": 1e400, "half": 0.5}'::jsonb""")

    assert isinstance(row["tiny"], RawNumber) and row["tiny"].text == "0." + "0" * 399 + "1"
    assert (10**400, 0.5) == (row["huge"], row["half"])


#: Any JSON value (JSON has no NaN or Infinity).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(
    message=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    numbers=st.lists(
        st.sampled_from(["1e400", "-1e400", "1e-400", "1.10", "-0", "0e0", "1E+2", "9" * 500]), max_size=4
    ),
)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_a_payload_stored_from_the_body_text_equals_the_encoded_one(pool, org_id, message, numbers):
    """Any message, with numbers beyond double range: PostgreSQL's parse of the body stores the same jsonb as ours."""
    fields = json.dumps({**message, "type": "hang"})[1:-1]
    body = ('{"message": {' + fields + ', "n": [' + ",".join(numbers) + "]}}").encode()
    env = parsing.parse(body)
    key = uuid.uuid4().hex
    common = {"org_id": org_id, "event_type": "hang", "payload": env.message, "max_attempts": 3, "job_id": None}

    await deliveries.insert_many(
        pool,
        [
            NewDelivery(event_id=f"{key}-text", body_text=env.body_text, **common),
            NewDelivery(event_id=f"{key}-encoded", **common),
        ],
    )

    same = await pool.fetchval(
        "SELECT a.payload = b.payload AND a.vapi_call_id IS NOT DISTINCT FROM b.vapi_call_id"
        " FROM webhook_delivery_log a, webhook_delivery_log b WHERE a.event_id = $1 AND b.event_id = $2",
        f"{key}-text",
        f"{key}-encoded",
    )
    assert same is True


def test_only_a_message_left_as_sent_is_stored_from_the_body_text():
    """Text replaced or a credential redacted: the message is no longer the body's, so it is encoded instead."""
    plain = parsing.parse(b'{"message": {"type": "hang", "call": {"id": "c"}}}')
    redacted = parsing.parse(b'{"message": {"type": "hang", "call": {"id": "c"}, "apiKey": "k"}}')
    fixed = parsing.parse(b'{"message": {"type": "hang", "call": {"id": "c\\u0000"}}}')

    assert plain.body_text is not None and json.loads(plain.body_text)["message"] == plain.message
    assert (None, None) == (redacted.body_text, fixed.body_text)
