"""Admin for conversations, messages and the raw provider events (read-only records of what happened), the clinic's
FAQ the assistant answers from, and its language model usage."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from cecilia.admin_scoping import (
    ClinicScopedAdmin,
    ClinicScopedTabularInline,
    ReadOnlyAdminMixin,
    ScopedRelatedFilter,
    role_allows_on,
    scope_queryset,
)
from conversations import admin_views
from conversations.desk import views as desk_views
from conversations.live import live_conversation
from conversations.models import Conversation, FaqEntry, InboundEvent, LlmUsage, Message, QuickReply
from patients.admin import register_patient_inline
from patients.admin_audit import AccessLoggedAdminMixin
from patients.audit import audit_changes, audit_record, audit_snapshot
from patients.models import AuditAction

# How many messages the conversation's admin page shows; the desk pages through all of them.
RECENT_MESSAGES = 30
# What the conversation's form may change that the desk's buttons change too.
_FORM_AUDITED = ("owner", "assigned_to", "needs_attention", "attention_reason", "handoff_summary")


@admin.register(Conversation)
class ConversationAdmin(AccessLoggedAdminMixin, ClinicScopedAdmin):
    list_display = ("patient", "owner", "needs_attention", "attention_reason", "assigned_to", "last_inbound_at")
    list_filter = ("needs_attention", "attention_reason", "owner", ("assigned_to", ScopedRelatedFilter), "clinic")
    list_select_related = ("patient", "assigned_to")
    search_fields = ("patient__full_name", "patient__whatsapp_name", "patient__phone")
    date_hierarchy = "last_inbound_at"
    # assigned_to is a plain select of the clinic's staff (scoped); receptionists cannot browse the user admin.
    readonly_fields = (
        "patient", "recent_messages", "state", "last_inbound_at", "last_outbound_at", "created_at", "updated_at",
    )  # fmt: skip

    @admin.display(description=_("latest messages"))
    def recent_messages(self, obj: Conversation) -> str:
        """The last few messages, oldest first, and a link to the whole transcript at the desk. Not an inline: a
        long conversation rendered as one form row per message took seconds (bench/inbox)."""
        latest = list(obj.messages.select_related("author_user").order_by("-created_at", "-id")[:RECENT_MESSAGES][::-1])
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(timezone.localtime(m.created_at), "SHORT_DATETIME_FORMAT"),
                    m.get_author_display(),
                    m.get_kind_display(),
                    Truncator(m.text).chars(300),
                )
                for m in latest
            ),
        )
        url = reverse("admin:conversations_conversation_desk", args=[obj.pk])
        return format_html(
            '<table class="recent-messages">{}</table><p><a href="{}">{}</a></p>', rows, url, _("Open at the desk")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations start when a patient writes (or the simulator does)

    @admin.display(description=_("desk"))
    def desk_link(self, obj: Conversation) -> str:
        url = reverse("admin:conversations_conversation_desk", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Open at the desk"))

    def get_list_display(self, request: HttpRequest) -> Any:
        return (*super().get_list_display(request), "desk_link")

    def save_model(self, request: HttpRequest, obj: Conversation, form: Any, change: bool) -> None:
        """The form edits what the desk's buttons do (owner, assignee, flag): audited and published live the same."""
        watched = [name for name in _FORM_AUDITED if name in form.changed_data]
        before = audit_snapshot(Conversation.objects.get(pk=obj.pk), fields=watched) if change and watched else {}
        if "owner" in watched:
            obj.owner_since = timezone.now()
        super().save_model(request, obj, form, change)
        if not before:
            return
        audit_record(
            actor=request.user, clinic_id=obj.clinic_id, action=AuditAction.UPDATE, obj=obj,
            patient_id=obj.patient_id, changes=audit_changes(before, audit_snapshot(obj, fields=watched)),
        )  # fmt: skip
        live_conversation(
            conversation_id=obj.pk,
            data={"owner": obj.owner, "needs_attention": obj.needs_attention},
            clinic_id=obj.clinic_id,
        )

    def get_urls(self) -> list[Any]:
        """The desk (inbox and conversation page, conversations/desk/views.py), the WhatsApp simulator and the
        channel connection pages (conversations/admin_views.py), staff only."""

        def view(function: Any) -> Any:
            return self.admin_site.admin_view(partial(function, model_admin=self))

        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("inbox/", view(desk_views.inbox), name=f"{prefix}_inbox"),
            path("inbox/rows/", view(desk_views.inbox_rows), name=f"{prefix}_inbox_rows"),
            path("<int:conversation_id>/desk/", view(desk_views.desk), name=f"{prefix}_desk"),
            path(
                "<int:conversation_id>/desk/transcript/",
                view(desk_views.desk_transcript),
                name=f"{prefix}_desk_transcript",
            ),
            path(
                "<int:conversation_id>/desk/media/<int:message_id>/",
                view(desk_views.desk_media),
                name=f"{prefix}_desk_media",
            ),
            path("simulator/", view(admin_views.simulator), name=f"{prefix}_simulator"),
            path("simulator/messages/", view(admin_views.simulator_messages), name=f"{prefix}_simulator_messages"),
            path("channel/<int:clinic_id>/", view(admin_views.channel), name=f"{prefix}_channel"),
            path("channel/<int:clinic_id>/pair/", view(admin_views.channel_pair_poll), name=f"{prefix}_channel_pair"),
            *super().get_urls(),
        ]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    list_display = ("created_at", "conversation", "direction", "author", "kind", "status", "error_shown")
    list_filter = ("direction", "status", "kind", "author", "clinic")
    list_select_related = ("conversation__patient",)
    search_fields = ("conversation__patient__full_name", "conversation__patient__phone", "provider_message_id")
    date_hierarchy = "created_at"
    actions = ("retry_sending",)

    @admin.display(description=_("error"))
    def error_shown(self, obj: Message) -> str:
        return Truncator(obj.error).chars(120) if obj.error else ""

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # Resending is sending a message: the same right as writing one ("add"), at the row's clinic.
        return request.user.has_perm("conversations.add_message") and role_allows_on(request, "add", Message, None)

    @admin.action(description=_("Retry sending the selected failed messages"), permissions=["resend"])
    def retry_sending(self, request: HttpRequest, queryset: QuerySet) -> None:
        from conversations.outbox import message_retry

        allowed = scope_queryset(queryset, request, action="add")
        retried = sum(message_retry(message=message) for message in allowed)
        skipped = queryset.count() - retried
        if retried:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message queued to be sent again.", "%(count)d messages queued to be sent again.", retried
                )
                % {"count": retried},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message skipped: only failed messages sent by the clinic can be retried.",
                    "%(count)d messages skipped: only failed messages sent by the clinic can be retried.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    list_display = ("received_at", "provider", "event_type", "processed_at", "attempts", "has_error")
    list_filter = ("provider", "event_type", ("processed_at", admin.EmptyFieldListFilter), "clinic")
    date_hierarchy = "received_at"
    search_fields = ("event_type", "dedupe_key")

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        # The raw body holds patients' messages and numbers as the provider sent them: staff read the conversation;
        # only platform operators (superusers) read raw events, to debug an integration.
        return () if request.user.is_superuser else ("payload",)

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


@admin.register(FaqEntry)
class FaqEntryAdmin(ClinicScopedAdmin):
    """The answers the assistant gives to common questions; staff keep them true (prices, parking, documents…)."""

    list_display = ("question", "answer_shown", "active", "updated_at", "clinic")
    list_filter = ("active", "clinic")
    list_select_related = ("clinic",)
    search_fields = ("question", "keywords", "answer")
    list_editable = ("active",)
    fields = ("clinic", "question", "answer", "keywords", "active", "updated_at")
    readonly_fields = ("updated_at",)

    @admin.display(description=_("answer"))
    def answer_shown(self, obj: FaqEntry) -> str:
        return Truncator(obj.answer).chars(100)


@admin.register(QuickReply)
class QuickReplyAdmin(ClinicScopedAdmin):
    """Ready answers staff insert in the desk's composer; managers write them, the front desk uses them."""

    list_display = ("title", "text_shown", "position", "active", "clinic")
    list_filter = ("active", "clinic")
    list_editable = ("position", "active")
    list_select_related = ("clinic",)
    search_fields = ("title", "text")
    fields = ("clinic", "title", "text", "position", "active")

    @admin.display(description=_("text"))
    def text_shown(self, obj: QuickReply) -> str:
        return Truncator(obj.text).chars(100)


@admin.register(LlmUsage)
class LlmUsageAdmin(ReadOnlyAdminMixin, ClinicScopedAdmin):
    """What the language model cost each clinic per day, against its daily token budget."""

    list_display = ("day", "clinic", "calls", "prompt_tokens", "completion_tokens", "total_tokens", "budget")
    list_filter = ("clinic",)
    list_select_related = ("clinic",)
    date_hierarchy = "day"

    @admin.display(description=_("total tokens"))
    def total_tokens(self, obj: LlmUsage) -> int:
        return obj.total_tokens

    @admin.display(description=_("daily budget"))
    def budget(self, obj: LlmUsage) -> int:
        return obj.clinic.llm_daily_token_budget
