"""Service configuration: one frozen object, built from the environment once.

Only entrypoints (the CLI, the Dramatiq worker set-up) call
:meth:`Settings.from_env`; every other module takes the values it needs as
arguments, so tests build ``Settings(...)`` or pass a dict instead of
patching ``os.environ``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import SplitResult, parse_qs, urlsplit

from ingest.errors import IngestError

#: Vapi's chatty streaming types; acknowledged with 200 and never stored.
DEFAULT_IGNORED_TYPES = (
    "speech-update",
    "conversation-update",
    "model-output",
    "transcript",
    "user-interrupted",
    "voice-input",
    "assistant.speechStarted",
)

AUTH_SCHEMES = ("hmac", "bearer", "x-vapi-secret", "none")
HMAC_ALGORITHMS = ("sha256", "sha512", "sha1")
HMAC_ENCODINGS = ("hex", "base64")
LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Headers a trusted proxy may name the client in (RFC 7239, and the older de facto one).
PROXY_HEADERS = ("x-forwarded-for", "forwarded")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

T = TypeVar("T")


class ConfigError(IngestError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the web, worker and scheduler processes read from the environment.

    Secrets and URLs (which may carry passwords) are excluded from ``repr`` so
    that logging the object never leaks them.
    """

    database_url: str = field(default="postgresql://postgres@127.0.0.1:5432/vapi_ingest", repr=False)
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    port: int = 8000
    #: Web processes sharing PORT (SO_REUSEPORT); the web process is CPU-bound, so one per core.
    web_processes: int = 1
    auth_scheme: str = "hmac"
    allow_unauthenticated: bool = False
    #: Any one of these verifies a request, so secrets can be rotated.
    webhook_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    #: PEM files of the RSA private keys that open Vapi's encrypted tool arguments: the current key first,
    #: older ones kept during a rotation (checked at start: each must load).
    vapi_encryption_private_keys: tuple[str, ...] = ()
    hmac_algorithm: str = "sha256"
    hmac_signature_header: str = "x-signature"
    hmac_timestamp_header: str = "x-timestamp"
    hmac_payload_format: str = "{timestamp}.{body}"
    hmac_encoding: str = "hex"
    hmac_signature_prefix: str = ""
    hmac_tolerance_s: int = 300
    bearer_header: str = "Authorization"
    default_org_id: uuid.UUID | None = None
    ignored_types: frozenset[str] = frozenset(DEFAULT_IGNORED_TYPES)
    max_body_bytes: int = 2 * 1024 * 1024
    #: Seconds a request body may take to arrive; then 408 and the connection closes.
    body_timeout_s: float = 10.0
    #: Seconds a connection may idle between requests, or take to send its headers, before it is closed.
    keepalive_timeout_s: float = 15.0
    #: Seconds a synchronous tool call may run; below Vapi's default 20 s server.timeoutSeconds.
    tool_call_timeout_s: float = 15.0
    #: Tool calls accepted in one message; more are refused (413) before anything runs.
    max_tool_calls: int = 32
    retry_max_attempts: int = 5
    retry_min_backoff_ms: int = 1_000
    retry_max_backoff_ms: int = 300_000
    delivery_lease_s: int = 60
    sweep_interval_s: float = 5.0
    worker_processes: int = 2
    worker_threads: int = 8
    worker_metrics_port: int = 9191
    #: Replay messages processed at once per worker process; live ones are never limited.
    replay_concurrency: int = 1
    #: Overflow messages (a clinic's deliveries beyond its live rate) processed at once per worker process.
    overflow_concurrency: int = 4
    #: New deliveries per second one clinic sends on the live lane, per web process; beyond it (after a
    #: burst of ``org_live_burst``) they go on the overflow lane, after other clinics'. 0: no limit.
    org_live_rate_per_s: float = 20.0
    org_live_burst: int = 50
    db_pool_max_size: int = 20
    #: Seconds any one statement of the web process may take before it gives up (and the request gets a
    #: 503): a frozen or overloaded PostgreSQL must not hold Vapi's requests past its 20 s timeout.
    db_command_timeout_s: float = 5.0
    #: Bearer token of the admin API that sees every org; none means org tokens only.
    admin_token: str | None = field(default=None, repr=False)
    #: Serve the operator console under /console/.
    console_enabled: bool = True
    #: The console is served over TLS (directly or behind a proxy): its cookie is always ``Secure``.
    console_tls: bool = False
    #: Proxies (addresses or networks) whose ``console_proxy_header`` names the console's client; the
    #: sign-in limiter counts per client, so behind a proxy it must know the proxy, or counts the proxy.
    console_trusted_proxies: tuple[Network, ...] = ()
    #: The one header the trusted proxies write the client into: ``x-forwarded-for`` or ``forwarded``.
    console_proxy_header: str = "x-forwarded-for"
    #: 32 bytes that encrypt console session cookies; one is made at start when unset (sessions then end
    #: with the process).
    console_session_key: bytes | None = field(default=None, repr=False)
    retention_days: int = 30
    scheduler_metrics_port: int = 9192
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, webhook: bool = False) -> Settings:
        """Build settings from environment variables (names as in the README table).

        Every variable that is set is validated, whatever the command, so a typo
        is never silently ignored; but only a command that signs or verifies
        webhooks (``serve``, ``send``: ``webhook=True``) *requires* secrets.

        Args:
            environ: The variables to read; ``os.environ`` when omitted.
            webhook: Require what authenticating Vapi's requests needs.

        Raises:
            ConfigError: naming the first variable that is malformed, or missing
                where the chosen auth scheme needs it.
        """
        env = os.environ if environ is None else environ
        r = _Reader(env)
        scheme = r.choice("VAPI_AUTH_SCHEME", AUTH_SCHEMES, "hmac")
        secrets = tuple(s.strip().encode() for s in r.text("VAPI_WEBHOOK_SECRETS", "").split(",") if s.strip())
        if webhook and scheme != "none" and not secrets:
            raise ConfigError(
                f"VAPI_WEBHOOK_SECRETS is required when VAPI_AUTH_SCHEME={scheme} (comma-separated; any one verifies)"
            )
        allow_unauth = r.flag("VAPI_ALLOW_UNAUTHENTICATED", False)
        if webhook and scheme == "none" and not allow_unauth:
            raise ConfigError(
                "VAPI_AUTH_SCHEME=none accepts unauthenticated requests; set VAPI_ALLOW_UNAUTHENTICATED=1 to confirm"
            )
        ignored = r.text("VAPI_IGNORED_TYPES", ",".join(DEFAULT_IGNORED_TYPES))
        min_backoff = r.integer("RETRY_MIN_BACKOFF_MS", 1_000, minimum=0)
        max_backoff = r.integer("RETRY_MAX_BACKOFF_MS", 300_000, minimum=0)
        if max_backoff < min_backoff:
            raise ConfigError(
                f"RETRY_MAX_BACKOFF_MS must be >= RETRY_MIN_BACKOFF_MS ({min_backoff}), got {max_backoff}"
            )
        return cls(
            database_url=r.url("DATABASE_URL", cls.database_url, check_database_url),
            redis_url=r.url("REDIS_URL", cls.redis_url, check_redis_url),
            port=r.integer("PORT", 8000, minimum=1, maximum=65535),
            web_processes=r.integer("WEB_PROCESSES", 1, minimum=1, maximum=64),
            auth_scheme=scheme,
            allow_unauthenticated=allow_unauth,
            webhook_secrets=secrets,
            hmac_algorithm=r.choice("VAPI_HMAC_ALGORITHM", HMAC_ALGORITHMS, "sha256"),
            hmac_signature_header=r.text("VAPI_HMAC_SIGNATURE_HEADER", "x-signature", required=True),
            hmac_timestamp_header=r.text("VAPI_HMAC_TIMESTAMP_HEADER", "x-timestamp", required=True),
            hmac_payload_format=r.payload_format("VAPI_HMAC_PAYLOAD_FORMAT", "{timestamp}.{body}"),
            hmac_encoding=r.choice("VAPI_HMAC_ENCODING", HMAC_ENCODINGS, "hex"),
            hmac_signature_prefix=r.text("VAPI_HMAC_SIGNATURE_PREFIX", ""),
            hmac_tolerance_s=r.integer("VAPI_HMAC_TOLERANCE_S", 300, minimum=1),
            bearer_header=r.text("VAPI_BEARER_HEADER", "Authorization", required=True),
            default_org_id=r.parse("VAPI_DEFAULT_ORG_ID", None, uuid.UUID, "a UUID"),
            vapi_encryption_private_keys=r.private_keys("VAPI_ENCRYPTION_PRIVATE_KEYS"),
            ignored_types=frozenset(t.strip() for t in ignored.split(",") if t.strip()),
            max_body_bytes=r.integer("VAPI_MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1024),
            body_timeout_s=r.number("VAPI_BODY_TIMEOUT_S", 10.0, minimum=0.1),
            keepalive_timeout_s=r.number("HTTP_KEEPALIVE_TIMEOUT_S", 15.0, minimum=0.1),
            tool_call_timeout_s=r.number("TOOL_CALL_TIMEOUT_S", 15.0, minimum=0.1),
            max_tool_calls=r.integer("VAPI_MAX_TOOL_CALLS", 32, minimum=1, maximum=1000),
            retry_max_attempts=r.integer("RETRY_MAX_ATTEMPTS", 5, minimum=1, maximum=100),
            retry_min_backoff_ms=min_backoff,
            retry_max_backoff_ms=max_backoff,
            delivery_lease_s=r.integer("DELIVERY_LEASE_S", 60, minimum=1),
            sweep_interval_s=r.number("SWEEP_INTERVAL_S", 5.0, minimum=0.1),
            worker_processes=r.integer("WORKER_PROCESSES", 2, minimum=1, maximum=64),
            worker_threads=r.integer("WORKER_THREADS", 8, minimum=1, maximum=256),
            worker_metrics_port=r.integer("WORKER_METRICS_PORT", 9191, minimum=1, maximum=65535),
            replay_concurrency=r.integer("REPLAY_CONCURRENCY", 1, minimum=1, maximum=256),
            overflow_concurrency=r.integer("OVERFLOW_CONCURRENCY", 4, minimum=1, maximum=256),
            org_live_rate_per_s=r.number("ORG_LIVE_RATE_PER_S", 20.0, minimum=0),
            org_live_burst=r.integer("ORG_LIVE_BURST", 50, minimum=1),
            db_pool_max_size=r.integer("DB_POOL_MAX_SIZE", 20, minimum=2, maximum=500),
            db_command_timeout_s=r.number("DB_COMMAND_TIMEOUT_S", 5.0, minimum=0.1),
            admin_token=r.admin_token("ADMIN_TOKEN"),
            console_enabled=r.flag("CONSOLE_ENABLED", True),
            console_tls=r.flag("CONSOLE_TLS", False),
            console_trusted_proxies=r.networks("CONSOLE_TRUSTED_PROXIES"),
            console_proxy_header=r.choice("CONSOLE_PROXY_HEADER", PROXY_HEADERS, "x-forwarded-for"),
            console_session_key=r.session_key("CONSOLE_SESSION_KEY"),
            retention_days=r.integer("RETENTION_DAYS", 30, minimum=1),
            scheduler_metrics_port=r.integer("SCHEDULER_METRICS_PORT", 9192, minimum=1, maximum=65535),
            log_level=r.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            log_format=r.choice("LOG_FORMAT", LOG_FORMATS, _default_log_format()),
        )


def _default_log_format() -> str:
    """JSON for machines, console lines for a person at a terminal (structlog's advice)."""
    return "console" if os.isatty(2) else "json"


#: libpq's sslmode values (asyncpg accepts the same).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_database_url(url: str) -> str | None:
    """What is wrong with a PostgreSQL URL's form, or None; the server may still refuse it."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return "not a postgresql:// URL"
    problem = _port_problem(parts)
    if problem:
        return problem
    for mode in parse_qs(parts.query).get("sslmode", []):
        if mode not in SSL_MODES:
            return f"sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}"
    return None


def check_redis_url(url: str) -> str | None:
    """What is wrong with a Redis URL's form (redis-py's schemes), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "not a redis://, rediss:// or unix:// URL"
    return _port_problem(parts)


def _port_problem(parts: SplitResult) -> str | None:
    try:
        parts.port  # noqa: B018 - parsing is the check
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return None


class _Reader:
    """Reads typed values; every error names the variable and what it expected."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str, *, required: bool = False) -> str:
        value = self.env.get(name)
        if value is None or value == "":
            if required and value == "":
                raise ConfigError(f"{name} must not be empty")
            return default
        return value

    def url(self, name: str, default: str, check: Callable[[str], str | None]) -> str:
        value = self.text(name, default).strip()
        problem = check(value)
        if problem:
            # Never echo the URL: it may carry a password.
            raise ConfigError(f"{name}: {problem}")
        return value

    def parse(self, name: str, default: T, conv: Callable[[str], T], what: str) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return conv(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {raw!r}") from None

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.parse(name, default, int, "an integer")
        self._bounds(name, value, minimum, maximum)
        return value

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        value = self.parse(name, default, float, "a number")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        self._bounds(name, value, minimum, None)
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be 1 or 0 (true/false), got {raw!r}")

    def choice(self, name: str, options: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
        return value

    def private_keys(self, name: str) -> tuple[str, ...]:
        paths = tuple(p.strip() for p in self.env.get(name, "").split(",") if p.strip())
        if not paths:
            return ()
        from workers.encryption import Keyring  # cryptography only where keys are configured

        try:
            Keyring.from_files(paths)  # read now, so a bad key stops start-up instead of a caller's booking
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        return paths

    def networks(self, name: str) -> tuple[Network, ...]:
        found: list[Network] = []
        for part in self.env.get(name, "").replace(",", " ").split():
            try:
                found.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(
                    f"{name} must list IP addresses or networks (e.g. 10.0.0.5, 10.1.0.0/16), got {part!r}"
                ) from None
        return tuple(found)

    def admin_token(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        if not value:
            return None
        if len(value) < 16:
            raise ConfigError(f"{name} must be at least 16 characters (it guards every org's data)")
        return value

    def session_key(self, name: str) -> bytes | None:
        raw = self.env.get(name, "").strip()
        if not raw:
            return None
        try:
            key = base64.urlsafe_b64decode(raw.encode())
        except (ValueError, binascii.Error):
            key = b""
        if len(key) != 32:
            raise ConfigError(
                f"{name} must be 32 random bytes in url-safe base64 (44 characters), e.g. from: "
                'python -c "import os, base64; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
            )
        return key

    def payload_format(self, name: str, default: str) -> str:
        value = self.text(name, default, required=True)
        if "{body}" not in value:
            raise ConfigError(f"{name} must contain the {{body}} placeholder, got {value!r}")
        return value

    @staticmethod
    def _bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be <= {maximum}, got {value}")
