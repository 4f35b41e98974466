"""One error shape for every API response (settings: REST_FRAMEWORK["EXCEPTION_HANDLER"]).

Every DRF error answers `{"code": ..., "message": ..., "details": ..., "correlation_id": ...}`:
- `code`: a stable machine code (`validation_error`, `parse_error`, `not_authenticated`, `permission_denied`,
  `not_found`, `method_not_allowed`, `unsupported_media_type`, `payload_too_large`, `throttled`,
  `service_unavailable`, `internal_error`, or the code a view passed to the exception);
- `message`: one human sentence (translated with the request's language);
- `details`: field errors for validation errors, `{"retry_after": seconds}` when the client should wait, else `{}`;
- `correlation_id`: the request's id, also in the `X-Request-ID` header, for support and the logs.
Unexpected exceptions become a 500 `internal_error` with no exception text; the traceback goes to the masked log.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from cecilia.observability.context import get_correlation_id

logger = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


class ServiceUnavailable(exceptions.APIException):
    """503: our own transient failure (database or Redis down); the caller should retry, after `retry_after` s."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _("Service temporarily unavailable, try again later.")
    default_code = "service_unavailable"

    def __init__(self, detail: Any = None, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail, code)
        if retry_after is not None:
            self.wait = retry_after  # DRF turns `wait` into a Retry-After header


class PayloadTooLarge(exceptions.APIException):
    """413: the request body exceeds what we accept (Django raises RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE
    when a view reads `request.body`; this handler maps it here)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("Request body too large.")
    default_code = "payload_too_large"


class BadRequest(exceptions.APIException):
    """400 for Django's SuspiciousOperation family (too many fields, a malformed multipart body, ...)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Bad request.")
    default_code = "bad_request"


def error_body(code: str, message: str, details: Any = None, correlation_id: str | None = None) -> dict[str, Any]:
    """Return the error body every API error uses; the correlation id defaults to the current one."""
    return {
        "code": code,
        "message": str(message),
        "details": {} if details is None else details,
        "correlation_id": correlation_id or get_correlation_id(),
    }


def api_error(
    code: str, message: str, status: int, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    """Return an error Response in the standard shape, for views that answer an error without raising."""
    return Response(error_body(code, message, details), status=status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception handler: every exception a view raises becomes a standard error body (never None)."""
    request_cid = getattr(context.get("request"), "correlation_id", None)
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        return _internal_error(exc, context, request_cid)
    response = drf_exception_handler(api_exc, context)  # sets WWW-Authenticate / Retry-After and the rollback
    if response is None:  # DRF answers every APIException; this only guards against a future change there
        return _internal_error(exc, context, request_cid)
    code, message, details = _describe(api_exc)
    response.data = error_body(code, message, details, get_correlation_id() or request_cid)
    return response


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    """Map the Django exceptions a view may raise to API exceptions; None for anything unexpected."""
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, SuspiciousOperation):
        return BadRequest()
    return None


def _describe(exc: exceptions.APIException) -> tuple[str, str, Any]:
    """Return (code, message, details) for an API exception."""
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        details = detail if isinstance(detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: detail}
        return "validation_error", str(exceptions.ValidationError.default_detail), details
    if isinstance(exc.detail, dict | list):  # a view raised with structured detail: keep it as details
        return exc.default_code, str(exc.default_detail), exc.detail
    code = getattr(exc.detail, "code", None) or exc.default_code
    wait = getattr(exc, "wait", None)
    return code, str(exc.detail), {"retry_after": int(wait)} if wait else {}


def _internal_error(exc: Exception, context: dict[str, Any], request_cid: str | None) -> Response:
    request = context.get("request")
    logger.error(
        "Unhandled exception in API view: %s %s",
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),  # the path only: query strings are where personal data hides
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    set_rollback()
    body = error_body(
        INTERNAL_ERROR,
        _("An unexpected error occurred. Quote the correlation id when reporting it."),
        correlation_id=get_correlation_id() or request_cid,
    )
    return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
