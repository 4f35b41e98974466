"""What a clinic starts with: Cecília's standard texts as editable templates, and reminders 48 h and 2 h before."""

from __future__ import annotations

from django.db import transaction

from cecilia.models import Clinic
from scheduling.models import ReminderPurpose, ReminderRule, ReminderTemplate
from scheduling.reminders import DEFAULT_BODIES

# purpose → the template's name, as staff see it in the admin.
DEFAULT_TEMPLATE_NAMES: dict[str, str] = {
    ReminderPurpose.REMINDER: "Lembrete padrão",
    ReminderPurpose.NO_SHOW_FOLLOWUP: "Após uma falta",
    ReminderPurpose.SATISFACTION: "Avaliação do atendimento",
    ReminderPurpose.WAITLIST_OFFER: "Lista de espera: horário livre",
}
DEFAULT_HOURS_BEFORE = (48, 2)


@transaction.atomic
def reminder_defaults_create(*, clinic: Clinic) -> None:
    """Give `clinic` the standard templates (missing ones, by name) and, if it has no reminder rules at all, the
    48 h and 2 h reminders for every service, both asking to confirm.

    Idempotent. A clinic that already has rules keeps exactly those: a manager who removed one is not overruled.
    """
    templates = {}
    for purpose, name in DEFAULT_TEMPLATE_NAMES.items():
        templates[purpose], _ = ReminderTemplate.objects.get_or_create(
            clinic=clinic, name=name, defaults={"purpose": purpose, "body": DEFAULT_BODIES[purpose]}
        )
    if ReminderRule.objects.filter(clinic=clinic).exists():
        return
    ReminderRule.objects.bulk_create(
        ReminderRule(
            clinic=clinic, hours_before=hours, template=templates[ReminderPurpose.REMINDER], asks_confirmation=True
        )
        for hours in DEFAULT_HOURS_BEFORE
    )
