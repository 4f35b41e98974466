"""Admin for the agenda: professionals and their hours, services, time off and appointments."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from cecilia.admin_scoping import ClinicScopedAdmin, ClinicScopedTabularInline, HoursInlineFormSet, ScopedRelatedFilter
from patients.admin import register_patient_inline
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    Service,
    TimeOff,
    WorkingHours,
)
from scheduling.selectors import appointments_overlapping


class WorkingHoursInline(ClinicScopedTabularInline):
    model = WorkingHours
    formset = HoursInlineFormSet
    extra = 0


class TimeOffInline(ClinicScopedTabularInline):
    model = TimeOff
    extra = 0
    fields = ("start", "end", "reason")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Past absences are history; the professional's page shows what still matters.
        return super().get_queryset(request).filter(end__gte=timezone.now())


@admin.register(Professional)
class ProfessionalAdmin(ClinicScopedAdmin):
    list_display = ("name", "specialty", "council_registration", "clinic", "active")
    list_filter = ("active", "clinic", "specialty")
    list_select_related = ("clinic",)
    search_fields = ("name", "specialty", "council_registration")
    inlines = (WorkingHoursInline, TimeOffInline)


class ServiceAdminForm(forms.ModelForm):
    class Meta:
        model = Service
        fields = "__all__"  # noqa: DJ007 - the admin narrows it to its fieldsets

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        clinic = cleaned.get("clinic")
        if clinic is not None:
            for name in ("professionals", "accepted_health_plans"):
                if any(item.clinic_id != clinic.pk for item in cleaned.get(name) or ()):
                    self.add_error(name, _("Choose only items of the service's clinic."))
        return cleaned


@admin.register(Service)
class ServiceAdmin(ClinicScopedAdmin):
    form = ServiceAdminForm
    list_display = ("name", "duration_minutes", "price", "accepts_private", "clinic", "active")
    list_filter = ("active", "accepts_private", "clinic")
    list_select_related = ("clinic",)
    search_fields = ("name",)
    filter_horizontal = ("professionals", "accepted_health_plans")


@admin.register(WorkingHours)
class WorkingHoursAdmin(ClinicScopedAdmin):
    list_display = ("professional", "weekday", "start", "end")
    list_filter = (("professional", ScopedRelatedFilter), "weekday")
    list_select_related = ("professional",)
    search_fields = ("professional__name",)
    autocomplete_fields = ("professional",)


@admin.register(TimeOff)
class TimeOffAdmin(ClinicScopedAdmin):
    list_display = ("start", "end", "professional_or_clinic", "reason")
    list_filter = (("professional", ScopedRelatedFilter), "clinic")
    list_select_related = ("professional",)
    search_fields = ("reason", "professional__name")
    date_hierarchy = "start"
    autocomplete_fields = ("professional",)

    @admin.display(description=_("who"), ordering="professional__name")
    def professional_or_clinic(self, obj: TimeOff) -> str:
        return obj.professional.name if obj.professional else str(_("Whole clinic"))


class AppointmentAdminForm(forms.ModelForm):
    class Meta:
        model = Appointment
        fields = "__all__"  # noqa: DJ007 - the admin narrows it to its fieldsets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "end" in self.fields:
            self.fields["end"].required = False
            self.fields["end"].help_text = _("Leave empty to use the service's duration.")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Filled here, not only in the model, so the overlap constraints are validated with the real end.
        if not cleaned.get("end") and cleaned.get("start") and cleaned.get("service"):
            cleaned["end"] = cleaned["start"] + datetime.timedelta(minutes=cleaned["service"].duration_minutes)
        self._check_professional(cleaned)
        if cleaned.get("start") and cleaned.get("end") and cleaned.get("status") != AppointmentStatus.CANCELLED:
            self._check_overlaps(cleaned)
        return cleaned

    def _check_professional(self, cleaned: dict[str, Any]) -> None:
        professional, service = cleaned.get("professional"), cleaned.get("service")
        if professional is None or service is None or not self.has_changed():
            return
        changed = {"professional", "service"} & set(self.changed_data)
        if changed and not professional.active:
            self.add_error("professional", _("%(name)s is inactive and takes no bookings.") % {"name": professional})
        if changed and not service.professionals.filter(pk=professional.pk).exists():
            names = {"professional": professional, "service": service}
            self.add_error("service", _("%(professional)s does not perform %(service)s.") % names)

    def _check_overlaps(self, cleaned: dict[str, Any]) -> None:
        """Name the appointment in the way; the database constraint stays the last word in a race.

        The professional and patient rows are locked first (the admin saves inside a transaction): two staff
        booking the same slot at once are serialised here, so the second one reads the first booking and gets
        this message instead of an IntegrityError at save time.
        """
        for field in ("professional", "patient"):
            if cleaned.get(field) is not None:
                type(cleaned[field]).objects.select_for_update().filter(pk=cleaned[field].pk).first()
        window = {"start": cleaned["start"], "end": cleaned["end"], "exclude_id": self.instance.pk}
        for field, key in (("professional", "professional_id"), ("patient", "patient_id")):
            if cleaned.get(field) is None:
                continue
            clash = appointments_overlapping(**window, **{key: cleaned[field].pk}).first()
            if clash is not None:
                message = (
                    _("%(who)s already has an appointment from %(start)s to %(end)s.")
                    if field == "professional"
                    else _("%(who)s already has another appointment from %(start)s to %(end)s.")
                )
                self.add_error(
                    "start",
                    message
                    % {
                        "who": cleaned[field],
                        "start": date_format(timezone.localtime(clash.start), "SHORT_DATETIME_FORMAT"),
                        "end": date_format(timezone.localtime(clash.end), "TIME_FORMAT"),
                    },
                )


class AppointmentPeriodFilter(admin.SimpleListFilter):
    """Opens the agenda on what is still to come: a receptionist rarely needs last year first."""

    title = _("period")
    parameter_name = "period"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("upcoming", _("From today")), ("past", _("Before today")), ("all", _("All"))]

    def choices(self, changelist: Any) -> Any:
        # No Django "All" entry: with nothing chosen the list shows "From today", and "All" is an explicit choice.
        current = self.value() or "upcoming"
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        if self.value() in (None, "upcoming"):
            return queryset.filter(start__gte=today)
        if self.value() == "past":
            return queryset.filter(start__lt=today)
        return queryset


# Who created and changed the appointment: written by Cecilia, shown to staff.
_RECORD_FIELDS = (
    "created_at",
    "created_by_kind",
    "created_by_user",
    "updated_at",
    "updated_by_kind",
    "updated_by_user",
)


@admin.register(Appointment)
class AppointmentAdmin(ClinicScopedAdmin):
    form = AppointmentAdminForm
    list_display = ("start", "patient", "professional", "service", "status")
    list_filter = (
        AppointmentPeriodFilter,
        "status",
        ("professional", ScopedRelatedFilter),
        ("service", ScopedRelatedFilter),
        "source",
        "clinic",
    )
    list_select_related = ("patient", "professional", "service")
    search_fields = ("patient__full_name", "patient__whatsapp_name", "patient__phone", "professional__name")
    date_hierarchy = "start"
    autocomplete_fields = ("patient", "professional", "service")
    readonly_fields = _RECORD_FIELDS
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("clinic", "patient", "professional", "service", "start", "end", "status")}),
        (_("Details"), {"fields": ("notes", "cancellation_reason", "source")}),
        (
            _("Record"),
            {"fields": _RECORD_FIELDS, "classes": ("collapse",)},
        ),
    )

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("source", AppointmentSource.ADMIN)
        return initial

    def save_model(self, request: HttpRequest, obj: Appointment, form: Any, change: bool) -> None:
        # Every change records who made it; here it is always the logged-in staff member.
        if not change:
            obj.created_by_kind = ActorKind.STAFF
            obj.created_by_user = request.user
        obj.updated_by_kind = ActorKind.STAFF
        obj.updated_by_user = request.user
        super().save_model(request, obj, form, change)


class PatientAppointmentInline(ClinicScopedTabularInline):
    """Read-only list of a patient's appointments on the patient page, newest first, each linking to its page."""

    model = Appointment
    fields = ("start", "professional", "service", "status")
    readonly_fields = fields
    ordering = ("-start",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = _("appointments")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("professional", "service")


register_patient_inline(PatientAppointmentInline)
