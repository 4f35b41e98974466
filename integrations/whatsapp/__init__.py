"""WhatsApp providers behind one contract (see base.py). `provider_for` picks the module for a clinic's channel."""

from __future__ import annotations

import httpx

from integrations.whatsapp.base import ChannelConfig, WhatsAppProvider


def provider_for(config: ChannelConfig, *, http: httpx.Client | None = None) -> WhatsAppProvider:
    from integrations.whatsapp.console import ConsoleProvider
    from integrations.whatsapp.evolution import EvolutionProvider
    from integrations.whatsapp.meta_cloud import MetaCloudProvider

    classes: dict[str, type[WhatsAppProvider]] = {
        ConsoleProvider.name: ConsoleProvider,
        EvolutionProvider.name: EvolutionProvider,
        MetaCloudProvider.name: MetaCloudProvider,
    }
    try:
        return classes[config.provider](config, http=http)
    except KeyError:
        raise ValueError(f"Unknown WhatsApp provider {config.provider!r}") from None
