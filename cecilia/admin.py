"""Admin for the tenant: the clinic's settings, opening hours and staff. Also names the admin site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from cecilia.admin_scoping import ClinicScopedAdmin, ClinicScopedTabularInline, HoursInlineFormSet
from cecilia.models import BusinessHours, Clinic, ClosedDate, StaffMembership
from cecilia.services import staff_access_sync

admin.site.site_header = _("Cecilia — Front desk")
admin.site.site_title = _("Cecilia — Front desk")
admin.site.index_title = _("Back-office")

SECRET_FIELDS = ("whatsapp_api_key", "whatsapp_webhook_secret", "whatsapp_verify_token")
# Every field the form never renders back; the language model's key has its own "erase" box.
WRITE_ONLY_FIELDS = (*SECRET_FIELDS, "llm_api_key")
ERASE_FIELDS = ("clear_secrets", "clear_llm_api_key")

# Called after the clinic page saves a clinic, with (request, clinic, form, change), in the save's transaction.
# Apps above this one react through it (scheduling: a new clinic's default reminders, a replan when the sending
# window moves), so the dependency arrow keeps pointing one way.
_CLINIC_SAVED: list[Callable[[HttpRequest, Clinic, Any, bool], None]] = []


def register_clinic_saved(function: Callable[[HttpRequest, Clinic, Any, bool], None]) -> None:
    if function not in _CLINIC_SAVED:
        _CLINIC_SAVED.append(function)


def describe_secret(value: str) -> str:
    """What staff may see of a stored secret: that it is set and, for long ones, its last four characters."""
    if not value:
        return str(_("Not set."))
    if len(value) <= 12:
        return str(_("Set."))
    return str(_("Set (ends in …%(tail)s).")) % {"tail": value[-4:]}


class ClinicAdminForm(forms.ModelForm):
    """Secrets are write-only: the form never renders a stored value, and a blank field keeps the stored one."""

    whatsapp_api_key = forms.CharField(
        label=_("API key"), required=False, strip=True, widget=forms.PasswordInput(render_value=False)
    )
    whatsapp_webhook_secret = forms.CharField(
        label=_("webhook secret"), required=False, strip=True, widget=forms.PasswordInput(render_value=False)
    )
    whatsapp_verify_token = forms.CharField(
        label=_("verify token"), required=False, strip=True, widget=forms.PasswordInput(render_value=False)
    )
    llm_api_key = forms.CharField(
        label=_("API key"), required=False, strip=True, widget=forms.PasswordInput(render_value=False)
    )
    # Typed without a scheme, a clinic's address means https (Django 6's default, chosen now).
    website = forms.URLField(label=_("website"), required=False, assume_scheme="https")
    whatsapp_api_url = forms.URLField(label=_("API base URL"), required=False, assume_scheme="https")
    privacy_notice_url = forms.URLField(label=_("privacy notice link"), required=False, assume_scheme="https")
    llm_base_url = forms.URLField(
        label=_("API base URL"),
        required=False,
        assume_scheme="https",
        help_text=_("Any OpenAI-compatible server. Empty: the deployment's."),
    )
    clear_secrets = forms.BooleanField(
        label=_("Erase the stored API key, webhook secret and verify token"), required=False
    )
    clear_llm_api_key = forms.BooleanField(label=_("Erase the stored language model API key"), required=False)

    class Meta:
        model = Clinic
        fields = "__all__"  # noqa: DJ007 - the admin narrows it to its fieldsets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in WRITE_ONLY_FIELDS:
            self.initial[name] = ""
            stored = getattr(self.instance, name, "") or ""
            keep = _("Leave blank to keep it.") if stored else ""
            self.fields[name].help_text = f"{describe_secret(stored)} {keep}".strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        moved = {"whatsapp_api_url", "whatsapp_provider"} & set(self.changed_data)
        if moved and self.instance.pk and self.instance.whatsapp_api_key and not cleaned.get("whatsapp_api_key"):
            # The stored key is sent with every call to this URL: pointing it elsewhere takes typing it again.
            self.add_error("whatsapp_api_key", _("Type the API key again to use it with the new provider or URL."))
        kept_llm_key = not cleaned.get("llm_api_key") and not cleaned.get("clear_llm_api_key")
        if "llm_base_url" in self.changed_data and self.instance.pk and self.instance.llm_api_key and kept_llm_key:
            # Same rule as the WhatsApp key: the stored key must not follow the URL to another server unasked.
            self.add_error("llm_api_key", _("Type the API key again to use it with the new URL."))
        for name in WRITE_ONLY_FIELDS:
            erase = "clear_llm_api_key" if name == "llm_api_key" else "clear_secrets"
            if self.cleaned_data.get(erase):
                cleaned[name] = ""
            elif not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name, "") or ""
        return cleaned


class BusinessHoursInline(ClinicScopedTabularInline):
    exclude = ()  # the clinic is the parent here
    model = BusinessHours
    formset = HoursInlineFormSet
    extra = 0


class ClosedDateInline(ClinicScopedTabularInline):
    exclude = ()  # the clinic is the parent here
    model = ClosedDate
    extra = 0


class StaffMembershipInline(ClinicScopedTabularInline):
    exclude = ()  # the clinic is the parent here
    model = StaffMembership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Clinic)
class ClinicAdmin(ClinicScopedAdmin):
    form = ClinicAdminForm
    clinic_lookup = "pk"
    list_display = ("name", "city", "state", "timezone", "whatsapp_provider", "ai_enabled")
    list_filter = ("whatsapp_provider", "ai_enabled", "state")
    search_fields = ("name", "slug", "city")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (BusinessHoursInline, ClosedDateInline, StaffMembershipInline)
    readonly_fields = ("channel_state", "channel_state_since", "channel_phone")
    fieldsets = (
        (None, {"fields": ("name", "slug", "timezone")}),
        (_("Contact"), {"fields": ("address", "city", "state", "phone", "email", "website")}),
        (
            _("WhatsApp channel"),
            {
                "fields": (
                    "whatsapp_provider",
                    "whatsapp_instance",
                    "whatsapp_api_url",
                    "whatsapp_api_key",
                    "whatsapp_webhook_secret",
                    "whatsapp_verify_token",
                    "clear_secrets",
                    "channel_state",
                    "channel_state_since",
                    "channel_phone",
                )
            },
        ),
        (
            _("Assistant"),
            {
                "fields": (
                    "ai_enabled",
                    "assistant_name",
                    "ai_instructions",
                    "assistant_handback_minutes",
                    "transcribe_voice_notes",
                )
            },
        ),
        (
            _("Reminders and follow-up"),
            {
                "fields": (
                    "reminder_window_start",
                    "reminder_window_end",
                    "no_show_after_minutes",
                    "no_show_followup",
                    "satisfaction_survey",
                    "satisfaction_delay_minutes",
                    "waitlist_hold_minutes",
                ),
                "description": _(
                    "Which reminders go out and with what text: “Reminder rules” and “Message templates” in the "
                    "Scheduling menu."
                ),
            },
        ),
        (
            _("Privacy (LGPD)"),
            {
                "fields": (
                    "privacy_notice",
                    "privacy_notice_url",
                    "retention_message_text_months",
                    "retention_media_months",
                    "retention_raw_events_days",
                ),
                "description": _(
                    "Retention is enforced every night. Appointment records are always kept, as the law requires."
                ),
            },
        ),
        (
            _("Language model"),
            {
                "fields": ("llm_model", "llm_base_url", "llm_api_key", "clear_llm_api_key", "llm_daily_token_budget"),
                "description": _("Empty fields use the deployment's settings."),
            },
        ),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Clinic | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # A read-only page prints field values as they are: show what describe_secret allows instead of secrets.
        swap = {name: f"{name}_status" for name in WRITE_ONLY_FIELDS}
        return [
            (title, {**options, "fields": tuple(swap.get(f, f) for f in options["fields"] if f not in ERASE_FIELDS)})
            for title, options in fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Clinic | None = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *(f"{name}_status" for name in WRITE_ONLY_FIELDS)]

    @admin.display(description=_("API key"))
    def whatsapp_api_key_status(self, obj: Clinic) -> str:
        return describe_secret(obj.whatsapp_api_key)

    @admin.display(description=_("webhook secret"))
    def whatsapp_webhook_secret_status(self, obj: Clinic) -> str:
        return describe_secret(obj.whatsapp_webhook_secret)

    @admin.display(description=_("verify token"))
    def whatsapp_verify_token_status(self, obj: Clinic) -> str:
        return describe_secret(obj.whatsapp_verify_token)

    @admin.display(description=_("API key"))
    def llm_api_key_status(self, obj: Clinic) -> str:
        return describe_secret(obj.llm_api_key)

    def save_model(self, request: HttpRequest, obj: Clinic, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        for function in _CLINIC_SAVED:
            function(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is StaffMembership:
            touched = {m.user_id for m in formset.new_objects + [m for m, _ in formset.changed_objects]}
            touched |= {m.user_id for m in formset.deleted_objects}
            for user_id in touched:
                staff_access_sync(user_id=user_id)


@admin.register(BusinessHours)
class BusinessHoursAdmin(ClinicScopedAdmin):
    list_display = ("clinic", "weekday", "start", "end")
    list_filter = ("weekday", "clinic")
    list_select_related = ("clinic",)
    search_fields = ("clinic__name",)


@admin.register(ClosedDate)
class ClosedDateAdmin(ClinicScopedAdmin):
    list_display = ("date", "reason", "clinic")
    list_filter = ("clinic",)
    list_select_related = ("clinic",)
    search_fields = ("reason",)
    date_hierarchy = "date"


@admin.register(StaffMembership)
class StaffMembershipAdmin(ClinicScopedAdmin):
    list_display = ("user", "clinic", "role", "created_at")
    list_filter = ("role", "clinic")
    list_select_related = ("user", "clinic")
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email")
    autocomplete_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: StaffMembership, form: Any, change: bool) -> None:
        previous_user_id = form.initial.get("user") if change else None
        super().save_model(request, obj, form, change)
        for user_id in {obj.user_id, previous_user_id} - {None}:
            staff_access_sync(user_id=user_id)

    def delete_model(self, request: HttpRequest, obj: StaffMembership) -> None:
        super().delete_model(request, obj)
        staff_access_sync(user_id=obj.user_id)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        user_ids = set(queryset.values_list("user_id", flat=True))
        super().delete_queryset(request, queryset)
        for user_id in user_ids:
            staff_access_sync(user_id=user_id)


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(ClinicScopedAdmin, UserAdmin):
    """Managers see their clinics' staff (to add memberships); only superusers create or change logins."""

    clinic_lookup = "memberships__clinic"
