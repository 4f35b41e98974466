"""Patients of a clinic, the health plans the clinic works with, and who may act for whom (dependents)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from cecilia.models import Clinic, ClinicOwnedModel
from patients.fields import CPFField, PhoneNumberField
from patients.phones import E164_PATTERN, format_phone_for_display


class HealthPlan(models.Model):
    """A health plan (convênio) the clinic accepts, such as Unimed or Bradesco Saúde."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="health_plans", verbose_name=_("clinic"))
    name = models.CharField(_("name"), max_length=80)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("health plan")
        verbose_name_plural = _("health plans")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                "clinic",
                name="health_plan_name_unique_per_clinic",
                violation_error_message=_("This clinic already has a health plan with this name."),
            ),
            models.UniqueConstraint(fields=["id", "clinic"], name="health_plan_id_clinic_unique"),
            models.CheckConstraint(condition=~Q(name=""), name="health_plan_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class Patient(ClinicOwnedModel):
    """A person the clinic cares for. One row per person per clinic, found by the normalised phone number.

    A dependent (a child, an elderly parent) may have no phone of their own: a guardian's WhatsApp manages their
    appointments through `PatientGuardian`.
    """

    same_clinic_fields = ("health_plan",)

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients", verbose_name=_("clinic"))
    phone = PhoneNumberField(_("phone"), null=True, blank=True, help_text=_("Any format: (11) 98765-4321, +55…"))
    whatsapp_id = models.CharField(
        _("WhatsApp id"), max_length=80, blank=True, help_text=_("The id WhatsApp gives this chat (JID or LID).")
    )
    whatsapp_name = models.CharField(_("name on WhatsApp"), max_length=120, blank=True)
    full_name = models.CharField(_("full name"), max_length=160, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    cpf = CPFField(_("CPF"), blank=True)
    email = models.EmailField(_("e-mail"), blank=True)
    health_plan = models.ForeignKey(
        HealthPlan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="patients",
        verbose_name=_("health plan"),
        help_text=_("Empty for private (particular) patients."),
    )
    health_plan_card_number = models.CharField(_("health plan card number"), max_length=40, blank=True)
    notes = models.TextField(_("staff notes"), blank=True, help_text=_("Seen by staff only, never by the assistant."))
    opt_out_automated = models.BooleanField(
        _("no automated messages"), default=False, help_text=_("No reminders or other automatic messages.")
    )
    opt_out_ai = models.BooleanField(
        _("no assistant"), default=False, help_text=_("Only staff answer this patient; the assistant stays silent.")
    )
    # Set by patients.lgpd.patient_anonymise: the row stays (appointments point at it) with nothing identifying.
    anonymised_at = models.DateTimeField(_("anonymised at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering = ["full_name", "whatsapp_name", "id"]
        # LGPD rights (patients.lgpd), managers' only (cecilia.roles): `export_patient` downloads everything held
        # about the patient, `anonymise_patient` erases what identifies them.
        permissions = [
            ("export_patient", _("Can export a patient's data")),
            ("anonymise_patient", _("Can anonymise a patient")),
        ]
        constraints = [
            # Inbound messages find the patient by phone: one person, one row per clinic.
            models.UniqueConstraint(
                fields=["clinic", "phone"],
                condition=Q(phone__isnull=False),
                name="patient_phone_unique_per_clinic",
                violation_error_message=_("Another patient of this clinic has this phone number."),
            ),
            models.UniqueConstraint(
                fields=["clinic", "whatsapp_id"],
                condition=~Q(whatsapp_id=""),
                name="patient_whatsapp_unique",
                violation_error_message=_("Another patient of this clinic has this WhatsApp id."),
            ),
            models.UniqueConstraint(
                fields=["clinic", "cpf"],
                condition=~Q(cpf=""),
                name="patient_cpf_unique",
                violation_error_message=_("Another patient of this clinic has this CPF."),
            ),
            # Target of the same-clinic composite foreign keys (appointments, conversations, guardians).
            models.UniqueConstraint(fields=["id", "clinic"], name="patient_id_clinic_unique"),
            models.CheckConstraint(
                condition=Q(phone__isnull=True) | Q(phone__regex=E164_PATTERN), name="patient_phone_e164"
            ),
            models.CheckConstraint(condition=Q(cpf="") | Q(cpf__regex=r"^[0-9]{11}$"), name="patient_cpf_digits"),
            models.CheckConstraint(
                condition=Q(health_plan__isnull=False) | Q(health_plan_card_number=""),
                name="patient_card_needs_health_plan",
                violation_error_message=_("Choose the health plan of this card number."),
            ),
        ]
        indexes = [
            models.Index(fields=["clinic", "full_name"], name="patient_clinic_name_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        if self.full_name or self.whatsapp_name:
            return self.full_name or self.whatsapp_name
        return format_phone_for_display(self.phone) if self.phone else _("Patient #%(id)s") % {"id": self.pk}

    @property
    def first_name(self) -> str:
        name = self.full_name or self.whatsapp_name
        return name.split()[0] if name else ""


class GuardianRelationship(models.TextChoices):
    CHILD = "child", _("Child")
    PARENT = "parent", _("Parent")
    SPOUSE = "spouse", _("Spouse")
    OTHER = "other", _("Other")


class PatientGuardian(ClinicOwnedModel):
    """`guardian` may book and answer for `dependent` (a child, an elderly parent) from their own WhatsApp."""

    same_clinic_fields = ("guardian", "dependent")

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    guardian = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="dependent_links", verbose_name=_("guardian")
    )
    dependent = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="guardian_links", verbose_name=_("dependent")
    )
    relationship = models.CharField(
        _("relationship"),
        help_text=_("What the dependent is to the guardian."),
        max_length=20,
        choices=GuardianRelationship.choices,
        default=GuardianRelationship.CHILD,
    )

    class Meta:
        verbose_name = _("dependent")
        verbose_name_plural = _("dependents")
        constraints = [
            models.UniqueConstraint(
                fields=["guardian", "dependent"],
                name="patient_guardian_unique",
                violation_error_message=_("This guardian is already linked to this dependent."),
            ),
            models.CheckConstraint(
                condition=~Q(guardian=F("dependent")),
                name="patient_guardian_not_self",
                violation_error_message=_("A patient cannot be their own guardian."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dependent} ← {self.guardian}"


class PrivacyAcknowledgement(ClinicOwnedModel):
    """The clinic's privacy notice (LGPD) sent to a patient, in one version, and when the patient went on after it.

    One row per notice version: a changed notice text or link is a new version, sent again to everyone. The
    patient writing again after receiving the notice counts as acknowledging it (the usual practice for notices,
    which inform rather than ask for consent; consent for specific uses is recorded elsewhere). Written by
    patients.privacy only.
    """

    same_clinic_fields = ("patient",)

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="+", verbose_name=_("clinic"))
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="privacy_acknowledgements", verbose_name=_("patient")
    )
    # A short hash of the notice text and link as sent (patients.privacy.privacy_notice_version).
    notice_version = models.CharField(_("notice version"), max_length=16)
    notice_sent_at = models.DateTimeField(_("notice sent at"))
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    channel = models.CharField(_("channel"), max_length=20, default="whatsapp")

    class Meta:
        verbose_name = _("privacy notice acknowledgement")
        verbose_name_plural = _("privacy notice acknowledgements")
        ordering = ["-notice_sent_at", "-id"]
        constraints = [
            # The first-contact turn asks "was this version sent?": a retried turn finds the row and sends nothing.
            models.UniqueConstraint(
                fields=["clinic", "patient", "notice_version"], name="privacy_ack_one_per_notice_version"
            ),
            models.CheckConstraint(
                condition=Q(acknowledged_at__isnull=True) | Q(acknowledged_at__gte=F("notice_sent_at")),
                name="privacy_ack_after_notice",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient} · {self.notice_version}"


from patients.audit_models import AccessKind, AuditAction, AuditEntry, PatientAccess  # noqa: E402

__all__ = [
    "AccessKind",
    "AuditAction",
    "AuditEntry",
    "GuardianRelationship",
    "HealthPlan",
    "Patient",
    "PatientAccess",
    "PatientGuardian",
    "PrivacyAcknowledgement",
]
