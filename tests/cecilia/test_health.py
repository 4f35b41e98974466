"""Health probes: /health/live touches nothing; /health/ready checks the real PostgreSQL and Redis."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from tests.logs import default_handler_output


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def health_log() -> Iterator[io.StringIO]:
    """What the configured "default" handler writes for the health module during the test, in JSON."""
    with default_handler_output() as stream:
        yield stream


def _health_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["logger"] == "cecilia.observability.health"]


@pytest.fixture
def broken_database() -> Iterator[None]:
    """Make the default connection point at a closed port (a real connection attempt, refused)."""
    original = connections["default"]
    broken = original.__class__({**original.settings_dict, "HOST": "127.0.0.1", "PORT": _closed_port()}, "default")
    connections["default"] = broken
    try:
        yield
    finally:
        connections["default"] = original
        broken.close()


def test_live_answers_ok_without_touching_any_backend(settings: Any) -> None:
    # No database access is allowed in this test (pytest-django would fail it) and Redis points nowhere.
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"

    response = Client().get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_ready_answers_ok_when_postgresql_and_redis_answer() -> None:
    response = Client().get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_ready_names_redis_when_redis_is_down(settings: Any, health_log: io.StringIO) -> None:
    port = _closed_port()
    settings.REDIS_URL = f"redis://:s3cr3tpw@127.0.0.1:{port}/0"

    response = Client().get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}
    (line,) = _health_lines(health_log)
    assert line["level"] == "WARNING"
    assert line["message"].startswith("Readiness check failed: redis (ConnectionError")
    assert "s3cr3tpw" not in health_log.getvalue()


@pytest.mark.django_db
def test_ready_names_the_database_when_postgresql_is_down(broken_database: None, health_log: io.StringIO) -> None:
    response = Client().get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "unavailable", "redis": "ok"}}
    (line,) = _health_lines(health_log)
    assert line["message"].startswith("Readiness check failed: database (OperationalError")


@pytest.mark.django_db
def test_ready_reveals_no_error_text_hosts_or_urls(settings: Any, broken_database: None) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"

    response = Client().get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "unavailable", "redis": "unavailable"}}
    assert b"127.0.0.1" not in response.content


@pytest.mark.parametrize("url", ["/health/live", "/health/ready"])
def test_health_probes_answer_only_get_and_head(url: str) -> None:
    client = Client()

    assert client.post(url).status_code == 405
    assert client.put(url).status_code == 405
    assert client.delete(url).status_code == 405


def test_health_probes_answer_head() -> None:
    response = Client().head("/health/live")

    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/health/live", "/health/ready"])
def test_health_probes_need_no_login_even_when_login_is_required_everywhere(settings: Any, url: str) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]

    response = Client().get(url)

    assert response.status_code == 200
