"""Admin for patients and health plans.

Apps above this one (scheduling, conversations) add their inlines to the patient page through
`register_patient_inline`, so the dependency arrow keeps pointing one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from cecilia.admin_scoping import (
    ClinicScopedAdmin,
    ClinicScopedTabularInline,
    ScopedRelatedFilter,
    role_allows_on,
    yes_no_filter,
)
from patients import lgpd
from patients.admin_audit import AuditedAdminMixin
from patients.models import HealthPlan, Patient, PatientGuardian, PrivacyAcknowledgement
from patients.phones import format_phone_for_display

_EXTRA_PATIENT_INLINES: list[type[admin.options.InlineModelAdmin]] = []
# Read-only lines about the patient from apps above this one (scheduling: the no-shows), each function(patient) -> str
# (safe HTML), labelled by its `short_description` (@admin.display). They should cost a query or two each.
_PATIENT_SUMMARIES: list[Callable[[Patient], str]] = []


def register_patient_inline(inline: type[admin.options.InlineModelAdmin]) -> None:
    """Show `inline` on the patient page (used by scheduling for appointments, conversations for chats)."""
    if inline not in _EXTRA_PATIENT_INLINES:
        _EXTRA_PATIENT_INLINES.append(inline)


class DependentInline(ClinicScopedTabularInline):
    model = PatientGuardian
    fk_name = "guardian"
    extra = 0
    autocomplete_fields = ("dependent",)
    verbose_name = _("dependent")
    verbose_name_plural = _("dependents (this patient books for them)")


class GuardianInline(ClinicScopedTabularInline):
    model = PatientGuardian
    fk_name = "dependent"
    extra = 0
    autocomplete_fields = ("guardian",)
    verbose_name = _("guardian")
    verbose_name_plural = _("guardians (they book for this patient)")


class PrivacyAcknowledgementInline(ClinicScopedTabularInline):
    """Which versions of the clinic's privacy notice the patient was sent, and when they went on after it.

    A record for the clinic and the law (LGPD): written by the assistant only, never edited.
    """

    model = PrivacyAcknowledgement
    fields = ("notice_version", "notice_sent_at", "acknowledged_at", "channel")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def register_patient_summary(function: Callable[[Patient], str]) -> None:
    """Show `function(patient)` in the "History" section of the patient page (change page only)."""
    if function not in _PATIENT_SUMMARIES:
        _PATIENT_SUMMARIES.append(function)


@admin.register(Patient)
class PatientAdmin(AuditedAdminMixin, ClinicScopedAdmin):
    list_display = ("display_name", "phone_display", "health_plan", "created_at")
    list_display_links = ("display_name",)
    list_filter = (
        "clinic",
        ("health_plan", ScopedRelatedFilter),
        yes_no_filter("opt_out_automated", _("automated messages"), _("refused"), _("receives")),
        yes_no_filter("opt_out_ai", _("assistant"), _("only staff answer"), _("assistant answers")),
    )
    list_select_related = ("health_plan",)
    search_fields = ("full_name", "whatsapp_name", "phone", "cpf", "email")
    date_hierarchy = "created_at"
    autocomplete_fields = ("health_plan",)
    readonly_fields = ("whatsapp_id", "created_at", "updated_at")
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("clinic", "full_name", "whatsapp_name", "phone", "whatsapp_id")}),
        (_("Personal details"), {"fields": ("birth_date", "cpf", "email")}),
        (_("Health plan"), {"fields": ("health_plan", "health_plan_card_number")}),
        (_("Preferences"), {"fields": ("opt_out_automated", "opt_out_ai")}),
        (_("Staff notes"), {"fields": ("notes",)}),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    change_form_template = "admin/patients/patient/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: Patient | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and obj.anonymised_at is not None:
            fieldsets.insert(0, (_("Anonymised (LGPD)"), {"fields": ("anonymised_at",)}))
        if obj is not None and _PATIENT_SUMMARIES:
            fieldsets.insert(1, (_("History"), {"fields": ("summaries",)}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Patient | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.anonymised_at is not None:
            # Nothing on this page may put identifying data back on an anonymised record by mistake: every field
            # is read-only (an inline's own rules still apply). A person who writes again becomes a new patient.
            fields += [f.name for f in obj._meta.concrete_fields if f.name not in fields] + ["anonymised_at"]
        return [*fields, "summaries"] if obj is not None else fields

    # --- LGPD: export and anonymisation (patients.lgpd), managers only ------------------------------------------

    def get_urls(self) -> list[Any]:
        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}"
        return [
            path(
                "<int:patient_id>/lgpd/export/", self.admin_site.admin_view(self.export_view), name=f"{prefix}_export"
            ),
            path(
                "<int:patient_id>/lgpd/anonymise/",
                self.admin_site.admin_view(self.anonymise_view),
                name=f"{prefix}_anonymise",
            ),
            *super().get_urls(),
        ]

    def _lgpd_patient(self, request: HttpRequest, patient_id: int, action: str) -> Patient:
        """The patient if the user may act on them: another clinic's patient is a 404, a role without the right 403."""
        patient = get_object_or_404(self.get_queryset(request).select_related("clinic"), pk=patient_id)
        if not self.has_lgpd_permission(request, action, patient):
            raise PermissionDenied
        return patient

    def has_lgpd_permission(self, request: HttpRequest, action: str, obj: Patient | None) -> bool:
        """`action` is "export" or "anonymise": the managers' rights (cecilia.roles); superusers have them."""
        return request.user.is_active and role_allows_on(request, action, Patient, obj)

    def export_view(self, request: HttpRequest, patient_id: int) -> HttpResponse:
        patient = self._lgpd_patient(request, patient_id, "export")
        content = lgpd.patient_export(patient=patient, requested_by=request.user)
        stamp = timezone.now().astimezone(patient.clinic.tz).strftime("%Y%m%d-%H%M")
        response = HttpResponse(content, content_type="application/zip")
        # The id, not the name: the file name shows up in download lists and browser history.
        response["Content-Disposition"] = f'attachment; filename="paciente-{patient.pk}-lgpd-{stamp}.zip"'
        response["Cache-Control"] = "no-store"
        return response

    def anonymise_view(self, request: HttpRequest, patient_id: int) -> HttpResponse:
        patient = self._lgpd_patient(request, patient_id, "anonymise")
        change_url = reverse(f"{self.admin_site.name}:patients_patient_change", args=[patient.pk])
        if patient.anonymised_at is not None:
            messages.info(request, _("This patient was already anonymised."))
            return HttpResponseRedirect(change_url)
        error = ""
        if request.method == "POST":
            if request.POST.get("confirm") == "ANONIMIZAR":
                lgpd.patient_anonymise(patient=patient, requested_by=request.user)
                messages.success(request, _("The patient's data was anonymised."))
                return HttpResponseRedirect(change_url)
            error = _("Type ANONIMIZAR in capitals to confirm.")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Anonymise patient"),
            "opts": self.model._meta,
            "original": patient,
            "change_url": change_url,
            "error": error,
            "counts": _anonymise_counts(patient),
        }
        return TemplateResponse(request, "admin/patients/patient/anonymise.html", context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Patient | None = None,
    ) -> Any:
        context["can_export"] = obj is not None and self.has_lgpd_permission(request, "export", obj)
        context["can_anonymise"] = (
            obj is not None and obj.anonymised_at is None and self.has_lgpd_permission(request, "anonymise", obj)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description=_("at the clinic"))
    def summaries(self, obj: Patient) -> str:
        parts = (
            format_html("<div><strong>{}:</strong> {}</div>", capfirst(getattr(f, "short_description", "")), f(obj))
            for f in _PATIENT_SUMMARIES
        )
        return format_html_join("", "{}", ((part,) for part in parts))

    def get_inlines(self, request: HttpRequest, obj: Patient | None) -> list[Any]:
        return [DependentInline, GuardianInline, *_EXTRA_PATIENT_INLINES, PrivacyAcknowledgementInline]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Staff search by phone as they read it ("(11) 98765-4321") and by CPF with punctuation."""
        unsearched = queryset
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = "".join(ch for ch in search_term if ch.isdigit())
        if len(digits) >= 4 and digits != search_term.strip():
            queryset |= unsearched.filter(Q(phone__contains=digits) | Q(cpf__contains=digits))
        return queryset, may_have_duplicates

    @admin.display(description=_("name"), ordering="full_name")
    def display_name(self, obj: Patient) -> str:
        return obj.display_name

    @admin.display(description=_("phone"), ordering="phone")
    def phone_display(self, obj: Patient) -> str:
        return format_phone_for_display(obj.phone) if obj.phone else "—"


def _anonymise_counts(patient: Patient) -> dict[str, int]:
    """What the confirmation page tells the manager will be touched, in numbers."""
    from conversations.models import Message
    from scheduling.models import Appointment

    return {
        "messages": Message.objects.filter(conversation__patient=patient).count(),
        "media": Message.objects.filter(conversation__patient=patient).exclude(media="").count(),
        "appointments": Appointment.objects.filter(patient=patient).count(),
    }


@admin.register(HealthPlan)
class HealthPlanAdmin(ClinicScopedAdmin):
    list_display = ("name", "clinic", "active")
    list_filter = ("active", "clinic")
    list_select_related = ("clinic",)
    search_fields = ("name",)


@admin.register(PatientGuardian)
class PatientGuardianAdmin(AuditedAdminMixin, ClinicScopedAdmin):
    list_display = ("guardian", "dependent", "relationship")
    list_filter = ("relationship", "clinic")
    list_select_related = ("guardian", "dependent")
    search_fields = ("guardian__full_name", "dependent__full_name", "guardian__phone")
    autocomplete_fields = ("guardian", "dependent")
