"""Who did what to a patient's data, and who looked at it: the audit trail and the access log (LGPD art. 37).

Re-exported by `patients.models`. Written by `patients.audit` only, never edited: the admin shows them read-only.
Both point at the patient so a patient's export lists them and anonymisation can scrub the values they hold.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic


class AuditAction(models.TextChoices):
    CREATE = "create", _("Created")
    UPDATE = "update", _("Changed")
    DELETE = "delete", _("Deleted")
    # A named business action (cancel, take over, anonymise…): `action_name` says which.
    ACTION = "action", _("Action")


class AuditEntry(models.Model):
    """One staff change to patient data or an appointment: who, what, when, and each changed field before and after.

    `changes` is `{"field": [before, after]}` with JSON-safe values (display strings for choices and relations).
    `actor_label` keeps the login's name when the user is later deleted.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    at = models.DateTimeField(_("when"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("who"),
    )
    actor_label = models.CharField(_("who (name)"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=10, choices=AuditAction.choices)
    action_name = models.CharField(_("what"), max_length=60, blank=True)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+", verbose_name=_("type"))
    object_id = models.CharField(_("object id"), max_length=64)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    # The patient the change concerns (an appointment's patient, a guardian link's dependent). Kept when the patient
    # row is deleted (SET_NULL) because the trail must outlive it.
    patient = models.ForeignKey(
        "patients.Patient",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("patient"),
    )
    changes = models.JSONField(_("before and after"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["clinic", "-at"], name="audit_clinic_recent_idx"),
            models.Index(fields=["patient", "-at"], name="audit_patient_recent_idx"),
            models.Index(fields=["content_type", "object_id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} · {self.get_action_display()} · {self.object_repr}"


class AccessKind(models.TextChoices):
    PATIENT = "patient", _("Patient record")
    CONVERSATION = "conversation", _("Conversation")
    APPOINTMENT = "appointment", _("Appointment")
    EXPORT = "export", _("Data export")


class PatientAccess(models.Model):
    """A staff member opened a patient's data (their record, their conversation, an export).

    One row per page view; the admin lists them per patient, and the patient's export includes them.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    patient = models.ForeignKey(
        "patients.Patient", on_delete=models.CASCADE, related_name="accesses", verbose_name=_("patient")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("who"),
    )
    user_label = models.CharField(_("who (name)"), max_length=150, blank=True)
    at = models.DateTimeField(_("when"), default=timezone.now)
    kind = models.CharField(_("what"), max_length=20, choices=AccessKind.choices)

    class Meta:
        verbose_name = _("access to patient data")
        verbose_name_plural = _("access log")
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["patient", "-at"], name="access_patient_recent_idx"),
            models.Index(fields=["clinic", "-at"], name="access_clinic_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_label} · {self.get_kind_display()} · {self.at:%Y-%m-%d %H:%M}"
