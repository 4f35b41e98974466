"""The clinic's WhatsApp channel as the provider adapters see it."""

from __future__ import annotations

import httpx

from cecilia.models import Clinic, WhatsAppProvider
from integrations.whatsapp import provider_for
from integrations.whatsapp.base import ChannelConfig
from integrations.whatsapp.base import WhatsAppProvider as Provider


def channel_config(clinic: Clinic) -> ChannelConfig:
    return ChannelConfig(
        provider=clinic.whatsapp_provider,
        instance=clinic.whatsapp_instance,
        api_url=clinic.whatsapp_api_url,
        api_key=clinic.whatsapp_api_key,
        webhook_secret=clinic.whatsapp_webhook_secret,
        verify_token=clinic.whatsapp_verify_token,
    )


def channel_provider(clinic: Clinic, *, http: httpx.Client | None = None) -> Provider:
    return provider_for(channel_config(clinic), http=http)


def clinic_for_instance(provider: WhatsAppProvider | str, instance: str) -> Clinic | None:
    """The clinic whose channel is `instance` (Evolution's instance name, Meta's phone number id)."""
    if not instance:
        return None
    # (provider, instance) is unique: no ORDER BY to build or run (this is on every webhook's path).
    found = Clinic.objects.filter(whatsapp_provider=provider, whatsapp_instance=instance).order_by()[:1]
    return next(iter(found), None)
