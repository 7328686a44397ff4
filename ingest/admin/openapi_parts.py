"""Pieces shared by the admin API's OpenAPI document and its tenant section."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    """A reference to ``#/components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    """A JSON response with ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: The error answers every endpoint may give.
ERRORS = {
    "400": ok(ref("Error"), "Bad parameter, with the reason"),
    "401": ok(ref("Error"), "Missing or wrong token"),
    "503": ok(ref("Error"), "Database unavailable"),
}
NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
