"""The tenant: a Clinic, its opening hours, and the staff who work there. Every other row belongs to a Clinic."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from timezone_field import TimeZoneField

from cecilia.constraints import TimeOfDayRange
from cecilia.fields import EncryptedTextField


class BrazilianState(models.TextChoices):
    AC = "AC", "Acre"
    AL = "AL", "Alagoas"
    AP = "AP", "Amapá"
    AM = "AM", "Amazonas"
    BA = "BA", "Bahia"
    CE = "CE", "Ceará"
    DF = "DF", "Distrito Federal"
    ES = "ES", "Espírito Santo"
    GO = "GO", "Goiás"
    MA = "MA", "Maranhão"
    MT = "MT", "Mato Grosso"
    MS = "MS", "Mato Grosso do Sul"
    MG = "MG", "Minas Gerais"
    PA = "PA", "Pará"
    PB = "PB", "Paraíba"
    PR = "PR", "Paraná"
    PE = "PE", "Pernambuco"
    PI = "PI", "Piauí"
    RJ = "RJ", "Rio de Janeiro"
    RN = "RN", "Rio Grande do Norte"
    RS = "RS", "Rio Grande do Sul"
    RO = "RO", "Rondônia"
    RR = "RR", "Roraima"
    SC = "SC", "Santa Catarina"
    SP = "SP", "São Paulo"
    SE = "SE", "Sergipe"
    TO = "TO", "Tocantins"


class Weekday(models.IntegerChoices):
    """ISO-like weekday numbers as Python's `date.weekday()` returns them (Monday = 0)."""

    MONDAY = 0, _("Monday")
    TUESDAY = 1, _("Tuesday")
    WEDNESDAY = 2, _("Wednesday")
    THURSDAY = 3, _("Thursday")
    FRIDAY = 4, _("Friday")
    SATURDAY = 5, _("Saturday")
    SUNDAY = 6, _("Sunday")


class WhatsAppProvider(models.TextChoices):
    CONSOLE = "console", _("Console (simulator, no real WhatsApp)")
    EVOLUTION = "evolution", _("Evolution API")
    META = "meta", _("Meta WhatsApp Cloud API")


class ChannelState(models.TextChoices):
    OPEN = "open", _("Connected")
    CONNECTING = "connecting", _("Connecting")
    CLOSE = "close", _("Disconnected")
    REFUSED = "refused", _("Pairing refused")
    UNKNOWN = "unknown", _("Unknown")


class Clinic(models.Model):
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    timezone = TimeZoneField(
        _("time zone"),
        default="America/Sao_Paulo",
        use_pytz=False,
        help_text=_("Appointments, reminders and messages use this zone. Patients are never asked for one."),
    )
    address = models.TextField(_("address"), blank=True)
    city = models.CharField(_("city"), max_length=80, blank=True)
    state = models.CharField(_("state"), max_length=2, choices=BrazilianState.choices, blank=True)
    phone = models.CharField(_("phone"), max_length=20, blank=True, help_text=_("The clinic's public phone number."))
    email = models.EmailField(_("e-mail"), blank=True)
    website = models.URLField(_("website"), blank=True)

    # WhatsApp channel. Secrets are encrypted at rest and never shown back in full in the admin.
    whatsapp_provider = models.CharField(
        _("WhatsApp provider"), max_length=20, choices=WhatsAppProvider.choices, default=WhatsAppProvider.CONSOLE
    )
    whatsapp_instance = models.CharField(
        _("instance name or phone number id"),
        max_length=120,
        blank=True,
        help_text=_("Evolution API: the instance name. Meta Cloud API: the phone number id."),
        validators=[RegexValidator(r"^[A-Za-z0-9_.\-]*$", _("Use letters, digits, dots, dashes or underscores."))],
    )
    whatsapp_api_url = models.URLField(_("API base URL"), blank=True)
    whatsapp_api_key = EncryptedTextField(_("API key"), blank=True)
    whatsapp_webhook_secret = EncryptedTextField(
        _("webhook secret"),
        blank=True,
        help_text=_("Evolution API: the webhook's jwt_key (or static secret). Meta: the app secret."),
    )
    whatsapp_verify_token = EncryptedTextField(
        _("verify token"), blank=True, help_text=_("Meta only: the token of the webhook verification handshake.")
    )
    # What the provider last said about the connection (connection.update); staff are alerted when it stays down.
    channel_state = models.CharField(
        _("WhatsApp connection"), max_length=12, choices=ChannelState.choices, default=ChannelState.UNKNOWN
    )
    channel_state_since = models.DateTimeField(_("connection state since"), null=True, blank=True)
    # When the provider reported the state we hold: webhooks are processed out of order, an older report never
    # overwrites a newer one.
    channel_state_reported_at = models.DateTimeField(
        _("connection state reported at"), null=True, blank=True, editable=False
    )
    channel_phone = models.CharField(_("connected number"), max_length=20, blank=True)

    # Booking policy: what the assistant may book or cancel on its own. Staff in the admin are not bound by it.
    booking_min_notice_minutes = models.PositiveIntegerField(
        _("minimum notice (minutes)"),
        default=120,
        validators=[MaxValueValidator(60 * 24 * 30)],
        help_text=_("Patients cannot book a slot that starts sooner than this."),
    )
    booking_horizon_days = models.PositiveSmallIntegerField(
        _("booking horizon (days)"),
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(730)],
        help_text=_("How far ahead patients can book."),
    )
    cancellation_notice_hours = models.PositiveSmallIntegerField(
        _("cancellation notice (hours)"),
        default=24,
        validators=[MaxValueValidator(24 * 30)],
        help_text=_("Later than this before the appointment, a patient's cancellation goes to staff."),
    )
    slot_hold_minutes = models.PositiveSmallIntegerField(
        _("slot hold (minutes)"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text=_("A slot offered to a patient who is still choosing is kept for them this long."),
    )
    open_on_holidays = models.BooleanField(
        _("open on public holidays"),
        default=False,
        help_text=_("Off: no appointments on national holidays and on the holidays of the clinic's state."),
    )

    # Reminders and follow-ups (scheduling.reminders). Times are the clinic's local time.
    reminder_window_start = models.TimeField(
        _("send automatic messages from"),
        default=datetime.time(8, 0),
        help_text=_("Reminders due earlier in the day are sent the evening before, within the window."),
    )
    reminder_window_end = models.TimeField(
        _("send automatic messages until"),
        default=datetime.time(20, 0),
        help_text=_("No reminder, follow-up or waitlist offer is sent after this time."),
    )
    no_show_after_minutes = models.PositiveSmallIntegerField(
        _("mark as no-show after (minutes)"),
        default=60,
        validators=[MaxValueValidator(60 * 24)],
        help_text=_(
            "This long after the start, an appointment staff did not mark as attended becomes a no-show. "
            "0: only staff mark no-shows."
        ),
    )
    no_show_followup = models.BooleanField(
        _("offer to rebook after a no-show"),
        default=True,
        help_text=_("A short message to patients who missed their appointment, offering a new time."),
    )
    satisfaction_survey = models.BooleanField(
        _("ask for a rating after the visit"),
        default=False,
        help_text=_("One short question (1 to 5) after a completed appointment; managers see the results."),
    )
    satisfaction_delay_minutes = models.PositiveSmallIntegerField(
        _("ask for the rating after (minutes)"),
        default=120,
        validators=[MinValueValidator(10), MaxValueValidator(60 * 24 * 3)],
        help_text=_("Counted from the end of the appointment."),
    )
    waitlist_hold_minutes = models.PositiveSmallIntegerField(
        _("waitlist offer held for (minutes)"),
        default=30,
        validators=[MinValueValidator(5), MaxValueValidator(60 * 24)],
        help_text=_(
            "A freed slot is kept for the first patient on the waitlist this long, then offered to the next one."
        ),
    )

    # The assistant.
    ai_enabled = models.BooleanField(_("assistant answers patients"), default=True)
    assistant_name = models.CharField(_("assistant name"), max_length=40, default="Cecília")
    ai_instructions = models.TextField(
        _("extra instructions for the assistant"),
        blank=True,
        help_text=_("Tone, policies and facts the assistant should know, in plain Portuguese."),
    )
    # After staff take a conversation over, the assistant stays silent; this long after staff's last message it
    # answers again on its own, so a chat staff forgot is not left unanswered for days.
    assistant_handback_minutes = models.PositiveIntegerField(
        _("assistant answers again after (minutes)"),
        default=120,
        validators=[MinValueValidator(0), MaxValueValidator(60 * 24 * 7)],
        help_text=_(
            "When staff took over a conversation and sent nothing for this long, the assistant answers again. "
            "0: only when staff give it back."
        ),
    )
    transcribe_voice_notes = models.BooleanField(
        _("transcribe voice notes"),
        default=True,
        help_text=_("Off: patients who send audio are asked to type, and staff are told."),
    )

    # LGPD: what the assistant sends on a patient's first contact (patients.privacy records who received which).
    privacy_notice = models.TextField(
        _("privacy notice"),
        blank=True,
        help_text=_(
            "Sent once to every patient on first contact, in Portuguese, as short as possible. "
            "Changing it (or its link) sends it again to everyone."
        ),
    )
    privacy_notice_url = models.URLField(
        _("privacy notice link"), blank=True, help_text=_("A page with the full privacy notice.")
    )
    # LGPD retention (patients.retention enforces it nightly). Empty keeps the data; appointment records are kept
    # whatever these say (the clinic must keep them by law).
    retention_message_text_months = models.PositiveSmallIntegerField(
        _("delete message texts after (months)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(240)],
        help_text=_("Texts and transcripts of WhatsApp messages older than this are erased. Empty: kept."),
    )
    retention_media_months = models.PositiveSmallIntegerField(
        _("delete media after (months)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(240)],
        help_text=_("Voice notes, photos and documents older than this are deleted. Empty: kept."),
    )
    retention_raw_events_days = models.PositiveSmallIntegerField(
        _("delete raw provider events after (days)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text=_("The webhooks as WhatsApp sent them, kept for troubleshooting only."),
    )

    # The language model behind the assistant. Empty fields use the deployment's settings.
    llm_model = models.CharField(
        _("model"), max_length=100, blank=True, help_text=_("Empty: the deployment's default model.")
    )
    llm_base_url = models.URLField(
        _("API base URL"),
        blank=True,
        help_text=_("Any OpenAI-compatible server. Empty: the deployment's."),
    )
    llm_api_key = EncryptedTextField(_("API key"), blank=True)
    llm_daily_token_budget = models.PositiveIntegerField(
        _("daily token budget"),
        default=200_000,
        help_text=_(
            "Tokens the assistant may use per day. Past it, the rule-based assistant answers until midnight. "
            "0: never use the language model."
        ),
    )

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("clinic")
        verbose_name_plural = _("clinics")
        ordering = ["name"]
        constraints = [
            # The webhook views select the clinic by (provider, instance): it must name exactly one.
            models.UniqueConstraint(
                fields=["whatsapp_provider", "whatsapp_instance"],
                condition=~Q(whatsapp_instance=""),
                name="clinic_whatsapp_instance_unique",
                violation_error_message=_("Another clinic already uses this WhatsApp instance."),
            ),
            models.CheckConstraint(
                condition=~Q(name=""),
                name="clinic_name_not_empty",
                violation_error_message=_("Give the clinic a name."),
            ),
            models.CheckConstraint(
                condition=Q(reminder_window_end__gt=F("reminder_window_start")),
                name="clinic_reminder_window_valid",
                violation_error_message=_("The end of the sending window must be after its start."),
            ),
            models.CheckConstraint(
                condition=~Q(assistant_name=""),
                name="clinic_assistant_name_not_empty",
                violation_error_message=_("Give the assistant a name."),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(str(self.timezone))

    def local_now(self) -> datetime.datetime:
        return datetime.datetime.now(tz=self.tz)


class BusinessHours(models.Model):
    """One opening interval of the clinic on a weekday; several rows a day make split shifts (08–12, 14–18)."""

    clinic = models.ForeignKey(
        Clinic, on_delete=models.CASCADE, related_name="business_hours", verbose_name=_("clinic")
    )
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    start = models.TimeField(_("opens at"))
    end = models.TimeField(_("closes at"))

    class Meta:
        verbose_name = _("business hours")
        verbose_name_plural = _("business hours")
        ordering = ["clinic", "weekday", "start"]
        constraints = [
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="business_hours_weekday_valid"),
            models.CheckConstraint(
                condition=Q(end__gt=F("start")),
                name="business_hours_end_after_start",
                violation_error_message=_("The closing time must be after the opening time."),
            ),
            # Availability sums intervals; overlapping ones would double-count or hide a mistake.
            ExclusionConstraint(
                name="business_hours_no_overlap",
                expressions=[
                    ("clinic", RangeOperators.EQUAL),
                    ("weekday", RangeOperators.EQUAL),
                    (TimeOfDayRange("start", "end"), RangeOperators.OVERLAPS),
                ],
                violation_error_message=_("These hours overlap other opening hours of the same day."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start:%H:%M}–{self.end:%H:%M}"


class ClosedDate(models.Model):
    """A day the whole clinic is closed: a recess, works, or a city holiday (`every_year`).

    National and state holidays come from the `holidays` library unless the clinic opens on holidays.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="closed_dates", verbose_name=_("clinic"))
    date = models.DateField(_("date"))
    reason = models.CharField(_("reason"), max_length=120, blank=True)
    every_year = models.BooleanField(
        _("every year"),
        default=False,
        help_text=_("Closed on this day and month every year, e.g. a city holiday."),
    )

    class Meta:
        verbose_name = _("closed date")
        verbose_name_plural = _("closed dates")
        ordering = ["clinic", "date"]
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "date"],
                name="closed_date_unique_per_clinic",
                violation_error_message=_("This date is already marked as closed."),
            )
        ]

    def __str__(self) -> str:
        return f"{date_format(self.date, 'SHORT_DATE_FORMAT')} {self.reason}".strip()


class StaffRole(models.TextChoices):
    RECEPTIONIST = "receptionist", _("Receptionist")
    MANAGER = "manager", _("Manager")


class StaffMembership(models.Model):
    """Links a staff user to a clinic. The admin scopes every row a non-superuser sees to these clinics."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("clinic"))
    role = models.CharField(_("role"), max_length=20, choices=StaffRole.choices, default=StaffRole.RECEPTIONIST)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("staff membership")
        verbose_name_plural = _("staff memberships")
        ordering = ["clinic", "user"]
        constraints = [
            # staff_access_sync maps each role to a group; an unknown role would leave a person without access.
            models.CheckConstraint(condition=Q(role__in=StaffRole.values), name="staff_membership_role_valid"),
            models.UniqueConstraint(
                fields=["user", "clinic"],
                name="staff_membership_unique",
                violation_error_message=_("This person is already on this clinic's staff."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.clinic} ({self.get_role_display()})"


class ClinicOwnedModel(models.Model):
    """Base for rows that belong to a clinic and point at other rows of the same clinic.

    `same_clinic_fields` lists the foreign keys that must share this row's clinic. The database enforces it with
    composite foreign keys (see cecilia.constraints.same_clinic_fk); `clean()` says it in words first, so the admin
    shows a form error instead of an IntegrityError.
    """

    same_clinic_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def _inherit_clinic(self) -> None:
        """A row created from its parent (an inline, a service) takes the parent's clinic."""
        if getattr(self, "clinic_id", None) is not None:
            return
        for name in self.same_clinic_fields:
            if getattr(self, f"{name}_id", None) is not None:
                self.clinic_id = getattr(self, name).clinic_id
                return

    def clean_fields(self, exclude: Any = None) -> None:
        self._inherit_clinic()
        super().clean_fields(exclude)

    def clean(self) -> None:
        super().clean()
        self._inherit_clinic()
        clinic_id = getattr(self, "clinic_id", None)
        if clinic_id is None:
            return
        errors = {}
        for name in self.same_clinic_fields:
            if getattr(self, f"{name}_id", None) is None:
                continue  # unset: the field's own validation reports it
            if getattr(self, name).clinic_id != clinic_id:
                errors[name] = _("This belongs to another clinic.")
        if errors:
            raise ValidationError(errors)
