from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntegrationsConfig(AppConfig):
    """The outside services: WhatsApp providers (integrations.whatsapp) and Google Calendar."""

    name = "integrations"
    verbose_name = _("Integrations")

    def ready(self) -> None:
        from integrations.receivers import appointment_changed_push
        from scheduling.signals import appointment_changed

        appointment_changed.connect(appointment_changed_push, dispatch_uid="integrations.calendar_push")
