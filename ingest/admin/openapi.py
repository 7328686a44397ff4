"""The OpenAPI 3.0 document of the admin API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from db.statuses import REPLAYABLE, STATUSES
from ingest.admin.openapi_parts import ERRORS as _ERRORS
from ingest.admin.openapi_parts import NULLABLE_TIME as _NULLABLE_TIME
from ingest.admin.openapi_parts import ok as _ok
from ingest.admin.openapi_parts import ref as _ref
from ingest.admin.openapi_tenants import TENANT_PATHS, TENANT_SCHEMAS

_RANGE = {
    "name": "range",
    "in": "query",
    "required": False,
    "description": "Window ending now: 1-9999 followed by m, h or d; at most 90d.",
    "schema": {"type": "string", "pattern": r"^\d{1,4}[mhd]$", "default": "24h"},
}


def _int_param(name: str, default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "vapi-ingest admin API",
        "version": "1.0.0",
        "description": "Delivery statistics, failures and replay. ADMIN_TOKEN sees all orgs; org tokens "
        "(vapi-ingest tokens create) see their org only, enforced by row-level security.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/reveals": {
            "get": {
                "summary": "The access record: who was shown patient data, when, what, how, from where",
                "parameters": [
                    {
                        "name": "org_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                    {
                        "name": "by",
                        "in": "query",
                        "required": False,
                        "description": "A token id, or text of the recorded name",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    _int_param("limit", 100, 10000),
                ],
                "responses": {
                    "200": _ok(_ref("RevealList")),
                    "403": _ok(_ref("Error"), "An org token: the access record needs an admin token"),
                    **_ERRORS,
                },
            }
        },
        "/api/webhook-metrics/queue-health": {
            "get": {
                "summary": "Queue depth, delayed and dead counts, worker heartbeats, oldest pending age",
                "responses": {"200": _ok(_ref("QueueHealth")), **_ERRORS},
            }
        },
        "/api/webhook-metrics/delivery-stats": {
            "get": {
                "summary": "Per type: received, completed, failed, dead-lettered, success rate, mean processing time",
                "parameters": [_RANGE],
                "responses": {"200": _ok(_ref("DeliveryStats")), **_ERRORS},
            }
        },
        "/api/webhook-metrics/recent-failures": {
            "get": {
                "summary": "Newest failed and dead-lettered deliveries",
                "parameters": [_int_param("limit", 20, 500)],
                "responses": {"200": _ok(_ref("DeliveryList")), **_ERRORS},
            }
        },
        "/api/webhook-metrics/dead-letter-queue": {
            "get": {
                "summary": "Dead letters, newest first, paginated",
                "parameters": [_int_param("page", 1, 100000), _int_param("per_page", 50, 500)],
                "responses": {"200": _ok(_ref("DeadLetterPage")), **_ERRORS},
            }
        },
        "/api/webhook-metrics/processing-time": {
            "get": {
                "summary": "p50/p95/p99 processing time per type",
                "parameters": [_RANGE],
                "responses": {"200": _ok(_ref("ProcessingTime")), **_ERRORS},
            }
        },
        "/api/webhook-metrics/retry-failed/{id}": {
            "post": {
                "summary": "Replay one failed or dead-lettered delivery",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
                ],
                "responses": {
                    "200": _ok(_ref("ReplayResult")),
                    "404": _ok(_ref("Error"), "No such delivery (or another org's)"),
                    "409": _ok(
                        _ref("Error"), "The delivery is not failed or dead_letter, or is a synchronous tool call"
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/webhook-metrics/replay": {
            "post": {
                "summary": "Replay failed or dead-lettered deliveries by filter; dry_run only counts",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReplayRequest")}}},
                "responses": {"200": _ok(_ref("ReplayResult")), **_ERRORS},
            }
        },
        **TENANT_PATHS,
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            **TENANT_SCHEMAS,
            "Delivery": {
                "type": "object",
                "required": ["id", "org_id", "event_type", "event_id", "status", "attempts", "received_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "org_id": {"type": "string", "format": "uuid"},
                    "event_type": {"type": "string"},
                    "event_id": {"type": "string"},
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "attempts": {"type": "integer"},
                    "max_attempts": {"type": "integer"},
                    "received_at": {"type": "string", "format": "date-time"},
                    "last_attempt_at": _NULLABLE_TIME,
                    "completed_at": _NULLABLE_TIME,
                    "error_message": {"type": "string", "nullable": True},
                    "job_id": {"type": "string", "nullable": True},
                    "replay_count": {"type": "integer"},
                    "replayed_at": _NULLABLE_TIME,
                },
            },
            "RevealList": {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "revealed_at", "org_id", "what", "revealed_by", "via"],
                            "properties": {
                                "id": {"type": "integer"},
                                "revealed_at": {"type": "string", "format": "date-time"},
                                "org_id": {"type": "string", "format": "uuid"},
                                "org_name": {"type": "string"},
                                "delivery_id": {"type": "string", "format": "uuid", "nullable": True},
                                "what": {"type": "string"},
                                "revealed_by": {"type": "string"},
                                "via": {"type": "string", "enum": ["console", "api", "cli"]},
                                "token_id": {"type": "string", "format": "uuid", "nullable": True},
                                "client": {"type": "string", "nullable": True},
                            },
                        },
                    }
                },
            },
            "DeliveryList": {
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": _ref("Delivery")}},
            },
            "DeadLetterPage": {
                "type": "object",
                "required": ["items", "total", "page", "per_page"],
                "properties": {
                    "items": {"type": "array", "items": _ref("Delivery")},
                    "total": {"type": "integer"},
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                },
            },
            "QueueHealth": {
                "type": "object",
                "required": ["oldest_pending_age_s", "deliveries_by_status"],
                "properties": {
                    "oldest_pending_age_s": {"type": "number"},
                    "deliveries_by_status": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                        "description": "Exact, but for the admin's completed: the log's live rows as PostgreSQL's"
                        " statistics count them (about a second behind) less the other statuses.",
                    },
                    "queue": {
                        "type": "object",
                        "nullable": True,
                        "description": "Redis (admin token only)",
                        "properties": {
                            "name": {"type": "string"},
                            "depth": {"type": "integer"},
                            "delayed": {"type": "integer"},
                            "dead": {"type": "integer"},
                            "error": {"type": "string"},
                            "workers": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"id": {"type": "string"}, "last_seen_s_ago": {"type": "number"}},
                                },
                            },
                        },
                    },
                    "scheduler": {
                        "type": "object",
                        "nullable": True,
                        "description": "When each scheduler job (sweep, retention) last succeeded (admin token only)",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {
                                "last_success_at": {"type": "string", "format": "date-time"},
                                "age_s": {"type": "number"},
                                "last_rows": {"type": "integer", "nullable": True},
                            },
                        },
                    },
                },
            },
            "DeliveryStats": {
                "type": "object",
                "required": ["since", "types"],
                "properties": {
                    "since": {"type": "string", "format": "date-time"},
                    "types": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string"},
                                "received": {"type": "integer"},
                                "completed": {"type": "integer"},
                                "failed": {"type": "integer"},
                                "dead_lettered": {"type": "integer"},
                                "success_rate": {"type": "number"},
                                "mean_processing_ms": {"type": "number", "nullable": True},
                            },
                        },
                    },
                },
            },
            "ProcessingTime": {
                "type": "object",
                "required": ["since", "types"],
                "properties": {
                    "since": {"type": "string", "format": "date-time"},
                    "types": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string"},
                                "samples": {"type": "integer"},
                                "p50_ms": {"type": "number"},
                                "p95_ms": {"type": "number"},
                                "p99_ms": {"type": "number"},
                            },
                        },
                    },
                },
            },
            "ReplayRequest": {
                "type": "object",
                "additionalProperties": False,
                "description": "Give status or ids. Only failed and dead_letter deliveries are replayed.",
                "properties": {
                    "status": {
                        "oneOf": [
                            {"type": "string", "enum": sorted(REPLAYABLE)},
                            {"type": "array", "items": {"type": "string", "enum": sorted(REPLAYABLE)}},
                        ]
                    },
                    "org_id": {"type": "string", "format": "uuid"},
                    "type": {"type": "string"},
                    "since": {"type": "string", "format": "date-time"},
                    "until": {"type": "string", "format": "date-time"},
                    "error": {"type": "string", "description": "Substring of the last error, case-insensitive"},
                    "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                    "dry_run": {"type": "boolean", "default": False},
                },
            },
            "ReplayResult": {
                "type": "object",
                "required": ["matched", "replayed"],
                "properties": {
                    "matched": {"type": "integer"},
                    "replayed": {"type": "integer"},
                    "refused_tool_calls": {"type": "integer"},
                    "refused_reason": {"type": "string"},
                },
            },
        },
    },
}
