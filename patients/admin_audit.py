"""The audit hooks for admin pages, and the read-only admin of the audit trail and the access log.

* `AccessLoggedAdminMixin`: opening a row's change page (GET, not a POST re-render) logs a PatientAccess for the
  patient the row concerns. Used as is by pages that show patient data but whose writes are audited elsewhere
  (the conversation page).
* `AuditedAdminMixin`: also records every save and delete staff make on the page — the row itself and its inline
  rows — as AuditEntry with each changed field before and after. On the patient page managers also get links to the
  patient's audit trail and access log.
* `ServiceAuditedAdminMixin`: for admins whose saves go through services that audit staff actions themselves
  (appointments: scheduling.services), so each staff action is recorded once; deletes are still recorded here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from cecilia.admin_scoping import ClinicScopedAdmin, ReadOnlyAdminMixin, ScopedRelatedFilter
from patients.audit import audit_changes, audit_record, audit_snapshot, patient_access_record
from patients.models import AccessKind, AuditAction, AuditEntry, Patient, PatientAccess


def audit_patient_id(obj: models.Model) -> int | None:
    """The patient a row concerns: the patient itself, its `patient`, or a guardian link's dependent."""
    if isinstance(obj, Patient):
        return obj.pk
    for attname in ("patient_id", "dependent_id"):
        value = getattr(obj, attname, None)
        if value is not None:
            return value
    entry = getattr(obj, "entry", None)  # a waitlist offer belongs to its entry's patient
    return getattr(entry, "patient_id", None)


def _access_kind(model: type[models.Model]) -> AccessKind:
    name = model._meta.model_name
    return AccessKind(name) if name in AccessKind.values and name != AccessKind.EXPORT else AccessKind.PATIENT


def _stored(obj: models.Model) -> models.Model | None:
    """The row as it is in the database (the form has already written the typed values onto `obj`)."""
    if obj.pk is None:
        return None
    return type(obj)._default_manager.filter(pk=obj.pk).first()


class AccessLoggedAdminMixin:
    """Opening the change (or view-only) page of a row logs who opened which patient's data."""

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        response = super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]
        # GET only: a POST that re-renders the form with errors is the same visit, already logged.
        if obj is not None and obj.pk is not None and request.method == "GET":
            patient_id = audit_patient_id(obj)
            if patient_id is not None:
                patient_access_record(
                    user=request.user, clinic_id=obj.clinic_id, patient_id=patient_id, kind=_access_kind(type(obj))
                )
        return response


class AuditedAdminMixin(AccessLoggedAdminMixin):
    """Records each save and delete made on the page, with the before and after of the changed fields."""

    audit_saves = True

    # --- the row --------------------------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        stored = _stored(obj) if change and self.audit_saves else None
        before = audit_snapshot(stored) if stored is not None else {}
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if self.audit_saves:
            _record_saved(request, obj, before, created=not change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        _record_deleted(request, obj)  # before: the row, its pk and its patient still exist
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            _record_deleted(request, obj)
        super().delete_queryset(request, queryset)  # type: ignore[misc]

    # --- inline rows (a patient's guardians and dependents, …) ----------------------------------------------------

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if not self.audit_saves:
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return
        before: dict[Any, dict] = {}
        for sub in formset.initial_forms:
            instance = sub.instance
            if instance.pk is None or not sub.has_changed():
                continue
            stored = _stored(instance)
            if stored is None:
                continue
            if formset.can_delete and formset._should_delete_form(sub):
                _record_deleted(request, stored)
            else:
                before[instance.pk] = audit_snapshot(stored)
        super().save_formset(request, form, formset, change)  # type: ignore[misc]
        for obj in formset.new_objects:
            _record_saved(request, obj, {}, created=True)
        for obj, _fields in formset.changed_objects:
            _record_saved(request, obj, before.get(obj.pk, {}), created=False)

    # --- links from the patient page to their trail and accesses -------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        if isinstance(obj, Patient) and _may_read_audit(request, obj):
            fieldsets.append((_("History and access"), {"fields": ("audit_links",)}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return [*fields, "audit_links"] if isinstance(obj, Patient) and "audit_links" not in fields else fields

    @admin.display(description=_("History and access"))
    def audit_links(self, obj: Patient) -> str:
        query = urlencode({"patient__id__exact": obj.pk})
        return format_html(
            '<a href="{}?{}">{}</a> · <a href="{}?{}">{}</a>',
            reverse("admin:patients_auditentry_changelist"),
            query,
            _("Changes made by staff"),
            reverse("admin:patients_patientaccess_changelist"),
            query,
            _("Who opened this patient's data"),
        )


class ServiceAuditedAdminMixin(AuditedAdminMixin):
    """Saves go through services that audit staff actions themselves (one entry per action); deletes and page views
    are recorded here."""

    audit_saves = False


def _may_read_audit(request: HttpRequest, obj: Patient) -> bool:
    entry_admin = admin.site._registry.get(AuditEntry)
    return entry_admin is not None and entry_admin.has_view_permission(request, obj)


def _record_saved(request: HttpRequest, obj: Any, before: dict, *, created: bool) -> None:
    changes = audit_changes(before, audit_snapshot(obj))
    if not created and not changes:
        return  # saved unchanged: nothing happened to the patient's data
    audit_record(
        actor=request.user,
        clinic_id=obj.clinic_id,
        action=AuditAction.CREATE if created else AuditAction.UPDATE,
        obj=obj,
        patient_id=audit_patient_id(obj),
        changes=changes,
    )


def _record_deleted(request: HttpRequest, obj: Any) -> None:
    audit_record(
        actor=request.user,
        clinic_id=obj.clinic_id,
        action=AuditAction.DELETE,
        obj=obj,
        patient_id=audit_patient_id(obj),
        changes=audit_changes(audit_snapshot(obj), {}),
    )


# ------------------------------------------------------------------------------------------------------------------
# The read-only pages: the audit trail and the access log (managers; roles give receptionists neither)
# ------------------------------------------------------------------------------------------------------------------


class _ReadOnlyRecordAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    """Records of what happened: managers read them, only `patients.audit` writes them."""

    list_per_page = 100

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The patient page links here filtered by patient; the queryset is clinic-scoped whatever the filter.
        return lookup in ("patient", "patient__id__exact", "patient__exact") or super().lookup_allowed(
            lookup, value, request
        )


class AuditedTypeFilter(admin.SimpleListFilter):
    """The kinds of rows the user's clinics have entries about (appointment, patient, guardian link…)."""

    title = _("type")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = model_admin.get_queryset(request).order_by().values("content_type").distinct()
        types = ContentType.objects.filter(pk__in=ids)
        return sorted(
            ((str(ct.pk), capfirst(str(ct.model_class()._meta.verbose_name)) if ct.model_class() else ct.model))
            for ct in types
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(content_type_id=value) if value and value.isdigit() else queryset


# The named actions written across the apps (scheduling.services, conversations.desk, patients.lgpd), as staff read
# them; a name not listed here is shown as written.
_ACTION_NAMES = {
    "book": _("booked the appointment"),
    "reschedule": _("moved the appointment"),
    "cancel": _("cancelled the appointment"),
    "confirm": _("confirmed the appointment"),
    "no_show": _("marked the patient as a no-show"),
    "complete": _("marked the appointment as completed"),
    "edit": _("edited the appointment details"),
    "take_over": _("took over the conversation"),
    "give_back": _("gave the conversation back to the assistant"),
    "close": _("closed the conversation"),
    "assign": _("assigned the conversation"),
    "anonymise": _("anonymised the patient (LGPD)"),
    "export": _("exported the patient's data (LGPD)"),
}


@admin.register(AuditEntry)
class AuditEntryAdmin(_ReadOnlyRecordAdmin):
    list_display = ("at", "actor_label", "action", "what", "type_label", "object_repr", "patient")
    list_filter = (("actor", ScopedRelatedFilter), "action", AuditedTypeFilter, "clinic")
    list_select_related = ("content_type", "patient")
    search_fields = ("object_repr", "actor_label", "action_name")
    date_hierarchy = "at"
    fields = (
        "at",
        "actor_label",
        "action",
        "what",
        "type_label",
        "object_repr",
        "patient",
        "changes_table",
        "clinic",
    )
    readonly_fields = fields

    @admin.display(description=_("what"), ordering="action_name")
    def what(self, obj: AuditEntry) -> str:
        return str(_ACTION_NAMES.get(obj.action_name, obj.action_name)) or "—"

    @admin.display(description=_("type"), ordering="content_type")
    def type_label(self, obj: AuditEntry) -> str:
        model = obj.content_type.model_class()
        return capfirst(str(model._meta.verbose_name)) if model else obj.content_type.model

    @admin.display(description=_("before and after"))
    def changes_table(self, obj: AuditEntry) -> str:
        if not obj.changes:
            return str(_("No field values recorded."))
        model = obj.content_type.model_class()
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((_field_label(model, name), _shown(pair, 0), _shown(pair, 1)) for name, pair in obj.changes.items()),
        )
        return format_html(
            '<table class="audit-changes"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            _("Changed field"),
            _("Before"),
            _("After"),
            rows,
        )


def _field_label(model: type[models.Model] | None, name: str) -> str:
    try:
        return capfirst(str(model._meta.get_field(name).verbose_name)) if model else name
    except FieldDoesNotExist:  # a field removed since the entry was written keeps its name
        return name


def _shown(pair: Any, index: int) -> str:
    value = pair[index] if isinstance(pair, list | tuple) and len(pair) > index else None
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return str(_("Yes") if value else _("No"))
    return str(value)


@admin.register(PatientAccess)
class PatientAccessAdmin(_ReadOnlyRecordAdmin):
    list_display = ("at", "user_label", "kind", "patient")
    list_filter = (("user", ScopedRelatedFilter), "kind", "clinic")
    list_select_related = ("patient",)
    search_fields = ("user_label", "patient__full_name", "patient__whatsapp_name")
    date_hierarchy = "at"
    fields = ("at", "user_label", "kind", "patient", "clinic")
    readonly_fields = fields
