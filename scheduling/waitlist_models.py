"""The waitlist: patients who asked to hear of an earlier slot, and the freed slots offered to them.

Re-exported by `scheduling.models`; the logic is `scheduling.waitlist`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic, ClinicOwnedModel


class WaitlistStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    BOOKED = "booked", _("Got a slot")
    CANCELLED = "cancelled", _("Withdrawn")
    EXPIRED = "expired", _("Expired")


class WaitlistEntry(ClinicOwnedModel):
    """A patient waiting for an earlier slot of `service` (with `professional`, or anyone who does it).

    With `appointment`, the patient already has one and wants it earlier: an accepted offer moves it. `not_after`:
    slots from then on are of no use (usually the start of the appointment they have).
    """

    same_clinic_fields = ("patient", "service", "professional", "appointment")

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="waitlist", verbose_name=_("clinic"))
    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.CASCADE, related_name="waitlist_entries", verbose_name=_("patient")
    )
    service = models.ForeignKey(
        "scheduling.Service", on_delete=models.CASCADE, related_name="waitlist_entries", verbose_name=_("service")
    )
    professional = models.ForeignKey(
        "scheduling.Professional",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="waitlist_entries",
        verbose_name=_("professional"),
        help_text=_("Empty: any professional who performs the service."),
    )
    appointment = models.ForeignKey(
        "scheduling.Appointment",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="waitlist_entries",
        verbose_name=_("appointment to bring forward"),
    )
    not_after = models.DateTimeField(_("only slots before"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=12, choices=WaitlistStatus.choices, default=WaitlistStatus.WAITING
    )
    created_at = models.DateTimeField(_("on the list since"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("waitlist entry")
        verbose_name_plural = _("waitlist")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["id", "clinic"], name="waitlist_entry_id_clinic_unique"),
            models.CheckConstraint(condition=Q(status__in=WaitlistStatus.values), name="waitlist_entry_status_valid"),
            # Asking twice keeps one place in the line, the first.
            models.UniqueConstraint(
                fields=["patient", "service"],
                condition=Q(status="waiting"),
                name="waitlist_entry_one_waiting_per_service",
                violation_error_message=_("This patient is already waiting for this service."),
            ),
        ]
        indexes = [
            models.Index(fields=["service", "created_at"], condition=Q(status="waiting"), name="waitlist_waiting_idx")
        ]

    def __str__(self) -> str:
        return f"{self.patient} — {self.service}"


class OfferStatus(models.TextChoices):
    OFFERED = "offered", _("Offered")
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")
    EXPIRED = "expired", _("No answer in time")
    GONE = "gone", _("Taken by someone else")


class WaitlistOffer(ClinicOwnedModel):
    """A freed slot offered to one waiting patient, held for them until `expires_at`."""

    same_clinic_fields = ("entry", "professional")

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    entry = models.ForeignKey(WaitlistEntry, on_delete=models.CASCADE, related_name="offers", verbose_name=_("entry"))
    professional = models.ForeignKey(
        "scheduling.Professional", on_delete=models.CASCADE, related_name="+", verbose_name=_("professional")
    )
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    expires_at = models.DateTimeField(_("held until"))
    status = models.CharField(_("status"), max_length=10, choices=OfferStatus.choices, default=OfferStatus.OFFERED)
    created_at = models.DateTimeField(_("offered at"), default=timezone.now)
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("waitlist offer")
        verbose_name_plural = _("waitlist offers")
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=OfferStatus.values), name="waitlist_offer_status_valid"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="waitlist_offer_end_after_start"),
            # One slot is offered to a patient once; a patient has one open offer at a time.
            models.UniqueConstraint(fields=["entry", "professional", "start"], name="waitlist_offer_once_per_slot"),
            models.UniqueConstraint(
                fields=["entry"], condition=Q(status="offered"), name="waitlist_offer_one_open_per_entry"
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="offered"), name="waitlist_offer_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.professional} {date_format(timezone.localtime(self.start), 'SHORT_DATETIME_FORMAT')}"

    @property
    def holder(self) -> str:
        """The slot hold's owner name: the entry's, so its booking may take the held slot."""
        return f"waitlist:{self.entry_id}"
