"""Existing appointments: pick one, then reschedule, cancel or confirm it (the "reschedule", "cancel" and "confirm"
flows). Within the clinic's cancellation notice a person takes over.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

from django.utils.translation import gettext as _

from conversations.engines.context import AppointmentInfo
from conversations.engines.rules import texts
from conversations.engines.rules.matching import ABORT, match_professional, match_services, words
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
from conversations.nlu.when import parse_when
from scheduling.errors import BookingError, CancellationTooLate
from scheduling.models import AppointmentStatus
from scheduling.services import Actor, appointment_cancel, appointment_confirm, appointment_reschedule

_ACTIONS = {"reschedule": "remarcar", "cancel": "cancelar", "confirm": "confirmar"}


def appointment_lines(talk: Talk, appointments: Sequence[AppointmentInfo]) -> list[str]:
    return [texts.appointment_line(a, patient_id=talk.ctx.patient.id) for a in appointments]


def _candidates(talk: Talk, flow: str) -> list[AppointmentInfo]:
    upcoming = [a for a in talk.ctx.patient.upcoming if talk.ctx.patient.may_act_for(a.patient_id)]
    if flow == "confirm":
        return [a for a in upcoming if a.status == AppointmentStatus.SCHEDULED]
    return upcoming


def _identify(talk: Talk, text: str, candidates: Sequence[AppointmentInfo]) -> AppointmentInfo | None:
    """The appointment the message points at: a service name, a dependent's name, a day; None when unclear."""
    if len(candidates) == 1:
        # The only one, unless the message describes another ("a de quinta às 14:30 com a Dra. Ana" — maybe not
        # this patient's at all): then the patient picks from their own list rather than confirm the wrong one.
        return None if _describes_another(talk, text, candidates[0]) else candidates[0]
    by_service = {s.id for s in match_services(text, talk.ctx.clinic.services)}
    names = set(words(text)) - {normalize(talk.ctx.patient.first_name)}
    narrowed = [a for a in candidates if a.service_id in by_service or normalize(a.patient_first_name) in names]
    if len(narrowed) == 1:
        return narrowed[0]
    when = parse_when(text, now=talk.ctx.now)
    if when is not None and when.date_given:
        on_day = [
            a for a in candidates
            if when.start_date <= a.start.date() <= when.end_date
            and (not when.weekdays or a.start.weekday() in when.weekdays)
        ]  # fmt: skip
        if len(on_day) == 1:
            return on_day[0]
    return None


def _describes_another(talk: Talk, text: str, appointment: AppointmentInfo) -> bool:
    """Whether the message names a day, time, professional or service that this appointment does not have."""
    # In a reschedule the day and time named are where to move it ("remarcar pra quinta"), not which one it is.
    when = parse_when(text, now=talk.ctx.now) if talk.state.get("flow") != "reschedule" else None
    start = appointment.start
    if when is not None:
        if when.date_given and not when.start_date <= start.date() <= when.end_date:
            return True
        if when.weekdays and start.weekday() not in when.weekdays:
            return True
        if when.time and (start.hour, start.minute) != (when.time.hour, when.time.minute):
            return True
    pro = match_professional(text, talk.ctx)
    if isinstance(pro, int) and pro != appointment.professional_id:
        return True
    services = {s.id for s in match_services(text, talk.ctx.clinic.services)}
    return bool(services) and appointment.service_id not in services


def existing_start(talk: Talk, flow: str, text: str) -> None:
    """Start a reschedule, cancel or confirm: find the appointment, ask which one when there are several."""
    talk.start(flow)
    candidates = _candidates(talk, flow)
    if not candidates:
        if flow == "confirm" and talk.ctx.patient.upcoming:
            lines = appointment_lines(talk, talk.ctx.patient.upcoming[:1])
            talk.end_flow()
            talk.say(f"Sua consulta já está confirmada ✅\n{lines[0]}")
            return
        talk.start("offer_book")
        talk.ask(texts.NOTHING_TO_CONFIRM if flow == "confirm" else texts.NO_UPCOMING, "yes_no")
        return
    reminded = talk.state.get("reminder_appointment_id")
    # The appointment a reminder asked about, unless the patient's words name another one.
    chosen = next((a for a in candidates if a.id == reminded), None) if flow == "confirm" or not text.strip() else None
    chosen = chosen or _identify(talk, text, candidates)
    if chosen is None:
        talk.ask(
            texts.pick_appointment(_ACTIONS[flow], appointment_lines(talk, candidates)),
            "pick",
            choices=[a.id for a in candidates],
        )
        return
    _picked(talk, chosen, text if len(candidates) == 1 else "")


def existing_take(talk: Talk, text: str) -> bool:
    """Read one message in a reschedule, cancel or confirm flow; False when it says nothing the flow can use."""
    flow, step = talk.state["flow"], talk.state.get("step")
    if ABORT.search(normalize(text)):
        talk.end_flow()
        talk.say(texts.KEPT)
        return True
    if step == "pick":
        candidates = [a for a in _candidates(talk, flow) if a.id in talk.state.get("choices", [])]
        number = parse_choice(text, len(candidates))
        chosen = candidates[number - 1] if number else _identify(talk, text, candidates)
        if chosen is None:
            return False
        _picked(talk, chosen, "")
        return True
    if flow == "cancel" and step == "confirm":
        answer = _cancel_answer(text)
        if answer is None:
            return False
        if answer:
            _cancel_write(talk)
        else:
            talk.end_flow()
            talk.say(texts.KEPT)
        return True
    if flow == "reschedule":
        return _reschedule_take(talk, text)
    return False


_KEEP_IT = re.compile(
    r"\b(manter|mantem|mantenha|mantenho|vou (ir|manter)|deixa (como esta|marcad[ao])|nao cancel\w*)\b"
)
_CANCEL_IT = re.compile(r"\b(pode|sim|quero|confirmo|isso)\b.*\b(cancel\w*|desmarc\w*)\b")


def _cancel_answer(text: str) -> bool | None:
    """The answer to "Confirmo o cancelamento…?": a yes or no, "pode cancelar", "não, vou manter"; None if unclear."""
    answer = parse_yes_no(text)
    if answer is not None:
        return answer
    norm = normalize(text)
    if _KEEP_IT.search(norm) or re.match(r"^(nao|n)\b", norm):
        return False  # keeping the appointment is the safe reading of a hesitant "não, …"
    if _CANCEL_IT.search(norm):
        return True
    return None


def _picked(talk: Talk, appointment: AppointmentInfo, text: str) -> None:
    flow = talk.state["flow"]
    talk.state["appointment_id"] = appointment.id
    talk.state.pop("choices", None)
    if flow == "confirm":
        _confirm_write(talk)
        return
    notice = datetime.timedelta(hours=talk.conversation.clinic.cancellation_notice_hours)
    if appointment.start - talk.ctx.now < notice:
        too_late_hand_off(talk, appointment)
        return
    line = appointment_lines(talk, [appointment])[0]
    if flow == "cancel":
        talk.ask(texts.readback_cancel(line), "confirm")
        return
    talk.state.update(service_id=appointment.service_id, professional_id=appointment.professional_id)
    if text:
        pro = match_professional(text, talk.ctx)
        if pro is not None:
            talk.state["professional_id"] = None if pro == "any" else pro
        said_when(talk, text)
    search_and_offer(talk, ignore_appointment_id=appointment.id)


def too_late_hand_off(talk: Talk, appointment: AppointmentInfo) -> None:
    flow = talk.state["flow"]
    hours = talk.conversation.clinic.cancellation_notice_hours
    line = appointment_lines(talk, [appointment])[0].replace("*", "")
    summary = (
        _("The patient wants to cancel %(appointment)s, within the clinic's cancellation notice.")
        if flow == "cancel"
        else _("The patient wants to reschedule %(appointment)s, within the clinic's cancellation notice.")
    ) % {"appointment": line}
    talk.hand_off(texts.too_late(_ACTIONS[flow], hours), summary)


def _reschedule_take(talk: Talk, text: str) -> bool:
    step = talk.state.get("step")
    appointment_id = talk.state.get("appointment_id")
    if step == "slot" and (index := chosen_offer(talk, text)) is not None:
        if take_offer(talk, index, booking=False):
            _reschedule_readback(talk)
        return True
    answer = parse_yes_no(text)
    if step == "confirm" and answer is True:
        _reschedule_write(talk)
        return True
    changed = False
    pro = match_professional(text, talk.ctx)
    if pro is not None:
        talk.state["professional_id"] = None if pro == "any" else pro
        changed = True
    if said_when(talk, text):
        changed = True
    if changed:
        forget_slots(talk)
        search_and_offer(talk, ignore_appointment_id=appointment_id)
        return True
    if step == "slot" and offer_later(talk, text):
        return True
    if answer is False and step in ("confirm", "slot"):
        forget_slots(talk)
        talk.ask(texts.ASK_WHEN, "when")
        return True
    return False


def _reschedule_readback(talk: Talk) -> None:
    info = talk.appointment_info()
    pair = talk.state["slot"]
    assert info is not None
    text = texts.readback_reschedule(
        professional=talk.professional_name(pair[0]),
        service=info.service,
        old=info.start,
        new=slot_start(pair, talk),
    )
    talk.ask(text, "confirm")


def _reschedule_write(talk: Talk) -> None:
    info = talk.appointment_info()
    if info is None:
        talk.end_flow()
        talk.say(texts.NO_UPCOMING)
        return
    pair = talk.state["slot"]
    professional = talk.professional(pair[0])
    start = slot_start(pair, talk)
    try:
        appointment_reschedule(
            appointment=talk.appointment(),
            start=start,
            actor=Actor.patient(),
            professional=professional,
            holder=talk.holder,
        )
    except CancellationTooLate:
        too_late_hand_off(talk, info)
        return
    except BookingError as error:
        answer_refusal(talk, error, booking=False, service_name=info.service)
        return
    talk.end_flow()
    talk.say(texts.rescheduled(professional=professional.name, service=info.service, start=start))


def _cancel_write(talk: Talk) -> None:
    info = talk.appointment_info()
    if info is None:
        talk.end_flow()
        talk.say(texts.NO_UPCOMING)
        return
    try:
        appointment_cancel(appointment=talk.appointment(), actor=Actor.patient(), reason="Cancelada pelo paciente")
    except CancellationTooLate:
        too_late_hand_off(talk, info)
        return
    except BookingError:
        talk.hand_off(
            texts.HANDOFF_ASKED,
            _("The patient asked to cancel an appointment that could not be cancelled automatically."),
        )
        return
    line = appointment_lines(talk, [info])[0]
    talk.start("offer_book", service_id=info.service_id)
    talk.ask(texts.cancelled(line), "yes_no")


def _confirm_write(talk: Talk) -> None:
    info = talk.appointment_info()
    line = appointment_lines(talk, [info])[0] if info else ""
    try:
        appointment_confirm(appointment=talk.appointment(), actor=Actor.patient())
    except (BookingError, PermissionError):
        talk.hand_off(
            texts.HANDOFF_ASKED, _("The patient wants to confirm an appointment that could not be confirmed.")
        )
        return
    talk.state.pop("reminder_appointment_id", None)
    talk.end_flow()
    talk.say(texts.confirmed(line))
