"""The tenant endpoints' part of the admin API's OpenAPI document (admin token only)."""

from __future__ import annotations

from typing import Any

from ingest.admin.openapi_parts import ERRORS as _ERRORS
from ingest.admin.openapi_parts import NULLABLE_TIME as _NULLABLE_TIME
from ingest.admin.openapi_parts import ok as _ok
from ingest.admin.openapi_parts import ref as _ref

_ADMIN_ERRORS = {
    **_ERRORS,
    "403": _ok(_ref("Error"), "An org token: tenant management needs an admin token"),
}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ORG_FILTER = {"name": "org_id", "in": "query", "required": False, "schema": {"type": "string", "format": "uuid"}}


def _route_paths(segment: str, field: str, noun: str) -> dict[str, Any]:
    return {
        f"/api/{segment}": {
            "get": {
                "summary": f"Which org each Vapi {noun} routes to",
                "parameters": [_ORG_FILTER],
                "responses": {"200": _ok(_items(_ref("Route"))), **_ADMIN_ERRORS},
            },
            "post": {
                "summary": f"Route a Vapi {noun} to an org",
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["org_id", field],
                        "properties": {"org_id": {"type": "string", "format": "uuid"}, field: {"type": "string"}},
                    }
                ),
                "responses": {
                    "201": _ok({"type": "object", "required": ["id", "org_id", field]}, "Mapped"),
                    "404": _ok(_ref("Error"), "No such organization"),
                    "409": _ok(_ref("Error"), f"The {noun} routes to an organization already"),
                    **_ADMIN_ERRORS,
                },
            },
        },
        f"/api/{segment}/{{vapi_id}}": {
            "delete": {
                "summary": f"Stop routing a Vapi {noun} (its messages are quarantined from then on)",
                "parameters": [{"name": "vapi_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _ok({"type": "object", "required": ["removed", "org_id"]}),
                    "404": _ok(_ref("Error"), "Not mapped"),
                    **_ADMIN_ERRORS,
                },
            }
        },
    }


def _items(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": schema}}}


TENANT_PATHS: dict[str, Any] = {
    "/api/orgs": {
        "get": {
            "summary": "Organizations with settings and counts of assistants, numbers and live tokens",
            "responses": {"200": _ok(_items(_ref("Org"))), **_ADMIN_ERRORS},
        },
        "post": {
            "summary": "Create an organization",
            "requestBody": _json_body({**_ref("OrgChanges")}),
            "responses": {
                "201": _ok(_ref("OrgDetail"), "Created"),
                "409": _ok(_ref("Error"), "The assistant routes to another organization"),
                **_ADMIN_ERRORS,
            },
        },
    },
    "/api/orgs/{org_id}": {
        "get": {
            "summary": "One organization with its assistants, phone numbers and tokens",
            "parameters": [_path_id("org_id")],
            "responses": {"200": _ok(_ref("OrgDetail")), "404": _ok(_ref("Error"), "No such org"), **_ADMIN_ERRORS},
        },
        "patch": {
            "summary": "Change name, time zone, region, assistant (null clears) or business hours",
            "parameters": [_path_id("org_id")],
            "requestBody": _json_body(_ref("OrgChanges")),
            "responses": {
                "200": _ok(_ref("OrgDetail")),
                "404": _ok(_ref("Error"), "No such org"),
                "409": _ok(_ref("Error"), "The assistant routes to another organization"),
                **_ADMIN_ERRORS,
            },
        },
    },
    **_route_paths("assistants", "assistant_id", "assistant"),
    **_route_paths("phone-numbers", "phone_number_id", "phone number"),
    "/api/tokens": {
        "get": {
            "summary": "Tokens (never their value), operators' admin tokens included; revoked ones carry revoked_at",
            "parameters": [_ORG_FILTER],
            "responses": {"200": _ok(_items(_ref("Token"))), **_ADMIN_ERRORS},
        },
        "post": {
            "summary": "Create an org token or an operator's admin token; the answer is the only time it is shown",
            "requestBody": _json_body(
                {
                    "oneOf": [
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["org_id"],
                            "properties": {
                                "org_id": {"type": "string", "format": "uuid"},
                                "name": {"type": "string"},
                                "admin": {"type": "boolean", "enum": [False]},
                            },
                        },
                        {
                            "type": "object",
                            "description": "An operator's own admin token: every org, recorded under its name",
                            "additionalProperties": False,
                            "required": ["admin", "name"],
                            "properties": {
                                "admin": {"type": "boolean", "enum": [True]},
                                "name": {"type": "string", "minLength": 1, "pattern": r"\S"},
                            },
                        },
                    ]
                }
            ),
            "responses": {
                "201": _ok({"type": "object", "required": ["token"]}, "Created"),
                "404": _ok(_ref("Error"), "No such organization"),
                **_ADMIN_ERRORS,
            },
        },
    },
    "/api/tokens/{token_id}": {
        "delete": {
            "summary": "Revoke an org token: refused from its next request on",
            "parameters": [_path_id("token_id")],
            "responses": {
                "200": _ok({"type": "object", "required": ["revoked"]}),
                "404": _ok(_ref("Error"), "No such live token"),
                **_ADMIN_ERRORS,
            },
        }
    },
}

_HOURS_SCHEMA = {
    "type": "object",
    "description": 'Opening hours per weekday, local time: {"mon": ["09:00", "17:00"]}; a missing day is closed',
    "additionalProperties": False,
    "properties": {
        day: {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string", "pattern": "^\\d\\d:\\d\\d$"}}
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
}
_ORG_PROPERTIES = {
    "id": {"type": "string", "format": "uuid"},
    "name": {"type": "string"},
    "timezone": {"type": "string"},
    "default_region": {"type": "string"},
    "vapi_assistant_id": {"type": "string", "nullable": True},
    "business_hours": _HOURS_SCHEMA,
    "created_at": {"type": "string", "format": "date-time"},
}
TENANT_SCHEMAS: dict[str, Any] = {
    "Org": {
        "type": "object",
        "required": ["id", "name", "timezone", "default_region", "business_hours"],
        "properties": {
            **_ORG_PROPERTIES,
            "assistants": {"type": "integer"},
            "phone_numbers": {"type": "integer"},
            "tokens": {"type": "integer"},
        },
    },
    "OrgDetail": {
        "type": "object",
        "required": [
            "id",
            "name",
            "timezone",
            "default_region",
            "business_hours",
            "assistants",
            "phone_numbers",
            "tokens",
        ],
        "properties": {
            **_ORG_PROPERTIES,
            "assistants": {"type": "array", "items": _ref("Route")},
            "phone_numbers": {"type": "array", "items": _ref("Route")},
            "tokens": {"type": "array", "items": _ref("Token")},
        },
    },
    "OrgChanges": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "timezone": {"type": "string", "description": "IANA name, e.g. Europe/London"},
            "default_region": {"type": "string", "description": "ISO 3166 alpha-2"},
            "vapi_assistant_id": {"type": "string", "nullable": True},
            "business_hours": _HOURS_SCHEMA,
        },
    },
    "Route": {
        "type": "object",
        "required": ["id", "org_id", "vapi_id"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "org_id": {"type": "string", "format": "uuid"},
            "org_name": {"type": "string"},
            "vapi_id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Token": {
        "type": "object",
        "required": ["id", "org_id", "admin", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "org_id": {"type": "string", "format": "uuid", "nullable": True},
            "org_name": {"type": "string", "nullable": True},
            "admin": {"type": "boolean"},
            "name": {"type": "string", "nullable": True},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": _NULLABLE_TIME,
            "revoked_at": _NULLABLE_TIME,
        },
    },
}
