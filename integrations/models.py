"""Google Calendar state: each clinic's account, each professional's sync, each appointment's event, and what
the professional changed in Google that staff must decide on.

Cecilia's agenda is the source of truth. These rows record what Google was last told and what it said back, so a
push can be retried without a second event, a pull can tell an echo of our own change from someone else's, and no
change made in Google is applied or dropped without a person deciding.
"""

from __future__ import annotations

import string

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from cecilia.fields import EncryptedTextField
from cecilia.models import Clinic, ClinicOwnedModel
from scheduling.models import Appointment, Professional

DEFAULT_EVENT_TITLE = "Consulta — {first_name}"
# What an event title may say about an appointment. No health data beyond what the clinic chooses (the service).
TITLE_PLACEHOLDERS = ("first_name", "service", "professional")


def validate_title_template(value: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValidationError(_("Braces must come in pairs, like {first_name}.")) from exc
    unknown = [name for name in names if name not in TITLE_PLACEHOLDERS]
    if unknown:
        raise ValidationError(
            _("Unknown placeholder {%(name)s}. Use {first_name}, {service} or {professional}."),
            params={"name": unknown[0]},
        )


class AccountState(models.TextChoices):
    NOT_CONFIGURED = "not_configured", _("Not configured")
    UNCHECKED = "unchecked", _("Not checked yet")
    OK = "ok", _("Working")
    FAILING = "failing", _("Failing")
    REVOKED = "revoked", _("Access revoked or expired")


class CalendarAccount(models.Model):
    """A clinic's Google credentials and how its events look. Without stored credentials the environment's
    service account (GOOGLE_SERVICE_ACCOUNT_JSON / _FILE) is used; the row then only keeps state and settings."""

    clinic = models.OneToOneField(
        Clinic, on_delete=models.CASCADE, related_name="calendar_account", verbose_name=_("clinic")
    )
    # Service-account key JSON or OAuth authorized-user JSON (client_id, client_secret, refresh_token). Never shown.
    credentials_json = EncryptedTextField(_("Google credentials (JSON)"), blank=True)
    event_title = models.CharField(
        _("event title"),
        max_length=120,
        default=DEFAULT_EVENT_TITLE,
        validators=[validate_title_template],
        help_text=_(
            "What the professional sees in Google Calendar. Placeholders: {first_name}, {service}, {professional}. "
            "Avoid health information."
        ),
    )
    state = models.CharField(
        _("connection"), max_length=20, choices=AccountState.choices, default=AccountState.UNCHECKED
    )
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    checked_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Google Calendar account")
        verbose_name_plural = _("Google Calendar accounts")
        ordering = ["clinic"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=AccountState.values), name="calendar_account_state_valid")
        ]

    def __str__(self) -> str:
        return str(self.clinic)


class ProfessionalSync(ClinicOwnedModel):
    """Where the pull of one professional's calendar stands: Google's syncToken and the last error, if any."""

    same_clinic_fields = ("professional",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    professional = models.OneToOneField(
        Professional, on_delete=models.CASCADE, related_name="calendar_sync", verbose_name=_("professional")
    )
    # The calendar the token belongs to: a professional given another calendar starts over with a full sync.
    calendar_id = models.CharField(_("calendar id"), max_length=255, blank=True)
    sync_token = models.TextField(_("sync token"), blank=True)
    last_synced_at = models.DateTimeField(_("last synced"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    error_at = models.DateTimeField(_("error since"), null=True, blank=True)

    class Meta:
        verbose_name = _("calendar sync")
        verbose_name_plural = _("calendar syncs")
        ordering = ["professional"]

    def __str__(self) -> str:
        return str(self.professional)


class LinkState(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SYNCED = "synced", _("In Google Calendar")
    FAILED = "failed", _("Failed (will retry)")


class CalendarEventLink(ClinicOwnedModel):
    """An appointment's event in Google and what we last pushed to it (so echoes and edits can be told apart)."""

    same_clinic_fields = ("appointment",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    appointment = models.OneToOneField(
        Appointment, on_delete=models.CASCADE, related_name="calendar_link", verbose_name=_("appointment")
    )
    # Where the event lives now ("" before the first push); a move to another professional deletes it here first.
    calendar_id = models.CharField(_("calendar id"), max_length=255, blank=True)
    event_id = models.CharField(_("event id"), max_length=1024)
    etag = models.CharField(_("etag"), max_length=100, blank=True)
    # What Google holds after our last successful push; pushed_live False means we deleted the event.
    pushed_start = models.DateTimeField(_("pushed start"), null=True, blank=True)
    pushed_end = models.DateTimeField(_("pushed end"), null=True, blank=True)
    pushed_live = models.BooleanField(_("event exists"), default=False)
    pushed_summary = models.CharField(_("pushed title"), max_length=200, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=LinkState.choices, default=LinkState.PENDING)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    attempts = models.PositiveIntegerField(_("failed attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("calendar event")
        verbose_name_plural = _("calendar events")
        ordering = ["-updated_at"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=LinkState.values), name="calendar_link_state_valid"),
        ]
        indexes = [
            # The periodic catch-up reads the links still to push.
            models.Index(fields=["next_attempt_at"], condition=~Q(state="synced"), name="calendar_link_todo_idx"),
            # The pull finds our events by id on a calendar.
            models.Index(fields=["calendar_id", "event_id"], name="calendar_link_event_idx"),
        ]

    def __str__(self) -> str:
        return self.event_id


class ExternalBusy(ClinicOwnedModel):
    """An event the professional keeps in Google themselves (not ours): it blocks that time in availability."""

    same_clinic_fields = ("professional",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    professional = models.ForeignKey(
        Professional, on_delete=models.CASCADE, related_name="external_busy", verbose_name=_("professional")
    )
    event_id = models.CharField(_("event id"), max_length=1024)
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("busy time from Google")
        verbose_name_plural = _("busy times from Google")
        ordering = ["start"]
        constraints = [
            # The pull upserts on it: one row per Google event, however often it is synced.
            models.UniqueConstraint(fields=["professional", "event_id"], name="external_busy_event_unique"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="external_busy_end_after_start"),
        ]
        indexes = [models.Index(fields=["professional", "end"], name="external_busy_professional_idx")]

    def __str__(self) -> str:
        return f"{self.professional}: {self.start:%Y-%m-%d %H:%M}–{self.end:%H:%M}"


class ReconciliationKind(models.TextChoices):
    MOVED = "moved", _("Moved in Google")
    DELETED = "deleted", _("Deleted in Google")


class Resolution(models.TextChoices):
    APPLIED = "applied", _("Applied in Cecilia")
    KEPT = "kept", _("Kept Cecilia's time")
    OBSOLETE = "obsolete", _("Google matches Cecilia again")


class CalendarReconciliation(ClinicOwnedModel):
    """Someone moved or deleted in Google an event Cecilia created. Staff decide: apply it or keep Cecilia's."""

    same_clinic_fields = ("appointment", "professional")

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="calendar_reconciliations", verbose_name=_("appointment")
    )
    professional = models.ForeignKey(
        Professional, on_delete=models.CASCADE, related_name="+", verbose_name=_("professional")
    )
    kind = models.CharField(_("what happened"), max_length=10, choices=ReconciliationKind.choices)
    google_start = models.DateTimeField(_("new start in Google"), null=True, blank=True)
    google_end = models.DateTimeField(_("new end in Google"), null=True, blank=True)
    # The Google version this row is about: the same version seen again (a full resync) is not a new change.
    google_etag = models.CharField(_("Google version"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("noticed at"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("resolved by"),
    )
    resolution = models.CharField(_("resolution"), max_length=10, choices=Resolution.choices, blank=True)

    class Meta:
        verbose_name = _("change made in Google")
        verbose_name_plural = _("changes made in Google")
        ordering = ["resolved_at", "-created_at"]
        constraints = [
            # The pull updates the open row instead of adding another each sync: one open question per appointment.
            models.UniqueConstraint(
                fields=["appointment"], condition=Q(resolved_at__isnull=True), name="reconciliation_one_open"
            ),
            models.CheckConstraint(condition=Q(kind__in=ReconciliationKind.values), name="reconciliation_kind"),
            models.CheckConstraint(
                condition=Q(kind="deleted") | Q(google_start__isnull=False, google_end__gt=F("google_start")),
                name="reconciliation_moved_has_times",
            ),
            models.CheckConstraint(
                condition=Q(resolved_at__isnull=True, resolution="")
                | Q(resolved_at__isnull=False, resolution__in=Resolution.values),
                name="reconciliation_resolution_when_resolved",
            ),
        ]
        indexes = [
            models.Index(
                fields=["clinic", "created_at"], condition=Q(resolved_at__isnull=True), name="reconciliation_open_idx"
            )
        ]

    def __str__(self) -> str:
        return str(self.title)

    @property
    def title(self) -> str:
        if self.kind == ReconciliationKind.DELETED:
            return _("%(professional)s deleted this appointment in Google — cancel it and tell the patient?") % {
                "professional": self.professional
            }
        return _("%(professional)s moved this appointment in Google — apply it and tell the patient?") % {
            "professional": self.professional
        }
