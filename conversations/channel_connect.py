"""Connecting a clinic's WhatsApp number: the steps the admin's channel page and `manage.py whatsapp_connect` share.

Evolution API: create the instance (with the server's global key, used once and never stored; the instance token it
returns is stored as the clinic's API key), point the instance webhook at Cecilia with a `jwt_key` (the clinic's
webhook secret, generated when none is stored), pair the phone by QR code, read the connection state.
Meta Cloud API: everything is typed into the clinic's settings; only the connection state is read here.

Every step calls the real adapter. What the provider says about the connection is recorded on the clinic (the same
`channel_state_record` the `connection.update` webhook uses), so the admin alert reflects the latest word. Failures
are `ChannelSetupError`s whose message staff can read; they never carry a key, a token or a secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic, WhatsAppProvider
from conversations.channel import channel_provider
from conversations.services import channel_state_record
from integrations.whatsapp.base import (
    DEFAULT_TIMEOUT,
    ChannelState,
    ConnectionUpdate,
    ProviderError,
    QrCodeUpdate,
)
from integrations.whatsapp.base import WhatsAppProvider as Provider
from integrations.whatsapp.evolution import EvolutionProvider
from integrations.whatsapp.meta_cloud import GRAPH_API_URL

# What Cecilia handles from Evolution (contract §1.1); everything else would be posted only to be ignored.
EVOLUTION_WEBHOOK_EVENTS = (
    "MESSAGES_UPSERT",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "CONNECTION_UPDATE",
    "QRCODE_UPDATED",
)
# secrets.token_urlsafe(32) gives 43 characters: an HS256 key with 256 bits of entropy.
WEBHOOK_SECRET_BYTES = 32


class ChannelSetupError(Exception):
    """A step could not be done; `message` tells staff why (and what to fix), without any secret in it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class InstanceCreated:
    instance_name: str
    qr: QrCodeUpdate | None


def webhook_url(provider: str) -> str:
    """The public URL a provider must call for this Cecilia (PUBLIC_BASE_URL + the webhook route)."""
    name = "webhook-meta" if provider == WhatsAppProvider.META else "webhook-evolution"
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(name)


def channel_instance_create(*, clinic: Clinic, global_api_key: str) -> InstanceCreated:
    """Create the clinic's Evolution instance and store the instance token it returns as the clinic's API key.

    The instance is named by the clinic's settings, or after the clinic's slug when none is set (and then saved).
    """
    _require_evolution(clinic, need_token=False)
    if not global_api_key.strip():
        raise ChannelSetupError(str(_("Type the Evolution server's global API key.")))
    if not clinic.whatsapp_instance:
        if Clinic.objects.filter(whatsapp_provider=clinic.whatsapp_provider, whatsapp_instance=clinic.slug).exists():
            raise ChannelSetupError(str(_("Set the instance name in the clinic's WhatsApp settings first.")))
        clinic.whatsapp_instance = clinic.slug
        clinic.save(update_fields=["whatsapp_instance", "updated_at"])
    with _provider(clinic, creating=True) as provider:
        assert isinstance(provider, EvolutionProvider)
        created = provider.create_instance(global_api_key=global_api_key.strip())
    if not created.token:
        raise ChannelSetupError(
            str(_("The Evolution server created the instance but returned no instance token. Check the server."))
        )
    clinic.whatsapp_api_key = created.token
    clinic.save(update_fields=["whatsapp_api_key", "updated_at"])
    if created.qr is not None:
        channel_state_record(clinic=clinic, update=created.qr)
    return InstanceCreated(created.instance_name, created.qr)


def channel_webhook_set(*, clinic: Clinic) -> str:
    """Point the Evolution instance's webhook at Cecilia, signed with the clinic's webhook secret. Returns the URL.

    A strong secret is generated and stored first when the clinic has none: stored before Evolution hears of it, a
    failure in between leaves nothing Cecilia cannot verify (the next attempt sends the same secret).
    """
    _require_evolution(clinic)
    if not clinic.whatsapp_webhook_secret:
        clinic.whatsapp_webhook_secret = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
        clinic.save(update_fields=["whatsapp_webhook_secret", "updated_at"])
    url = webhook_url(WhatsAppProvider.EVOLUTION)
    with _provider(clinic) as provider:
        assert isinstance(provider, EvolutionProvider)
        provider.set_webhook(url, EVOLUTION_WEBHOOK_EVENTS, jwt_key=clinic.whatsapp_webhook_secret)
    return url


def channel_pair(*, clinic: Clinic) -> QrCodeUpdate | ConnectionUpdate:
    """The QR code to scan with the clinic's phone, or the connection state when there is none to show."""
    _require_evolution(clinic)
    with _provider(clinic) as provider:
        assert isinstance(provider, EvolutionProvider)
        answer = provider.connect()
    channel_state_record(clinic=clinic, update=answer)
    return answer


def channel_state_check(*, clinic: Clinic) -> ChannelState:
    """Ask the provider for the connection state now, and remember it."""
    if clinic.whatsapp_provider == WhatsAppProvider.CONSOLE:
        return ChannelState.OPEN
    if clinic.whatsapp_provider == WhatsAppProvider.EVOLUTION:
        _require_evolution(clinic)
    with _provider(clinic) as provider:
        state = provider.connection_state()
    channel_state_record(clinic=clinic, update=ConnectionUpdate(state))
    return state


def _require_evolution(clinic: Clinic, *, need_token: bool = True) -> None:
    if clinic.whatsapp_provider != WhatsAppProvider.EVOLUTION:
        raise ChannelSetupError(str(_("This step is for clinics whose WhatsApp provider is the Evolution API.")))
    if not clinic.whatsapp_api_url:
        raise ChannelSetupError(str(_("Set the Evolution API base URL in the clinic's WhatsApp settings first.")))
    if need_token and not clinic.whatsapp_api_key:
        raise ChannelSetupError(
            str(_("The clinic has no instance token yet: create the instance, or type its API key in the settings."))
        )


@contextmanager
def _provider(clinic: Clinic, *, creating: bool = False) -> Iterator[Provider]:
    """The clinic's adapter on a client closed afterwards; ProviderErrors become ChannelSetupErrors."""
    with httpx.Client(timeout=DEFAULT_TIMEOUT) as http:
        try:
            yield channel_provider(clinic, http=http)
        except ProviderError as exc:
            raise ChannelSetupError(_readable(exc, clinic, creating=creating)) from exc


def _readable(exc: ProviderError, clinic: Clinic, *, creating: bool) -> str:
    """The adapter's staff message, except where it would mislead on a step staff run by hand (nothing retries)."""
    server = clinic.whatsapp_api_url or (GRAPH_API_URL if clinic.whatsapp_provider == WhatsAppProvider.META else "?")
    if isinstance(exc.__cause__, httpx.TransportError) and exc.code == "provider_unavailable":
        return str(
            _("Could not reach %(server)s. Check the API base URL and that the server is running, then try again.")
        ) % {"server": server}
    if exc.code == "timeout":
        return str(_("%(server)s did not answer in time. Try again in a moment.")) % {"server": server}
    if exc.code == "provider_unavailable":
        return str(_("%(server)s is unavailable right now. Try again in a moment.")) % {"server": server}
    if exc.code == "unauthorized" and creating:
        return str(_("The Evolution server refused the global API key."))
    return exc.staff_message
