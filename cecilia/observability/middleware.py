"""Correlation id middleware: every request runs under one id, echoed in the `X-Request-ID` response header.

It also writes the access log: one line per request (method, path, status, duration) through Python logging, so the
line is JSON, carries the correlation id and is masked. Daphne's own access log prints raw query strings straight to
stdout (phone numbers in admin searches included), so daphne runs with `-v 0` and this line replaces it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from cecilia.observability.context import (
    clean_correlation_id,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
# Probes hit every few seconds: their lines are DEBUG so they do not drown the rest.
_QUIET_PREFIXES = ("/health/",)

access_logger = logging.getLogger("cecilia.access")


def request_correlation_id(request: HttpRequest) -> str:
    """Return the id this request runs under: a sane incoming `X-Request-ID` (from a proxy or the caller), or new."""
    return clean_correlation_id(request.META.get(_META_KEY)) or new_correlation_id()


def log_access(request: HttpRequest, response: HttpResponseBase, started: float) -> None:
    """Write the access line for a finished request (call it while the correlation id is still set)."""
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    level = logging.DEBUG if request.path.startswith(_QUIET_PREFIXES) else logging.INFO
    access_logger.log(
        level,
        "%s %s %s %.1fms",
        request.method,
        # The path only: query strings carry what staff searched for (names, phone numbers), often URL-encoded
        # past the masking patterns (`?_changelist_filters=q%3D11%2B98765-4321`).
        request.path,
        response.status_code,
        duration_ms,
        extra={"method": request.method, "status": response.status_code, "duration_ms": duration_ms},
    )


class CorrelationIdMiddleware:
    """Set the correlation id for the duration of the request (sync under WSGI, async under ASGI/daphne).

    The id is also stored as `request.correlation_id`, so code that runs after the context is reset (Django's
    "Not Found" log line, written outside the middleware chain) can still name it. The context variable is always
    reset, even when the view raises, so a worker thread or event loop never carries one request's id into the next.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        started = time.monotonic()
        cid = request_correlation_id(request)
        request.correlation_id = cid  # type: ignore[attr-defined]
        token = set_correlation_id(cid)
        try:
            response = self.get_response(request)
            log_access(request, response, started)  # type: ignore[arg-type]
        finally:
            reset_correlation_id(token)
        response[HEADER] = cid  # type: ignore[index]
        return response  # type: ignore[return-value]

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        started = time.monotonic()
        cid = request_correlation_id(request)
        request.correlation_id = cid  # type: ignore[attr-defined]
        token = set_correlation_id(cid)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
            log_access(request, response, started)
        finally:
            reset_correlation_id(token)
        response[HEADER] = cid
        return response
