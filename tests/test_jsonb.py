"""jsonb both ways: numbers Python cannot hold survive the trip to PostgreSQL and back."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.jsonb import RawNumber, decode, encode

#: JSON number texts of every shape: any sign, integer part, fraction and exponent (leading zeros too).
number_texts = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.sampled_from(["0"]) | st.from_regex(r"[1-9][0-9]{0,400}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"\.[0-9]{1,400}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"[eE][+-]?[0-9]{1,3}", fullmatch=True),
)


async def test_numbers_read_back_from_postgresql_keep_what_python_cannot_hold(pool):
    """PostgreSQL writes 1e-400 in full; reading it back gives its text, not 0.0 (and 1e400 as an exact int)."""
    row = await pool.fetchval("""SELECT '{"tiny": 1e-400, "huge": 1e400, "half": 0.5}'::jsonb""")

    assert isinstance(row["tiny"], RawNumber) and row["tiny"].text == "0." + "0" * 399 + "1"
    assert (10**400, 0.5) == (row["huge"], row["half"])


@given(numbers=st.lists(number_texts, min_size=1, max_size=5))
@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_any_number_survives_a_round_trip_through_jsonb(pool, numbers):
    """Any JSON number, decoded and encoded again, is one PostgreSQL accepts and reads as the number sent: exact
    beyond double range (1e400, 1e-400), within a double's rounding (and its subnormal step) inside it."""
    text = "[" + ",".join(numbers) + "]"

    close = await pool.fetchval(
        """
        SELECT bool_and(abs(x.v::text::numeric - y.v::text::numeric) <= abs(y.v::text::numeric) * 1e-15 + 1e-307
                        AND (y.v::text::numeric = 0) = (x.v::text::numeric = 0))
          FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS x(v, i)
          JOIN jsonb_array_elements($2::text::jsonb) WITH ORDINALITY AS y(v, i) USING (i)
        """,
        encode(decode(text)),
        text,
    )

    assert close is True, text
