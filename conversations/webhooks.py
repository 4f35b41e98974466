"""WhatsApp webhook endpoints: verify, store, enqueue, answer fast. Parsing for real happens in a task.

Answers, so each provider does the right thing:
* 200 — stored (or a redelivery of something stored), or acknowledged and ignored (groups, stories, unused events).
* 400 — not JSON, or a verified body missing what its event needs: the provider must not retry it.
* 401 — the clinic's secret does not match; nothing is stored or enqueued.
* 404 — no clinic has this instance / phone number id.
* 413 — larger than WHATSAPP_WEBHOOK_MAX_BYTES.
* 503 — our own database is unavailable: the provider retries later. (Redis down is not an error here: the event
  is stored, and the relay enqueues it once Redis is back.)
Error bodies are `{code, message, details, correlation_id}` (cecilia.api).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, transaction
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cecilia.api import api_error
from cecilia.models import Clinic, WhatsAppProvider
from conversations.channel import channel_provider, clinic_for_instance
from conversations.services import inbound_event_store
from conversations.tasks import inbound_event_enqueue
from integrations.whatsapp.base import Ignored, MalformedPayload
from integrations.whatsapp.base import WhatsAppProvider as Provider
from integrations.whatsapp.meta_cloud import MetaCloudProvider

logger = logging.getLogger(__name__)

META_MAX_BODY_BYTES = 3 * 1024 * 1024


class _Rejected(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _read_json(request: Request, limit: int) -> tuple[bytes, Any]:
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # Read the stream ourselves: the raw bytes are what Meta signs, and Django's own body limit (made for forms)
    # would turn a large media webhook into a 400.
    raw = request._request.read(limit + 1) if declared <= limit else b""
    if declared > limit or len(raw) > limit:
        raise _Rejected(
            api_error(
                "payload_too_large",
                _("The webhook body is too large."),
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                {"max_bytes": limit},
            )
        )
    try:
        return raw, json.loads(raw)
    except RecursionError:
        raise _Rejected(
            api_error("parse_error", _("The webhook body is not valid JSON."), status.HTTP_400_BAD_REQUEST)
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Rejected(
            api_error(
                "parse_error",
                _("The webhook body is not valid JSON."),
                status.HTTP_400_BAD_REQUEST,
                {"error": str(exc)[:200]},
            )
        ) from None


class WhatsAppWebhook(APIView):
    """Base for one provider's webhook. Subclasses say how to find the clinic(s) a body is for."""

    authentication_classes: list = []  # providers authenticate with the clinic's secret, checked below
    permission_classes = [AllowAny]
    throttle_classes: list = []
    provider: str = ""

    def instances(self, payload: Any) -> list[str]:
        raise NotImplementedError

    def payload_for(self, clinic: Clinic, payload: Any) -> Any:
        """The part of the body that is this clinic's business (all of it, unless the provider batches clinics)."""
        return payload

    def max_body_bytes(self) -> int:
        """The body is read and parsed before the sender is known: keep it to what the provider can send."""
        return settings.WHATSAPP_WEBHOOK_MAX_BYTES

    def post(self, request: Request, suffix: str = "") -> Response:
        try:
            raw, payload = _read_json(request, self.max_body_bytes())
            clinics = self._clinics(self.instances(payload))
            # Every clinic named in the body must authenticate before anything is stored. One adapter per clinic
            # for the whole request: building it decrypts the clinic's secrets.
            providers = {clinic.pk: channel_provider(clinic) for clinic in clinics}
            for clinic in clinics:
                self._authenticate(clinic, providers[clinic.pk], raw, request.headers, payload)
            # One clinic (nearly every webhook): its single INSERT commits on its own. A batch for several clinics
            # (Meta) is stored all or nothing, so a retry never finds half of it.
            with transaction.atomic() if len(clinics) > 1 else contextlib.nullcontext():
                results = [
                    self._store(clinic, providers[clinic.pk], self.payload_for(clinic, payload)) for clinic in clinics
                ]
        except _Rejected as rejected:
            return rejected.response
        except DataError as exc:
            # Valid JSON PostgreSQL will not keep (a NUL character in a text): the provider must not retry it.
            logger.warning("Webhook refused: data the database cannot store (%s)", type(exc.__cause__).__name__)
            return api_error(
                "malformed_payload",
                _("The webhook body holds data that cannot be stored."),
                status.HTTP_400_BAD_REQUEST,
            )
        except DatabaseError as exc:
            # The type only: a database error's text can quote the row, i.e. a patient's message.
            logger.error("Webhook not stored: database unavailable (%s)", type(exc).__name__)
            return api_error(
                "service_unavailable",
                _("Temporarily unavailable, retry later."),
                status.HTTP_503_SERVICE_UNAVAILABLE,
                {"retry_after": 30},
            )
        return Response({"status": "ok", "results": results})

    def _clinics(self, instances: list[str]) -> list[Clinic]:
        clinics = [clinic for name in instances if (clinic := clinic_for_instance(self.provider, name))]
        if not clinics:
            raise _Rejected(
                api_error("unknown_instance", _("No clinic uses this WhatsApp channel."), status.HTTP_404_NOT_FOUND)
            )
        # A batch may also speak for numbers no clinic here uses: those parts are acknowledged and dropped.
        return clinics

    def _authenticate(self, clinic: Clinic, provider: Provider, raw: bytes, headers: Any, payload: Any) -> None:
        if not provider.verify_webhook(raw, headers, payload):
            logger.warning(
                "Webhook refused: bad credentials", extra={"clinic_id": clinic.pk, "provider": self.provider}
            )
            raise _Rejected(
                api_error(
                    "not_authenticated", _("Webhook credentials are missing or wrong."), status.HTTP_401_UNAUTHORIZED
                )
            )

    def _store(self, clinic: Clinic, provider: Provider, payload: Any) -> str:
        try:
            # Parsed here only to refuse what the task could never process (400: the provider stops retrying);
            # the task parses again from the stored row.
            events = provider.parse_webhook(payload)
            identity = provider.event_identity(payload)
        except MalformedPayload as exc:
            raise _Rejected(
                api_error("malformed_payload", str(exc), status.HTTP_400_BAD_REQUEST, exc.details)
            ) from None
        if all(isinstance(event, Ignored) for event in events):
            # Group chats, stories, newsletters and events Cecilia does not use: acknowledged, never stored (they
            # carry other people's data and nothing to do).
            return "ignored"
        stored = inbound_event_store(
            clinic=clinic,
            provider=self.provider,
            event_type=_event_type(payload),
            dedupe_key=identity,
            payload=_without_credentials(payload),
        )
        if stored is None:
            return "duplicate"
        transaction.on_commit(lambda: inbound_event_enqueue(stored.pk))
        return "stored"


def _without_credentials(payload: Any) -> Any:
    """The body to keep: Evolution puts the instance token in `apikey`; it was checked, and is not stored."""
    if isinstance(payload, dict) and "apikey" in payload:
        return {key: value for key, value in payload.items() if key != "apikey"}
    return payload


def _event_type(payload: Any) -> str:
    if isinstance(payload, dict):
        if "event" in payload:
            return str(payload["event"])
        if payload.get("object") == "whatsapp_business_account":
            return "meta.batch"
    return "unknown"


class EvolutionWebhook(WhatsAppWebhook):
    """`/webhooks/whatsapp/evolution/` and Evolution's by-events URLs (`…/evolution/messages-upsert`)."""

    provider = WhatsAppProvider.EVOLUTION

    def instances(self, payload: Any) -> list[str]:
        instance = payload.get("instance") if isinstance(payload, dict) else None
        if not isinstance(instance, str) or not instance:
            raise _Rejected(
                api_error(
                    "malformed_payload",
                    _("The body names no Evolution instance."),
                    status.HTTP_400_BAD_REQUEST,
                    {"field": "instance"},
                )
            )
        return [instance]


class MetaWebhook(WhatsAppWebhook):
    """`/webhooks/whatsapp/meta/`: the GET verification handshake and signed POSTs (batches per phone number)."""

    provider = WhatsAppProvider.META

    def instances(self, payload: Any) -> list[str]:
        ids = MetaCloudProvider.phone_number_ids(payload)
        if not ids:
            raise _Rejected(
                api_error(
                    "malformed_payload",
                    _("The body names no WhatsApp phone number id."),
                    status.HTTP_400_BAD_REQUEST,
                    {"field": "entry[].changes[].value.metadata"},
                )
            )
        return sorted(set(ids))

    def max_body_bytes(self) -> int:
        # Meta sends media by id, never inline; its webhook bodies stay under 3 MB.
        return min(settings.WHATSAPP_WEBHOOK_MAX_BYTES, META_MAX_BODY_BYTES)

    def payload_for(self, clinic: Clinic, payload: Any) -> Any:
        """Only this clinic's changes: one Meta app may batch several clinics' numbers, and each clinic keeps (and
        its staff may read) nothing of another's patients."""
        entries = []
        for entry in payload.get("entry") or []:
            changes = [
                change
                for change in (entry.get("changes") or [])
                if isinstance(change, dict)
                and str(((change.get("value") or {}).get("metadata") or {}).get("phone_number_id"))
                == clinic.whatsapp_instance
            ]
            if changes:
                entries.append({**entry, "changes": changes})
        return {**payload, "entry": entries}

    def get(self, request: Request) -> HttpResponse | Response:
        mode = request.query_params.get("hub.mode", "")
        token = request.query_params.get("hub.verify_token", "")
        challenge = request.query_params.get("hub.challenge", "")
        if mode != "subscribe" or not token or not challenge:
            return api_error("malformed_request", _("Not a webhook verification request."), status.HTTP_400_BAD_REQUEST)
        for clinic in Clinic.objects.filter(whatsapp_provider=WhatsAppProvider.META).exclude(whatsapp_instance=""):
            answer = channel_provider(clinic).verify_subscription(mode, token, challenge)
            if answer is not None:
                return HttpResponse(answer, content_type="text/plain")
        return api_error("not_authenticated", _("Wrong verify token."), status.HTTP_403_FORBIDDEN)
