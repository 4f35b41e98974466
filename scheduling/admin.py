"""Admin for the agenda: professionals and their hours, services, time off and appointments."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cecilia.admin import register_clinic_saved
from cecilia.admin_scoping import ClinicScopedAdmin, ClinicScopedTabularInline, HoursInlineFormSet, ScopedRelatedFilter
from patients.admin import register_patient_inline, register_patient_summary
from patients.admin_audit import ServiceAuditedAdminMixin
from scheduling import agenda
from scheduling.admin_outreach import (
    ReminderRuleInline,
    ReminderStepInline,
    clinic_saved,
    patient_no_shows,
    replan_once,
)
from scheduling.availability import slot_problems
from scheduling.errors import BookingError
from scheduling.models import (
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Professional,
    ReminderRule,
    Service,
    TimeOff,
    WorkingHours,
)
from scheduling.selectors import appointments_overlapping
from scheduling.services import (
    Actor,
    appointment_book,
    appointment_cancel,
    appointment_complete,
    appointment_confirm,
    appointment_details_edit,
    appointment_mark_no_show,
    appointment_reschedule,
)


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
    inlines = (ReminderRuleInline,)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is ReminderRule and formset.has_changed():
            replan_once(request, form.instance.clinic_id)


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
    """Checks a booking or a move in words before the booking services run it (they have the last word at save).

    Rules staff may override (outside the hours, a closed day, a buffer, Google busy) are refused once with a
    "book anyway" checkbox (`force`), rendered by the change form template only after such an error.
    """

    force = forms.BooleanField(label=_("Book outside the professional's hours anyway"), required=False)

    class Meta:
        model = Appointment
        fields = "__all__"  # noqa: DJ007 - the admin narrows it to its fieldsets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offer_force = bool(self.data.get("force"))
        if "status" in self.fields and self.instance.pk is not None:
            # Back to "scheduled" has no service: an appointment only moves forward (or is cancelled).
            current = self.instance.status
            self.fields["status"].choices = [
                (value, label)
                for value, label in AppointmentStatus.choices
                if value == current or value != AppointmentStatus.SCHEDULED
            ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self._check_professional(cleaned)
        if self._moves(cleaned) and not self.errors:
            self._check_slot(cleaned)
        return cleaned

    def _moves(self, cleaned: dict[str, Any]) -> bool:
        """A new booking, or a change of time or professional of an active appointment."""
        if not cleaned.get("start") or cleaned.get("status") == AppointmentStatus.CANCELLED:
            return False
        return self.instance.pk is None or bool({"start", "professional"} & set(self.changed_data))

    def _service(self, cleaned: dict[str, Any]) -> Service | None:
        return cleaned.get("service") or (self.instance.service if self.instance.service_id else None)

    def _check_professional(self, cleaned: dict[str, Any]) -> None:
        professional, service = cleaned.get("professional"), self._service(cleaned)
        if professional is None or service is None or not self.has_changed():
            return
        changed = {"professional", "service"} & set(self.changed_data)
        if changed and not professional.active:
            self.add_error("professional", _("%(name)s is inactive and takes no bookings.") % {"name": professional})
        if changed and not service.professionals.filter(pk=professional.pk).exists():
            names = {"professional": professional, "service": service}
            field = "service" if "service" in self.fields else "professional"
            self.add_error(field, _("%(professional)s does not perform %(service)s.") % names)

    def _check_slot(self, cleaned: dict[str, Any]) -> None:
        """Every booking rule the slot breaks, as form errors; overridable ones offer the "anyway" checkbox."""
        service = self._service(cleaned)
        professional = cleaned.get("professional") or self.instance.professional
        if service is None or professional is None:
            return
        end = cleaned["start"] + datetime.timedelta(minutes=service.duration_minutes)
        clash = self._clash(cleaned, professional, end)
        if clash:
            return
        problems = slot_problems(
            service=service,
            professional=professional,
            start=cleaned["start"],
            ignore_appointment_id=self.instance.pk,
            enforce_policy=False,  # the clinic's booking policy binds the assistant, not staff
        )
        hard = [p for p in problems if not p.forceable]
        soft = [p for p in problems if p.forceable]
        for problem in hard:
            self.add_error("start", problem.error.message)
        if soft and not hard:
            self.offer_force = True
            if not cleaned.get("force"):
                for problem in soft:
                    self.add_error("start", problem.error.message)

    def _clash(self, cleaned: dict[str, Any], professional: Professional, end: datetime.datetime) -> bool:
        """Name the appointment in the way (professional's or patient's), in the clinic's time; True if any.

        The professional and patient rows are locked first (the admin validates and saves in one transaction):
        two staff booking the same slot at once are serialised here, so the second one reads the first booking
        and gets this message; the booking service and the exclusion constraints stay the last word.
        """
        patient = cleaned.get("patient") or (self.instance.patient if self.instance.patient_id else None)
        for row in (professional, patient):
            if row is not None:
                type(row).objects.select_for_update().filter(pk=row.pk).first()
        window = {"start": cleaned["start"], "end": end, "exclude_id": self.instance.pk}
        found = False
        for who, key in ((professional, "professional_id"), (patient, "patient_id")):
            if who is None:
                continue
            clash = appointments_overlapping(**window, **{key: who.pk}).first()
            if clash is None:
                continue
            found = True
            message = (
                _("%(who)s already has an appointment from %(start)s to %(end)s.")
                if key == "professional_id"
                else _("%(who)s already has another appointment from %(start)s to %(end)s.")
            )
            # The active zone: the one the typed time was read in (the clinic's for staff of one clinic).
            self.add_error(
                "start",
                message
                % {
                    "who": who,
                    "start": date_format(timezone.localtime(clash.start), "SHORT_DATETIME_FORMAT"),
                    "end": date_format(timezone.localtime(clash.end), "TIME_FORMAT"),
                },
            )
        return found


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
# Fixed once booked: another patient or service is another appointment (cancel this one, book that one).
_FIXED_AFTER_BOOKING = ("patient", "service", "end", "source")
# The quick actions a status change in the form maps to; "scheduled" is where every appointment starts.
_STATUS_SERVICES: dict[str, Callable[..., Any]] = {
    AppointmentStatus.CONFIRMED: appointment_confirm,
    AppointmentStatus.COMPLETED: appointment_complete,
    AppointmentStatus.NO_SHOW: appointment_mark_no_show,
}


_HISTORY_LABELS = {
    "start": _("start"),
    "end": _("end"),
    "professional_id": _("professional"),
    "status": _("status"),
    "changed": _("fields"),
}


def _history_value(key: str, value: Any, names: dict[int, str]) -> str:
    if key in ("start", "end") and isinstance(value, str):
        try:
            return date_format(timezone.localtime(datetime.datetime.fromisoformat(value)), "SHORT_DATETIME_FORMAT")
        except ValueError:
            return value
    if key == "professional_id":
        return names.get(value, str(value))
    if key == "status" and value in AppointmentStatus.values:
        return str(AppointmentStatus(value).label)
    if key == "changed" and isinstance(value, list):
        return ", ".join(
            str(Appointment._meta.get_field(f).verbose_name) for f in value if f in ("notes", "cancellation_reason")
        )
    return str(value)


def _history_details(before: dict[str, Any], after: dict[str, Any], names: dict[int, str]) -> str:
    """What one AppointmentChange changed, as staff read it: "start: 10/05 09:00 → 10/05 10:00; status: …"."""
    parts = []
    for key, label in _HISTORY_LABELS.items():
        if key not in after or (key in before and before[key] == after[key]) or (key == "end" and "start" in after):
            continue
        new = _history_value(key, after[key], names)
        old = _history_value(key, before[key], names) if key in before else None
        parts.append(f"{label}: {old} → {new}" if old is not None else f"{label}: {new}")
    return "; ".join(parts)


@admin.register(Appointment)
class AppointmentAdmin(ServiceAuditedAdminMixin, ClinicScopedAdmin):
    """Every write goes through the booking services (scheduling.services): audited, signalled, race-safe."""

    form = AppointmentAdminForm
    change_form_template = "admin/scheduling/appointment/change_form.html"
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
    actions = ("confirm_selected", "cancel_selected", "mark_no_show_selected")
    add_fieldsets = (
        (None, {"fields": ("clinic", "patient", "professional", "service", "start")}),
        (_("Details"), {"fields": ("notes", "source")}),
    )
    fieldsets = (
        (None, {"fields": ("clinic", "patient", "professional", "service", "start", "end", "status")}),
        (_("Details"), {"fields": ("notes", "cancellation_reason", "source")}),
        (_("History"), {"fields": ("change_history",)}),
        (_("Record"), {"fields": _RECORD_FIELDS, "classes": ("collapse",)}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Appointment | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_inlines(self, request: HttpRequest, obj: Appointment | None) -> list[Any]:
        # Steps exist once the appointment does: the booking service plans them.
        return [ReminderStepInline] if obj is not None else []

    def get_readonly_fields(self, request: HttpRequest, obj: Appointment | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += [f for f in (*_FIXED_AFTER_BOOKING, "change_history") if f not in fields]
        if obj is not None and obj.status not in (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED):
            # Done or cancelled: nothing to move. A cancelled one stays cancelled (book a new one instead).
            fields += ["start", "professional"] + (["status"] if obj.status == AppointmentStatus.CANCELLED else [])
        return fields

    def get_urls(self) -> list[Any]:
        """The agenda page and its quick actions (scheduling/agenda.py), behind the admin's login and CSRF."""

        def view(function: Any) -> Any:
            return self.admin_site.admin_view(partial(function, model_admin=self))

        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}"
        return [
            path("agenda/", view(agenda.agenda), name=f"{prefix}_agenda"),
            path(
                "agenda/<int:appointment_id>/<str:action>/",
                view(agenda.agenda_action),
                name=f"{prefix}_agenda_action",
            ),
            *super().get_urls(),
        ]

    # --- the add form, prefilled from an empty slot of the agenda ----------------------------------------------

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("source", AppointmentSource.ADMIN)
        for name in ("clinic", "patient", "professional", "service"):
            # Ids only: anything else would reach the autocomplete's query and fail there.
            if name in initial and not str(initial[name]).isdigit():
                del initial[name]
        raw_start = request.GET.get("start")
        initial.pop("start", None)
        if raw_start:
            try:
                start = datetime.datetime.fromisoformat(raw_start)
            except ValueError:
                start = None
            if start is not None and timezone.is_aware(start):
                initial["start"] = start
        return initial

    # --- saving through the services --------------------------------------------------------------------------

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except BookingError as exc:
            # The form's checks passed but the service refused at save (a booking raced in, or a status change the
            # appointment's state does not allow): nothing was saved; say why on the same form.
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: Appointment, form: Any, change: bool) -> None:
        actor = Actor.staff(request.user)
        force = bool(form.cleaned_data.get("force"))
        if not change:
            booked = appointment_book(
                patient=obj.patient,
                service=obj.service,
                professional=obj.professional,
                start=obj.start,
                actor=actor,
                source=obj.source or AppointmentSource.ADMIN,
                notes=obj.notes,
                force=force,
            )
            obj.pk = booked.pk
            obj.refresh_from_db()
            return
        changed = set(form.changed_data)
        current = Appointment.objects.get(pk=obj.pk)
        if {"start", "professional"} & changed and obj.status != AppointmentStatus.CANCELLED:
            appointment_reschedule(
                appointment=current, start=obj.start, professional=obj.professional, actor=actor, force=force
            )
            current.refresh_from_db()
        if "status" in changed:
            if obj.status == AppointmentStatus.CANCELLED:
                appointment_cancel(appointment=current, actor=actor, reason=obj.cancellation_reason)
                changed.discard("cancellation_reason")
            elif obj.status in _STATUS_SERVICES:
                _STATUS_SERVICES[obj.status](appointment=current, actor=actor)
            current.refresh_from_db()
        edited = [f for f in ("notes", "cancellation_reason") if f in changed]
        if edited:
            appointment_details_edit(
                appointment=current,
                actor=actor,
                notes=obj.notes,
                cancellation_reason=obj.cancellation_reason,
            )
        obj.refresh_from_db()

    def _next_url(self, request: HttpRequest) -> str | None:
        target = request.GET.get("next", "")
        if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
            return target
        return None

    def response_add(self, request: HttpRequest, obj: Appointment, post_url_continue: str | None = None) -> Any:
        response = super().response_add(request, obj, post_url_continue)
        back = self._next_url(request)
        plain_save = not ({"_continue", "_addanother", "_popup"} & set(request.POST))
        return HttpResponseRedirect(back) if back and plain_save else response

    def response_change(self, request: HttpRequest, obj: Appointment) -> Any:
        response = super().response_change(request, obj)
        back = self._next_url(request)
        plain_save = not ({"_continue", "_addanother", "_saveasnew", "_popup"} & set(request.POST))
        return HttpResponseRedirect(back) if back and plain_save else response

    # --- history --------------------------------------------------------------------------------------------------

    @admin.display(description=_("changes"))
    def change_history(self, obj: Appointment) -> str:
        changes = list(obj.changes.select_related("actor_user").order_by("at", "pk"))
        if not changes:
            return str(_("No changes recorded."))
        ids = {v for c in changes for side in (c.before, c.after) for k, v in side.items() if k == "professional_id"}
        names = dict(Professional.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(timezone.localtime(c.at), "SHORT_DATETIME_FORMAT"),
                    c.get_action_display(),
                    c.actor_user.get_username() if c.actor_user else c.get_actor_kind_display(),
                    _history_details(c.before, c.after, names),
                    c.note,
                )
                for c in changes
            ),
        )
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            _("When"),
            _("What"),
            _("Who"),
            _("Details"),
            _("Note"),
        )
        return format_html('<table class="appointment-history"><thead>{}</thead><tbody>{}</tbody></table>', head, rows)

    # --- list actions -----------------------------------------------------------------------------------------------

    def _run_on_each(self, request: HttpRequest, queryset: QuerySet, service: Callable[..., Any], done: str) -> None:
        """One service call per appointment, each on its own; the refusals are listed by patient and time."""
        actor, succeeded, refused = Actor.staff(request.user), 0, []
        for appointment in queryset.select_related("patient").order_by("start"):
            try:
                service(appointment=appointment, actor=actor)
            except BookingError as exc:
                when = date_format(timezone.localtime(appointment.start), "SHORT_DATETIME_FORMAT")
                refused.append(f"{appointment.patient.display_name} ({when}): {exc.message}")
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, done % {"count": succeeded}, messages.SUCCESS)
        if refused:
            self.message_user(request, _("Not changed: %(list)s") % {"list": " · ".join(refused)}, messages.ERROR)

    @admin.action(description=_("Confirm the selected appointments"), permissions=["change"])
    def confirm_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_on_each(request, queryset, appointment_confirm, gettext("%(count)d appointment(s) confirmed."))

    @admin.action(description=_("Cancel the selected appointments"), permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_on_each(request, queryset, appointment_cancel, gettext("%(count)d appointment(s) cancelled."))

    @admin.action(description=_("Mark the selected appointments as no-shows"), permissions=["change"])
    def mark_no_show_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run_on_each(
            request, queryset, appointment_mark_no_show, gettext("%(count)d appointment(s) marked as no-shows.")
        )


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
        # The patient too: each row's title (Appointment.__str__) names them.
        return super().get_queryset(request).select_related("patient", "professional", "service")


register_patient_inline(PatientAppointmentInline)
register_patient_summary(patient_no_shows)
register_clinic_saved(clinic_saved)


def _app_list_with_agenda(get_app_list: Callable[..., list[dict[str, Any]]]) -> Callable[..., list[dict[str, Any]]]:
    """The agenda as the first row of the agenda app on the index and in the side menu, for who sees appointments.

    Django lists models only; the agenda is a page of AppointmentAdmin, so it is added to the app's rows here.
    """

    def app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        found = get_app_list(request, app_label)
        for app in found:
            viewable = any(m["object_name"] == "Appointment" and m.get("admin_url") for m in app["models"])
            if app["app_label"] == Appointment._meta.app_label and viewable:
                try:
                    url = reverse("admin:scheduling_appointment_agenda", current_app=admin.site.name)
                except NoReverseMatch:
                    continue
                entry = {"name": _("Agenda"), "object_name": "Agenda", "perms": {"view": True}, "admin_url": url}
                app["models"].insert(0, {**entry, "add_url": None, "view_only": True})
        return found

    return app_list


admin.site.get_app_list = _app_list_with_agenda(admin.site.get_app_list)  # type: ignore[method-assign]
