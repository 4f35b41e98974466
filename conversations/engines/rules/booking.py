"""The booking flow: service, person, professional and time in any order, a read-back, then a plain yes; and the
"quer agendar?" step (`offer_book`) whose yes starts it.
"""

from __future__ import annotations

import logging
import re

from django.utils.translation import gettext as _

from conversations.engines.context import ServiceInfo
from conversations.engines.rules import texts
from conversations.engines.rules.matching import ABORT, match_person, match_professional, match_services, name_from
from conversations.engines.rules.slots import (
    answer_refusal,
    chosen_offer,
    forget_slots,
    offer_later,
    said_when,
    search_and_offer,
    slot_start,
    take_offer,
)
from conversations.engines.rules.talk import Talk
from conversations.nlu.answers import parse_choice, parse_yes_no
from conversations.nlu.text import normalize
from patients.models import Patient
from patients.services import patient_name_record
from scheduling.errors import BookingError
from scheduling.models import AppointmentSource
from scheduling.services import Actor, appointment_book, appointment_confirm

logger = logging.getLogger(__name__)


def bookable(talk: Talk) -> list[ServiceInfo]:
    return [s for s in talk.ctx.clinic.services if s.professional_ids]


def book_start(talk: Talk, text: str, *, service_id: int | None = None) -> None:
    talk.start("book")
    if service_id is not None:
        talk.state["service_id"] = service_id
    _book_fill(talk, text, first=True)
    book_advance(talk)


def book_take(talk: Talk, text: str) -> bool:
    """Read one message in the booking flow; False when it says nothing the flow can use."""
    step = talk.state.get("step")
    if ABORT.search(normalize(text)):
        talk.end_flow()
        talk.say(texts.ABORTED)
        return True
    if step == "service" and (number := parse_choice(text, len(talk.state.get("choices", [])))):
        _set_service(talk, talk.state["choices"][number - 1])
        _book_fill(talk, text, skip_service=True)
        book_advance(talk)
        return True
    if step == "person" and (number := parse_choice(text, len(talk.state.get("choices", [])))):
        talk.state["patient_id"] = talk.state["choices"][number - 1]
        book_advance(talk)
        return True
    if step == "professional" and (number := parse_choice(text, len(talk.state.get("choices", [])) + 1)):
        choices = talk.state["choices"]
        talk.state["professional_id"] = choices[number - 1] if number <= len(choices) else None
        talk.state["professional_chosen"] = True
        forget_slots(talk)
        book_advance(talk)
        return True
    if step == "slot" and (index := chosen_offer(talk, text)) is not None:
        if take_offer(talk, index, booking=True):
            book_advance(talk)
        return True
    if step == "name":
        talk.state["name_asked"] = True
        name = name_from(text)
        if name:
            patient_name_record(patient=Patient.objects.get(pk=talk.ctx.patient.id), full_name=name)
        book_advance(talk)
        return True
    changed = _book_fill(talk, text)
    if changed:
        book_advance(talk)
        return True
    if step == "slot" and offer_later(talk, text):
        return True
    answer = parse_yes_no(text)
    if step == "confirm" and answer is True:
        _book_write(talk)
        return True
    if step == "confirm" and answer is False:
        talk.ask(texts.ASK_CHANGE, "change")
        return True
    if step == "slot" and answer is False:
        forget_slots(talk)
        talk.ask(texts.ASK_WHEN, "when")
        return True
    if step == "change":
        return _book_change(talk, text)
    return False


def _book_change(talk: Talk, text: str) -> bool:
    """After "não" to the read-back: which part to redo."""
    norm = normalize(text)
    if re.search(r"\b(dia|data|horario|hora|hr)\b", norm):
        talk.state.pop("when", None)
        forget_slots(talk)
        talk.ask(texts.ASK_WHEN, "when")
        return True
    if re.search(r"\b(profissional|dentista|medic[oa]|doutor[a]?|dr[a]?)\b", norm):
        forget_slots(talk)
        _ask_professional(talk)
        return True
    if re.search(r"\b(atendimento|servico|procedimento|consulta|exame)\b", norm):
        talk.state.pop("service_id", None)
        forget_slots(talk)
        book_advance(talk)
        return True
    return False


def _ask_professional(talk: Talk) -> None:
    service = talk.ctx.clinic.service(talk.state["service_id"])
    ids = list(service.professional_ids) if service else []
    names = [talk.professional_name(pid) for pid in ids]
    talk.ask(texts.ask_professional(names), "professional", choices=ids)


def _set_service(talk: Talk, service_id: int) -> None:
    if talk.state.get("service_id") != service_id:
        talk.state["service_id"] = service_id
        forget_slots(talk)
        service = talk.ctx.clinic.service(service_id)
        # A professional chosen for another service may not perform this one.
        if service and talk.state.get("professional_id") not in (None, *service.professional_ids):
            talk.state.pop("professional_id", None)


def _book_fill(talk: Talk, text: str, *, first: bool = False, skip_service: bool = False) -> bool:
    """Take from the message whatever it says about the booking; True when something changed."""
    changed = False
    if not skip_service:
        services = match_services(text, bookable(talk))
        current = talk.state.get("service_id")
        if len(services) == 1 and services[0].id != current:
            _set_service(talk, services[0].id)
            changed = True
        elif len(services) > 1 and current not in {s.id for s in services}:
            talk.state.pop("service_id", None)
            talk.state["service_options"] = [s.id for s in services]
            changed = True
    person = match_person(text, talk.ctx)
    if person is not None and person != talk.state.get("patient_id"):
        talk.state["patient_id"] = person
        forget_slots(talk)
        changed = True
    service = talk.ctx.clinic.service(talk.state["service_id"]) if talk.state.get("service_id") else None
    pro = match_professional(text, talk.ctx)
    if service is not None and isinstance(pro, int) and pro not in service.professional_ids:
        others = [talk.professional_name(pid) for pid in service.professional_ids]
        talk.say(texts.does_not_perform(talk.professional_name(pro), service.name, others))
        pro = None
    if pro is not None:
        new = None if pro == "any" else pro
        if new != talk.state.get("professional_id") or not talk.state.get("professional_chosen"):
            talk.state["professional_id"], talk.state["professional_chosen"] = new, True
            forget_slots(talk)
            changed = True
    if said_when(talk, text):
        forget_slots(talk)
        changed = True
    return changed or first


def book_advance(talk: Talk) -> None:
    """Ask for the first thing the booking still misses, or read it back."""
    state, ctx = talk.state, talk.ctx
    services = bookable(talk)
    if not state.get("service_id"):
        options = [s for s in services if s.id in state.get("service_options", [])] or services
        if len(options) == 1 and len(services) == 1:
            state["service_id"] = options[0].id
        elif not options:
            talk.hand_off(texts.HANDOFF_ASKED, _("The patient wants to book; no service can be booked online."))
            return
        else:
            talk.ask(texts.ask_service(options), "service", choices=[s.id for s in options])
            return
    if ctx.patient.dependents and not state.get("patient_id"):
        people = [ctx.patient.id, *(d.id for d in ctx.patient.dependents)]
        names = [d.first_name or d.full_name for d in ctx.patient.dependents]
        talk.ask(texts.ask_person(ctx.patient.first_name, names), "person", choices=people)
        return
    if not state.get("slot"):
        search_and_offer(talk)
        return
    if not ctx.patient.known and not state.get("name_asked"):
        talk.ask(texts.ASK_NAME, "name")
        return
    _book_readback(talk)


def _book_readback(talk: Talk) -> None:
    state, ctx = talk.state, talk.ctx
    pair = state["slot"]
    service = ctx.clinic.service(state["service_id"])
    person_id = state.get("patient_id") or ctx.patient.id
    person = next((d.first_name for d in ctx.patient.dependents if d.id == person_id), "")
    text = texts.readback_book(
        professional=talk.professional_name(pair[0]),
        service=service.name if service else "",
        start=slot_start(pair, talk),
        person=person,
        no_shows=ctx.patient.recent_no_shows > 0 and person_id == ctx.patient.id,
    )
    talk.ask(text, "confirm")


def _book_write(talk: Talk) -> None:
    state = talk.state
    service = talk.service()
    pair = state["slot"]
    professional = talk.professional(pair[0])
    start = slot_start(pair, talk)
    try:
        appointment = appointment_book(
            patient=talk.person(),
            service=service,
            professional=professional,
            start=start,
            actor=Actor.patient(),
            source=AppointmentSource.WHATSAPP,
            holder=talk.holder,
        )
    except BookingError as error:
        answer_refusal(talk, error, booking=True, service_name=service.name)
        return
    logger.info("Rule engine booked appointment %s in conversation %s", appointment.pk, talk.conversation.pk)
    if talk.ctx.patient.recent_no_shows > 0 and appointment.patient_id == talk.ctx.patient.id:
        # After missed appointments the read-back asked "você confirma que vem?", and the yes answered it: the
        # appointment is confirmed now, not by a reminder later.
        appointment_confirm(appointment=appointment, actor=Actor.patient())
    talk.end_flow()
    talk.say(texts.booked(professional=professional.name, service=service.name, start=start, clinic=talk.ctx.clinic))
    if service.preparation_instructions.strip():
        talk.say(texts.preparation_note(service.name, service.preparation_instructions.strip()))


# ---- "quer agendar?": a yes starts a booking ----------------------------------------------------------------


def offer_book_take(talk: Talk, text: str) -> bool:
    answer = parse_yes_no(text)
    if answer is None:
        return False
    if answer:
        book_start(talk, "", service_id=talk.state.get("service_id"))
    else:
        talk.end_flow()
        talk.say(texts.THANKS)
    return True
