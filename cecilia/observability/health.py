"""Liveness and readiness probes for the orchestrator and the load balancer.

`live` answers 200 whenever the process can serve a request and touches no backend: a database outage must not get
every web process restarted. `ready` checks PostgreSQL and Redis with short timeouts and answers 503 naming the
failed check, so traffic is routed away until they are back. Responses carry no error text, host or URL; the cause
goes to the (masked) log. Both are public (probes carry no credentials), GET/HEAD only and never cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"
REDIS_TIMEOUT_SECONDS = 1


def check_database() -> None:
    """Run `SELECT 1` on the default connection; raise on failure.

    Connecting is bounded by the `connect_timeout` in settings.DATABASES (DB_CONNECT_TIMEOUT).
    """
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    """PING settings.REDIS_URL (read at call time) with one-second connect and read timeouts; raise on failure."""
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "redis": check_redis}


def _run(name: str, check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:  # any failure means "not ready"; the class and masked text go to the log
        logger.warning("Readiness check failed: %s (%s: %s)", name, type(exc).__name__, exc)
        if name == "database":
            # Drop a broken connection now rather than on the next request.
            connections["default"].close_if_unusable_or_obsolete()
        return UNAVAILABLE
    return OK


@login_not_required
@never_cache
@require_safe
def live(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok"} while the process serves requests."""
    return JsonResponse({"status": OK})


@login_not_required
@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok", "checks": {...}} when every backend answers, else 503 {"status": "unavailable", ...}."""
    results = {name: _run(name, check) for name, check in CHECKS.items()}
    healthy = all(result == OK for result in results.values())
    return JsonResponse({"status": OK if healthy else UNAVAILABLE, "checks": results}, status=200 if healthy else 503)
