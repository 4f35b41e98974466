"""Admin for conversations, messages and the raw provider events (read-only records of what happened)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from cecilia.admin_scoping import ClinicScopedAdmin, ClinicScopedTabularInline, ScopedRelatedFilter
from conversations.models import Conversation, InboundEvent, Message
from patients.admin import register_patient_inline


class ReadOnlyAdminMixin:
    """Records of what happened: staff read them; only Cecilia writes them (through the same services)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(ClinicScopedTabularInline):
    """The transcript, oldest first. Messages are records: staff answer through the outbound path, not here."""

    model = Message
    fields = ("created_at", "direction", "author", "kind", "text", "status", "error")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).order_by("created_at", "id")


@admin.register(Conversation)
class ConversationAdmin(ClinicScopedAdmin):
    list_display = ("patient", "owner", "needs_attention", "attention_reason", "assigned_to", "last_inbound_at")
    list_filter = ("needs_attention", "attention_reason", "owner", ("assigned_to", ScopedRelatedFilter), "clinic")
    list_select_related = ("patient", "assigned_to")
    search_fields = ("patient__full_name", "patient__whatsapp_name", "patient__phone")
    date_hierarchy = "last_inbound_at"
    # assigned_to is a plain select of the clinic's staff (scoped); receptionists cannot browse the user admin.
    readonly_fields = ("patient", "state", "last_inbound_at", "last_outbound_at", "created_at", "updated_at")
    inlines = (MessageInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations start when a patient writes (or the simulator does)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    list_display = ("created_at", "conversation", "direction", "author", "kind", "status")
    list_filter = ("direction", "status", "kind", "author", "clinic")
    list_select_related = ("conversation__patient",)
    search_fields = ("conversation__patient__full_name", "conversation__patient__phone", "provider_message_id")
    date_hierarchy = "created_at"


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    list_display = ("received_at", "provider", "event_type", "processed_at", "attempts", "has_error")
    list_filter = ("provider", "event_type", ("processed_at", admin.EmptyFieldListFilter), "clinic")
    date_hierarchy = "received_at"
    search_fields = ("event_type", "dedupe_key")

    @admin.display(description=_("error"), boolean=True)
    def has_error(self, obj: InboundEvent) -> bool:
        return bool(obj.error)


class PatientConversationInline(ClinicScopedTabularInline):
    model = Conversation
    fields = ("owner", "needs_attention", "attention_reason", "assigned_to", "last_inbound_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("assigned_to")


register_patient_inline(PatientConversationInline)
