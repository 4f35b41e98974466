"""Admin for what Cecília sends on its own: message templates, reminder rules, the steps planned for each appointment
(with "Reenviar" for a failed one), the patients' ratings (managers only) and the waitlist.

Imported by scheduling.admin, which puts the rules inline on the service page and the steps on the appointment page.
Every change to a clinic's reminder policy (a rule, a template, the sending window) replans its future appointments
once the save commits (scheduling.tasks.reminders_replan).
"""

from __future__ import annotations

import datetime
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Avg, Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from cecilia.admin_scoping import (
    ClinicInlineFormSet,
    ClinicScopedAdmin,
    ClinicScopedTabularInline,
    ReadOnlyAdminMixin,
    ScopedRelatedFilter,
    scope_queryset,
)
from cecilia.models import Clinic
from cecilia.selectors import clinic_ids_allowing
from patients.admin_audit import AuditedAdminMixin
from patients.models import Patient
from scheduling.models import (
    Appointment,
    AppointmentStatus,
    ReminderPurpose,
    ReminderRule,
    ReminderStep,
    ReminderTemplate,
    StepKind,
    WaitlistEntry,
    WaitlistOffer,
)
from scheduling.reminder_models import PLACEHOLDERS
from scheduling.reminders import message_render, placeholder_values
from scheduling.tasks import reminders_replan_on_commit

# The clinic settings that move when reminders go out (the rest only matter after an appointment).
WINDOW_FIELDS = ("reminder_window_start", "reminder_window_end")
RATINGS_PERIODS = (30, 90, 365)


def replan_once(request: HttpRequest, clinic_id: int | None) -> None:
    """Replan the clinic's reminders after this request's transaction commits; once, however many rows changed."""
    if clinic_id is None:
        return
    pending: set[int] = request.__dict__.setdefault("_reminders_replan", set())
    if clinic_id not in pending:
        pending.add(clinic_id)
        reminders_replan_on_commit(clinic_id)


def satisfaction_clinic_ids(request: HttpRequest) -> frozenset[int] | None:
    """The clinics whose ratings the user may read (managers'); None: every clinic (superusers)."""
    return clinic_ids_allowing(request.user, "view", "scheduling", "satisfaction")


def steps_visible(queryset: QuerySet, request: HttpRequest) -> QuerySet:
    """Rating steps (their score and comment) only where the user may read ratings; every other step as scoped."""
    ids = satisfaction_clinic_ids(request)
    if ids is None:
        return queryset
    return queryset.exclude(Q(kind=StepKind.SATISFACTION) & ~Q(clinic_id__in=ids))


class _PolicyAdminMixin:
    """Saving or deleting a row of the reminder policy replans its clinic's future appointments."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        replan_once(request, obj.clinic_id)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        replan_once(request, obj.clinic_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        clinic_ids = set(queryset.values_list("clinic_id", flat=True))
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        for clinic_id in clinic_ids:
            replan_once(request, clinic_id)


# --------------------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------------------


def _sample_values(template: ReminderTemplate) -> dict[str, str]:
    """Made-up appointment details in the clinic's own words (its name, address, first professional)."""
    clinic = template.clinic if template.clinic_id else Clinic(name=gettext("Your clinic"))
    patient = Patient(full_name="Maria Silva")
    start = timezone.now().astimezone(clinic.tz) + datetime.timedelta(days=2)
    start = start.replace(hour=14, minute=30, second=0, microsecond=0)
    professional = "Dra. Ana Souza"
    if clinic.pk:
        professional = clinic.professionals.order_by("name").values_list("name", flat=True).first() or professional
    return placeholder_values(
        clinic=clinic,
        patient=patient,
        recipient=patient,
        service_name=gettext("Consultation"),
        professional_name=professional,
        start=start,
        preparation=gettext("Come fasting for 8 hours."),
        held_until=start - datetime.timedelta(days=2) + datetime.timedelta(minutes=30),
    )


@admin.register(ReminderTemplate)
class ReminderTemplateAdmin(_PolicyAdminMixin, ClinicScopedAdmin):
    list_display = ("name", "purpose", "whatsapp_template_name", "clinic", "updated_at")
    list_filter = ("purpose", "clinic")
    list_select_related = ("clinic",)
    search_fields = ("name", "body")
    readonly_fields = ("placeholders", "preview", "updated_at")
    fieldsets = (
        (None, {"fields": ("clinic", "purpose", "name")}),
        (_("Message"), {"fields": ("body", "placeholders", "preview")}),
        (
            _("Meta's official API"),
            {"fields": ("whatsapp_template_name", "whatsapp_template_language"), "classes": ("collapse",)},
        ),
        (_("Record"), {"fields": ("updated_at",), "classes": ("collapse",)}),
    )

    @admin.display(description=_("placeholders you can use"))
    def placeholders(self, obj: ReminderTemplate | None) -> str:
        rows = format_html_join("", "<li><code>{{{}}}</code> — {}</li>", PLACEHOLDERS.items())
        return format_html('<ul class="reminder-placeholders">{}</ul>', rows)

    @admin.display(description=_("preview"))
    def preview(self, obj: ReminderTemplate | None) -> str:
        """The message as a patient reads it, with made-up details; updated on every save ("Salvar e continuar")."""
        if obj is None or not obj.body:
            return gettext("Write the message and save to see it here.")
        try:
            obj.clean()
            rendered = message_render(obj.purpose, _sample_values(obj), template=obj, with_choices=True)
        except (ValidationError, ValueError):
            return gettext("Fix the message above to see the preview.")
        return format_html(
            '<div class="reminder-preview" style="white-space: pre-wrap; max-width: 36rem; padding: .75rem 1rem; '
            'border: 1px solid var(--border-color); border-radius: 8px; background: var(--darkened-bg)">{}</div>'
            '<p class="help">{}</p>',
            rendered.text,
            _(
                "With made-up details. The numbered answers are added by Cecília, for reminders only when the rule "
                "asks to confirm."
            ),
        )


# --------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------


def _reminder_templates(request: HttpRequest) -> QuerySet:
    return scope_queryset(ReminderTemplate.objects.filter(purpose=ReminderPurpose.REMINDER), request, action="any")


@admin.register(ReminderRule)
class ReminderRuleAdmin(_PolicyAdminMixin, ClinicScopedAdmin):
    list_display = ("service_or_all", "hours_before", "template", "asks_confirmation", "active", "clinic")
    list_display_links = ("service_or_all", "hours_before")
    list_filter = ("active", ("service", ScopedRelatedFilter), "asks_confirmation", "clinic")
    list_select_related = ("service", "template", "clinic")
    ordering = ("clinic", "service__name", "-hours_before")
    fields = ("clinic", "service", "hours_before", "template", "asks_confirmation", "active")

    @admin.display(description=_("service"), ordering="service__name")
    def service_or_all(self, obj: ReminderRule) -> str:
        return obj.service.name if obj.service_id else gettext("All services")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "template":
            kwargs["queryset"] = _reminder_templates(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReminderRuleInlineFormSet(ClinicInlineFormSet):
    """Two rows of one service at the same hour would pass each form and fail in the database: said here."""

    def clean(self) -> None:
        super().clean()
        seen: set[int] = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            hours = data.get("hours_before")
            if not data or data.get("DELETE") or hours is None:
                continue
            if hours in seen:
                raise ValidationError(_("There is already a reminder this many hours before."))
            seen.add(hours)


class ReminderRuleInline(ClinicScopedTabularInline):
    """The service's own reminders (a surgery: 7 days, 48 h and 2 h). None here: the clinic's default rules."""

    model = ReminderRule
    formset = ReminderRuleInlineFormSet
    fields = ("hours_before", "template", "asks_confirmation", "active")
    extra = 0
    verbose_name_plural = _("reminders of this service (none: the clinic's default reminders)")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "template":
            kwargs["queryset"] = _reminder_templates(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("template")


# --------------------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------------------


def _message_failed(step: ReminderStep) -> bool:
    message = getattr(step, "message", None)  # the reverse one-to-one raises when there is none
    return message is not None and message.status == "failed"


def _retry_url(step: ReminderStep) -> str:
    return reverse("admin:scheduling_reminderstep_retry", args=[step.pk])


class _StepColumns:
    """Columns shared by the steps list and the steps inline of an appointment."""

    @admin.display(description=_("patient's answer"))
    def answer(self, obj: ReminderStep) -> str:
        parts = []
        if obj.score is not None:
            parts.append(f"{obj.score}/5")
        if obj.note:
            parts.append(f"“{obj.note}”")
        return " · ".join(parts) or "—"

    @admin.display(description=_("message"))
    def retry_button(self, obj: ReminderStep) -> str:
        """A failed step's one-click "Reenviar": submits the page's own form (and its CSRF token) to the retry view."""
        if obj.pk is None or not _message_failed(obj):
            return ""
        return format_html(
            '<button type="submit" class="button" formmethod="post" formaction="{}" formnovalidate '
            'title="{}">{}</button>',
            _retry_url(obj),
            obj.message.error[:200],
            _("Resend"),
        )


class ReminderStepInline(ReadOnlyAdminMixin, _StepColumns, ClinicScopedTabularInline):
    """The appointment's reminders and follow-ups, oldest first: what went out, what is planned, and why not."""

    model = ReminderStep
    fields = ("kind", "key", "due_at", "status", "skip_reason", "answer", "retry_button")
    readonly_fields = fields
    ordering = ("due_at", "id")
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = _("reminders and follow-ups")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return steps_visible(super().get_queryset(request).select_related("message"), request)


def _step_retry(step: ReminderStep) -> bool:
    """Queue the step's failed message again; False when there is nothing to retry.

    `message_retry` moves the step back to "sending" with its message (conversations.outbox.reminder_step_follow).
    """
    from conversations.outbox import message_retry  # the admin's one reach upwards, as the message admin's retry

    message = getattr(step, "message", None)
    return message is not None and message_retry(message=message)


@admin.register(ReminderStep)
class ReminderStepAdmin(ReadOnlyAdminMixin, _StepColumns, ClinicScopedAdmin):
    """Read-only: steps are planned by the booking services and sent by the sweep; staff read and resend."""

    list_display = (
        "due_at",
        "appointment_link",
        "kind",
        "key",
        "status",
        "skip_reason",
        "answer",
        "retry_button",
        "clinic",
    )
    list_filter = ("status", "kind", "skip_reason", "clinic")
    list_select_related = ("appointment__patient", "message", "clinic")
    search_fields = ("appointment__patient__full_name", "appointment__patient__whatsapp_name")
    date_hierarchy = "due_at"
    ordering = ("-due_at", "-id")
    list_per_page = 50
    actions = ("retry_selected",)
    fields = (
        "clinic",
        "appointment_link",
        "kind",
        "key",
        "appointment_start",
        "rule",
        "asks_confirmation",
        "due_at",
        "status",
        "skip_reason",
        "answer",
        "retry_button",
        "created_at",
        "queued_at",
        "sent_at",
        "answered_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return steps_visible(super().get_queryset(request), request)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # Resending is sending a message: the right to write one, at the clinic (as in the message admin).
        ids = self._resend_clinic_ids(request)
        return request.user.has_perm("conversations.add_message") and (ids is None or bool(ids))

    def _resend_clinic_ids(self, request: HttpRequest) -> frozenset[int] | None:
        return clinic_ids_allowing(request.user, "add", "conversations", "message")

    @admin.display(description=_("appointment"), ordering="appointment__start")
    def appointment_link(self, obj: ReminderStep) -> str:
        appointment = obj.appointment
        when = date_format(timezone.localtime(appointment.start), "SHORT_DATETIME_FORMAT")
        url = reverse("admin:scheduling_appointment_change", args=[appointment.pk])
        return format_html('<a href="{}">{} · {}</a>', url, appointment.patient.display_name, when)

    def get_urls(self) -> list[Any]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(partial(function, model_admin=self))

        return [
            path("<int:step_id>/retry/", view(step_retry_view), name="scheduling_reminderstep_retry"),
            path("ratings/", view(ratings_view), name="scheduling_reminderstep_ratings"),
            *super().get_urls(),
        ]

    def _retry_many(self, request: HttpRequest, steps: QuerySet) -> None:
        ids = self._resend_clinic_ids(request)
        if ids is not None:
            steps = steps.filter(clinic_id__in=ids)
        retried = sum(_step_retry(step) for step in steps.select_related("message"))
        if retried:
            self.message_user(
                request,
                ngettext(
                    "%(count)d reminder queued to be sent again.",
                    "%(count)d reminders queued to be sent again.",
                    retried,
                )
                % {"count": retried},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, gettext("Nothing to resend: only a step whose message failed can be resent."), messages.ERROR
            )

    @admin.action(description=_("Resend the failed messages of the selected steps"), permissions=["resend"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._retry_many(request, queryset)


def step_retry_view(request: HttpRequest, step_id: int, *, model_admin: ReminderStepAdmin) -> HttpResponse:
    """POST only (the per-row "Reenviar" button); answers with a message on the page it came from."""
    if request.method != "POST":
        raise Http404
    step = get_object_or_404(model_admin.get_queryset(request), pk=step_id)
    if not model_admin.has_resend_permission(request):
        raise PermissionDenied
    model_admin._retry_many(request, model_admin.get_queryset(request).filter(pk=step.pk))
    back = request.headers.get("referer", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = reverse("admin:scheduling_reminderstep_changelist")
    return HttpResponseRedirect(back)


# --------------------------------------------------------------------------------------------------------------
# Ratings (managers only)
# --------------------------------------------------------------------------------------------------------------


def ratings_view(request: HttpRequest, *, model_admin: ReminderStepAdmin) -> HttpResponse:
    """The patients' ratings of the clinic's professionals: average and count each, and the latest comments."""
    ids = satisfaction_clinic_ids(request)
    if ids is not None and not ids:
        raise PermissionDenied
    try:
        days = int(request.GET.get("days", 90))
    except ValueError:
        days = 90
    days = days if days in RATINGS_PERIODS else 90
    since = timezone.now() - datetime.timedelta(days=days)
    steps = ReminderStep.objects.filter(kind=StepKind.SATISFACTION, answered_at__gte=since)
    if ids is not None:
        steps = steps.filter(clinic_id__in=ids)
    scored = steps.filter(score__isnull=False)
    professionals = list(
        scored.values("appointment__professional__name", "clinic__name")
        .annotate(average=Avg("score"), count=Count("id"))
        .order_by("clinic__name", "appointment__professional__name")
    )
    overall = scored.aggregate(average=Avg("score"), count=Count("id"))
    comments = list(
        steps.exclude(note="")
        .select_related("appointment__professional", "appointment__service")
        .order_by("-answered_at", "-id")[:30]
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Patient ratings"),
        "opts": model_admin.opts,
        "professionals": professionals,
        "overall": overall,
        "comments": comments,
        "days": days,
        "periods": RATINGS_PERIODS,
        "several_clinics": ids is None or len(ids) > 1,
    }
    return TemplateResponse(request, "admin/scheduling/reminderstep/ratings.html", context)


# --------------------------------------------------------------------------------------------------------------
# Waitlist
# --------------------------------------------------------------------------------------------------------------


class WaitlistOfferInline(ClinicScopedTabularInline):
    model = WaitlistOffer
    fields = ("professional", "start", "expires_at", "status", "created_at", "answered_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("professional")


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(AuditedAdminMixin, ClinicScopedAdmin):
    list_display = ("created_at", "patient", "service", "professional", "not_after", "status", "clinic")
    list_filter = (
        "status",
        ("service", ScopedRelatedFilter),
        ("professional", ScopedRelatedFilter),
        "clinic",
    )
    list_select_related = ("patient", "service", "professional", "clinic")
    search_fields = ("patient__full_name", "patient__whatsapp_name", "patient__phone")
    autocomplete_fields = ("patient", "service", "professional", "appointment")
    fields = ("clinic", "patient", "service", "professional", "appointment", "not_after", "status", "created_at")
    readonly_fields = ("created_at",)
    inlines = (WaitlistOfferInline,)
    list_per_page = 50

    def save_model(self, request: HttpRequest, obj: WaitlistEntry, form: Any, change: bool) -> None:
        # As when the patient asks (scheduling.waitlist.waitlist_join): bringing an appointment forward means
        # slots before it.
        if obj.appointment_id is not None and obj.not_after is None:
            obj.not_after = obj.appointment.start
        super().save_model(request, obj, form, change)


@admin.register(WaitlistOffer)
class WaitlistOfferAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    """Read-only: offers are made and answered by Cecília (scheduling.waitlist)."""

    list_display = ("created_at", "patient", "professional", "start", "expires_at", "status", "clinic")
    list_filter = ("status", ("professional", ScopedRelatedFilter), "clinic")
    list_select_related = ("entry__patient", "entry__service", "professional", "clinic")
    search_fields = ("entry__patient__full_name", "entry__patient__whatsapp_name")
    list_per_page = 50

    @admin.display(description=_("patient"), ordering="entry__patient__full_name")
    def patient(self, obj: WaitlistOffer) -> str:
        return f"{obj.entry.patient.display_name} — {obj.entry.service.name}"


# --------------------------------------------------------------------------------------------------------------
# The clinic page and the patient page
# --------------------------------------------------------------------------------------------------------------


def clinic_saved(request: HttpRequest, clinic: Clinic, form: Any, change: bool) -> None:
    """A new clinic gets the standard templates and the 48 h + 2 h reminders; a new sending window, a replan."""
    from scheduling.reminder_defaults import reminder_defaults_create

    if not change:
        reminder_defaults_create(clinic=clinic)
    elif set(WINDOW_FIELDS) & set(form.changed_data):
        replan_once(request, clinic.pk)


NO_SHOWS_SHOWN = 5


@admin.display(description=_("no-shows"))
def patient_no_shows(patient: Patient) -> str:
    """How often the patient missed an appointment, and the last few (two small indexed queries)."""
    missed = Appointment.objects.filter(patient_id=patient.pk, status=AppointmentStatus.NO_SHOW)
    count = missed.count()
    if not count:
        return gettext("none")
    last = missed.select_related("service", "professional").order_by("-start")[:NO_SHOWS_SHOWN]
    rows = format_html_join(
        "",
        '<li><a href="{}">{}</a> — {} — {}</li>',
        (
            (
                reverse("admin:scheduling_appointment_change", args=[a.pk]),
                date_format(timezone.localtime(a.start), "SHORT_DATETIME_FORMAT"),
                a.service.name,
                a.professional.name,
            )
            for a in last
        ),
    )
    return format_html('<strong>{}</strong><ul class="patient-no-shows">{}</ul>', count, rows)


def _app_list_with_ratings(get_app_list: Any) -> Any:
    """ "Avaliações" in the agenda app's rows, for who may read ratings (a page of ReminderStepAdmin, not a model)."""

    def app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        found = get_app_list(request, app_label)
        ids = satisfaction_clinic_ids(request)
        if ids is not None and not ids:
            return found
        for app in found:
            if app["app_label"] == ReminderStep._meta.app_label:
                url = reverse("admin:scheduling_reminderstep_ratings", current_app=admin.site.name)
                entry = {"name": _("Patient ratings"), "object_name": "Ratings", "perms": {"view": True}}
                app["models"].append({**entry, "admin_url": url, "add_url": None, "view_only": True})
        return found

    return app_list


admin.site.get_app_list = _app_list_with_ratings(admin.site.get_app_list)  # type: ignore[method-assign]
