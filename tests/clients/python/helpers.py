"""Small helpers shared by the client tests."""

import secrets
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest

TIMEOUT = 10  # seconds, for every call
PASSWORD = "correct horse battery staple"


def unique_username(prefix: str = "py") -> str:
    """A username no other run has used: 3-32 characters of [A-Za-z0-9._-]."""
    return f"{prefix}-{secrets.token_hex(6)}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def expect_code(code: grpc.StatusCode, call, request, **kwargs) -> grpc.RpcError:
    """Makes the call and asserts it fails with `code`; returns the error."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT, **kwargs)
    assert caught.value.code() == code, (
        f"expected {code.name}, got {caught.value.code().name}: {caught.value.details()}"
    )
    return caught.value


def assert_uuid_v7(value: str) -> None:
    parsed = uuid.UUID(value)
    assert str(parsed) == value, f"{value!r} is not a canonical UUID"
    assert parsed.version == 7, f"{value!r} is not a UUID v7"


def assert_recent(timestamp, slack: timedelta = timedelta(minutes=1)) -> datetime:
    """The Timestamp is set and within `slack` of now; returns it as an aware datetime."""
    assert timestamp.seconds > 0, "timestamp is not set"
    when = timestamp.ToDatetime(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    assert abs(now - when) < slack, f"{when} is not close to now ({now})"
    return when


def assert_token_pair(tokens) -> None:
    assert tokens.token_type == "Bearer"
    assert tokens.access_token and tokens.refresh_token
    assert tokens.access_token != tokens.refresh_token
    now = datetime.now(timezone.utc)
    access_expiry = tokens.access_expire_time.ToDatetime(tzinfo=timezone.utc)
    refresh_expiry = tokens.refresh_expire_time.ToDatetime(tzinfo=timezone.utc)
    assert now < access_expiry < refresh_expiry
