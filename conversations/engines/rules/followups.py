"""Answers to Cecília's own messages, read by the rule engine: a reminder, the no-show follow-up, the rating
question, a waitlist offer (which one is open: `conversations.followups`).

The reminder listed the appointment and its choices, so "1"/"sim"/👍 confirms, "2"/"não vou" cancels (as the
clinic's notice allows) and offers new times, "3"/"remarcar" starts the reschedule flow for that appointment.
Anything else that is not an errand of its own ("vou atrasar 15 min") is kept for staff as the patient's note.
A tapped button arrives as its title with the id in brackets ("Confirmo [1]"); the id is read first.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.utils.translation import gettext as _

from conversations.attention import conversation_flag
from conversations.engines.context import AppointmentInfo
from conversations.engines.rules import texts
from conversations.engines.rules.booking import book_advance
from conversations.engines.rules.existing import appointment_lines, existing_start, too_late_hand_off
from conversations.engines.rules.talk import Talk
from conversations.followups import WAITLIST_OFFER, Followup, pending_followup
from conversations.models import AttentionReason
from conversations.nlu.answers import parse_yes_no
from conversations.nlu.text import normalize
from scheduling.errors import BookingError, CancellationTooLate
from scheduling.models import Appointment, StepKind, StepStatus
from scheduling.reminders import step_answer
from scheduling.services import Actor, appointment_cancel, appointment_confirm

_BUTTON = re.compile(r"\[(\w{1,20})\]\s*$")
_CONFIRM = re.compile(r"\b(confirm\w*|comfirm\w*|vou sim|estarei (la|ai)|pode confirmar|com certeza|claro)\b")
_RESCHEDULE = re.compile(
    r"\b(remarc\w*|reagend\w*|outro (dia|horario)|outra (data|hora)|mudar|trocar|adiar|antecipar)\b"
)
_CANCEL = re.compile(
    r"\b(cancel\w*|desmarc\w*|nao (vou|posso|poderei|consigo|conseguirei|irei|vai dar|da)|nao tenho como)\b"
)
_LATE = re.compile(r"\b(atras\w*|demor\w*|chegar (um pouco )?(mais )?tarde)\b")
_SCORE = re.compile(r"(?<![\d/:])([1-5])(?![\d/:])")
_STARS = re.compile(r"⭐|★")
_GOOD_WORDS = {"otimo": 5, "excelente": 5, "maravilhoso": 5, "perfeito": 5, "bom": 4, "regular": 3, "ruim": 2,
               "pessimo": 1, "horrivel": 1}  # fmt: skip


def followup_take(talk: Talk, text: str, *, is_errand: Callable[[str], bool]) -> bool:
    """Answer the open follow-up, if this message answers it; False to let the engine read it as usual.

    `is_errand(text)`: the message asks for something of its own (prices, the address…): not an answer.
    """
    followup = pending_followup(talk.conversation, now=talk.ctx.now)
    if followup is None:
        return False
    choice, rest = _button(text)
    if followup.kind == StepKind.REMINDER:
        return _reminder(talk, choice or rest, followup, is_errand)
    if followup.kind == StepKind.NO_SHOW_FOLLOWUP:
        return _no_show(talk, choice or rest, followup, is_errand)
    if followup.kind == StepKind.SATISFACTION:
        return _rating(talk, rest, followup, is_errand)
    if followup.kind == WAITLIST_OFFER:
        return _offer(talk, choice or rest, followup, is_errand)
    return False


def _button(text: str) -> tuple[str, str]:
    match = _BUTTON.search(text)
    return (match.group(1), text[: match.start()].strip()) if match else ("", text)


# ---- a reminder ---------------------------------------------------------------------------------------------------


def reminder_intent(text: str) -> str | None:
    """ "confirm", "cancel", "reschedule", "no" (a bare no: which of the two?) or None."""
    norm = normalize(text)
    if norm in ("1", "2", "3"):
        return {"1": "confirm", "2": "cancel", "3": "reschedule"}[norm]
    if _RESCHEDULE.search(norm):
        return "reschedule"  # "não vou poder, queria remarcar"
    if _CANCEL.search(norm):
        return "cancel"
    answer = parse_yes_no(text)
    if answer is True or _CONFIRM.search(norm):
        return "confirm"
    if answer is False:
        return "no"
    return None


def _reminder(talk: Talk, text: str, followup: Followup, is_errand: Callable[[str], bool]) -> bool:
    intent = reminder_intent(text)
    if intent is None and is_errand(text):
        return False  # "qual o endereço?": answered as usual, the reminder stays open
    if intent is None or (intent in ("confirm", "no") and not followup.asks_confirmation):
        # "Vou atrasar 15 min" is kept for staff; "ok, obrigada" to a plain reminder needs nobody.
        _note(talk, followup, text)
        return True
    info = next((a for a in talk.ctx.patient.upcoming if a.id == followup.appointment_id), None)
    if info is None or not talk.ctx.patient.may_act_for(info.patient_id):
        return False
    talk.state["reminder_appointment_id"] = info.id
    line = appointment_lines(talk, [info])[0]
    if intent == "confirm":
        try:
            appointment_confirm(appointment=_appointment(talk, info.id), actor=Actor.patient())
        except BookingError:
            return False
        late = bool(_LATE.search(normalize(text)))  # "confirmo, mas vou atrasar uns 10 min"
        step_answer(step_id=followup.step_id, status=StepStatus.CONFIRMED, note=text if late else "", now=talk.ctx.now)
        talk.state.pop("reminder_appointment_id", None)
        talk.end_flow()
        talk.say(texts.confirmed(line))
        if late:
            _flag(talk)
            talk.say("Já avisei a recepção do atraso. 👍")
        return True
    if intent == "no":
        talk.start("menu", choices=["reschedule", "cancel"])
        talk.say("Tudo bem! Você prefere:\n1. Remarcar\n2. Cancelar")
        return True
    if intent == "reschedule":
        step_answer(step_id=followup.step_id, status=StepStatus.RESCHEDULE_REQUESTED, now=talk.ctx.now)
        existing_start(talk, "reschedule", "")
        talk.state["via_followup"] = True
        return True
    _cancel(talk, info, line, followup)
    return True


def _cancel(talk: Talk, info: AppointmentInfo, line: str, followup: Followup) -> None:
    try:
        appointment_cancel(
            appointment=_appointment(talk, info.id),
            actor=Actor.patient(),
            reason="Cancelada pelo paciente (resposta ao lembrete)",
        )
    except CancellationTooLate:
        step_answer(
            step_id=followup.step_id,
            status=StepStatus.ANSWERED,
            note=_("Wants to cancel, within the cancellation notice"),
            now=talk.ctx.now,
        )
        talk.state["flow"] = "cancel"
        too_late_hand_off(talk, info)
        return
    except BookingError:
        talk.hand_off(texts.HANDOFF_ASKED, _("The patient asked to cancel an appointment that could not be cancelled."))
        return
    step_answer(step_id=followup.step_id, status=StepStatus.CANCELLED, now=talk.ctx.now)
    talk.state.pop("reminder_appointment_id", None)
    talk.say(f"Pronto, cancelei {line}. Obrigada por avisar! 💙")
    # New times straight away, same service and professional first (the flow widens to anyone when they are full).
    talk.start(
        "book",
        service_id=info.service_id,
        patient_id=info.patient_id,
        professional_id=info.professional_id,
        via_followup=True,
    )
    talk.say("Se quiser marcar outro dia, aqui vão alguns horários:")
    book_advance(talk)


def _appointment(talk: Talk, appointment_id: int) -> Appointment:
    return Appointment.objects.get(pk=appointment_id, clinic_id=talk.ctx.clinic.id)


# ---- after a no-show ----------------------------------------------------------------------------------------------


def _no_show(talk: Talk, text: str, followup: Followup, is_errand: Callable[[str], bool]) -> bool:
    norm = normalize(text)
    answer = {"1": True, "2": False}.get(norm, parse_yes_no(text))
    if answer is None and _RESCHEDULE.search(norm):
        answer = True
    if answer is None:
        if is_errand(text):
            return False
        _note(talk, followup, text)
        return True
    if not answer:
        step_answer(step_id=followup.step_id, status=StepStatus.ANSWERED, note="Não quis remarcar", now=talk.ctx.now)
        talk.say("Tudo bem! Quando quiser marcar, é só me chamar por aqui. 💙")
        return True
    step_answer(step_id=followup.step_id, status=StepStatus.RESCHEDULE_REQUESTED, now=talk.ctx.now)
    appointment = Appointment.objects.filter(pk=followup.appointment_id, clinic_id=talk.ctx.clinic.id).first()
    if appointment is None or not talk.ctx.patient.may_act_for(appointment.patient_id):
        return False
    talk.start(
        "book",
        service_id=appointment.service_id,
        patient_id=appointment.patient_id,
        professional_id=appointment.professional_id,
        via_followup=True,
    )
    book_advance(talk)
    return True


# ---- the rating question ------------------------------------------------------------------------------------------


def rating_of(text: str) -> int | None:
    """1–5 from "5", "nota 4", "⭐⭐⭐⭐", "ótimo"; None when the message gives none (or several numbers)."""
    scores = set(_SCORE.findall(text))
    if len(scores) == 1:
        return int(scores.pop())
    stars = len(_STARS.findall(text))
    if 1 <= stars <= 5:
        return stars
    found = {_GOOD_WORDS[word] for word in normalize(text).split() if word in _GOOD_WORDS}
    return found.pop() if len(found) == 1 else None


def _rating(talk: Talk, text: str, followup: Followup, is_errand: Callable[[str], bool]) -> bool:
    score = rating_of(text)
    if score is None and is_errand(text):
        return False
    comment = text if score is None or len(text.split()) > 2 else ""
    step_answer(step_id=followup.step_id, status=StepStatus.ANSWERED, score=score, note=comment, now=talk.ctx.now)
    if score is not None and score <= 2:
        # A bad experience: the clinic's manager should hear it from a person, soon.
        _flag(talk)
        talk.say("Sinto muito que não tenha sido uma boa experiência. 😔 Vou passar para a equipe, e alguém da "
                 "clínica pode falar com você.")  # fmt: skip
    elif score is not None:
        talk.say("Muito obrigada pela avaliação! 💙 Ficamos felizes em te atender.")
    else:
        talk.say("Obrigada pelo retorno! 💙 Vou passar para a equipe.")
    return True


# ---- a waitlist offer ---------------------------------------------------------------------------------------------


def _offer(talk: Talk, text: str, followup: Followup, is_errand: Callable[[str], bool]) -> bool:
    from conversations.waitlist_offers import waitlist_offer_accept, waitlist_offer_decline

    norm = normalize(text)
    answer = {"1": True, "2": False}.get(norm, parse_yes_no(text))
    if answer is None and re.search(r"\b(quero|aceito|pode (marcar|ser)|fico com)\b", norm):
        answer = True
    if answer is None:
        return False  # anything else is an ordinary message; the offer stays open until it expires
    if not answer:
        waitlist_offer_decline(followup.offer_id, now=talk.ctx.now)
        talk.say(texts.WAITLIST_OFFER_DECLINED)
        return True
    result = waitlist_offer_accept(followup.offer_id, now=talk.ctx.now)
    if not result.ok and result.told:
        return True  # the "already filled" message went out with the acceptance that won
    if not result.ok:
        talk.say(texts.WAITLIST_OFFER_GONE)
        return True
    appointment = result.appointment
    talk.say(
        texts.booked(
            professional=appointment.professional.name,
            service=appointment.service.name,
            start=appointment.start.astimezone(talk.conversation.clinic.tz),
            clinic=talk.ctx.clinic,
        )
    )
    return True


# ---- notes for staff ----------------------------------------------------------------------------------------------


def _note(talk: Talk, followup: Followup, text: str) -> None:
    """The patient's free answer, kept on the step for staff (flagged unless it is only an "ok" or a thanks)."""
    step_answer(step_id=followup.step_id, status=StepStatus.ANSWERED, note=text, now=talk.ctx.now)
    if parse_yes_no(text) is not None or _THANKS.search(normalize(text)):
        talk.say("Combinado! 😊 Qualquer coisa, é só chamar.")
        return
    _flag(talk)
    if _LATE.search(normalize(text)):
        talk.say("Obrigada por avisar! Já deixei o recado para a recepção. 💙")
    else:
        talk.say("Obrigada! Deixei seu recado para a equipe da recepção, que te responde por aqui se precisar. 💙")


def _flag(talk: Talk) -> None:
    conversation_flag(conversation_id=talk.conversation.pk, reason=AttentionReason.PATIENT_NOTE, now=talk.ctx.now)


_THANKS = re.compile(r"^(ok|okay|obrigad\w*|valeu|vlw|brigad\w*|beleza|blz|certo|ta bom|combinado)\W*$")
