"""The rule-based receptionist: Portuguese keywords, a numbered menu and small flows — no model needed.

The default engine when no LLM is configured and the fallback when the LLM fails. Guardrails (emergencies, "falar
com atendente", opt-out, abuse, medical questions) have already run when `respond` is called, so this engine only
serves the patient's errands: book, reschedule, cancel, list, confirm (flows in `booking` and `existing`), and answers
about prices, health plans, address and hours, preparation and the clinic's FAQ. It never gives a medical opinion.

Order of understanding for each turn (all of the turn's messages read as one text):
1. the pending flow, if any (a numbered answer, a yes, a changed day…);
2. an answer to Cecília's own open question: a reminder, a no-show follow-up, a rating, a waitlist offer
   (`followups`), or a "sim"/"não" right after a message asked to confirm;
3. intents by keyword (typos and missing accents tolerated through `normalize` and fuzzy service names);
4. the clinic's FAQ; 5. "não entendi" with the menu — twice in a row hands the conversation to staff.
An aside in the middle of a flow ("quanto custa?") is answered and the pending question asked again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from django.core.exceptions import ObjectDoesNotExist
from django.utils.translation import gettext as _

from conversations import guardrails
from conversations.engines import EngineReply, TurnInput
from conversations.engines.context import ServiceInfo, turn_context
from conversations.engines.rules import texts
from conversations.engines.rules.booking import book_start, book_take, offer_book_take
from conversations.engines.rules.existing import appointment_lines, existing_start, existing_take
from conversations.engines.rules.followups import followup_take
from conversations.engines.rules.matching import match_services, words
from conversations.engines.rules.talk import Talk
from conversations.guardrails import GuardKind
from conversations.models import AttentionReason
from conversations.nlu.answers import parse_choice, parse_yes_no
from conversations.nlu.text import normalize
from patients.models import Patient
from scheduling.errors import BookingError
from scheduling.models import Appointment, Service
from scheduling.waitlist import waitlist_join

logger = logging.getLogger(__name__)

MAX_MISSES = 2  # misunderstandings in a row before a person takes over

_INTENT_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("staff", ("recepcao", "recepcionista", "secretaria", "atendente", "humano", r"falar com (alguem|uma pessoa)")),
    ("waitlist", (
        "lista de espera", r"me avis\w* (se|quando) (abrir|vagar|surgir|liberar|aparecer)",
        r"se (abrir|vagar|surgir|liberar|aparecer) (um |uma |algum |alguma )?(horario|vaga|desistencia)",
    )),
    ("reschedule", (
        r"remarc\w*", r"reagend\w*", "adiar",
        r"(mudar|trocar|alterar) (o |a |meu |minha |de )?(horario|consulta|dia|data|agendamento)",
    )),
    ("cancel", (r"cancel\w*", r"desmarc\w*")),
    ("confirm", (r"confirm\w*", r"comfirm\w*", r"confim\w*")),
    ("list", (
        "meus horarios", "minhas consultas", "meus agendamentos", "(quando|que horas|que dia) (e|eh|sera) (a )?minha",
        "tenho (alguma )?(consulta|horario)", "ver (minha|meu|meus|minhas)",
    )),
    ("prep", ("preparo", "jejum", "preparar", "preparacao", "antes do exame", "antes da consulta")),
    ("plans", (
        r"convenio\w*", r"plano\w*", "unimed", "amil", "bradesco saude", "sulamerica", "hapvida", "notredame",
        "cassi", "geap", "particular",
    )),
    ("prices", (r"preco\w*", r"valor\w*", "quanto (custa|e|fica|sai|cobra)", "custa", "custo", "orcamento", "tabela")),
    ("info", (
        "endereco", "onde (fica|ficam|e a clinica)", "horario de atendimento", "localizacao", "localizados",
        "como (chego|chegar)",
        "funcionamento", "que horas (abre|fecha|voces abrem)", "abre", "fecha", "abrem", "fecham", r"funciona\w*",
        "aberto", "aberta",
    )),
    ("book", (r"marc\w*", r"agend\w*", r"consulta\w*", r"horario\w*", r"vaga\w*", "encaixe", "atendimento")),
    ("thanks", (r"obrigad\w*", "valeu", "vlw", r"brigad\w*", "agradeco")),
)  # fmt: skip
# Checked in this order: the first that matches wins ("remarcar" before "marcar", "desmarcar" before "marcar",
# "horário de funcionamento" before "horário").
_INTENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    *((name, re.compile(r"\b(" + "|".join(alternatives) + r")\b")) for name, alternatives in _INTENT_WORDS),
    ("greeting", re.compile(r"^(oi+e?|ola|bom dia|boa tarde|boa noite|menu|ajuda|opcoes|inicio|e ai|hey|hello|hi)\b")),
)
_ASIDES = frozenset({"prices", "plans", "info", "prep", "list", "thanks", "greeting"})  # answered mid-flow

FLOWS: dict[str, Callable[[Talk, str], bool]] = {
    "book": book_take,
    "reschedule": existing_take,
    "cancel": existing_take,
    "confirm": existing_take,
    "offer_book": offer_book_take,
}


class RuleEngine:
    name = "rules"
    may_be_slow = False  # answers in milliseconds: no "one moment" message is scheduled for it

    def respond(self, turn: TurnInput) -> EngineReply:
        ctx = turn_context(conversation=turn.conversation, new_messages=turn.messages, now=turn.now)
        talk = Talk(ctx=ctx, conversation=turn.conversation, state=dict(ctx.state))
        text = " ".join(message.strip() for message in ctx.new_messages if message.strip())
        try:
            if _understand(talk, text):
                talk.state["misses"] = 0
            else:
                _not_understood(talk, text)
        except (ObjectDoesNotExist, PermissionError) as exc:
            # Something the flow remembered is gone (a service deactivated, an appointment staff deleted): start
            # over with a person rather than guess.
            logger.warning(
                "Rule engine flow lost its data (%s) in conversation %s", type(exc).__name__, turn.conversation.pk
            )
            talk = Talk(ctx=ctx, conversation=turn.conversation, state={})
            talk.hand_off(
                texts.HANDOFF_LOST, _("The assistant lost track of the patient's request: “%(text)s”") % {"text": text}
            )
        return EngineReply(
            texts=talk.texts,
            handoff=talk.handoff,
            handoff_summary=talk.summary,
            attention_reason=AttentionReason.HANDOFF if talk.handoff else None,
            state=talk.state,
        )


def _understand(talk: Talk, text: str) -> bool:
    flow = talk.state.get("flow")
    if flow in FLOWS and FLOWS[flow](talk, text):
        return True
    if flow == "menu" and (number := parse_choice(text, len(talk.state.get("choices", [])))):
        intent = talk.state["choices"][number - 1]
        talk.end_flow()
        _run_intent(talk, intent, "")
        if intent == "prices":  # the menu's "Preços e convênios"
            talk.say(texts.plans(talk.ctx.clinic.health_plans))
        return True
    if flow == "prep" and _prep_choice(talk, text):
        return True
    if not flow and followup_take(talk, text, is_errand=lambda t: _intent(talk, t) not in (None, "thanks")):
        return True  # an answer to a reminder, a follow-up or a waitlist offer
    if not flow and (_after_reminder(talk, text) or _after_booking_offer(talk, text)):
        return True
    intent = _intent(talk, text)
    if intent is None:
        return _medical_question(talk, text) or _faq(talk, text)
    pending = talk.state.get("ask") if flow in FLOWS else None
    if pending and intent == flow:
        # "Sim, pode marcar" to a list of slots: the errand already under way, not a new one — starting it over
        # would throw away what the patient chose. The question is asked again.
        return False
    if pending and intent in _ASIDES:
        if intent == "greeting":
            talk.say(pending)
            return True
        _run_intent(talk, intent, text)
        talk.say(pending)  # the aside answered, back to the question the flow is waiting on
        return True
    if intent == "waitlist":
        return _waitlist(talk, text)  # reads the flow's service before it ends
    talk.end_flow()
    return _run_intent(talk, intent, text)


def _intent(talk: Talk, text: str) -> str | None:
    norm = normalize(text)
    for name, pattern in _INTENTS:
        if pattern.search(norm):
            return name
    if match_services(text, talk.ctx.clinic.services):
        return "book"  # "limpeza amanhã à tarde?", "to precisando de uma limpeza"
    return None


def _run_intent(talk: Talk, intent: str, text: str) -> bool:
    handlers: dict[str, Callable[[Talk, str], None]] = {
        "book": lambda t, x: book_start(t, x),
        "reschedule": lambda t, x: existing_start(t, "reschedule", x),
        "cancel": lambda t, x: existing_start(t, "cancel", x),
        "confirm": lambda t, x: existing_start(t, "confirm", x),
        "list": _list,
        "prices": _prices,
        "plans": _plans,
        "info": lambda t, x: t.say(texts.address(t.ctx.clinic)),
        "prep": _prep,
        "staff": _staff,
        "thanks": lambda t, x: t.say(texts.THANKS),
        "greeting": _menu,
    }
    handlers[intent](talk, text)
    return True


# ---- intents ------------------------------------------------------------------------------------------------------


def _menu(talk: Talk, _text: str) -> None:
    talk.start("menu", choices=[key for key, _label in texts.MENU_OPTIONS])
    talk.say(texts.greeting(talk.ctx.clinic, talk.ctx.patient.first_name))


def _list(talk: Talk, _text: str) -> None:
    upcoming = talk.ctx.patient.upcoming
    if not upcoming:
        talk.start("offer_book")
        talk.ask(texts.NO_UPCOMING, "yes_no")
        return
    talk.say(texts.upcoming_list(appointment_lines(talk, upcoming)))


def _waitlist(talk: Talk, text: str) -> bool:
    """ "Me avisa se abrir um horário antes": the patient joins the waitlist for their next appointment's service
    (with that professional, before that time), or for the service being booked or named."""
    upcoming = [a for a in talk.ctx.patient.upcoming if talk.ctx.patient.may_act_for(a.patient_id)]
    service_id = talk.state.get("service_id") or getattr(_mentioned_service(talk, text), "id", None)
    talk.end_flow()
    try:
        if upcoming and (service_id is None or upcoming[0].service_id == service_id):
            info = upcoming[0]
            appointment = Appointment.objects.select_related("service", "professional", "patient").get(
                pk=info.id, clinic_id=talk.ctx.clinic.id
            )
            waitlist_join(
                patient=appointment.patient,
                service=appointment.service,
                professional=appointment.professional,
                appointment=appointment,
            )
            talk.say(texts.waitlist_joined(info.service, info.professional, before=info.start))
            return True
        if service_id is not None:
            service = Service.objects.get(pk=service_id, clinic_id=talk.ctx.clinic.id)
            waitlist_join(patient=Patient.objects.get(pk=talk.ctx.patient.id), service=service)
            talk.say(texts.waitlist_joined(service.name, "", before=None))
            return True
    except (BookingError, ValueError):
        logger.info("Waitlist join refused in conversation %s", talk.conversation.pk)
    book_start(talk, text)  # which service? the booking flow asks, and shows what is free now
    return True


def _mentioned_service(talk: Talk, text: str) -> ServiceInfo | None:
    found = match_services(text, talk.ctx.clinic.services)
    return found[0] if len(found) == 1 else None


def _prices(talk: Talk, text: str) -> None:
    service = _mentioned_service(talk, text)
    if service is not None:
        talk.say(texts.price_of(service))
    elif talk.ctx.clinic.services:
        talk.say(texts.prices(talk.ctx.clinic.services))
    else:
        talk.say("Os valores a nossa recepção informa — posso chamar alguém, se quiser.")
    if "conveni" in normalize(text) or "plano" in normalize(text):
        _plans(talk, text)


def _plans(talk: Talk, text: str) -> None:
    tokens = set(words(text))
    named = [plan for plan in talk.ctx.clinic.health_plans if set(words(plan)) and set(words(plan)) <= tokens]
    service = _mentioned_service(talk, text)
    if service is not None:
        talk.say(texts.plans_of(service))
    elif named:
        talk.say(texts.plan_accepted(named[0]))
    else:
        talk.say(texts.plans(talk.ctx.clinic.health_plans))


def _prep(talk: Talk, text: str) -> None:
    service = _mentioned_service(talk, text)
    if service is not None:
        talk.say(texts.preparation(service))
        return
    services = talk.ctx.clinic.services
    with_prep = [s for s in services if s.preparation.strip()]
    if not with_prep:
        talk.say("Nenhum dos nossos atendimentos precisa de preparo especial. Se tiver dúvida, a recepção te ajuda.")
    elif len(with_prep) == 1:
        talk.say(texts.preparation(with_prep[0]))
    else:
        talk.start("prep", choices=[s.id for s in services])
        talk.say(texts.ask_which_service("Para qual atendimento você quer saber o preparo?", services))


def _prep_choice(talk: Talk, text: str) -> bool:
    choices = talk.state.get("choices", [])
    number = parse_choice(text, len(choices))
    service = talk.ctx.clinic.service(choices[number - 1]) if number else _mentioned_service(talk, text)
    if service is None:
        return False
    talk.end_flow()
    talk.say(texts.preparation(service))
    return True


def _staff(talk: Talk, text: str) -> None:
    talk.hand_off(texts.HANDOFF_ASKED, _("The patient asked to talk to the front desk: “%(text)s”") % {"text": text})


def _after_reminder(talk: Talk, text: str) -> bool:
    """ "Sim"/"confirmo" right after the clinic asked to confirm an appointment: confirm it; "não": offer choices."""
    answer = parse_yes_no(text)
    if answer is None:
        return False
    asked = next((m for m in reversed(talk.ctx.recent) if m.author != "patient"), None)
    reminded = "reminder_appointment_id" in talk.state
    if not reminded and (asked is None or "confirm" not in normalize(asked.text) or "?" not in asked.text):
        return False
    if answer:
        existing_start(talk, "confirm", text)
    else:
        talk.start("menu", choices=["reschedule", "cancel"])
        talk.say("Tudo bem! Você prefere:\n1. Remarcar\n2. Cancelar")
    return True


# The last answer offered an appointment ("Quer que eu veja um horário…?", the fixed reply to a medical question).
_OFFERED_BOOKING = re.compile(r"\bquer (que eu (veja|procure|marque)|agendar|marcar)\b")


def _after_booking_offer(talk: Talk, text: str) -> bool:
    """ "Sim" right after an answer that offered to book (and left no flow waiting for it): start booking."""
    answer = parse_yes_no(text)
    if answer is None:
        return False
    asked = next((m for m in reversed(talk.ctx.recent) if m.author != "patient"), None)
    if asked is None or not _OFFERED_BOOKING.search(normalize(asked.text)):
        return False
    if answer:
        book_start(talk, "")
    else:
        talk.say(texts.THANKS)
    return True


def _medical_question(talk: Talk, text: str) -> bool:
    """A question for a doctor ("posso tomar dipirona?"): the turn's fixed reply answered it and asked whether to book
    (guardrails). Nothing to add but to wait for that yes or no."""
    found = guardrails.detect(text)
    if found is None or found[0] != GuardKind.MEDICAL_ADVICE:
        return False
    pending = talk.state.get("ask") if talk.state.get("flow") in FLOWS else None
    if pending:
        talk.say(pending)  # mid-errand ("posso tomar remédio antes?"): back to the question it is waiting on
        return True
    talk.start("offer_book")
    talk.state["step"] = "yes_no"
    return True


def _faq(talk: Talk, text: str) -> bool:
    if parse_yes_no(text) is not None:
        return False  # a bare yes or no answers nothing the FAQ knows (and full-text search would match "Sim!…")
    try:
        from conversations.knowledge import faq_search
    except ImportError:  # the FAQ arrives with the knowledge base; without it the engine still works
        return False
    entries = faq_search(clinic=talk.conversation.clinic, text=text, limit=1)
    if not entries:
        return False
    pending = talk.state.get("ask") if talk.state.get("flow") in FLOWS else None
    talk.say(entries[0].answer)
    if pending:
        talk.say(pending)
    return True


def _not_understood(talk: Talk, text: str) -> None:
    misses = int(talk.state.get("misses", 0)) + 1
    if misses >= MAX_MISSES:
        doing = talk.state.get("flow") or ""
        talk.hand_off(
            texts.HANDOFF_LOST,
            _("The assistant did not understand the patient twice in a row (%(flow)s). Last message: “%(text)s”")
            % {"flow": doing or _("no errand in progress"), "text": text},
        )
        talk.state["misses"] = 0
        return
    talk.state["misses"] = misses
    pending = talk.state.get("ask") if talk.state.get("flow") in FLOWS else None
    if pending:
        talk.say(f"{texts.NOT_UNDERSTOOD} {pending}")
        return
    talk.start("menu", choices=[key for key, _label in texts.MENU_OPTIONS])
    talk.say(texts.menu(greeting=f"{texts.NOT_UNDERSTOOD} Posso ajudar com:"))
