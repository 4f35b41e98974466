"""Which of Cecília's own questions a patient's message may be answering: a reminder, the no-show follow-up, the
rating question or a waitlist offer.

Read from the database (the step's message, the open offer) rather than from the conversation's state, so a turn
running while the sweep sends a reminder can never lose it. The newest open question wins; it stays open until it
is answered, the appointment starts, or `FOLLOWUP_OPEN_FOR` passes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import CharField, Q, Value

from conversations.models import Conversation, Message
from patients.models import PatientGuardian
from scheduling.models import (
    AppointmentStatus,
    OfferStatus,
    StepKind,
    StepStatus,
    WaitlistOffer,
    WaitlistStatus,
)

FOLLOWUP_OPEN_FOR = datetime.timedelta(hours=72)
# A late "quero" to an offer whose hold lapsed may still get the slot if nobody took it: tried for this long.
LATE_OFFER_ANSWER = datetime.timedelta(hours=12)
_OPEN_STEP = (StepStatus.QUEUED, StepStatus.SENT, StepStatus.DELIVERED, StepStatus.READ)
_OPEN_APPOINTMENT = (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED)

WAITLIST_OFFER = "waitlist_offer"


@dataclass(frozen=True)
class Followup:
    kind: str  # a StepKind value, or WAITLIST_OFFER
    at: datetime.datetime  # when it was sent
    appointment_id: int | None = None
    step_id: int | None = None
    offer_id: int | None = None
    asks_confirmation: bool = False


def pending_followup(conversation: Conversation, *, now: datetime.datetime) -> Followup | None:
    """The newest question of Cecília's this conversation's patient has not answered yet, or None.

    One query on every turn (the engines ask each time): the newest open reminder step and the newest open offer,
    side by side (UNION ALL of two LIMIT 1 parts). A step found costs a second query for its appointment.
    """
    since = now - FOLLOWUP_OPEN_FOR
    steps = (
        Message.objects.filter(
            conversation_id=conversation.pk, reminder_step__status__in=_OPEN_STEP, created_at__gte=since
        )
        .annotate(source=Value(_STEP, output_field=CharField()))
        .order_by("-created_at", "-id")
        .values_list("source", "pk", "created_at")[:1]
    )
    # The patient's own offers and their dependents'.
    dependents = PatientGuardian.objects.filter(guardian_id=conversation.patient_id).values("dependent_id")
    offers = (
        WaitlistOffer.objects.filter(
            Q(status=OfferStatus.OFFERED) | Q(status=OfferStatus.EXPIRED, expires_at__gte=now - LATE_OFFER_ANSWER),
            Q(entry__patient_id=conversation.patient_id) | Q(entry__patient_id__in=dependents),
            entry__status=WaitlistStatus.WAITING,
            start__gt=now,
            created_at__gte=since,
        )
        .annotate(source=Value(WAITLIST_OFFER, output_field=CharField()))
        .order_by("-created_at", "-id")
        .values_list("source", "pk", "created_at")[:1]
    )
    found = []
    for source, pk, at in steps.union(offers, all=True):
        if source == WAITLIST_OFFER:
            found.append(Followup(kind=WAITLIST_OFFER, at=at, offer_id=pk))
        elif (step := _open_step(pk, now)) is not None:
            found.append(step)
    return max(found, key=lambda f: f.at) if found else None


_STEP = "step"


def _open_step(message_id: int, now: datetime.datetime) -> Followup | None:
    """The reminder step a message of Cecília's carried, unless it became moot."""
    message = Message.objects.select_related("reminder_step__appointment").filter(pk=message_id).first()
    if message is None or message.reminder_step is None:
        return None  # deleted or detached between the two queries
    step = message.reminder_step
    appointment = step.appointment
    if step.kind == StepKind.REMINDER and (
        appointment.status not in _OPEN_APPOINTMENT
        or appointment.start <= now
        or appointment.start != step.appointment_start
    ):
        return None  # moved, cancelled or started since: the question is moot
    return Followup(
        kind=step.kind,
        at=message.created_at,
        appointment_id=appointment.pk,
        step_id=step.pk,
        asks_confirmation=step.asks_confirmation and appointment.status == AppointmentStatus.SCHEDULED,
    )
