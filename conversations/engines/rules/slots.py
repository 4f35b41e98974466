"""Finding slots for a booking or a reschedule: the search, the numbered offers, the patient's pick and its hold.

What the patient said about time is merged over the whole flow (`merged_when`). A hold or write the scheduling
services refuse is answered here too (`answer_refusal`): the error's alternatives, or a fresh search.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from django.utils.translation import gettext as _

from conversations.engines.rules import texts
from conversations.engines.rules.talk import Talk
from conversations.nlu.answers import parse_choice
from conversations.nlu.text import normalize
from conversations.nlu.when import When, parse_when
from scheduling.availability import Slot, free_slots, hold_slot, holds_release, next_available
from scheduling.errors import BookingError, PatientOverlap, SlotTaken
from scheduling.models import Professional, Service

logger = logging.getLogger(__name__)

OFFER_COUNT = 4  # numbered slots offered at once: enough choice, short enough to read on a phone
_SPREAD = datetime.timedelta(hours=1)  # offers of one professional at least this far apart (real choices)


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


def slot_start(pair: Sequence[Any], talk: Talk) -> datetime.datetime:
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
        start = slot_start(pair, talk)
        if when.time and (start.hour, start.minute) != (when.time.hour, when.time.minute):
            continue
        if when.date_given and not when.start_date <= start.date() <= when.end_date:
            continue
        if when.weekdays and start.weekday() not in when.weekdays:
            continue
        matching.append(index)
    return matching[0] if len(matching) == 1 else None


# ---- searching, holding and starting over: the same for a booking and a reschedule ---------------------------


def forget_slots(talk: Talk) -> None:
    if talk.state.pop("slot", None) or talk.state.pop("offers", None):
        holds_release(holder=talk.holder)
    talk.state.pop("offers", None)
    talk.state.pop("later_than", None)


_LATER = re.compile(
    r"\b(mais tarde|outros? horarios?|outras? opc(ao|oes)|mais opc(ao|oes)|tem outros?|nenhum( desses)?)\b"
)


def offer_later(talk: Talk, text: str) -> bool:
    """ "Mais tarde", "tem outros?": the next slots after the last one offered."""
    offers = talk.state.get("offers") or []
    if not offers or not _LATER.search(normalize(text)):
        return False
    last = max(slot_start(pair, talk) for pair in offers)
    forget_slots(talk)
    talk.state["later_than"] = last.isoformat()
    search_and_offer(talk, ignore_appointment_id=talk.state.get("appointment_id"))
    return True


def said_when(talk: Talk, text: str) -> bool:
    """Remember what the message says about time, if anything (merged with what was said before)."""
    if parse_when(text, now=talk.ctx.now) is None:
        return False
    talk.state["when"] = [*talk.state.get("when", []), text.strip()][-4:]
    return True


def search_and_offer(talk: Talk, *, ignore_appointment_id: int | None = None) -> None:
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


def take_offer(talk: Talk, index: int, *, booking: bool) -> bool:
    """Hold the chosen slot for this conversation; False when it was refused (the patient has been answered).

    On True the caller goes on: a booking to the name or the read-back, a reschedule to its read-back.
    """
    pair = talk.state["offers"][index]
    service = talk.service()
    professional = talk.professional(pair[0])
    start = slot_start(pair, talk)
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
        answer_refusal(talk, error, booking=booking, service_name=service.name)
        return False
    talk.state["slot"] = pair
    return True


def answer_refusal(talk: Talk, error: BookingError, *, booking: bool, service_name: str) -> None:
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
    search_and_offer(talk, ignore_appointment_id=None if booking else talk.state.get("appointment_id"))
