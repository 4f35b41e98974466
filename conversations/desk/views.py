"""The desk's admin pages: the inbox and the conversation page, with the fragments their script refreshes when the
live socket (ws/inbox/) says something changed.

Hooked into the admin by ConversationAdmin.get_urls, behind `admin_site.admin_view` (active staff, CSRF). Scoping:
a conversation outside the user's clinics answers 404; an action their role there does not allow answers 403.
Actions are plain form posts (they work without script) that redirect back to the page (post/redirect/get).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from cecilia.admin_scoping import role_allows_on
from cecilia.models import Clinic
from cecilia.selectors import clinic_ids_allowing
from conversations.desk import selectors, services
from conversations.models import Conversation, ConversationNote, ConversationOwner, Message
from patients.audit import patient_access_record
from patients.models import AccessKind
from scheduling.errors import BookingError
from scheduling.models import Appointment, Professional
from scheduling.services import Actor, appointment_cancel, appointment_confirm


def _require_view(request: HttpRequest, model_admin: admin.ModelAdmin) -> frozenset[int] | None:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    return clinic_ids_allowing(request.user, "view", "conversations", "conversation")


# --- Inbox ---------------------------------------------------------------------------------------------------------


def _inbox_context(request: HttpRequest, clinic_ids: frozenset[int] | None) -> dict[str, Any]:
    query = selectors.InboxQuery.from_params(request.GET, clinic_ids=clinic_ids, user_id=request.user.pk)
    return {"inbox": selectors.inbox_list(query), "query": query, "query_string": request.GET.urlencode()}


@require_GET
def inbox(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Every conversation of the user's clinics that needs staff, most urgent first, then the assistant's."""
    clinic_ids = _require_view(request, model_admin)
    clinics = Clinic.objects.all() if clinic_ids is None else Clinic.objects.filter(pk__in=clinic_ids)
    professionals = Professional.objects.filter(clinic__in=clinics).only("pk", "name").order_by("name")
    context = {
        **model_admin.admin_site.each_context(request),
        **_inbox_context(request, clinic_ids),
        "opts": model_admin.model._meta,
        "title": _("Inbox"),
        "professionals": list(professionals),
        "socket_clinics": sorted(clinic_ids) if clinic_ids is not None else [],
        "rows_url": reverse("admin:conversations_conversation_inbox_rows"),
    }
    return TemplateResponse(request, "admin/conversations/inbox.html", context)


@require_GET
def inbox_rows(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The inbox's lists alone, as HTML: what the page swaps in when the socket says something changed."""
    clinic_ids = _require_view(request, model_admin)
    return TemplateResponse(request, "admin/conversations/_inbox_rows.html", _inbox_context(request, clinic_ids))


# --- Conversation page ---------------------------------------------------------------------------------------------


def _conversation(request: HttpRequest, model_admin: admin.ModelAdmin, conversation_id: int) -> Conversation:
    clinic_ids = _require_view(request, model_admin)
    conversation = selectors.conversation_for_desk(clinic_ids=clinic_ids, conversation_id=conversation_id)
    if conversation is None:
        raise Http404
    return conversation


def _before_id(request: HttpRequest) -> int | None:
    raw = request.GET.get("before", "")
    return int(raw) if raw.isdigit() else None


def _desk_context(request: HttpRequest, conversation: Conversation) -> dict[str, Any]:
    page = selectors.conversation_page(conversation=conversation, before_id=_before_id(request))
    return {
        "page": page,
        "conversation": conversation,
        "patient": conversation.patient,
        "staff_owns": conversation.owner == ConversationOwner.HUMAN,
        "can_change": role_allows_on(request, "change", Conversation, conversation),
        "can_reply": role_allows_on(request, "add", Message, conversation),
        "can_note": role_allows_on(request, "add", ConversationNote, conversation),
        "can_change_appointments": role_allows_on(request, "change", Appointment, conversation),
        "transcript_url": reverse("admin:conversations_conversation_desk_transcript", args=[conversation.pk]),
    }


@require_http_methods(["GET", "POST"])
def desk(request: HttpRequest, conversation_id: int, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """One conversation: the handoff summary, the transcript, the composer, the notes and the patient's panel."""
    conversation = _conversation(request, model_admin, conversation_id)
    if request.method == "POST":
        _desk_action(request, conversation)
        return HttpResponseRedirect(reverse("admin:conversations_conversation_desk", args=[conversation.pk]))
    if services.conversation_mark_read(conversation_id=conversation.pk):
        conversation.unread_count = 0
    patient_access_record(
        user=request.user, clinic_id=conversation.clinic_id, patient_id=conversation.patient_id,
        kind=AccessKind.CONVERSATION,
    )  # fmt: skip
    context = {
        **model_admin.admin_site.each_context(request),
        **_desk_context(request, conversation),
        "opts": model_admin.model._meta,
        "title": str(conversation.patient),
        "subtitle": _("Conversation"),
        "inbox_url": reverse("admin:conversations_conversation_inbox"),
    }
    return TemplateResponse(request, "admin/conversations/desk.html", context)


@require_GET
def desk_transcript(request: HttpRequest, conversation_id: int, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The page's live parts (state bar and transcript) alone, for the script to swap in. Opening it counts as
    reading: the page is open in front of staff."""
    conversation = _conversation(request, model_admin, conversation_id)
    if services.conversation_mark_read(conversation_id=conversation.pk):
        conversation.unread_count = 0
    return TemplateResponse(request, "admin/conversations/_desk_live.html", _desk_context(request, conversation))


@require_GET
def desk_media(
    request: HttpRequest, conversation_id: int, message_id: int, *, model_admin: admin.ModelAdmin
) -> HttpResponse:
    """A message's voice note, photo or document, for staff of its clinic only (media is never public)."""
    conversation = _conversation(request, model_admin, conversation_id)
    message = conversation.messages.filter(pk=message_id).exclude(media="").only("media", "media_mime_type").first()
    if message is None:
        raise Http404
    try:
        handle = message.media.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    content_type = message.media_mime_type or mimetypes.guess_type(message.media.name)[0] or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


# The conversation page's form posts: the action's name → the permission and model it needs at the clinic.
_ACTIONS: dict[str, tuple[str, type[Model]]] = {
    "take_over": ("change", Conversation),
    "give_back": ("change", Conversation),
    "close": ("change", Conversation),
    "assign_me": ("change", Conversation),
    "unassign": ("change", Conversation),
    "reply": ("add", Message),
    "note": ("add", ConversationNote),
    "appointment_confirm": ("change", Appointment),
    "appointment_cancel": ("change", Appointment),
}


def _desk_action(request: HttpRequest, conversation: Conversation) -> None:
    action = request.POST.get("action", "")
    if action not in _ACTIONS:
        messages.error(request, _("Unknown action. Reload the page and try again."))
        return
    permission, model = _ACTIONS[action]
    if not role_allows_on(request, permission, model, conversation):  # the conversation's clinic is the row's
        raise PermissionDenied
    user, pk = request.user, conversation.pk
    try:
        if action == "take_over":
            services.conversation_take_over(conversation_id=pk, user=user)
            messages.success(request, _("You are handling this conversation: the assistant stays silent."))
        elif action == "give_back":
            services.conversation_give_back(conversation_id=pk, user=user)
            messages.success(request, _("The assistant answers this patient again."))
        elif action == "close":
            services.conversation_close(conversation_id=pk, user=user)
            messages.success(request, _("Conversation closed. It opens again when the patient writes."))
        elif action == "assign_me":
            services.conversation_assign(conversation_id=pk, user=user, assignee_id=user.pk)
        elif action == "unassign":
            services.conversation_assign(conversation_id=pk, user=user, assignee_id=None)
        elif action == "reply":
            services.staff_reply_send(conversation_id=pk, user=user, text=request.POST.get("text", ""))
        elif action == "note":
            services.conversation_note_add(conversation_id=pk, user=user, text=request.POST.get("text", ""))
        else:
            _appointment_action(request, conversation, action)
    except services.DeskError as refused:
        messages.error(request, str(refused))


def _appointment_action(request: HttpRequest, conversation: Conversation, action: str) -> None:
    raw = request.POST.get("appointment", "")
    appointment = (
        Appointment.objects.filter(pk=int(raw), patient_id=conversation.patient_id).first() if raw.isdigit() else None
    )
    if appointment is None:
        messages.error(request, _("That appointment is not this patient's any more. Reload the page."))
        return
    try:
        if action == "appointment_confirm":
            appointment_confirm(appointment=appointment, actor=Actor.staff(request.user))
            messages.success(request, _("Appointment confirmed."))
        else:
            appointment_cancel(appointment=appointment, actor=Actor.staff(request.user), reason=_("By the front desk"))
            messages.success(request, _("Appointment cancelled."))
    except BookingError as refused:
        messages.error(request, str(getattr(refused, "message", refused)))
