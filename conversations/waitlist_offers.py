"""Waitlist offers on WhatsApp: telling waiting patients of a freed slot, and of a slot someone else got.

The rules of who is offered what are `scheduling.waitlist`; this module reaches the patients.

* **A slot frees up.** `appointment_changed` (after commit) for a cancellation or a move enqueues
  `waitlist_slot_offer_task` with the old slot; the task offers it (`offer_next`) and queues the offer's message in
  the same transaction. A broker outage or a lost task costs nothing: the minute sweep's `waitlist_offers_expire`
  picks up recently freed slots that have no offer.
* **Who is told.** The patient, or for a dependent without a WhatsApp of their own, their guardian. A candidate is
  passed over (the next one is offered) when nobody can be written to, the patient or the guardian opted out of
  automated messages, or on Meta's official API the chat has been silent for 24 hours and the clinic has no
  approved template for the offer. Should Meta's window close between that check and the queueing, the offer is
  passed on at once (`offer_pass_on`).
* **The sending window.** Outside the clinic's sending window nothing is offered (`offer_next` returns None); the
  sweep offers the slot when the window opens again.
* **Answers.** The receptionist engine calls `waitlist_offer_accept` / `waitlist_offer_decline` when the patient
  answers ("1" / "2", or a tap) and words the reply to that patient. Accepting tells every other patient whose
  open offer of that slot it ended: "Que pena… já foi preenchido".
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from cecilia.models import Clinic, WhatsAppProvider
from conversations.models import Conversation, MessageAuthor
from conversations.outbox import OutsideWhatsAppWindow, message_queue_outbound, window_open
from conversations.services import _conversation_for
from integrations.whatsapp.base import Template
from patients.models import Patient, PatientGuardian
from scheduling.models import (
    Appointment,
    AppointmentAction,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistStatus,
)
from scheduling.reminders import clinic_template, date_label, message_render, placeholder_values
from scheduling.waitlist import (
    AcceptResult,
    freed_slot,
    offer_accept,
    offer_decline,
    offer_next,
    offer_pass_on,
    offers_expire,
)

logger = logging.getLogger(__name__)

_FREED_BY = (AppointmentAction.CANCELLED, AppointmentAction.RESCHEDULED)
# Pt-BR, warm, short: sent to a patient whose offer someone else took. They stay on the list.
GONE_TEXT = (
    "Que pena{nome}: o horário de {data} às {hora}{paciente} já foi preenchido. "
    "Você continua na lista de espera e eu aviso se abrir outro. 💙"
)


# --------------------------------------------------------------------------------------------------------------
# What the engine calls
# --------------------------------------------------------------------------------------------------------------


def waitlist_offer_accept(offer_id: int, now: datetime.datetime | None = None) -> AcceptResult:
    """The patient took the offer: book it (`scheduling.waitlist.offer_accept`) and tell the patients whose open
    offers of the slot this ended ("Que pena… já foi preenchido"). The answering patient is the engine's to answer,
    whatever the result; with `result.told` they were sent the "já foi preenchido" message already (someone else's
    acceptance ended their offer before they answered)."""
    with transaction.atomic():
        result = offer_accept(offer_id=offer_id, now=now)
        offer_answer_send(gone=result.gone)
    return result


def waitlist_offer_decline(offer_id: int, now: datetime.datetime | None = None) -> WaitlistOffer | None:
    """The patient does not want the offered slot (they stay on the waitlist): the slot goes to the next patient,
    who is sent their offer. Returns that next offer (None: nobody else, or the window is closed)."""
    now = now or timezone.now()
    with transaction.atomic():
        reachable = _Reachability(now)
        return _deliver(offer_decline(offer_id=offer_id, now=now, reachable=reachable), now, reachable)


def offer_answer_send(*, gone: list[WaitlistOffer]) -> int:
    """Tell each patient whose offer ended gone that the slot was taken; returns how many messages were queued.

    Call in the transaction that ended them. A patient who opted out or cannot be written to (Meta's window) is not
    told: they will see it if they answer.
    """
    sent = 0
    for offer in gone:
        recipient = _recipient(offer.entry.patient)
        if recipient is None or recipient.opt_out_automated:
            continue
        clinic = Clinic.objects.get(pk=offer.clinic_id)
        conversation = _conversation_for(clinic, recipient)
        try:
            message_queue_outbound(
                conversation=conversation, text=gone_text(offer, clinic=clinic, recipient=recipient),
                author=MessageAuthor.SYSTEM,
            )  # fmt: skip
        except OutsideWhatsAppWindow:
            continue
        sent += 1
    return sent


def gone_text(offer: WaitlistOffer, *, clinic: Clinic, recipient: Patient) -> str:
    patient = offer.entry.patient
    local = offer.start.astimezone(clinic.tz)
    return GONE_TEXT.format(
        nome=f", {recipient.first_name}" if recipient.first_name else "",
        data=date_label(offer.start, clinic),
        hora=f"{local:%H:%M}",
        paciente=f" (para {patient.first_name})" if recipient.pk != patient.pk and patient.first_name else "",
    )


# --------------------------------------------------------------------------------------------------------------
# A slot frees up
# --------------------------------------------------------------------------------------------------------------


def appointment_changed_offer_slot(sender: Any, appointment: Appointment, action: str, **kwargs: Any) -> None:
    """Receiver of `appointment_changed` (connected in ConversationsConfig.ready): a cancellation or a move frees the
    old slot; offering it is a task (it takes locks and sends a message). Only clinics with someone waiting."""
    if action not in _FREED_BY:
        return
    change = appointment.changes.filter(action=action).order_by("-at", "-pk").values_list("before", flat=True).first()
    slot = freed_slot(change or {})
    if slot is None:
        return
    professional_id, start, end = slot
    if start <= timezone.now():
        return
    if not WaitlistEntry.objects.filter(clinic_id=appointment.clinic_id, status=WaitlistStatus.WAITING).exists():
        return
    # A broker outage raises here; send_robust logs it, and the sweep offers the slot later.
    waitlist_slot_offer_task.delay(appointment.clinic_id, professional_id, start.isoformat(), end.isoformat())


@shared_task(name="conversations.waitlist_offers.waitlist_slot_offer_task", acks_late=True, ignore_result=True)
def waitlist_slot_offer_task(clinic_id: int, professional_id: int, start: str, end: str) -> int | None:
    # Redelivered (acks_late), it finds the slot's open offer and makes no second one.
    offer = waitlist_slot_offer(
        clinic_id=clinic_id,
        professional_id=professional_id,
        start=datetime.datetime.fromisoformat(start),
        end=datetime.datetime.fromisoformat(end),
    )
    return offer.pk if offer is not None else None


def waitlist_slot_offer(
    *,
    clinic_id: int,
    professional_id: int,
    start: datetime.datetime,
    end: datetime.datetime,
    now: datetime.datetime | None = None,
) -> WaitlistOffer | None:
    """Offer the freed time to the first waiting patient who can take it and be told, and queue their message."""
    now = now or timezone.now()
    with transaction.atomic():
        reachable = _Reachability(now)
        offer = offer_next(
            clinic_id=clinic_id, professional_id=professional_id, start=start, end=end, now=now, reachable=reachable
        )
        return _deliver(offer, now, reachable)


def waitlist_offers_expire(now: datetime.datetime | None = None) -> int:
    """The sweep's pass (conversations.outreach, every minute): lapsed offers end expired and their slots, and the
    slots freed while the window was closed, go to the next patients, who are sent their offers. Returns how many
    offers were sent."""
    now = now or timezone.now()
    with transaction.atomic():
        reachable = _Reachability(now)
        return sum(_deliver(offer, now, reachable) is not None for offer in offers_expire(now=now, reachable=reachable))


# --------------------------------------------------------------------------------------------------------------
# Sending an offer
# --------------------------------------------------------------------------------------------------------------


def _deliver(offer: WaitlistOffer | None, now: datetime.datetime, reachable: _Reachability) -> WaitlistOffer | None:
    """Queue the offer's message; if it cannot be sent after all, the slot passes to the next candidate."""
    while offer is not None:
        try:
            _offer_message_queue(offer)
            return offer
        except OutsideWhatsAppWindow:
            logger.info("Waitlist offer %s could not be sent (WhatsApp window); passed on", offer.pk)
            offer = offer_pass_on(offer_id=offer.pk, now=now, reachable=reachable)
    return None


def _offer_message_queue(offer: WaitlistOffer) -> None:
    entry = WaitlistEntry.objects.select_related("patient", "service").get(pk=offer.entry_id)
    clinic = Clinic.objects.get(pk=offer.clinic_id)
    recipient = _recipient(entry.patient)
    if recipient is None:  # `reachable` said there was one; a row changed since
        raise OutsideWhatsAppWindow
    values = placeholder_values(
        clinic=clinic,
        patient=entry.patient,
        recipient=recipient,
        service_name=entry.service.name,
        professional_name=offer.professional.name,
        start=offer.start,
        preparation=entry.service.preparation_instructions,
        held_until=offer.expires_at,
    )
    rendered = message_render(
        "waitlist_offer", values, template=clinic_template(clinic.pk, "waitlist_offer"), with_choices=True
    )
    template = (
        Template(
            name=rendered.template_name,
            language=rendered.template_language,
            body_parameters=rendered.template_parameters,
        )
        if rendered.template_name
        else None
    )
    message_queue_outbound(
        conversation=_conversation_for(clinic, recipient),
        text=rendered.text,
        author=MessageAuthor.SYSTEM,
        template=template,
        buttons=rendered.buttons,  # ids "1"/"2", the same as the numbered lines: a tap and a typed "1" read the same
    )


def _recipient(patient: Patient) -> Patient | None:
    """Who receives the patient's messages: themselves, or (a dependent with no WhatsApp) their first guardian who
    has one."""
    if patient.phone or patient.whatsapp_id:
        return patient
    link = (
        PatientGuardian.objects.filter(dependent_id=patient.pk)
        .exclude(guardian__phone__isnull=True, guardian__whatsapp_id="")
        .select_related("guardian")
        .order_by("pk")
        .first()
    )
    return link.guardian if link is not None else None


class _Reachability:
    """Whether a waitlist candidate can be told of an offer now (see the module docstring). Per call, per clinic
    caches; `offer_next` asks before it holds a slot for anyone."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now
        self._clinics: dict[int, Clinic] = {}
        self._has_template: dict[int, bool] = {}

    def __call__(self, entry: WaitlistEntry) -> bool:
        patient = entry.patient
        recipient = _recipient(patient)
        if recipient is None or patient.opt_out_automated or recipient.opt_out_automated:
            return False
        clinic = self._clinics.get(entry.clinic_id)
        if clinic is None:
            clinic = self._clinics[entry.clinic_id] = Clinic.objects.get(pk=entry.clinic_id)
        if clinic.whatsapp_provider != WhatsAppProvider.META or self._template(clinic.pk):
            return True
        conversation = Conversation.objects.filter(clinic_id=clinic.pk, patient_id=recipient.pk).first()
        if conversation is None:
            return False  # never wrote: on Meta only a template may start the chat
        conversation.clinic = clinic
        return window_open(conversation, now=self.now)

    def _template(self, clinic_id: int) -> bool:
        if clinic_id not in self._has_template:
            template = clinic_template(clinic_id, "waitlist_offer")
            self._has_template[clinic_id] = bool(template is not None and template.whatsapp_template_name)
        return self._has_template[clinic_id]
