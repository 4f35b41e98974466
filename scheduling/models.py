"""The clinic's agenda: who works when, what they do, and the appointments booked with them."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeOperators
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from cecilia.constraints import TimeOfDayRange, TsTzRange
from cecilia.models import Clinic, ClinicOwnedModel, Weekday
from patients.models import HealthPlan, Patient


class Professional(models.Model):
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="professionals", verbose_name=_("clinic"))
    name = models.CharField(_("name"), max_length=120, help_text=_("As patients know them, e.g. Dra. Ana Souza."))
    specialty = models.CharField(_("specialty"), max_length=80, blank=True)
    council_registration = models.CharField(
        _("council registration"), max_length=40, blank=True, help_text=_("CRM, CRO, CRP… e.g. CRM-SP 123456.")
    )
    google_calendar_id = models.CharField(_("Google Calendar id"), max_length=255, blank=True)
    active = models.BooleanField(_("active"), default=True, help_text=_("Inactive professionals take no bookings."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("professional")
        verbose_name_plural = _("professionals")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["id", "clinic"], name="professional_id_clinic_unique"),
            models.UniqueConstraint(
                Lower("name"),
                "clinic",
                name="professional_name_unique_per_clinic",
                violation_error_message=_("This clinic already has a professional with this name."),
            ),
            models.CheckConstraint(condition=~Q(name=""), name="professional_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class Service(models.Model):
    """Something the clinic offers (a consultation, a cleaning, an exam), how long it takes and who does it."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="services", verbose_name=_("clinic"))
    name = models.CharField(_("name"), max_length=120)
    duration_minutes = models.PositiveSmallIntegerField(
        _("duration (minutes)"), default=30, validators=[MinValueValidator(5), MaxValueValidator(720)]
    )
    price = models.DecimalField(
        _("price (R$)"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_("Private price. Empty means the price is given by staff."),
    )
    accepts_private = models.BooleanField(_("accepts private patients"), default=True)
    accepted_health_plans = models.ManyToManyField(
        HealthPlan, blank=True, related_name="services", verbose_name=_("accepted health plans")
    )
    preparation_instructions = models.TextField(
        _("preparation instructions"), blank=True, help_text=_("Sent to the patient before the appointment.")
    )
    professionals = models.ManyToManyField(
        Professional, blank=True, related_name="services", verbose_name=_("professionals who perform it")
    )
    buffer_before_minutes = models.PositiveSmallIntegerField(
        _("buffer before (minutes)"),
        default=0,
        validators=[MaxValueValidator(240)],
        help_text=_("Free time the professional needs before it (set-up)."),
    )
    buffer_after_minutes = models.PositiveSmallIntegerField(
        _("buffer after (minutes)"),
        default=0,
        validators=[MaxValueValidator(240)],
        help_text=_("Free time the professional needs after it (cleaning, notes)."),
    )
    slot_interval_minutes = models.PositiveSmallIntegerField(
        _("offer a slot every (minutes)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(5), MaxValueValidator(240)],
        help_text=_("Empty: every slot starts where the previous one could end (the service's duration)."),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("service")
        verbose_name_plural = _("services")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["id", "clinic"], name="service_id_clinic_unique"),
            models.UniqueConstraint(
                Lower("name"),
                "clinic",
                name="service_name_unique_per_clinic",
                violation_error_message=_("This clinic already has a service with this name."),
            ),
            models.CheckConstraint(
                condition=Q(duration_minutes__gte=5, duration_minutes__lte=720),
                name="service_duration_range",
                violation_error_message=_("A service lasts between 5 and 720 minutes."),
            ),
            models.CheckConstraint(
                condition=Q(price__isnull=True) | Q(price__gte=0),
                name="service_price_not_negative",
                violation_error_message=_("The price cannot be negative."),
            ),
            models.CheckConstraint(condition=~Q(name=""), name="service_name_not_empty"),
            models.CheckConstraint(
                condition=Q(buffer_before_minutes__lte=240, buffer_after_minutes__lte=240),
                name="service_buffers_range",
                violation_error_message=_("A buffer is at most 240 minutes."),
            ),
            models.CheckConstraint(
                condition=Q(slot_interval_minutes__isnull=True)
                | Q(slot_interval_minutes__gte=5, slot_interval_minutes__lte=240),
                name="service_slot_interval_range",
                violation_error_message=_("Slots are offered every 5 to 240 minutes."),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class WorkingHours(ClinicOwnedModel):
    """One interval a professional works on a weekday; several rows a day make split shifts."""

    same_clinic_fields = ("professional",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    professional = models.ForeignKey(
        Professional, on_delete=models.CASCADE, related_name="working_hours", verbose_name=_("professional")
    )
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    start = models.TimeField(_("from"))
    end = models.TimeField(_("until"))

    class Meta:
        verbose_name = _("working hours")
        verbose_name_plural = _("working hours")
        ordering = ["professional", "weekday", "start"]
        constraints = [
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="working_hours_weekday_valid"),
            models.CheckConstraint(
                condition=Q(end__gt=F("start")),
                name="working_hours_end_after_start",
                violation_error_message=_("The end must be after the start."),
            ),
            ExclusionConstraint(
                name="working_hours_no_overlap",
                expressions=[
                    ("professional", RangeOperators.EQUAL),
                    ("weekday", RangeOperators.EQUAL),
                    (TimeOfDayRange("start", "end"), RangeOperators.OVERLAPS),
                ],
                violation_error_message=_("These hours overlap other hours of the same professional and day."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start:%H:%M}–{self.end:%H:%M}"


class TimeOff(ClinicOwnedModel):
    """A period a professional (or, with no professional, the whole clinic) takes no appointments."""

    same_clinic_fields = ("professional",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="time_off", verbose_name=_("clinic"))
    professional = models.ForeignKey(
        Professional,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="time_off",
        verbose_name=_("professional"),
        help_text=_("Empty: the whole clinic is closed."),
    )
    start = models.DateTimeField(_("from"))
    end = models.DateTimeField(_("until"))
    reason = models.CharField(_("reason"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("time off")
        verbose_name_plural = pgettext_lazy("plural", "time off")
        ordering = ["-start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=F("start")),
                name="time_off_end_after_start",
                violation_error_message=_("The end must be after the start."),
            ),
        ]
        indexes = [models.Index(fields=["clinic", "end"], name="time_off_clinic_end_idx")]

    def __str__(self) -> str:
        return self.reason or str(_("Time off"))


class AppointmentStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    CONFIRMED = "confirmed", _("Confirmed")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLETED = "completed", _("Completed")
    NO_SHOW = "no_show", _("No-show")


class AppointmentSource(models.TextChoices):
    WHATSAPP = "whatsapp", _("WhatsApp")
    ADMIN = "admin", _("Admin")
    API = "api", _("API")


class ActorKind(models.TextChoices):
    """Who made a change: staff in the admin, the patient (through the assistant), or Cecilia itself."""

    STAFF = "staff", _("Staff")
    PATIENT = "patient", _("Patient")
    SYSTEM = "system", _("System")


class Appointment(ClinicOwnedModel):
    same_clinic_fields = ("patient", "professional", "service")

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="appointments", verbose_name=_("clinic"))
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="appointments", verbose_name=_("patient")
    )
    professional = models.ForeignKey(
        Professional, on_delete=models.PROTECT, related_name="appointments", verbose_name=_("professional")
    )
    service = models.ForeignKey(
        Service, on_delete=models.PROTECT, related_name="appointments", verbose_name=_("service")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    status = models.CharField(
        _("status"), max_length=20, choices=AppointmentStatus.choices, default=AppointmentStatus.SCHEDULED
    )
    source = models.CharField(_("source"), max_length=20, choices=AppointmentSource.choices)
    notes = models.TextField(_("notes"), blank=True)
    cancellation_reason = models.CharField(_("cancellation reason"), max_length=200, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    created_by_kind = models.CharField(_("created by"), max_length=10, choices=ActorKind.choices)
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by user"),
    )
    updated_at = models.DateTimeField(_("changed at"), auto_now=True)
    updated_by_kind = models.CharField(_("changed by"), max_length=10, choices=ActorKind.choices)
    updated_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("changed by user"),
    )

    class Meta:
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        ordering = ["start"]
        constraints = [
            models.UniqueConstraint(fields=["id", "clinic"], name="appointment_id_clinic_unique"),
            models.CheckConstraint(
                condition=Q(end__gt=F("start")),
                name="appointment_end_after_start",
                violation_error_message=_("The appointment must end after it starts."),
            ),
            models.CheckConstraint(condition=Q(status__in=AppointmentStatus.values), name="appointment_status_valid"),
            models.CheckConstraint(condition=Q(source__in=AppointmentSource.values), name="appointment_source_valid"),
            models.CheckConstraint(
                condition=Q(status=AppointmentStatus.CANCELLED) | Q(cancellation_reason=""),
                name="appointment_reason_only_when_cancelled",
                violation_error_message=_("Only cancelled appointments have a cancellation reason."),
            ),
            # A user is named only for staff changes; a deleted user leaves the kind and a NULL.
            models.CheckConstraint(
                condition=Q(created_by_kind=ActorKind.STAFF) | Q(created_by_user__isnull=True),
                name="appointment_created_by_user_is_staff",
            ),
            models.CheckConstraint(
                condition=Q(updated_by_kind=ActorKind.STAFF) | Q(updated_by_user__isnull=True),
                name="appointment_updated_by_user_is_staff",
            ),
            # The last word against double booking: two active appointments of one professional never overlap,
            # whatever path wrote them (admin, assistant, API, a raw INSERT). Booking services rely on it in races.
            ExclusionConstraint(
                name="appointment_no_overlap_per_professional",
                expressions=[
                    ("professional", RangeOperators.EQUAL),
                    (TsTzRange("start", "end"), RangeOperators.OVERLAPS),
                ],
                condition=~Q(status=AppointmentStatus.CANCELLED),
                violation_error_message=_("The professional already has an appointment at this time."),
            ),
            ExclusionConstraint(
                name="appointment_no_overlap_per_patient",
                expressions=[
                    ("patient", RangeOperators.EQUAL),
                    (TsTzRange("start", "end"), RangeOperators.OVERLAPS),
                ],
                condition=~Q(status=AppointmentStatus.CANCELLED),
                violation_error_message=_("The patient already has another appointment at this time."),
            ),
        ]
        indexes = [
            models.Index(fields=["clinic", "start"], name="appointment_clinic_start_idx"),
            models.Index(fields=["patient", "start"], name="appointment_patient_start_idx"),
        ]

    def __str__(self) -> str:
        # The active time zone is the clinic's during staff requests (cecilia.middleware).
        return (
            f"{self.patient} — {self.service} ({date_format(timezone.localtime(self.start), 'SHORT_DATETIME_FORMAT')})"
        )

    @property
    def is_active(self) -> bool:
        return self.status != AppointmentStatus.CANCELLED

    def clean_fields(self, exclude: Any = None) -> None:
        # An appointment typed without an end lasts as long as its service; filled before validation so the
        # overlap constraints are checked with the real end.
        if self.end is None and self.start is not None and self.service_id is not None:
            self.end = self.start + datetime.timedelta(minutes=self.service.duration_minutes)
        super().clean_fields(exclude)


class AppointmentAction(models.TextChoices):
    BOOKED = "booked", _("Booked")
    RESCHEDULED = "rescheduled", _("Rescheduled")
    CANCELLED = "cancelled", _("Cancelled")
    CONFIRMED = "confirmed", _("Confirmed")
    NO_SHOW = "no_show", _("Marked as no-show")
    COMPLETED = "completed", _("Completed")
    EDITED = "edited", _("Edited")


class AppointmentChange(ClinicOwnedModel):
    """One change to an appointment: who made it, when, and the fields before and after. Never edited."""

    same_clinic_fields = ("appointment",)

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+", verbose_name=_("clinic"))
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="changes", verbose_name=_("appointment")
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    action = models.CharField(_("action"), max_length=20, choices=AppointmentAction.choices)
    actor_kind = models.CharField(_("by"), max_length=10, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("staff user"),
    )
    # Only the appointment's own fields (ids, times, status), never message text or health data.
    before = models.JSONField(_("before"), default=dict, blank=True)
    after = models.JSONField(_("after"), default=dict, blank=True)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("appointment change")
        verbose_name_plural = _("appointment changes")
        ordering = ["appointment", "at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=AppointmentAction.values), name="appointment_change_action"),
            models.CheckConstraint(
                condition=Q(actor_kind=ActorKind.STAFF) | Q(actor_user__isnull=True),
                name="appointment_change_user_is_staff",
            ),
        ]
        # The waitlist's minute pass looks for recent cancellations and moves of each clinic.
        indexes = [models.Index(fields=["clinic", "at"], name="appointment_change_recent_idx")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} — {date_format(timezone.localtime(self.at), 'SHORT_DATETIME_FORMAT')}"


class SlotHold(ClinicOwnedModel):
    """A slot offered to a patient who is still choosing, kept from everyone else until `expires_at`.

    Expired rows are simply ignored by availability and booking (and swept later); nothing has to run on time.
    """

    same_clinic_fields = ("professional", "service", "patient")

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    professional = models.ForeignKey(
        Professional, on_delete=models.CASCADE, related_name="holds", verbose_name=_("professional")
    )
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+", verbose_name=_("service"))
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("patient")
    )
    # Who is choosing, as the caller names it (e.g. "conversation:42"): their own holds never block them.
    holder = models.CharField(_("held for"), max_length=80)
    token = models.UUIDField(_("hold code"), unique=True, editable=False)
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    expires_at = models.DateTimeField(_("expires at"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("slot hold")
        verbose_name_plural = _("slot holds")
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="slot_hold_end_after_start"),
            models.CheckConstraint(condition=~Q(holder=""), name="slot_hold_holder_not_empty"),
        ]
        indexes = [models.Index(fields=["professional", "expires_at"], name="slot_hold_professional_idx")]

    def __str__(self) -> str:
        return f"{self.professional} {date_format(timezone.localtime(self.start), 'SHORT_DATETIME_FORMAT')}"


# Reminders, follow-ups and the waitlist live in their own modules; imported here so Django registers them.
from scheduling.reminder_models import (  # noqa: E402
    ReminderPurpose,
    ReminderRule,
    ReminderStep,
    ReminderTemplate,
    SkipReason,
    StepKind,
    StepStatus,
)
from scheduling.waitlist_models import OfferStatus, WaitlistEntry, WaitlistOffer, WaitlistStatus  # noqa: E402

__all__ = [
    "ActorKind",
    "Appointment",
    "AppointmentAction",
    "AppointmentChange",
    "AppointmentSource",
    "AppointmentStatus",
    "OfferStatus",
    "Professional",
    "ReminderPurpose",
    "ReminderRule",
    "ReminderStep",
    "ReminderTemplate",
    "Service",
    "SkipReason",
    "SlotHold",
    "StepKind",
    "StepStatus",
    "TimeOff",
    "WaitlistEntry",
    "WaitlistOffer",
    "WaitlistStatus",
    "WorkingHours",
]
