"""What the rule-based receptionist says, in Brazilian Portuguese: module constants and small template functions.

Short, warm, WhatsApp formatting (`*bold*`, numbered lists). Times are the clinic's wall clock, written as
"sexta-feira, 28/11 às 09:30"; prices as "R$ 180,00". Nothing here gives a medical opinion.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from decimal import Decimal

from conversations.engines.context import AppointmentInfo, ClinicInfo, ServiceInfo
from conversations.nlu.when import WEEKDAY_NAMES

WEEKDAYS = WEEKDAY_NAMES

MENU_OPTIONS = (
    ("book", "Agendar uma consulta"),
    ("reschedule", "Remarcar"),
    ("cancel", "Cancelar"),
    ("list", "Ver meus horários"),
    ("confirm", "Confirmar uma consulta"),
    ("prices", "Preços e convênios"),
    ("info", "Endereço e horário de funcionamento"),
    ("staff", "Falar com a recepção"),
)


def when_label(moment: datetime.datetime, tz: datetime.tzinfo | None = None) -> str:
    """ "sexta-feira, 28/11 às 09:30", as a patient reads it: in `tz` (the clinic's), or as given (clinic-local)."""
    local = moment.astimezone(tz) if tz is not None else moment
    return f"{WEEKDAYS[local.weekday()]}, {local:%d/%m} às {local:%H:%M}"


def price_label(price: Decimal) -> str:
    """ "R$ 1.234,50": Brazilian thousands and decimal separators."""
    whole = f"{price:,.2f}"  # "1,234.50"
    return "R$ " + whole.replace(",", "_").replace(".", ",").replace("_", ".")


def numbered(lines: Sequence[str]) -> str:
    return "\n".join(f"{index}. {line}" for index, line in enumerate(lines, start=1))


def menu(*, greeting: str = "") -> str:
    head = greeting or "Posso ajudar com:"
    return f"{head}\n{numbered([label for _key, label in MENU_OPTIONS])}\n\nÉ só responder com o número ou me contar."


def greeting(clinic: ClinicInfo, first_name: str) -> str:
    hello = f"Oi, {first_name}!" if first_name else "Oi!"
    return menu(greeting=f"{hello} Aqui é a {clinic.assistant_name}, da {clinic.name}. Como posso ajudar?")


NOT_UNDERSTOOD = "Desculpe, não entendi bem. 😅"
HANDOFF_LOST = (
    "Desculpe, não consegui entender. Vou chamar alguém da recepção para te ajudar — em instantes te respondem por "
    "aqui."
)
HANDOFF_ASKED = "Claro! Vou chamar alguém da recepção. Em instantes te respondem por aqui. 🙂"
THANKS = "Por nada! Se precisar de mais alguma coisa, é só chamar. 🙂"
ABORTED = "Tudo bem, não marquei nada. Se precisar, é só chamar. 🙂"
ANYTHING_ELSE = "Posso ajudar em mais alguma coisa?"


# ---- booking ------------------------------------------------------------------------------------------------------


def ask_service(services: Sequence[ServiceInfo]) -> str:
    return f"Claro! Qual atendimento você quer marcar?\n{numbered([s.name for s in services])}"


def ask_person(patient_first_name: str, dependents: Sequence[str]) -> str:
    me = f"Para você{f', {patient_first_name}' if patient_first_name else ''}"
    return f"O horário é para quem?\n{numbered([me, *dependents])}"


def slot_line(start: datetime.datetime, professional: str) -> str:
    return f"{when_label(start)} — {professional}"


def offer_slots(lines: Sequence[str], *, intro: str) -> str:
    return f"{intro}\n{numbered(lines)}\n\nQual fica melhor? Se preferir outro dia ou horário, é só me dizer."


def offer_intro(*, service: str, asked: str, found: bool) -> str:
    if not asked:
        return f"Os próximos horários livres para *{service}* são:"
    if found:
        return f"Para *{service}* {asked}, tenho:"
    return f"Não tenho horário livre para *{service}* {asked}. 😕 Os mais próximos são:"


def no_slots(service: str) -> str:
    return (
        f"Poxa, não encontrei horários livres para *{service}* nos próximos dias. 😕 "
        "Quer que eu chame a recepção para ver um encaixe?"
    )


SLOT_TAKEN = "Poxa, esse horário acabou de ser preenchido. 😕"
ASK_NAME = "Para eu registrar o agendamento, qual é o seu nome completo?"
ASK_WHEN = "Qual dia e horário ficam melhores para você?"
ASK_CHANGE = "Sem problema! O que você quer mudar: o dia/horário, o profissional ou o atendimento?"
PATIENT_BUSY = "Você já tem um compromisso marcado nesse horário. Vamos escolher outro?"


def ask_professional(names: Sequence[str]) -> str:
    return f"Com quem você prefere?\n{numbered([*names, 'Tanto faz'])}"


def does_not_perform(professional: str, service: str, others: Sequence[str]) -> str:
    who = " e ".join(others)
    return f"{professional} não atende *{service}*{f'; quem atende é {who}' if who else ''}."


def readback_book(
    *, professional: str, service: str, start: datetime.datetime, person: str, no_shows: bool
) -> str:  # fmt: skip
    target = f" para *{person}*" if person else ""
    text = f"Confirmo: *{professional}*, {service}{target}, *{when_label(start)}*?"
    if no_shows:
        text += "\nVocê confirma que vem? Se surgir um imprevisto, é só avisar por aqui com antecedência. 🙏"
    return text


def booked(*, professional: str, service: str, start: datetime.datetime, clinic: ClinicInfo) -> str:
    text = f"Prontinho, agendado! ✅\n*{service}* com *{professional}*, *{when_label(start)}*."
    if clinic.address:
        text += f"\n📍 {clinic.address}"
    return text + "\nSe precisar remarcar ou cancelar, é só me chamar por aqui."


def preparation_note(service: str, preparation: str) -> str:
    return f"Preparo para *{service}*:\n{preparation}"


# ---- existing appointments ----------------------------------------------------------------------------------------


def appointment_line(appointment: AppointmentInfo, *, patient_id: int) -> str:
    whose = "" if appointment.patient_id == patient_id else f" ({appointment.patient_first_name})"
    return f"*{when_label(appointment.start)}* — {appointment.service} com {appointment.professional}{whose}"


def upcoming_list(lines: Sequence[str]) -> str:
    if len(lines) == 1:
        return f"Você tem este horário marcado:\n{lines[0]}"
    return f"Seus próximos horários:\n{numbered(lines)}"


NO_UPCOMING = "Você não tem nenhuma consulta marcada no momento. Quer agendar uma?"


def pick_appointment(action: str, lines: Sequence[str]) -> str:
    return f"Qual consulta você quer {action}?\n{numbered(lines)}"


def readback_cancel(line: str) -> str:
    return f"Confirmo o cancelamento de {line}?"


def cancelled(line: str) -> str:
    return f"Pronto, cancelei {line}. Quer marcar para outro dia?"


KEPT = "Combinado, mantive sua consulta como estava. 🙂"


def readback_reschedule(*, professional: str, service: str, old: datetime.datetime, new: datetime.datetime) -> str:
    return f"Confirmo: *{professional}*, {service}, de {when_label(old)} para *{when_label(new)}*?"


def rescheduled(*, professional: str, service: str, start: datetime.datetime) -> str:
    return f"Prontinho, remarcado! ✅\n*{service}* com *{professional}*, *{when_label(start)}*."


def too_late(action: str, hours: int) -> str:
    return (
        f"Para {action} com menos de {hours} horas de antecedência, quem resolve é a nossa recepção. "
        "Já passei para eles e em instantes te respondem por aqui. 🙏"
    )


def waitlist_joined(service: str, professional: str, *, before: datetime.datetime | None, person: str = "") -> str:
    """`person`: a dependent's first name, when the place is theirs."""
    who = f" com *{professional}*" if professional else ""
    whom = f"*{person}*" if person else "você"
    if before is not None:
        return (
            f"Combinado! Coloquei {whom} na lista de espera para *{service}*{who}. Se abrir um horário antes de "
            f"*{when_label(before)}*, te aviso aqui na hora. 💙"
        )
    return f"Combinado! Coloquei {whom} na lista de espera para *{service}*{who}. Se abrir um horário, te aviso. 💙"


def confirmed(line: str) -> str:
    return f"Consulta confirmada! ✅\n{line}\nTe esperamos!"


# Answers to a waitlist offer: "não" (they stay on the list), and a "quero" that came after someone else took it.
WAITLIST_OFFER_DECLINED = "Tudo bem! Você continua na lista de espera e eu aviso se abrir outro horário. 💙"
WAITLIST_OFFER_GONE = (
    "Que pena, esse horário acabou de ser preenchido. 😕 Você continua na lista de espera e eu te aviso se abrir outro."
)

NOTHING_TO_CONFIRM = "Não encontrei nenhuma consulta aguardando confirmação. Quer ver seus horários ou agendar uma?"


# ---- clinic information -------------------------------------------------------------------------------------------


def price_of(service: ServiceInfo) -> str:
    if service.price is None:
        return f"O valor de *{service.name}* a nossa recepção informa — posso chamar alguém, se quiser."
    return f"*{service.name}*: {price_label(service.price)}"


def prices(services: Sequence[ServiceInfo]) -> str:
    lines = [f"{s.name}: {price_label(s.price) if s.price is not None else 'a recepção informa'}" for s in services]
    return "Nossos valores:\n" + "\n".join(f"• {line}" for line in lines)


def plans_of(service: ServiceInfo) -> str:
    parts = []
    if service.health_plans:
        parts.append(f"*{service.name}* é atendido pelos convênios: {', '.join(service.health_plans)}.")
    else:
        parts.append(f"*{service.name}* não é atendido por convênio.")
    if service.accepts_private:
        parts.append("Também atendemos particular.")
    return " ".join(parts)


def plans(names: Sequence[str]) -> str:
    if not names:
        return "No momento atendemos apenas particular."
    return f"Atendemos os convênios: {', '.join(names)}. Também atendemos particular."


def plan_accepted(name: str) -> str:
    return f"Sim, atendemos *{name}*! 🙂"


def address(clinic: ClinicInfo) -> str:
    place = ", ".join(part for part in (clinic.address, clinic.city, clinic.state) if part)
    text = f"📍 *{clinic.name}*: {place}" if place else f"A recepção da {clinic.name} te passa o endereço."
    if clinic.hours:
        text += "\n\n🕒 Horário de funcionamento:\n" + "\n".join(clinic.hours)
    return text


def preparation(service: ServiceInfo) -> str:
    if service.preparation.strip():
        return preparation_note(service.name, service.preparation.strip())
    return f"*{service.name}* não precisa de preparo especial. Se tiver alguma dúvida, a recepção te ajuda."


def ask_which_service(question: str, services: Sequence[ServiceInfo]) -> str:
    return f"{question}\n{numbered([s.name for s in services])}"
