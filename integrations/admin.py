"""Admin for Google Calendar: each clinic's account (write-only credentials, state, test connection), the changes
made in Google that wait for staff (apply / keep Cecilia's time), and the push state of each appointment's event."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from cecilia.admin_scoping import ClinicScopedAdmin, scope_queryset
from integrations import calendar_sync
from integrations.google_calendar import CredentialsInvalid, credentials_identity, parse_credentials
from integrations.models import (
    AccountState,
    CalendarAccount,
    CalendarEventLink,
    CalendarReconciliation,
    LinkState,
    ProfessionalSync,
    ReconciliationKind,
)
from scheduling.errors import BookingError
from scheduling.models import Professional


def _when(moment: Any) -> str:
    return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT") if moment else "—"


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value: a stored secret is not sent back to the browser, not even after a form error."""

    def get_context(self, name: str, value: Any, attrs: Any) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


class CalendarAccountForm(forms.ModelForm):
    credentials_json = forms.CharField(
        label=_("Google credentials (JSON)"),
        required=False,
        strip=True,
        widget=WriteOnlyTextarea(attrs={"rows": 6, "autocomplete": "off", "spellcheck": "false"}),
    )
    clear_credentials = forms.BooleanField(
        label=_("Erase the stored credentials (use the server's service account, if any)"), required=False
    )

    class Meta:
        model = CalendarAccount
        fields = ("clinic", "event_title", "credentials_json")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["credentials_json"] = ""
        stored = self.instance.credentials_json if self.instance.pk else ""
        status = _("Credentials stored. Leave blank to keep them.") if stored else _("No credentials stored.")
        self.fields["credentials_json"].help_text = _(
            "%(status)s Paste a service-account key (JSON) or an OAuth authorized-user file with client_id, "
            "client_secret and refresh_token. Never shown again."
        ) % {"status": status}

    def clean_credentials_json(self) -> str:
        value = self.cleaned_data.get("credentials_json", "")
        if value:
            try:
                parse_credentials(value)
            except CredentialsInvalid as exc:
                raise forms.ValidationError(str(exc)) from exc
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_credentials"):
            cleaned["credentials_json"] = ""
        elif not cleaned.get("credentials_json"):
            cleaned["credentials_json"] = self.instance.credentials_json if self.instance.pk else ""
        return cleaned

    @property
    def credentials_changed(self) -> bool:
        return bool(self.data.get(self.add_prefix("credentials_json"), "").strip()) or bool(
            self.cleaned_data.get("clear_credentials")
        )


@admin.register(CalendarAccount)
class CalendarAccountAdmin(ClinicScopedAdmin):
    form = CalendarAccountForm
    list_display = ("clinic", "state", "checked_at", "last_error")
    list_filter = ("state", "clinic")
    list_select_related = ("clinic",)
    readonly_fields = ("state", "last_error", "checked_at", "credentials_in_use", "professionals_status")
    fieldsets = (
        (None, {"fields": ("clinic", "event_title")}),
        (_("Credentials"), {"fields": ("credentials_json", "clear_credentials", "credentials_in_use")}),
        (_("Connection"), {"fields": ("state", "last_error", "checked_at", "professionals_status")}),
    )
    actions = ("test_connection",)

    def get_fieldsets(self, request: HttpRequest, obj: CalendarAccount | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only pages print field values: the credentials field is left out, only who they act as is shown.
        return [
            (
                title,
                {
                    **opts,
                    "fields": tuple(f for f in opts["fields"] if f not in ("credentials_json", "clear_credentials")),
                },
            )
            for title, opts in fieldsets
        ]

    @admin.display(description=_("acting as"))
    def credentials_in_use(self, obj: CalendarAccount) -> str:
        credentials = calendar_sync.clinic_credentials(obj.clinic_id, obj) if obj.pk else None
        if credentials is None:
            return str(_("Nobody: Google Calendar is off for this clinic."))
        who = credentials_identity(credentials.info)
        if credentials.source == "environment":
            return str(_("%(who)s (the server's service account). Share each professional's calendar with it.")) % {
                "who": who
            }
        if credentials.info.get("type") == "service_account":
            return str(_("%(who)s. Share each professional's calendar with this address.")) % {"who": who}
        return who

    @admin.display(description=_("professionals' calendars"))
    def professionals_status(self, obj: CalendarAccount) -> str:
        if not obj.pk:
            return "—"
        syncs = {s.professional_id: s for s in ProfessionalSync.objects.filter(clinic_id=obj.clinic_id)}
        rows = []
        for professional in Professional.objects.filter(clinic_id=obj.clinic_id, active=True).exclude(
            google_calendar_id=""
        ):
            sync = syncs.get(professional.pk)
            if sync and sync.last_error:
                state = str(_("cannot be read: %(error)s")) % {"error": sync.last_error}
            elif sync and sync.last_synced_at:
                state = str(_("synced %(when)s")) % {"when": _when(sync.last_synced_at)}
            else:
                state = str(_("not synced yet"))
            rows.append((professional.name, professional.google_calendar_id, state))
        if not rows:
            return str(_("No professional has a Google Calendar id yet."))
        return format_html_join("", "<div><strong>{}</strong> ({}): {}</div>", rows)

    def save_model(self, request: HttpRequest, obj: CalendarAccount, form: Any, change: bool) -> None:
        if not change or form.credentials_changed:
            obj.state = AccountState.UNCHECKED if obj.credentials_json else AccountState.NOT_CONFIGURED
            obj.last_error, obj.checked_at = "", None
        super().save_model(request, obj, form, change)
        if not change or form.credentials_changed:
            calendar_sync.links_requeue_after_new_credentials(clinic_id=obj.clinic_id)

    @admin.action(description=_("Test the connection to Google Calendar"), permissions=["view"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet) -> None:
        for account in queryset.select_related("clinic"):
            ok, text = calendar_sync.account_check(account=account)
            self.message_user(request, f"{account.clinic}: {text}", messages.SUCCESS if ok else messages.ERROR)


class OpenFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("open", _("Waiting for a decision")), ("resolved", _("Resolved")), ("all", _("All"))]

    def value(self) -> str:
        return super().value() or "open"  # staff come here for what is still open

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(CalendarReconciliation)
class CalendarReconciliationAdmin(ClinicScopedAdmin):
    list_display = ("question", "patient", "cecilia_time", "google_time", "created_at", "outcome", "clinic")
    list_display_links = ("question",)
    list_filter = (OpenFilter, "kind", "clinic")
    list_select_related = ("clinic", "professional", "appointment__patient", "resolved_by")
    search_fields = ("appointment__patient__full_name", "professional__name")
    actions = ("apply_in_cecilia", "keep_cecilia_time")
    fields = (
        "question",
        "appointment",
        "patient",
        "cecilia_time",
        "google_time",
        "created_at",
        "outcome",
        "resolved_by",
        "resolved_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # only the sync opens these

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a decision is kept; an open question is answered with an action, not deleted

    @admin.display(description=_("change in Google"))
    def question(self, obj: CalendarReconciliation) -> str:
        return obj.title

    @admin.display(description=_("patient"), ordering="appointment__patient__full_name")
    def patient(self, obj: CalendarReconciliation) -> str:
        return str(obj.appointment.patient)

    @admin.display(description=_("time in Cecilia"))
    def cecilia_time(self, obj: CalendarReconciliation) -> str:
        appointment = obj.appointment
        return f"{_when(appointment.start)} ({appointment.get_status_display()})"

    @admin.display(description=_("time in Google"))
    def google_time(self, obj: CalendarReconciliation) -> str:
        if obj.kind == ReconciliationKind.DELETED:
            return str(_("deleted"))
        return _when(obj.google_start)

    @admin.display(description=_("decision"))
    def outcome(self, obj: CalendarReconciliation) -> str:
        if obj.resolved_at is None:
            return str(_("Waiting for a decision"))
        return obj.get_resolution_display()

    def _changeable(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return scope_queryset(queryset, request, action="change").filter(resolved_at__isnull=True)

    @admin.action(description=_("Apply the change from Google and tell the patient"), permissions=["change"])
    def apply_in_cecilia(self, request: HttpRequest, queryset: QuerySet) -> None:
        applied = 0
        for row in self._changeable(request, queryset).select_related("appointment__patient", "professional"):
            try:
                outcome = calendar_sync.reconciliation_apply(reconciliation=row, user=request.user)
            except BookingError as exc:
                self.message_user(
                    request,
                    _("%(patient)s: not applied — %(error)s") % {"patient": row.appointment.patient, "error": exc},
                    messages.ERROR,
                )
                continue
            if outcome == "applied_not_notified":
                self.message_user(
                    request,
                    _("%(patient)s: applied, but WhatsApp does not allow a message now; please tell the patient.")
                    % {"patient": row.appointment.patient},
                    messages.WARNING,
                )
            applied += outcome != "already"
        if applied:
            self.message_user(
                request,
                ngettext("%(count)d change applied.", "%(count)d changes applied.", applied) % {"count": applied},
                messages.SUCCESS,
            )

    @admin.action(description=_("Keep Cecilia's time (put it back in Google)"), permissions=["change"])
    def keep_cecilia_time(self, request: HttpRequest, queryset: QuerySet) -> None:
        kept = sum(
            calendar_sync.reconciliation_keep(reconciliation=row, user=request.user)
            for row in self._changeable(request, queryset)
        )
        self.message_user(
            request,
            ngettext(
                "%(count)d appointment kept; Google Calendar will show Cecilia's time again.",
                "%(count)d appointments kept; Google Calendar will show Cecilia's times again.",
                kept,
            )
            % {"count": kept},
            messages.SUCCESS,
        )


@admin.register(CalendarEventLink)
class CalendarEventLinkAdmin(ClinicScopedAdmin):
    """What Google was told about each appointment; failures show here with the reason and retry on their own."""

    list_display = ("appointment", "state", "calendar_id", "pushed_start", "last_error", "updated_at", "clinic")
    list_filter = ("state", "clinic")
    list_select_related = ("clinic", "appointment__patient", "appointment__service")
    readonly_fields = (
        "appointment",
        "calendar_id",
        "event_id",
        "state",
        "pushed_start",
        "pushed_end",
        "pushed_live",
        "last_error",
        "attempts",
        "next_attempt_at",
        "updated_at",
    )
    fields = readonly_fields
    actions = ("push_again",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Send to Google Calendar again now"), permissions=["view"])
    def push_again(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.update(state=LinkState.PENDING, next_attempt_at=timezone.now())
        self.message_user(
            request, ngettext("%(count)d event queued.", "%(count)d events queued.", count) % {"count": count}
        )
