"""Reminders and follow-ups: what each clinic sends before and after an appointment, and every step it planned.

Re-exported by `scheduling.models`. The planning (which steps an appointment gets, when) is `scheduling.reminders`;
the sending is `conversations.outreach`, which writes each step's message (one per step, `Message.reminder_step`).
"""

from __future__ import annotations

import re
import string

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic, ClinicOwnedModel

# The placeholders a template may use, and what each one says (the admin lists them).
PLACEHOLDERS: dict[str, str] = {
    "nome": _("patient's first name"),
    "profissional": _("professional"),
    "servico": _("service"),
    "data": _("date with weekday, e.g. sexta, 28/11"),
    "hora": _("time, e.g. 14:30"),
    "endereco": _("clinic's address"),
    "preparo": _("the service's preparation instructions"),
    "clinica": _("clinic's name"),
    "paciente": _("the dependent's first name, when the message goes to their guardian"),
    "validade": _("waitlist offers: until when the slot is held, e.g. 14:30"),
}


def template_placeholders(body: str) -> list[str]:
    """The placeholder names of `body` in order of first appearance; ValueError for broken braces."""
    names: list[str] = []
    for _literal, name, spec, conversion in string.Formatter().parse(body):
        if name is None:
            continue
        if spec or conversion or not re.fullmatch(r"[a-z]+", name):
            raise ValueError(name)
        if name not in names:
            names.append(name)
    return names


class ReminderPurpose(models.TextChoices):
    REMINDER = "reminder", _("Reminder before the appointment")
    NO_SHOW_FOLLOWUP = "no_show_followup", _("After a no-show: offer to rebook")
    SATISFACTION = "satisfaction", _("After the visit: rating question")
    WAITLIST_OFFER = "waitlist_offer", _("Waitlist: an earlier slot freed up")


class ReminderTemplate(ClinicOwnedModel):
    """A pt-BR message with placeholders ({nome}, {data}, …), editable by the clinic.

    A line whose placeholders are all empty (no preparation, no address) is left out. On Meta's official API, outside
    the 24-hour window, only an approved template can be sent: `whatsapp_template_name` names it, and its body
    parameters are this body's placeholders in the order they appear.
    """

    clinic = models.ForeignKey(
        Clinic, on_delete=models.CASCADE, related_name="reminder_templates", verbose_name=_("clinic")
    )
    purpose = models.CharField(
        _("used for"), max_length=20, choices=ReminderPurpose.choices, default=ReminderPurpose.REMINDER
    )
    name = models.CharField(_("name"), max_length=80, help_text=_("For staff, e.g. “Lembrete padrão”."))
    body = models.TextField(_("message"), max_length=1000)
    whatsapp_template_name = models.CharField(
        _("approved WhatsApp template"),
        max_length=120,
        blank=True,
        help_text=_(
            "Meta's official API only: the name of the approved template with the same text, used when the patient "
            "has not written in the last 24 hours. Empty: the message is skipped then."
        ),
    )
    whatsapp_template_language = models.CharField(_("template language"), max_length=10, default="pt_BR")
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        ordering = ["clinic", "purpose", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "name"],
                name="reminder_template_name_unique",
                violation_error_message=_("This clinic already has a template with this name."),
            ),
            models.UniqueConstraint(fields=["id", "clinic"], name="reminder_template_id_clinic_unique"),
            models.CheckConstraint(condition=Q(purpose__in=ReminderPurpose.values), name="reminder_template_purpose"),
            models.CheckConstraint(condition=~Q(body=""), name="reminder_template_body_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        try:
            names = template_placeholders(self.body or "")
        except ValueError:
            raise ValidationError(
                {"body": _("Write placeholders as {nome}, with nothing else inside the braces.")}
            ) from None
        unknown = [name for name in names if name not in PLACEHOLDERS]
        if unknown:
            raise ValidationError(
                {
                    "body": _("Unknown placeholder: %(names)s. Use: %(known)s.")
                    % {
                        "names": ", ".join("{" + n + "}" for n in unknown),
                        "known": ", ".join("{" + n + "}" for n in PLACEHOLDERS),
                    }
                }
            )


class ReminderRule(ClinicOwnedModel):
    """Send `template` this many hours before an appointment. Rules without a service are the clinic's default; a
    service with rules of its own gets only those (a surgery: 7 days, 48 h and 2 h, with its preparation)."""

    same_clinic_fields = ("service", "template")

    clinic = models.ForeignKey(
        Clinic, on_delete=models.CASCADE, related_name="reminder_rules", verbose_name=_("clinic")
    )
    service = models.ForeignKey(
        "scheduling.Service",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="reminder_rules",
        verbose_name=_("service"),
        help_text=_("Empty: every service without rules of its own."),
    )
    hours_before = models.PositiveSmallIntegerField(
        _("hours before"), validators=[MinValueValidator(1), MaxValueValidator(720)], help_text=_("1 to 720 (30 days).")
    )
    template = models.ForeignKey(
        ReminderTemplate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="rules",
        verbose_name=_("template"),
        help_text=_("Empty: Cecília's standard reminder."),
    )
    asks_confirmation = models.BooleanField(
        _("asks to confirm"),
        default=True,
        help_text=_("The patient can answer to confirm, cancel or reschedule."),
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("reminder rule")
        verbose_name_plural = _("reminder rules")
        ordering = ["clinic", "service", "-hours_before"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "service", "hours_before"],
                nulls_distinct=False,
                name="reminder_rule_unique",
                violation_error_message=_("There is already a reminder this many hours before."),
            ),
            models.CheckConstraint(
                condition=Q(hours_before__gte=1, hours_before__lte=720), name="reminder_rule_hours_range"
            ),
        ]

    def __str__(self) -> str:
        return _("%(hours)s h before") % {"hours": self.hours_before}

    def clean(self) -> None:
        super().clean()
        if self.template_id is not None and self.template.purpose != ReminderPurpose.REMINDER:
            raise ValidationError({"template": _("Choose a template made for reminders.")})


class StepKind(models.TextChoices):
    REMINDER = "reminder", _("Reminder")
    NO_SHOW_FOLLOWUP = "no_show_followup", _("No-show follow-up")
    SATISFACTION = "satisfaction", _("Rating question")


class StepStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    QUEUED = "queued", _("Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    CONFIRMED = "confirmed", _("Confirmed")
    CANCELLED = "cancelled", _("Cancelled by the patient")
    RESCHEDULE_REQUESTED = "reschedule_requested", _("Reschedule requested")
    ANSWERED = "answered", _("Answered (see note)")
    NO_ANSWER = "no_answer", _("No answer")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")


# A step that has left (or is leaving) Cecilia: never planned, skipped or sent again.
STEP_GONE_OUT = (
    StepStatus.QUEUED,
    StepStatus.SENT,
    StepStatus.DELIVERED,
    StepStatus.READ,
    StepStatus.CONFIRMED,
    StepStatus.CANCELLED,
    StepStatus.RESCHEDULE_REQUESTED,
    StepStatus.ANSWERED,
    StepStatus.NO_ANSWER,
    StepStatus.FAILED,
)
# Sent and waiting for the patient's answer.
STEP_AWAITING_ANSWER = (StepStatus.SENT, StepStatus.DELIVERED, StepStatus.READ)


class SkipReason(models.TextChoices):
    NONE = "", _("—")
    OPTED_OUT = "opted_out", _("Patient opted out of automatic messages")
    APPOINTMENT_CHANGED = "appointment_changed", _("Appointment moved")
    CANCELLED = "cancelled", _("Appointment cancelled or over")
    STARTED = "started", _("Appointment had started")
    OUTSIDE_WINDOW = "outside_window", _("Outside the send window")
    POLICY_CHANGED = "policy_changed", _("Reminder policy changed")
    SUPERSEDED = "superseded", _("A later reminder was due (catch-up)")
    NO_TEMPLATE = "no_whatsapp_template", _("No approved WhatsApp template (24-hour window closed)")
    NO_CONTACT = "no_contact", _("No WhatsApp number")
    DISABLED = "disabled", _("Turned off in the clinic's settings")


class ReminderStep(ClinicOwnedModel):
    """One message planned for an appointment: a reminder ("48h"), the no-show follow-up, or the rating question.

    Unique per appointment, step and the start it was planned for, so planning twice, two sweeps or two beats never
    make a second one; the message it sent points back here one-to-one (`Message.reminder_step`).
    """

    same_clinic_fields = ("appointment",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.CASCADE, related_name="reminder_steps", verbose_name=_("appointment")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=StepKind.choices, default=StepKind.REMINDER)
    key = models.CharField(_("step"), max_length=20, help_text=_("e.g. 48h, no_show, satisfaction"))
    appointment_start = models.DateTimeField(_("planned for the appointment at"))
    rule = models.ForeignKey(
        ReminderRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("rule")
    )
    asks_confirmation = models.BooleanField(_("asks to confirm"), default=False)
    due_at = models.DateTimeField(_("due at"))
    status = models.CharField(_("status"), max_length=24, choices=StepStatus.choices, default=StepStatus.SCHEDULED)
    skip_reason = models.CharField(
        _("skipped because"), max_length=24, choices=SkipReason.choices, blank=True, default=SkipReason.NONE
    )
    note = models.CharField(
        _("patient's answer"), max_length=500, blank=True, help_text=_("Free text the patient answered, for staff.")
    )
    score = models.PositiveSmallIntegerField(
        _("rating"), null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    queued_at = models.DateTimeField(_("sent to the outbox at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("reminder step")
        verbose_name_plural = _("reminder steps")
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "key", "appointment_start"], name="reminder_step_once_per_appointment"
            ),
            models.UniqueConstraint(fields=["id", "clinic"], name="reminder_step_id_clinic_unique"),
            models.CheckConstraint(condition=Q(kind__in=StepKind.values), name="reminder_step_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=StepStatus.values), name="reminder_step_status_valid"),
            models.CheckConstraint(
                condition=Q(status=StepStatus.SKIPPED) ^ Q(skip_reason=""), name="reminder_step_skip_has_reason"
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=1, score__lte=5), name="reminder_step_score_range"
            ),
        ]
        indexes = [
            # The sweep's question: which steps are due? Only scheduled rows, oldest first.
            models.Index(fields=["due_at"], condition=Q(status="scheduled"), name="reminder_step_due_idx"),
            models.Index(
                fields=["appointment_start"],
                condition=Q(status__in=["sent", "delivered", "read"]),
                name="reminder_step_awaiting_idx",
            ),
        ]

    def __str__(self) -> str:
        when = date_format(timezone.localtime(self.due_at), "SHORT_DATETIME_FORMAT") if self.due_at else ""
        return f"{self.get_kind_display()} {self.key} · {when}"
