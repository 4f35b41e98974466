"""Reads of the desk: the inbox ordered by need, and everything the conversation page shows, in a fixed number of
queries whatever the clinic's size (bench/inbox measures it).

Scoping is the caller's: every function takes the clinic ids the user may see (None = every clinic, superusers).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Exists, IntegerField, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationNote,
    ConversationOwner,
    Message,
    QuickReply,
    Turn,
    TurnOutcome,
)
from patients.models import AuditEntry, PatientGuardian
from scheduling.models import Appointment, AppointmentStatus

# The inbox lists at most this many conversations that need staff (they are rarely more than a few dozen) and pages
# the ones the assistant handles by this many.
NEEDS_YOU_LIMIT = 200
PAGE_SIZE = 50
TRANSCRIPT_PAGE = 80

FILTERS = ("all", "mine", "unassigned")
STATES = ("open", "attention", "human", "ai", "closed")

# Need, most urgent first: the order of the inbox's first section.
_NEED = Case(
    When(needs_attention=True, attention_reason=AttentionReason.EMERGENCY, then=Value(0)),
    When(needs_attention=True, attention_reason=AttentionReason.ASKED_FOR_HUMAN, then=Value(1)),
    When(needs_attention=True, attention_reason=AttentionReason.FAILED_SEND, then=Value(2)),
    When(needs_attention=True, then=Value(3)),
    default=Value(4),  # staff own it, nothing flagged
    output_field=IntegerField(),
)


@dataclass(frozen=True)
class InboxQuery:
    """What the inbox shows: `filter` (all, mine, unassigned), `state`, a professional, and the AI section's page."""

    clinic_ids: frozenset[int] | None
    user_id: int
    filter: str = "all"
    state: str = "open"
    professional_id: int | None = None
    page: int = 1

    @classmethod
    def from_params(cls, params: Any, *, clinic_ids: frozenset[int] | None, user_id: int) -> InboxQuery:
        """From a query string; anything unknown falls back to the default (a bad link shows the whole inbox)."""
        raw_filter = params.get("filter", "all")
        raw_state = params.get("state", "open")
        professional = params.get("professional", "")
        page = params.get("page", "1")
        return cls(
            clinic_ids=clinic_ids,
            user_id=user_id,
            filter=raw_filter if raw_filter in FILTERS else "all",
            state=raw_state if raw_state in STATES else "open",
            professional_id=int(professional) if professional.isdigit() else None,
            page=max(1, min(int(page), 1000)) if page.isdigit() else 1,
        )


@dataclass
class Inbox:
    needs_you: list[Conversation]
    assistant: list[Conversation]
    has_more: bool
    counts: dict[str, int] = field(default_factory=dict)


def _scoped(clinic_ids: frozenset[int] | None) -> QuerySet[Conversation]:
    conversations = Conversation.objects.all()
    return conversations if clinic_ids is None else conversations.filter(clinic_id__in=clinic_ids)


def _filtered(query: InboxQuery) -> QuerySet[Conversation]:
    conversations = _scoped(query.clinic_ids)
    if query.filter == "mine":
        conversations = conversations.filter(assigned_to_id=query.user_id)
    elif query.filter == "unassigned":
        conversations = conversations.filter(assigned_to__isnull=True)
    if query.professional_id is not None:
        # Patients with an appointment with that professional from a month ago on: theirs to follow up.
        since = timezone.now() - datetime.timedelta(days=30)
        conversations = conversations.filter(
            Exists(
                Appointment.objects.filter(
                    patient_id=OuterRef("patient_id"), professional_id=query.professional_id, start__gte=since
                )
            )
        )
    return conversations


def inbox_list(query: InboxQuery) -> Inbox:
    """The inbox: conversations that need staff (flagged, or staff own them), most urgent first, then the ones the
    assistant handles, most recent first, a page at a time. Closed ones only under state "closed"."""
    base = _filtered(query).select_related("patient", "assigned_to", "clinic")
    needs = Q(needs_attention=True) | Q(owner=ConversationOwner.HUMAN)
    needs_you: list[Conversation] = []
    assistant: list[Conversation] = []
    has_more = False
    if query.state in ("open", "attention", "human"):
        selected = base.filter(needs, closed_at__isnull=True)
        if query.state == "attention":
            selected = selected.filter(needs_attention=True)
        elif query.state == "human":
            selected = selected.filter(owner=ConversationOwner.HUMAN)
        needs_you = list(selected.annotate(need=_NEED).order_by("need", "-last_inbound_at", "-id")[:NEEDS_YOU_LIMIT])
    if query.state in ("open", "ai", "closed"):
        if query.state == "closed":
            selected = base.filter(closed_at__isnull=False).order_by("-closed_at", "-id")
        else:
            selected = base.filter(closed_at__isnull=True, needs_attention=False, owner=ConversationOwner.AI).order_by(
                "-last_inbound_at", "-id"
            )
        offset = (query.page - 1) * PAGE_SIZE
        rows = list(selected[offset : offset + PAGE_SIZE + 1])
        has_more = len(rows) > PAGE_SIZE
        assistant = rows[:PAGE_SIZE]
    return Inbox(needs_you=needs_you, assistant=assistant, has_more=has_more, counts=inbox_counts(query))


def inbox_counts(query: InboxQuery) -> dict[str, int]:
    """The badges: open conversations needing staff, mine, unassigned, and unread messages among them (one query,
    on the partial indexes of flagged and staff-owned conversations)."""
    from django.db.models import Count, Sum

    open_needing = _scoped(query.clinic_ids).filter(
        Q(needs_attention=True) | Q(owner=ConversationOwner.HUMAN), closed_at__isnull=True
    )
    totals = open_needing.aggregate(
        needs_you=Count("id"),
        emergencies=Count("id", filter=Q(needs_attention=True, attention_reason=AttentionReason.EMERGENCY)),
        mine=Count("id", filter=Q(assigned_to_id=query.user_id)),
        unassigned=Count("id", filter=Q(assigned_to__isnull=True)),
        unread=Sum("unread_count"),
    )
    return {key: value or 0 for key, value in totals.items()}


# --- The conversation page -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemEvent:
    """A line in the transcript that is not a message: who took the conversation over, gave it back, closed it."""

    at: datetime.datetime
    text: str
    is_event: bool = True


_EVENT_TEXTS = {
    "take_over": lambda who: _("%(who)s took the conversation over") % {"who": who},
    "give_back": lambda who: _("%(who)s gave the conversation back to the assistant") % {"who": who},
    "close": lambda who: _("%(who)s closed the conversation") % {"who": who},
    "assign": lambda who: _("%(who)s changed who the conversation is assigned to") % {"who": who},
}


@dataclass
class ConversationPage:
    conversation: Conversation
    messages: list[Message | SystemEvent]
    older: int | None  # the id to load older messages before, None when the start is shown
    notes: list[ConversationNote]
    upcoming: list[Appointment]
    no_shows: list[Appointment]
    dependents: list[PatientGuardian]
    quick_replies: list[QuickReply]


def conversation_for_desk(*, clinic_ids: frozenset[int] | None, conversation_id: int) -> Conversation | None:
    """The conversation with its patient, clinic and assignee, or None when the user may not see it."""
    return (
        _scoped(clinic_ids)
        .select_related("patient", "patient__health_plan", "clinic", "assigned_to")
        .filter(pk=conversation_id)
        .first()
    )


def transcript(*, conversation: Conversation, before_id: int | None = None) -> tuple[list[Message], int | None]:
    """The latest messages (or those before `before_id`), oldest first, and the id to page further back from."""
    messages = Message.objects.filter(conversation=conversation).select_related("author_user", "reminder_step")
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    rows = list(messages.order_by("-created_at", "-id")[: TRANSCRIPT_PAGE + 1])
    older = rows[TRANSCRIPT_PAGE - 1].pk if len(rows) > TRANSCRIPT_PAGE else None
    return list(reversed(rows[:TRANSCRIPT_PAGE])), older


def conversation_page(*, conversation: Conversation, before_id: int | None = None) -> ConversationPage:
    """Everything the conversation page shows: transcript, notes, the patient's panel and the quick replies."""
    patient = conversation.patient
    now = timezone.now()
    messages, older = transcript(conversation=conversation, before_id=before_id)
    events = _events(conversation, since=messages[0].created_at if older and messages else None,
                     until=messages[-1].created_at if before_id is not None and messages else None)  # fmt: skip
    appointments = Appointment.objects.filter(patient=patient).select_related("professional", "service")
    return ConversationPage(
        conversation=conversation,
        messages=sorted(
            [*messages, *events], key=lambda item: item.created_at if isinstance(item, Message) else item.at
        ),
        older=older,
        notes=list(ConversationNote.objects.filter(conversation=conversation).order_by("-created_at", "-id")[:50]),
        upcoming=list(
            appointments.filter(
                start__gte=now, status__in=[AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED]
            ).order_by("start")[:10]
        ),
        no_shows=list(appointments.filter(status=AppointmentStatus.NO_SHOW).order_by("-start")[:5]),
        dependents=list(
            PatientGuardian.objects.filter(guardian=patient)
            .select_related("dependent")
            .order_by("dependent__full_name")
        ),
        quick_replies=list(QuickReply.objects.filter(clinic_id=conversation.clinic_id, active=True)),
    )


def _events(
    conversation: Conversation, *, since: datetime.datetime | None, until: datetime.datetime | None
) -> list[SystemEvent]:
    """Staff's desk actions (the audit trail) and the assistant's hand-offs within the transcript's time window."""
    window = Q()
    if since is not None:
        window &= Q(at__gte=since)
    if until is not None:
        window &= Q(at__lte=until)
    audited = AuditEntry.objects.filter(
        window,
        content_type__app_label="conversations",  # a join, not a lookup query: the page's count stays fixed
        content_type__model="conversation",
        object_id=str(conversation.pk),
        action_name__in=list(_EVENT_TEXTS),
    ).order_by("-at")[:50]
    events = [SystemEvent(at=e.at, text=_EVENT_TEXTS[e.action_name](e.actor_label)) for e in audited]
    handoffs = Turn.objects.filter(conversation=conversation, outcome=TurnOutcome.HANDED_OFF, finished_at__isnull=False)
    if since is not None:
        handoffs = handoffs.filter(finished_at__gte=since)
    if until is not None:
        handoffs = handoffs.filter(finished_at__lte=until)
    assistant = conversation.clinic.assistant_name
    events += [
        SystemEvent(at=at, text=_("%(name)s passed the conversation to the staff") % {"name": assistant})
        for at in handoffs.order_by("-finished_at").values_list("finished_at", flat=True)[:50]
    ]
    return events
