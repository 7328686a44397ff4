"""Settings from the environment: defaults, and one clear line naming each bad variable."""

from __future__ import annotations

import uuid

import pytest

from ingest.settings import DEFAULT_IGNORED_TYPES, ConfigError, Settings

BASE = {"VAPI_WEBHOOK_SECRETS": "a, b"}


def test_defaults_match_the_readme():
    """With only a secret set, every default is the documented one."""
    s = Settings.from_env({**BASE, "LOG_FORMAT": "json"})

    assert ("hmac", "sha256", "x-signature", "x-timestamp", "{timestamp}.{body}", "hex", "", 300) == (
        s.auth_scheme,
        s.hmac_algorithm,
        s.hmac_signature_header,
        s.hmac_timestamp_header,
        s.hmac_payload_format,
        s.hmac_encoding,
        s.hmac_signature_prefix,
        s.hmac_tolerance_s,
    )
    assert (b"a", b"b") == s.webhook_secrets
    assert (8000, 2 * 1024 * 1024, 5, 1000, 300000, 60, 5.0) == (
        s.port,
        s.max_body_bytes,
        s.retry_max_attempts,
        s.retry_min_backoff_ms,
        s.retry_max_backoff_ms,
        s.delivery_lease_s,
        s.sweep_interval_s,
    )
    assert frozenset(DEFAULT_IGNORED_TYPES) == s.ignored_types


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"VAPI_AUTH_SCHEME": "basic"}, "VAPI_AUTH_SCHEME"),
        ({"VAPI_HMAC_ALGORITHM": "md5"}, "VAPI_HMAC_ALGORITHM"),
        ({"VAPI_HMAC_ENCODING": "base32"}, "VAPI_HMAC_ENCODING"),
        ({"VAPI_HMAC_PAYLOAD_FORMAT": "{timestamp}"}, "VAPI_HMAC_PAYLOAD_FORMAT"),
        ({"VAPI_DEFAULT_ORG_ID": "clinic-1"}, "VAPI_DEFAULT_ORG_ID"),
        ({"RETRY_MAX_ATTEMPTS": "0"}, "RETRY_MAX_ATTEMPTS"),
        ({"RETRY_MIN_BACKOFF_MS": "5000", "RETRY_MAX_BACKOFF_MS": "10"}, "RETRY_MAX_BACKOFF_MS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"VAPI_ALLOW_UNAUTHENTICATED": "maybe"}, "VAPI_ALLOW_UNAUTHENTICATED"),
        ({"DATABASE_URL": "notaurl"}, "DATABASE_URL: not a postgresql:// URL"),
        ({"DATABASE_URL": "mysql://root@db/x"}, "DATABASE_URL: not a postgresql:// URL"),
        ({"DATABASE_URL": "postgresql://db:99999/x"}, "DATABASE_URL: its port"),
        ({"DATABASE_URL": "postgresql://db/x?sslmode=bogus"}, "DATABASE_URL: sslmode must be one of"),
        ({"REDIS_URL": "garbage"}, "REDIS_URL: not a redis://"),
        ({"CONSOLE_SESSION_KEY": "short"}, "CONSOLE_SESSION_KEY must be 32 random bytes"),
        ({"CONSOLE_ENABLED": "sometimes"}, "CONSOLE_ENABLED"),
        ({"CONSOLE_TRUSTED_PROXIES": "10.0.0.1, proxy.local"}, "CONSOLE_TRUSTED_PROXIES must list IP"),
        ({"CONSOLE_PROXY_HEADER": "x-real-ip"}, "CONSOLE_PROXY_HEADER must be one of"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL: not a redis://"),
        ({"ORG_LIVE_RATE_PER_S": "nan"}, "ORG_LIVE_RATE_PER_S must be a finite number"),
        ({"ORG_LIVE_RATE_PER_S": "-1"}, "ORG_LIVE_RATE_PER_S"),
        ({"ORG_LIVE_BURST": "0"}, "ORG_LIVE_BURST"),
        ({"OVERFLOW_CONCURRENCY": "0"}, "OVERFLOW_CONCURRENCY"),
        ({"SWEEP_INTERVAL_S": "inf"}, "SWEEP_INTERVAL_S must be a finite number"),
    ],
)
def test_bad_value_names_the_variable(env, variable):
    """Each malformed value stops start-up with a message that names its variable."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({**BASE, **env})


def test_trusted_proxies_take_addresses_and_networks():
    """Commas or spaces between entries; a bare address is its own /32 or /128."""
    import ipaddress

    s = Settings.from_env({**BASE, "CONSOLE_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16 2001:db8::/32"})

    assert (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("2001:db8::/32"),
    ) == s.console_trusted_proxies


def test_secret_required_unless_scheme_is_none():
    """hmac, bearer and x-vapi-secret need VAPI_WEBHOOK_SECRETS where webhooks are verified or signed."""
    with pytest.raises(ConfigError, match="VAPI_WEBHOOK_SECRETS"):
        Settings.from_env({"VAPI_AUTH_SCHEME": "bearer"}, webhook=True)


def test_commands_without_webhooks_need_no_secret():
    """migrate, deliveries, tenants... run without VAPI_WEBHOOK_SECRETS (issue 10, point 2)."""
    s = Settings.from_env({"VAPI_AUTH_SCHEME": "hmac"})

    assert () == s.webhook_secrets


def test_scheme_none_refuses_without_explicit_opt_in():
    """VAPI_AUTH_SCHEME=none starts only with VAPI_ALLOW_UNAUTHENTICATED=1."""
    with pytest.raises(ConfigError, match="VAPI_ALLOW_UNAUTHENTICATED"):
        Settings.from_env({"VAPI_AUTH_SCHEME": "none"}, webhook=True)

    s = Settings.from_env({"VAPI_AUTH_SCHEME": "none", "VAPI_ALLOW_UNAUTHENTICATED": "1"}, webhook=True)

    assert "none" == s.auth_scheme


def test_repr_hides_secrets_and_urls():
    """Secrets and connection URLs (which may hold passwords) never appear in repr."""
    s = Settings.from_env(
        {**BASE, "DATABASE_URL": "postgresql://u:hunter2@db/x", "VAPI_DEFAULT_ORG_ID": str(uuid.uuid4())}
    )

    text = repr(s)

    assert "hunter2" not in text
    assert "webhook_secrets" not in text


def test_a_bad_url_error_never_echoes_the_url():
    """The URL may carry a password, so its error names the variable and the problem only."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATABASE_URL": "mysql://u:hunter2@db/x", "REDIS_URL": "x"})

    assert "hunter2" not in str(caught.value)
