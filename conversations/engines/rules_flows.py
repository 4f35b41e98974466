"""The rule-based receptionist's multi-turn flows: book, reschedule, cancel, confirm.

A flow is a small state machine kept in `Conversation.state` between turns (JSON: ids and ISO strings only):

    {"flow": "book" | "reschedule" | "cancel" | "confirm" | "menu" | "offer_book" | "prep",
     "step": the question pending (see each flow), "ask": its text (re-asked after an aside),
     "choices": ids behind the numbered list on screen, "misses": misunderstandings in a row,
     -- book --        "service_id", "patient_id" (for whom), "professional_id" (None: anyone), "when" (the
                       patient's last words about time, re-read and merged each time),
                       "offers": [[professional_id, iso start], ...],
                       "slot": [professional_id, iso start] (held), "name_asked"
     -- reschedule --  "appointment_id", "professional_id", "when", "offers", "slot"
     -- cancel / confirm -- "appointment_id"}

Each message first goes to the pending flow (`FLOWS[flow](talk, text) -> bool`, False: not understood there, the
engine then tries the other intents). A flow fills what the message says — a service, a person, a professional, a
day — at any step, so a changed mind ("na verdade prefiro sexta") redoes only that part, then asks for the first
thing still missing. Nothing is written without a read-back and a plain yes (`parse_yes_no`); booking errors are
answered in the patient's words, from their `code`.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from typing import Any

from django.utils.translation import gettext as _

from conversations.engines import rules_texts as texts
from conversations.engines.context import AppointmentInfo, ServiceInfo, TurnContext
from conversations.models import Conversation
from conversations.nlu.answers import parse_choice, parse_yes_no
from conversations.nlu.text import normalize
from conversations.nlu.when import When, parse_when
from patients.models import Patient
from patients.services import patient_name_record
from scheduling.availability import Slot, free_slots, hold_slot, holds_release, next_available
from scheduling.errors import BookingError, CancellationTooLate, PatientOverlap, SlotTaken
from scheduling.models import Appointment, AppointmentSource, AppointmentStatus, Professional, Service
from scheduling.services import (
    Actor,
    appointment_book,
    appointment_cancel,
    appointment_confirm,
    appointment_reschedule,
)

logger = logging.getLogger(__name__)

OFFER_COUNT = 4  # numbered slots offered at once: enough choice, short enough to read on a phone
_SPREAD = datetime.timedelta(hours=1)  # offers of one professional at least this far apart (real choices)
_KEEP = ("reminder_appointment_id",)  # state a finished flow keeps: set by the reminder sender


# --------------------------------------------------------------------------------------------------------------
# The turn's working memory
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Talk:
    """One turn of the rule engine: what it knows, the state it is changing and what it will answer."""

    ctx: TurnContext
    conversation: Conversation
    state: dict[str, Any]
    texts: list[str] = field(default_factory=list)
    handoff: bool = False
    summary: str = ""

    @property
    def holder(self) -> str:
        return f"conversation:{self.conversation.pk}"

    def say(self, text: str) -> None:
        self.texts.append(text)

    def ask(self, text: str, step: str, choices: Sequence[int] | None = None) -> None:
        self.state["step"], self.state["ask"] = step, text
        if choices is not None:
            self.state["choices"] = list(choices)
        self.say(text)

    def start(self, flow: str, **data: Any) -> None:
        self.end_flow()
        self.state.update(flow=flow, **data)

    def end_flow(self) -> None:
        if self.state.get("slot") or self.state.get("offers"):
            holds_release(holder=self.holder)
        kept = {key: self.state[key] for key in (*_KEEP, "misses") if key in self.state}
        self.state.clear()
        self.state.update(kept)

    def hand_off(self, text: str, summary: str) -> None:
        self.end_flow()
        self.say(text)
        self.handoff, self.summary = True, summary

    # ---- reading the clinic's rows, always scoped to this clinic and patient (Invariant 4) ----------------------

    def service(self) -> Service:
        return Service.objects.select_related("clinic").get(pk=self.state["service_id"], clinic_id=self.ctx.clinic.id)

    def professional(self, professional_id: int | None) -> Professional | None:
        if professional_id is None:
            return None
        return Professional.objects.filter(pk=professional_id, clinic_id=self.ctx.clinic.id).first()

    def professional_name(self, professional_id: int) -> str:
        info = self.ctx.clinic.professional(professional_id)
        return info.name if info else ""

    def person(self) -> Patient:
        person_id = self.state.get("patient_id") or self.ctx.patient.id
        if not self.ctx.patient.may_act_for(person_id):
            raise PermissionError("The conversation's patient may not act for this person.")
        return Patient.objects.get(pk=person_id, clinic_id=self.ctx.clinic.id)

    def appointment_info(self) -> AppointmentInfo | None:
        wanted = self.state.get("appointment_id")
        return next((a for a in self.ctx.patient.upcoming if a.id == wanted), None)

    def appointment(self) -> Appointment:
        info = self.appointment_info()
        if info is None or not self.ctx.patient.may_act_for(info.patient_id):
            raise PermissionError("Not one of this patient's appointments.")
        return Appointment.objects.get(pk=info.id, clinic_id=self.ctx.clinic.id)


# --------------------------------------------------------------------------------------------------------------
# Understanding words: services, professionals, people, names
# --------------------------------------------------------------------------------------------------------------

_STOP = frozenset({"de", "da", "do", "das", "dos", "e", "com", "para", "pra", "a", "o", "em", "no", "na", "um", "uma"})
_TITLES = frozenset({"dr", "dra", "doutor", "doutora", "prof", "profa", "professor", "professora"})
_ANY_PROFESSIONAL = re.compile(r"\b(tanto faz|qualquer|quem tiver|quem estiver|nao importa|indiferente)\b")
_NAMED_PROFESSIONAL = re.compile(r"\b(?:dr|dra|doutor|doutora|com)\s+(?:o\s+|a\s+)?([a-z]+)(?:\s+([a-z]+))?")
_ME = re.compile(r"\b(pra mim|para mim|eu mesm[oa]|e pra mim|pra eu|para eu|sou eu)\b")
_CHILD = frozenset({"filho", "filha", "filhos", "filhas", "dependente", "crianca", "bebe", "neto", "neta", "menino"})
_ABORT = re.compile(r"\b(deixa pra la|deixa para la|esquece|desisto|nao quero mais|cancela tudo|para tudo)\b")
_DIGITS = re.compile(r"\d")
_NAME_PREFIX = re.compile(
    r"^\s*(?:(?:o\s+)?meu\s+nome\s+(?:completo\s+)?(?:é|e)\s*:?\s*|me\s+chamo\s+|eu\s+sou\s+|sou\s+(?:o\s+|a\s+)?|é\s+)",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", normalize(text))


def similar(word: str, other: str) -> bool:
    """Equal, or a typo apart for words long enough that a typo cannot turn them into another word."""
    if word == other:
        return True
    if min(len(word), len(other)) < 5:
        return False
    return SequenceMatcher(None, word, other).ratio() >= 0.8


# Words that say "an appointment", not which one: "queria marcar uma consulta" names no service, even though
# "Consulta dermatológica" has the word. They count only for a service whose whole name is generic ("Consulta").
_GENERIC = frozenset({"consulta", "consultas", "atendimento", "procedimento", "exame", "exames", "sessao", "horario"})


def match_services(text: str, services: Iterable[ServiceInfo]) -> list[ServiceInfo]:
    """The services the message names best ("limpesa" → Limpeza); several when it is ambiguous; [] when none."""
    tokens = words(text)
    scored: list[tuple[float, ServiceInfo]] = []
    for service in services:
        name = [w for w in words(service.name) if w not in _STOP]
        name = [w for w in name if w not in _GENERIC] or name
        hits = sum(1 for part in name if any(similar(part, token) for token in tokens))
        if hits:
            # More of the name matched wins; between equal counts, the shorter name (the more exact match).
            scored.append((hits + 0.5 * hits / len(name), service))
    if not scored:
        return []
    best = max(score for score, _s in scored)
    return [service for score, service in scored if score == best]


def match_professional(text: str, ctx: TurnContext, among: Iterable[int] | None = None) -> int | str | None:
    """A professional the patient names ("com a Dra. Ana", "dr souza"), "any" for "tanto faz", else None."""
    norm = normalize(text)
    if _ANY_PROFESSIONAL.search(norm):
        return "any"
    allowed = set(among) if among is not None else None
    named = [w for m in _NAMED_PROFESSIONAL.finditer(norm) for w in m.groups() if w and w not in _STOP]
    if not named:
        return None
    found = []
    for pro in ctx.clinic.professionals:
        if allowed is not None and pro.id not in allowed:
            continue
        parts = [w for w in words(pro.name) if w not in _TITLES and len(w) >= 3]
        if any(similar(part, word) for part in parts for word in named):
            found.append(pro.id)
    return found[0] if len(found) == 1 else None


def match_person(text: str, ctx: TurnContext) -> int | None:
    """Whom the patient books for, when they say it: a dependent's name, "meu filho", "pra mim"; else None."""
    dependents = ctx.patient.dependents
    if not dependents:
        return None
    norm = normalize(text)
    tokens = set(words(text))
    own = normalize(ctx.patient.first_name)
    for person in dependents:
        first = normalize(person.first_name)
        if first and first != own and first in tokens:
            return person.id
    if tokens & _CHILD and len(dependents) == 1:
        return dependents[0].id
    if _ME.search(norm):
        return ctx.patient.id
    return None


def name_from(text: str) -> str:
    """The full name in "meu nome é Maria da Silva" / "Maria da Silva."; "" when it does not look like a name."""
    name = _NAME_PREFIX.sub("", text.strip()).strip(" .,!;:-")
    name = re.sub(r"\s+", " ", name)
    looks_like_a_name = (
        2 <= len(name) <= 160
        and not _DIGITS.search(name)
        and len(name.split()) <= 8
        and all(ch.isalpha() or ch in " '-." for ch in name)
        and parse_yes_no(name) is None
    )
    return name if looks_like_a_name else ""


# --------------------------------------------------------------------------------------------------------------
# Finding slots
# --------------------------------------------------------------------------------------------------------------


def _at(day: datetime.date, tz: datetime.tzinfo) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(0), tzinfo=tz)


def _spread(candidates: Iterable[Slot], count: int) -> list[Slot]:
    """Real choices: distinct start times, one professional's offers at least an hour apart."""
    picked: list[Slot] = []
    for slot in candidates:
        if len(picked) >= count:
            break
        if any(
            p.start == slot.start or (p.professional_id == slot.professional_id and abs(p.start - slot.start) < _SPREAD)
            for p in picked
        ):
            continue
        picked.append(slot)
    return picked


def _fits(slot: Slot, when: When) -> bool:
    start = slot.start.timetz().replace(tzinfo=None)
    if when.weekdays and slot.start.weekday() not in when.weekdays:
        return False
    if when.not_before and start < when.not_before:
        return False
    return not (when.not_after and start > when.not_after)


def _is_open_ended(when: When) -> bool:
    """ "O mais cedo possível", "de manhã": no day or time, only the first free slots (maybe in a part of day)."""
    return not (when.date_given or when.time or when.weekdays or when.not_before or when.not_after)


def _has_hours(when: When) -> bool:
    return bool(when.time or when.part_of_day or when.not_before or when.not_after)


def merged_when(said: Sequence[str], *, now: datetime.datetime) -> When | None:
    """What the patient accepts from everything they said about time in this flow, latest words first.

    Days come from the latest message that named a day, hours from the latest that named hours: "amanhã" then
    "à tarde" is tomorrow afternoon, and "na verdade prefiro sexta" moves the day but keeps "à tarde".
    """
    parsed = [when for text in said if (when := parse_when(text, now=now)) is not None]
    if not parsed:
        return None
    latest = parsed[-1]
    days = next((w for w in reversed(parsed) if w.date_given or w.weekdays), latest)
    hours = next((w for w in reversed(parsed) if _has_hours(w)), latest)
    return replace(
        days,
        time=hours.time,
        part_of_day=hours.part_of_day,
        not_before=hours.not_before,
        not_after=hours.not_after,
        earliest=latest.earliest,
    )


def find_slots(
    talk: Talk,
    *,
    service: Service,
    professional: Professional | None,
    when: When | None,
    ignore_appointment_id: int | None = None,
    later_than: datetime.datetime | None = None,
) -> tuple[list[Slot], bool]:
    """Up to OFFER_COUNT slots for what the patient asked; the flag says whether they fit it (False: the nearest).

    `later_than`: only slots after it ("mais tarde", "tem outros?" after an offer).
    """
    now = talk.ctx.now
    part = when.part_of_day if when else None
    if when is None or _is_open_ended(when):
        found = next_available(
            service=service,
            professional=professional,
            after=later_than + datetime.timedelta(minutes=1) if later_than else None,
            part_of_day=part,
            holder=talk.holder,
            count=OFFER_COUNT,
            now=now,
        )
        return found, True
    tz = now.tzinfo
    assert tz is not None
    first = max(when.start_date, now.date())
    last = when.end_date
    candidates = []
    if last >= first:
        candidates = free_slots(
            service=service,
            professional=professional,
            start=_at(first, tz),
            end=_at(last + datetime.timedelta(days=1), tz),
            part_of_day=part,
            holder=talk.holder,
            ignore_appointment_id=ignore_appointment_id,
            now=now,
        )
        candidates = [slot for slot in candidates if _fits(slot, when) and (not later_than or slot.start > later_than)]
    if when.time and candidates:
        wanted = when.time.hour * 60 + when.time.minute
        by_distance = sorted(
            candidates, key=lambda s: (abs(s.start.hour * 60 + s.start.minute - wanted), s.start.date(), s.start)
        )
        picked = _spread(by_distance, OFFER_COUNT)
        exact = [slot for slot in picked if (slot.start.hour, slot.start.minute) == (when.time.hour, when.time.minute)]
        # The time asked for first, when free; the nearest others in the order of the day.
        return exact + sorted((slot for slot in picked if slot not in exact), key=lambda s: s.start), True
    if candidates:
        return _spread(candidates, OFFER_COUNT), True
    after = max(_at(first, tz), now, later_than + datetime.timedelta(minutes=1) if later_than else now)
    nearest = next_available(
        service=service, professional=professional, after=after, holder=talk.holder, count=OFFER_COUNT, now=now
    )
    return nearest, False


def _slot_pair(slot: Slot) -> list[Any]:
    return [slot.professional_id, slot.start.isoformat()]


def _slot_start(pair: Sequence[Any], talk: Talk) -> datetime.datetime:
    return datetime.datetime.fromisoformat(pair[1]).astimezone(talk.ctx.now.tzinfo)


def offer(talk: Talk, slots: Sequence[Slot], *, intro: str) -> None:
    talk.state["offers"] = [_slot_pair(slot) for slot in slots]
    lines = [
        texts.slot_line(slot.start.astimezone(talk.ctx.now.tzinfo), talk.professional_name(slot.professional_id))
        for slot in slots
    ]
    talk.ask(texts.offer_slots(lines, intro=intro), "slot")


def offer_alternatives(talk: Talk, error: SlotTaken, *, service_name: str) -> bool:
    """After a slot was taken: its alternatives, or a fresh search when it brought none. False: nothing left."""
    talk.state.pop("slot", None)
    if error.alternatives:
        offer(talk, error.alternatives[:OFFER_COUNT], intro=f"{texts.SLOT_TAKEN} Tenho estes para *{service_name}*:")
        return True
    talk.say(texts.SLOT_TAKEN)
    talk.state.pop("offers", None)
    return False


def chosen_offer(talk: Talk, text: str) -> int | None:
    """The index of the offer the patient picked: "2", "a segunda", "o das 10h", "o de sexta"; None otherwise."""
    offers = talk.state.get("offers") or []
    if not offers:
        return None
    number = parse_choice(text, len(offers))
    if number is not None:
        return number - 1
    when = parse_when(text, now=talk.ctx.now)
    if when is None or not (when.time or when.date_given):
        return None
    matching = []
    for index, pair in enumerate(offers):
        start = _slot_start(pair, talk)
        if when.time and (start.hour, start.minute) != (when.time.hour, when.time.minute):
            continue
        if when.date_given and not when.start_date <= start.date() <= when.end_date:
            continue
        if when.weekdays and start.weekday() not in when.weekdays:
            continue
        matching.append(index)
    return matching[0] if len(matching) == 1 else None


# --------------------------------------------------------------------------------------------------------------
# Booking
# --------------------------------------------------------------------------------------------------------------


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
    if _ABORT.search(normalize(text)):
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
        _forget_slots(talk)
        book_advance(talk)
        return True
    if step == "slot" and (index := chosen_offer(talk, text)) is not None:
        _take_offer(talk, index, booking=True)
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
    if step == "slot" and _later(talk, text):
        return True
    answer = parse_yes_no(text)
    if step == "confirm" and answer is True:
        _book_write(talk)
        return True
    if step == "confirm" and answer is False:
        talk.ask(texts.ASK_CHANGE, "change")
        return True
    if step == "slot" and answer is False:
        _forget_slots(talk)
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
        _forget_slots(talk)
        talk.ask(texts.ASK_WHEN, "when")
        return True
    if re.search(r"\b(profissional|dentista|medic[oa]|doutor[a]?|dr[a]?)\b", norm):
        _forget_slots(talk)
        _ask_professional(talk)
        return True
    if re.search(r"\b(atendimento|servico|procedimento|consulta|exame)\b", norm):
        talk.state.pop("service_id", None)
        _forget_slots(talk)
        book_advance(talk)
        return True
    return False


def _ask_professional(talk: Talk) -> None:
    service = talk.ctx.clinic.service(talk.state["service_id"])
    ids = list(service.professional_ids) if service else []
    names = [talk.professional_name(pid) for pid in ids]
    talk.ask(texts.ask_professional(names), "professional", choices=ids)


def _forget_slots(talk: Talk) -> None:
    if talk.state.pop("slot", None) or talk.state.pop("offers", None):
        holds_release(holder=talk.holder)
    talk.state.pop("offers", None)
    talk.state.pop("later_than", None)


_LATER = re.compile(
    r"\b(mais tarde|outros? horarios?|outras? opc(ao|oes)|mais opc(ao|oes)|tem outros?|nenhum( desses)?)\b"
)


def _later(talk: Talk, text: str) -> bool:
    """ "Mais tarde", "tem outros?": the next slots after the last one offered."""
    offers = talk.state.get("offers") or []
    if not offers or not _LATER.search(normalize(text)):
        return False
    last = max(_slot_start(pair, talk) for pair in offers)
    _forget_slots(talk)
    talk.state["later_than"] = last.isoformat()
    _search_and_offer(talk, ignore_appointment_id=talk.state.get("appointment_id"))
    return True


def _set_service(talk: Talk, service_id: int) -> None:
    if talk.state.get("service_id") != service_id:
        talk.state["service_id"] = service_id
        _forget_slots(talk)
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
        _forget_slots(talk)
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
            _forget_slots(talk)
            changed = True
    if _said_when(talk, text):
        _forget_slots(talk)
        changed = True
    return changed or first


def _said_when(talk: Talk, text: str) -> bool:
    """Remember what the message says about time, if anything (merged with what was said before)."""
    if parse_when(text, now=talk.ctx.now) is None:
        return False
    talk.state["when"] = [*talk.state.get("when", []), text.strip()][-4:]
    return True


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
        _search_and_offer(talk)
        return
    if not ctx.patient.known and not state.get("name_asked"):
        talk.ask(texts.ASK_NAME, "name")
        return
    _book_readback(talk)


def _search_and_offer(talk: Talk, *, ignore_appointment_id: int | None = None) -> None:
    state = talk.state
    service = talk.service()
    professional = talk.professional(state.get("professional_id"))
    when = merged_when(state.get("when", []), now=talk.ctx.now)
    later_than = datetime.datetime.fromisoformat(state["later_than"]) if state.get("later_than") else None
    slots, fits = find_slots(
        talk,
        service=service,
        professional=professional,
        when=when,
        ignore_appointment_id=ignore_appointment_id,
        later_than=later_than,
    )
    if not slots and professional is not None:
        slots, fits = find_slots(talk, service=service, professional=None, when=when, later_than=later_than)
    if not slots:
        talk.hand_off(
            texts.no_slots(service.name),
            _("No free slot found online for %(service)s; the patient needs a time.") % {"service": service.name},
        )
        return
    asked = when.describe() if when is not None and (not _is_open_ended(when) or when.part_of_day) else ""
    offer(talk, slots, intro=texts.offer_intro(service=service.name, asked=asked, found=fits))


def _take_offer(talk: Talk, index: int, *, booking: bool) -> None:
    """Hold the chosen slot for this conversation, then go on (a name, the read-back)."""
    pair = talk.state["offers"][index]
    service = talk.service()
    professional = talk.professional(pair[0])
    start = _slot_start(pair, talk)
    holds_release(holder=talk.holder)  # a previous pick, if the patient changed their mind
    try:
        hold_slot(
            service=service,
            professional=professional,
            start=start,
            holder=talk.holder,
            patient=talk.person() if booking else None,
            now=talk.ctx.now,
        )
    except BookingError as error:
        _refused(talk, error, booking=booking, service_name=service.name)
        return
    talk.state["slot"] = pair
    if booking:
        book_advance(talk)
    else:
        _reschedule_readback(talk)


def _refused(talk: Talk, error: BookingError, *, booking: bool, service_name: str) -> None:
    """A hold, booking or move the scheduling services refused: the error's alternatives when the slot was taken,
    a word about the patient's own clash, otherwise a fresh search (only the error's code is logged)."""
    if isinstance(error, SlotTaken) and offer_alternatives(talk, error, service_name=service_name):
        return
    if isinstance(error, PatientOverlap):
        talk.say(texts.PATIENT_BUSY)
    elif not isinstance(error, SlotTaken):
        logger.info("Rule engine %s refused (%s) in conversation %s", "booking" if booking else "move", error.code,
                    talk.conversation.pk)  # fmt: skip
        talk.say(texts.SLOT_TAKEN)
    _search_again(talk, booking)


def _search_again(talk: Talk, booking: bool) -> None:
    talk.state.pop("offers", None)
    talk.state.pop("slot", None)
    _search_and_offer(talk, ignore_appointment_id=None if booking else talk.state.get("appointment_id"))


def _book_readback(talk: Talk) -> None:
    state, ctx = talk.state, talk.ctx
    pair = state["slot"]
    service = ctx.clinic.service(state["service_id"])
    person_id = state.get("patient_id") or ctx.patient.id
    person = next((d.first_name for d in ctx.patient.dependents if d.id == person_id), "")
    text = texts.readback_book(
        professional=talk.professional_name(pair[0]),
        service=service.name if service else "",
        start=_slot_start(pair, talk),
        person=person,
        no_shows=ctx.patient.recent_no_shows > 0 and person_id == ctx.patient.id,
    )
    talk.ask(text, "confirm")


def _book_write(talk: Talk) -> None:
    state = talk.state
    service = talk.service()
    pair = state["slot"]
    professional = talk.professional(pair[0])
    start = _slot_start(pair, talk)
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
        _refused(talk, error, booking=True, service_name=service.name)
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


# --------------------------------------------------------------------------------------------------------------
# Existing appointments: pick one, then reschedule, cancel or confirm it
# --------------------------------------------------------------------------------------------------------------

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
    if _ABORT.search(normalize(text)):
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
        _said_when(talk, text)
    _search_and_offer(talk, ignore_appointment_id=appointment.id)


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
        _take_offer(talk, index, booking=False)
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
    if _said_when(talk, text):
        changed = True
    if changed:
        _forget_slots(talk)
        _search_and_offer(talk, ignore_appointment_id=appointment_id)
        return True
    if step == "slot" and _later(talk, text):
        return True
    if answer is False and step in ("confirm", "slot"):
        _forget_slots(talk)
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
        new=_slot_start(pair, talk),
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
    start = _slot_start(pair, talk)
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
        _refused(talk, error, booking=False, service_name=info.service)
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


# --------------------------------------------------------------------------------------------------------------
# Small flows: "quer agendar?" and the menu
# --------------------------------------------------------------------------------------------------------------


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


FLOWS: dict[str, Callable[[Talk, str], bool]] = {
    "book": book_take,
    "reschedule": existing_take,
    "cancel": existing_take,
    "confirm": existing_take,
    "offer_book": offer_book_take,
}
