from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntegrationsConfig(AppConfig):
    """The outside services: WhatsApp providers (integrations.whatsapp) and Google Calendar."""

    name = "integrations"
    verbose_name = _("Integrations")
