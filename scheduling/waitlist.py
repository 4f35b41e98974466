"""The waitlist: who hears of a freed slot, in what order, and what happens when they answer.

A freed slot (a cancellation, or the old time of a move) is offered to one waiting patient at a time, first come
first served: `offer_next` holds it for them (`Clinic.waitlist_hold_minutes`) and writes the offer; the caller
(conversations.waitlist_offers) sends the message in the same transaction. An offer ends accepted, declined,
expired (no answer in time: the hold lapses by itself and `offers_expire` passes the slot on) or gone (someone else
got it). An expired offer may still be accepted while its slot is free: the patient answered late, which is fine.

The freed time. An offer's `start`/`end` is the freed time being offered, not the appointment it would make: the
appointment takes its service's duration from `start`, and when the offer lapses or is declined the next candidate
may need the whole freed time (a 60-minute consultation after a 30-minute one was declined).

Who is offered (`offer_candidates`): waiting entries in the order they joined, whose service the professional
performs and fits the freed time, for that professional or anyone, still of use (`not_after`), whose patient accepts
automated messages, is free then, has no other open offer and was never offered this slot; with an appointment to
bring forward, only if the slot is earlier and the patient may still move it (the clinic's cancellation notice).
Every booking rule holds (`slot_problems`, policy enforced: this is the patient's path).

The sending window. Nothing is offered outside the clinic's sending window (`Clinic.reminder_window_*`, the same as
reminders): an offer the patient reads at 23:00 would lapse while they sleep. `offers_expire`, run by the
minute sweep, offers the slots freed meanwhile once the window opens again: it looks at the cancellations and moves of
the last `CATCH_UP` that have no open or accepted offer, so a slot freed at night, a chain stopped by the window, or a
lost task (broker outage) is picked up; a slot nobody can take costs a query or two per sweep until `CATCH_UP` ends.

Races. Offers are made under the professional's row lock (as holds and bookings are), so two offer passes for one
slot make one offer. Two patients accepting the same slot at once (an expired offer answered late while a newer one
is open): each locks their own offer, then booking serialises on the professional, and the database's exclusion
constraints have the last word; the loser's booking is refused and their offer ends gone. Lock order is offer, then
appointment, then professional (as the booking services); the winner marks the other open offers of the slot gone
with SKIP LOCKED, so it never waits for a loser who holds their own offer's lock (the loser marks itself gone).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from cecilia.models import Clinic
from patients.models import Patient
from scheduling.availability import hold_slot, holds_release, slot_problems
from scheduling.errors import BookingError, ProfessionalDoesNotPerform
from scheduling.models import (
    Appointment,
    AppointmentAction,
    AppointmentChange,
    AppointmentSource,
    AppointmentStatus,
    OfferStatus,
    Professional,
    Service,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistStatus,
)
from scheduling.reminders import in_window
from scheduling.services import Actor, appointment_book, appointment_reschedule

logger = logging.getLogger(__name__)

_OPEN_APPOINTMENT = (AppointmentStatus.SCHEDULED, AppointmentStatus.CONFIRMED)
# How far back offers_expire looks for freed slots that were never offered (see the module docstring).
CATCH_UP = datetime.timedelta(days=2)
# Lapsed offers handled per sweep (the rest wait for the next minute).
_EXPIRE_BATCH = 200

Reachable = Callable[[WaitlistEntry], bool]


class AcceptReason:
    BOOKED = "booked"  # a new appointment
    MOVED = "moved"  # the entry's appointment moved to the offered slot (its old slot is offered onward)
    ALREADY = "already"  # accepted before (a second tap): the appointment is the one it made
    GONE = "gone"  # someone else got the slot, or it can no longer be booked (the offer is gone)
    EXPIRED_TAKEN = "expired_taken"  # answered after the offer expired (slot passed on), and it was taken meanwhile
    DECLINED = "declined"  # the patient had declined this offer


@dataclass(frozen=True)
class AcceptResult:
    """What an accepted offer came to.

    `gone`: the slot's other open offers this acceptance ended; their patients are to be told the slot was taken.
    The answering patient is the caller's to answer (the engine's reply). `told`: their offer had already ended gone
    before they answered (someone else's acceptance), so they have been told already.
    """

    ok: bool
    reason: str
    offer: WaitlistOffer
    appointment: Appointment | None = None
    gone: list[WaitlistOffer] = field(default_factory=list)
    told: bool = False


# --------------------------------------------------------------------------------------------------------------
# Joining and leaving
# --------------------------------------------------------------------------------------------------------------


def waitlist_join(
    *,
    patient: Patient,
    service: Service,
    professional: Professional | None = None,
    appointment: Appointment | None = None,
    not_after: datetime.datetime | None = None,
    now: datetime.datetime | None = None,
) -> WaitlistEntry:
    """Put the patient on the waitlist for `service` (with `professional`, or anyone who performs it).

    Idempotent: a patient already waiting for the service keeps their place in line (the first request's
    `created_at`); what they ask now replaces what they asked then. With `appointment` (theirs, of this service,
    still open) an accepted offer moves it, and `not_after` defaults to its start. Raises ValueError for data of
    another clinic or patient, BookingError for a service not taking bookings or a professional who does not
    perform it.
    """
    now = now or timezone.now()
    if patient.clinic_id != service.clinic_id:
        raise ValueError("The patient and the service belong to different clinics.")
    if not service.active:
        raise BookingError(_("This service is not taking bookings."))
    if professional is not None:
        if professional.clinic_id != service.clinic_id:
            raise ValueError("The professional belongs to another clinic.")
        if not service.professionals.filter(pk=professional.pk).exists():
            raise ProfessionalDoesNotPerform()
    if appointment is not None:
        if appointment.patient_id != patient.pk or appointment.service_id != service.pk:
            raise ValueError("The appointment to bring forward must be this patient's, of this service.")
        if appointment.status not in _OPEN_APPOINTMENT:
            raise ValueError("Only a scheduled or confirmed appointment can be brought forward.")
        if not_after is None:
            not_after = appointment.start
    wanted = {"professional": professional, "appointment": appointment, "not_after": not_after}
    with transaction.atomic():
        entry = _waiting_entry(patient.pk, service.pk)
        if entry is None:
            try:
                with transaction.atomic():
                    return WaitlistEntry.objects.create(
                        clinic_id=service.clinic_id, patient=patient, service=service, created_at=now, **wanted
                    )
            except IntegrityError:  # joined at the same moment from another turn: that row is the place in line
                entry = _waiting_entry(patient.pk, service.pk)
                if entry is None:
                    raise
        for name, value in wanted.items():
            setattr(entry, name, value)
        entry.save(update_fields=[*wanted, "updated_at"])
    return entry


def _waiting_entry(patient_id: int, service_id: int) -> WaitlistEntry | None:
    return (
        WaitlistEntry.objects.select_for_update()
        .filter(patient_id=patient_id, service_id=service_id, status=WaitlistStatus.WAITING)
        .first()
    )


def waitlist_leave(
    *, entry: WaitlistEntry, now: datetime.datetime | None = None, reachable: Reachable | None = None
) -> WaitlistOffer | None:
    """Take the entry off the waitlist. An open offer it had is declined and its slot offered to the next patient:
    that new offer is returned (the caller sends its message in the same transaction)."""
    now = now or timezone.now()
    with transaction.atomic():
        open_offer = (
            WaitlistOffer.objects.select_for_update().filter(entry_id=entry.pk, status=OfferStatus.OFFERED).first()
        )
        if open_offer is not None:
            _close(open_offer, OfferStatus.DECLINED, now)
        WaitlistEntry.objects.filter(pk=entry.pk, status=WaitlistStatus.WAITING).update(
            status=WaitlistStatus.CANCELLED, updated_at=now
        )
        holds_release(holder=_holder(entry.pk))
        if open_offer is None:
            return None
        return _offer_same_slot(open_offer, now=now, reachable=reachable)


# --------------------------------------------------------------------------------------------------------------
# Offering
# --------------------------------------------------------------------------------------------------------------


def offer_candidates(
    *,
    clinic: Clinic,
    professional: Professional,
    start: datetime.datetime,
    end: datetime.datetime,
    now: datetime.datetime,
) -> list[WaitlistEntry]:
    """The waiting entries that could take [start, end) with `professional`, first come first served (see the module
    docstring). Reads only; the slot's own rules are checked by `offer_next`."""
    if start <= now + datetime.timedelta(minutes=clinic.booking_min_notice_minutes):
        return []
    entries = list(
        WaitlistEntry.objects.filter(
            clinic_id=clinic.pk,
            status=WaitlistStatus.WAITING,
            service__active=True,
            service__professionals=professional,
            patient__opt_out_automated=False,
        )
        .filter(Q(professional__isnull=True) | Q(professional_id=professional.pk))
        .filter(Q(not_after__isnull=True) | Q(not_after__gt=start))
        .exclude(Exists(WaitlistOffer.objects.filter(entry=OuterRef("pk"), professional=professional, start=start)))
        .select_related("patient", "service", "appointment")
        .order_by("created_at", "pk")
    )
    entries = [e for e in entries if start + _duration(e.service) <= end and _may_move(e, start, now, clinic)]
    if not entries:
        return []
    busy = _busy_patients(entries, start, start + max(_duration(e.service) for e in entries))
    return [e for e in entries if not _overlaps(busy.get(e.patient_id, ()), e, start)]


def _duration(service: Service) -> datetime.timedelta:
    return datetime.timedelta(minutes=service.duration_minutes)


def _may_move(entry: WaitlistEntry, start: datetime.datetime, now: datetime.datetime, clinic: Clinic) -> bool:
    """An entry without an appointment may take any slot; with one, only an earlier slot, and only while the patient
    may still move it (the clinic's cancellation notice, as `appointment_reschedule` enforces)."""
    appointment = entry.appointment
    if appointment is None:
        return True
    if appointment.status not in _OPEN_APPOINTMENT or appointment.start <= start:
        return False
    notice = datetime.timedelta(hours=clinic.cancellation_notice_hours)
    return now <= appointment.start - notice


def _busy_patients(
    entries: Iterable[WaitlistEntry], lo: datetime.datetime, hi: datetime.datetime
) -> dict[int, list[tuple[int, datetime.datetime, datetime.datetime]]]:
    """The entries' patients' active appointments overlapping [lo, hi), by patient: one query."""
    rows = (
        Appointment.objects.filter(patient_id__in={e.patient_id for e in entries}, start__lt=hi, end__gt=lo)
        .exclude(status=AppointmentStatus.CANCELLED)
        .values_list("patient_id", "pk", "start", "end")
    )
    found: dict[int, list[tuple[int, datetime.datetime, datetime.datetime]]] = {}
    for patient_id, pk, a_start, a_end in rows:
        found.setdefault(patient_id, []).append((pk, a_start, a_end))
    return found


def _overlaps(
    appointments: Iterable[tuple[int, datetime.datetime, datetime.datetime]],
    entry: WaitlistEntry,
    start: datetime.datetime,
) -> bool:
    end = start + _duration(entry.service)
    # The appointment being brought forward is not in the way: it moves.
    return any(s < end and start < e for pk, s, e in appointments if pk != entry.appointment_id)


def offer_next(
    *,
    clinic_id: int,
    professional_id: int,
    start: datetime.datetime,
    end: datetime.datetime,
    now: datetime.datetime | None = None,
    reachable: Reachable | None = None,
) -> WaitlistOffer | None:
    """Offer the freed time [start, end) with the professional to the first candidate who can take it: hold the
    slot for them for the clinic's `waitlist_hold_minutes` and write the offer (its `expires_at` is the hold's).

    None when nobody can: no candidate, the slot is not free for any of them, the slot already has an open offer,
    or the clinic's sending window is closed (the sweep offers it later). `reachable`: the caller's say on whether it
    can tell a candidate (the patient's chat, the guardian's opt-out, WhatsApp's 24-hour window); one it cannot is
    passed over. Runs in one transaction, under the professional's lock; call it inside the transaction that sends
    the message.
    """
    now = now or timezone.now()
    with transaction.atomic():
        clinic = Clinic.objects.get(pk=clinic_id)
        if not in_window(now, clinic):
            return None
        professional = Professional.objects.select_for_update().get(pk=professional_id, clinic_id=clinic_id)
        open_offers = WaitlistOffer.objects.filter(clinic_id=clinic_id, status=OfferStatus.OFFERED, expires_at__gt=now)
        if open_offers.filter(professional_id=professional_id, start=start).exists():
            return None  # a pass that got here first (the task and the sweep): one offer per slot at a time
        offered_patients = set(open_offers.values_list("entry__patient_id", flat=True))
        for entry in offer_candidates(clinic=clinic, professional=professional, start=start, end=end, now=now):
            if entry.patient_id in offered_patients or (reachable is not None and not reachable(entry)):
                continue
            offer = _offer_to(entry, clinic=clinic, professional=professional, start=start, end=end, now=now)
            if offer is not None:
                return offer
    return None


def _offer_to(
    entry: WaitlistEntry,
    *,
    clinic: Clinic,
    professional: Professional,
    start: datetime.datetime,
    end: datetime.datetime,
    now: datetime.datetime,
) -> WaitlistOffer | None:
    holder = _holder(entry.pk)
    # The rules first, without the alternatives a refused hold would search for (nobody reads them here).
    if slot_problems(service=entry.service, professional=professional, start=start, holder=holder, now=now):
        return None
    moving = entry.appointment_id is not None
    try:
        with transaction.atomic():
            hold = hold_slot(
                service=entry.service,
                professional=professional,
                start=start,
                holder=holder,
                # Checked above without the appointment being brought forward, which hold_slot would count.
                patient=None if moving else entry.patient,
                now=now,
                minutes=clinic.waitlist_hold_minutes,
            )
            return WaitlistOffer.objects.create(
                clinic_id=clinic.pk,
                entry=entry,
                professional=professional,
                start=start,
                end=end,
                expires_at=hold.expires_at,
                created_at=now,
            )
    except (BookingError, IntegrityError):
        logger.info("Waitlist entry %s passed over for a slot it cannot take", entry.pk, exc_info=True)
        return None


def _holder(entry_id: int) -> str:
    return f"waitlist:{entry_id}"


def _offer_same_slot(
    offer: WaitlistOffer, *, now: datetime.datetime, reachable: Reachable | None
) -> WaitlistOffer | None:
    return offer_next(
        clinic_id=offer.clinic_id,
        professional_id=offer.professional_id,
        start=offer.start,
        end=offer.end,
        now=now,
        reachable=reachable,
    )


def _close(offer: WaitlistOffer, status: str, now: datetime.datetime) -> None:
    offer.status, offer.answered_at = status, now
    offer.save(update_fields=["status", "answered_at"])


# --------------------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------------------


def offer_accept(*, offer_id: int, now: datetime.datetime | None = None) -> AcceptResult:
    """The patient wants the offered slot: book it (or move the entry's appointment to it).

    An offer still open, or expired while its slot is free, books; the entry is then booked, its holds released, and
    every other open offer of the same slot ends gone (`AcceptResult.gone`). A refused booking (someone else got the
    slot, the patient is busy then, a rule no longer holds) ends this offer gone: reason "gone", or "expired_taken"
    when the offer had expired (the sweep passed the slot on) before the patient answered. A second acceptance
    returns "already"; a declined or gone offer returns its status as the reason and changes nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        offer = (
            WaitlistOffer.objects.select_for_update(of=("self",))
            .select_related("entry__patient", "entry__service", "entry__appointment", "professional")
            .get(pk=offer_id)
        )
        if offer.status == OfferStatus.ACCEPTED:
            return AcceptResult(ok=True, reason=AcceptReason.ALREADY, offer=offer, appointment=_booked_by(offer))
        if offer.status not in (OfferStatus.OFFERED, OfferStatus.EXPIRED):
            return AcceptResult(ok=False, reason=str(offer.status), offer=offer, told=offer.status == OfferStatus.GONE)
        late = offer.status == OfferStatus.EXPIRED  # the sweep had passed the slot on
        entry = offer.entry
        try:
            with transaction.atomic():
                appointment, reason = _book(offer)
        except BookingError as exc:
            logger.info("Waitlist offer %s could not be booked (%s)", offer.pk, exc.code)
            _close(offer, OfferStatus.GONE, now)
            holds_release(holder=offer.holder)
            reason = AcceptReason.EXPIRED_TAKEN if late else AcceptReason.GONE
            return AcceptResult(ok=False, reason=reason, offer=offer)
        _close(offer, OfferStatus.ACCEPTED, now)
        entry.status = WaitlistStatus.BOOKED
        entry.save(update_fields=["status", "updated_at"])
        holds_release(holder=offer.holder)
        gone = _others_gone(offer, now)
    return AcceptResult(ok=True, reason=reason, offer=offer, appointment=appointment, gone=gone)


def _book(offer: WaitlistOffer) -> tuple[Appointment, str]:
    entry = offer.entry
    current = entry.appointment
    if current is not None and current.status in _OPEN_APPOINTMENT:
        moved = appointment_reschedule(
            appointment=current,
            start=offer.start,
            professional=offer.professional,
            actor=Actor.patient(),
            holder=offer.holder,
        )
        return moved, AcceptReason.MOVED
    # No appointment to move (or it was cancelled since): the patient still wants this slot.
    booked = appointment_book(
        patient=entry.patient,
        service=entry.service,
        professional=offer.professional,
        start=offer.start,
        actor=Actor.patient(),
        source=AppointmentSource.WHATSAPP,
        holder=offer.holder,
    )
    return booked, AcceptReason.BOOKED


def _others_gone(offer: WaitlistOffer, now: datetime.datetime) -> list[WaitlistOffer]:
    """End the slot's other open offers. SKIP LOCKED: an offer locked now is being answered by its patient, whose
    own booking will be refused and end it (see the module docstring: no waiting on a lock held by a loser)."""
    others = list(
        WaitlistOffer.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(professional_id=offer.professional_id, start=offer.start, status=OfferStatus.OFFERED)
        .exclude(pk=offer.pk)
        .select_related("entry__patient", "entry__service", "professional")
    )
    for other in others:
        _close(other, OfferStatus.GONE, now)
        holds_release(holder=other.holder)
    return others


def _booked_by(offer: WaitlistOffer) -> Appointment | None:
    return (
        Appointment.objects.filter(
            patient_id=offer.entry.patient_id, professional_id=offer.professional_id, start=offer.start
        )
        .exclude(status=AppointmentStatus.CANCELLED)
        .first()
    )


def offer_decline(
    *, offer_id: int, now: datetime.datetime | None = None, reachable: Reachable | None = None
) -> WaitlistOffer | None:
    """The patient does not want the offered slot (they stay on the waitlist): the offer ends declined, its hold is
    released and the slot goes to the next candidate, whose offer is returned (the caller sends it). A late "no" to
    an expired offer only records the answer (the sweep has passed the slot on already)."""
    now = now or timezone.now()
    with transaction.atomic():
        offer = WaitlistOffer.objects.select_for_update().get(pk=offer_id)
        if offer.status not in (OfferStatus.OFFERED, OfferStatus.EXPIRED):
            return None
        was_open = offer.status == OfferStatus.OFFERED
        _close(offer, OfferStatus.DECLINED, now)
        holds_release(holder=offer.holder)
        if not was_open:
            return None
        return _offer_same_slot(offer, now=now, reachable=reachable)


def offer_pass_on(
    *, offer_id: int, now: datetime.datetime | None = None, reachable: Reachable | None = None
) -> WaitlistOffer | None:
    """The patient could not be told of their offer (the message could not be queued): it ends as expired (held
    until now), its hold is released and the slot goes to the next candidate, whose offer is returned."""
    now = now or timezone.now()
    with transaction.atomic():
        offer = WaitlistOffer.objects.select_for_update().get(pk=offer_id)
        if offer.status != OfferStatus.OFFERED:
            return None
        offer.status, offer.expires_at = OfferStatus.EXPIRED, now
        offer.save(update_fields=["status", "expires_at"])
        holds_release(holder=offer.holder)
        return _offer_same_slot(offer, now=now, reachable=reachable)


# --------------------------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------------------------


def offers_expire(*, now: datetime.datetime | None = None, reachable: Reachable | None = None) -> list[WaitlistOffer]:
    """Open offers past `expires_at` end expired (their holds lapsed by themselves), and each freed slot still free
    goes to its next candidate; so do the slots freed while the sending window was closed (see the module
    docstring). Returns the new offers: call inside the transaction that sends their messages.
    """
    now = now or timezone.now()
    with transaction.atomic():
        lapsed = list(
            WaitlistOffer.objects.select_for_update(skip_locked=True)  # one being answered right now is theirs
            .filter(status=OfferStatus.OFFERED, expires_at__lte=now)
            .order_by("expires_at", "pk")[:_EXPIRE_BATCH]
        )
        WaitlistOffer.objects.filter(pk__in=[o.pk for o in lapsed]).update(status=OfferStatus.EXPIRED)
        slots = {(o.clinic_id, o.professional_id, o.start, o.end) for o in lapsed}
        slots |= _unoffered_slots(now)
        made = []
        for clinic_id, professional_id, start, end in sorted(slots, key=lambda s: (s[2], s[1])):
            offer = offer_next(
                clinic_id=clinic_id, professional_id=professional_id, start=start, end=end, now=now, reachable=reachable
            )
            if offer is not None:
                made.append(offer)
    return made


def _unoffered_slots(now: datetime.datetime) -> set[tuple[int, int, datetime.datetime, datetime.datetime]]:
    """Old slots of the recent cancellations and moves, still ahead, with no open or accepted offer, in clinics
    with someone waiting and the window open."""
    clinic_ids = set(
        WaitlistEntry.objects.filter(status=WaitlistStatus.WAITING).values_list("clinic_id", flat=True).distinct()
    )
    clinics = {c.pk: c for c in Clinic.objects.filter(pk__in=clinic_ids) if in_window(now, c)}
    if not clinics:
        return set()
    changes = AppointmentChange.objects.filter(
        clinic_id__in=clinics,
        action__in=(AppointmentAction.CANCELLED, AppointmentAction.RESCHEDULED),
        at__gte=now - CATCH_UP,
    ).values_list("clinic_id", "before")
    slots = set()
    for clinic_id, before in changes:
        slot = freed_slot(before)
        if slot is None:
            continue
        professional_id, start, end = slot
        notice = datetime.timedelta(minutes=clinics[clinic_id].booking_min_notice_minutes)
        if start > now + notice:
            slots.add((clinic_id, professional_id, start, end))
    if not slots:
        return slots
    taken = set(
        WaitlistOffer.objects.filter(
            clinic_id__in=clinics,
            start__in={s[2] for s in slots},
        )
        .filter(Q(status=OfferStatus.ACCEPTED) | Q(status=OfferStatus.OFFERED, expires_at__gt=now))
        .values_list("professional_id", "start")
    )
    busy = _rebooked(slots)
    return {s for s in slots if (s[1], s[2]) not in taken and (s[1], s[2]) not in busy}


def _rebooked(
    slots: set[tuple[int, int, datetime.datetime, datetime.datetime]],
) -> set[tuple[int, datetime.datetime]]:
    """The slots whose start an active appointment now covers (booked again directly): nobody can take them."""
    query = Q()
    for _clinic_id, professional_id, start, _end in slots:
        query |= Q(professional_id=professional_id, start__lte=start, end__gt=start)
    found = set()
    rows = (
        Appointment.objects.filter(query)
        .exclude(status=AppointmentStatus.CANCELLED)
        .values_list("professional_id", "start", "end")
    )
    for professional_id, a_start, a_end in rows:
        for _c, pid, start, _e in slots:
            if pid == professional_id and a_start <= start < a_end:
                found.add((pid, start))
    return found


def freed_slot(before: dict) -> tuple[int, datetime.datetime, datetime.datetime] | None:
    """(professional id, start, end) of an appointment's time before a change (`AppointmentChange.before`)."""
    try:
        return (
            int(before["professional_id"]),
            datetime.datetime.fromisoformat(before["start"]),
            datetime.datetime.fromisoformat(before["end"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
