"""API errors: every DRF error answers {code, message, details, correlation_id}, whatever raised it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.test import Client
from django.urls import path
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    parser_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from cecilia.api import ServiceUnavailable, api_error
from tests.logs import default_handler_output


# --- A tiny API, routed by this module (pytest.mark.urls) ---------------------------------------------------------
class AppointmentSerializer(serializers.Serializer):
    professional_id = serializers.IntegerField()
    starts_at = serializers.DateTimeField()


class DenyAll(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return False


class AlwaysThrottled(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        return False

    def wait(self) -> float:
        return 42


def public(view: Any) -> Any:
    """No authentication or permission: these views exist to raise errors."""
    return authentication_classes([])(permission_classes([AllowAny])(view))


@api_view(["POST"])
@public
@parser_classes([JSONParser])
def book(request: Request) -> Response:
    serializer = AppointmentSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return Response({"ok": True})


@api_view(["POST"])
@public
def raw_body(request: Request) -> Response:
    return Response({"size": len(request.body)})


@api_view(["GET"])
@authentication_classes([BasicAuthentication])
@permission_classes([IsAuthenticated])
def needs_login(request: Request) -> Response:
    return Response({})


@api_view(["GET"])
@authentication_classes([])
@permission_classes([DenyAll])
def forbidden(request: Request) -> Response:
    return Response({})


@api_view(["GET"])
@public
def missing(request: Request) -> Response:
    raise Http404("No Patient matches the given query.")


@api_view(["GET"])
@public
@throttle_classes([AlwaysThrottled])
def throttled(request: Request) -> Response:
    return Response({})


@api_view(["GET"])
@public
def crashes(request: Request) -> Response:
    raise RuntimeError("provider said no to 5511987654321 with apikey=EVO-KEY-123")


@api_view(["GET"])
@public
def unavailable(request: Request) -> Response:
    raise ServiceUnavailable(retry_after=30)


@api_view(["GET"])
@public
def other_clinic(request: Request) -> Response:
    raise PermissionDenied("This conversation belongs to another clinic.", code="clinic_mismatch")


@api_view(["POST"])
@public
def slot_taken(request: Request) -> Response:
    raise serializers.ValidationError("Horário indisponível.")


@api_view(["POST"])
@public
def suspicious(request: Request) -> Response:
    raise SuspiciousOperation("Too many fields")


@api_view(["POST"])
@public
def bad_signature(request: Request) -> Response:
    return api_error("invalid_signature", "The webhook signature does not match.", 401, {"header": "X-Signature"})


urlpatterns = [
    path("book", book),
    path("raw", raw_body),
    path("login", needs_login),
    path("forbidden", forbidden),
    path("missing", missing),
    path("throttled", throttled),
    path("crash", crashes),
    path("unavailable", unavailable),
    path("other-clinic", other_clinic),
    path("webhook", bad_signature),
    path("slot", slot_taken),
    path("suspicious", suspicious),
]
pytestmark = pytest.mark.urls(__name__)


@pytest.fixture
def client() -> Client:
    # raise_request_exception: an exception escaping the handler would fail the test instead of becoming a 500.
    return Client(raise_request_exception=True, headers={"X-Request-ID": "req-42"})


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """What the configured "default" handler writes during the test, in JSON."""
    with default_handler_output() as stream:
        yield stream


def _post_json(client: Client, url: str, body: str) -> Any:
    return client.post(url, data=body, content_type="application/json")


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == status
    assert set(body) == {"code", "message", "details", "correlation_id"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["correlation_id"] == "req-42" == response["X-Request-ID"]
    return body


def test_validation_errors_list_the_fields_in_details(client: Client) -> None:
    response = _post_json(client, "/book", json.dumps({"professional_id": "abc"}))

    body = _assert_error(response, 400, "validation_error")
    assert set(body["details"]) == {"professional_id", "starts_at"}
    assert isinstance(body["details"]["professional_id"], list)


def test_a_validation_error_without_fields_goes_under_non_field_errors(client: Client) -> None:
    body = _assert_error(client.post("/slot"), 400, "validation_error")

    assert body["details"] == {"non_field_errors": ["Horário indisponível."]}


def test_djangos_suspicious_operations_are_400_bad_request(client: Client) -> None:
    _assert_error(client.post("/suspicious"), 400, "bad_request")


def test_malformed_json_is_a_parse_error(client: Client) -> None:
    body = _assert_error(_post_json(client, "/book", "{not json"), 400, "parse_error")

    assert body["details"] == {}


def test_an_unsupported_content_type_is_415(client: Client) -> None:
    response = client.post("/book", data="professional_id=1", content_type="text/plain")

    _assert_error(response, 415, "unsupported_media_type")


def test_a_body_over_the_upload_limit_is_413(client: Client, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    response = _post_json(client, "/raw", json.dumps({"padding": "x" * 500}))

    _assert_error(response, 413, "payload_too_large")


def test_missing_credentials_are_401_with_a_challenge(client: Client) -> None:
    response = client.get("/login")

    _assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Basic")


@pytest.mark.django_db
def test_wrong_credentials_are_401_authentication_failed(client: Client) -> None:
    response = client.get("/login", headers={"Authorization": "Basic bm9ib2R5Om5vdGhpbmc="})

    _assert_error(response, 401, "authentication_failed")


def test_a_denied_permission_is_403(client: Client) -> None:
    _assert_error(client.get("/forbidden"), 403, "permission_denied")


def test_a_view_can_give_its_own_code(client: Client) -> None:
    body = _assert_error(client.get("/other-clinic"), 403, "clinic_mismatch")

    assert body["message"] == "This conversation belongs to another clinic."


def test_djangos_http404_is_a_404_not_found(client: Client) -> None:
    _assert_error(client.get("/missing"), 404, "not_found")


def test_a_wrong_method_is_405(client: Client) -> None:
    response = client.get("/book")

    _assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_throttling_is_429_with_retry_after(client: Client) -> None:
    response = client.get("/throttled")

    body = _assert_error(response, 429, "throttled")
    assert body["details"] == {"retry_after": 42}
    assert response["Retry-After"] == "42"


def test_service_unavailable_is_503_with_retry_after(client: Client) -> None:
    response = client.get("/unavailable")

    body = _assert_error(response, 503, "service_unavailable")
    assert body["details"] == {"retry_after": 30}
    assert response["Retry-After"] == "30"


def test_an_unexpected_exception_is_a_500_without_internals_and_a_masked_traceback_in_the_log(
    client: Client, log_stream: io.StringIO
) -> None:
    response = client.get("/crash")

    body = _assert_error(response, 500, "internal_error")
    assert body["details"] == {}
    assert b"RuntimeError" not in response.content
    assert b"provider said no" not in response.content
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    (api_line,) = [line for line in lines if line["logger"] == "cecilia.api"]
    assert api_line["level"] == "ERROR"
    assert api_line["message"] == "Unhandled exception in API view: GET /crash"
    assert api_line["correlation_id"] == "req-42"
    assert "Traceback (most recent call last)" in api_line["exception"]
    assert "RuntimeError: provider said no to [redacted:number] with apikey=[redacted]" in api_line["exception"]
    assert "987654321" not in log_stream.getvalue()
    assert "EVO-KEY-123" not in log_stream.getvalue()


def test_api_error_builds_the_same_shape_for_views_that_answer_without_raising(client: Client) -> None:
    body = _assert_error(client.post("/webhook"), 401, "invalid_signature")

    assert body["message"] == "The webhook signature does not match."
    assert body["details"] == {"header": "X-Signature"}
