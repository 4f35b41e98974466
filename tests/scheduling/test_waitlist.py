"""The waitlist's rules on real PostgreSQL: who is offered a freed slot, the hold, and what the answers do.

Time is frozen on a Monday a week before the slots (10:00 in São Paulo, inside the 08–20 sending window).
"""

from __future__ import annotations

import datetime

import pytest

from scheduling.errors import BookingError, ProfessionalDoesNotPerform, SlotTaken
from scheduling.models import (
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    OfferStatus,
    SlotHold,
    WaitlistEntry,
    WaitlistStatus,
)
from scheduling.services import Actor, appointment_book, appointment_cancel
from scheduling.waitlist import (
    AcceptReason,
    offer_accept,
    offer_candidates,
    offer_decline,
    offer_next,
    offers_expire,
    waitlist_join,
    waitlist_leave,
)
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, at, book, clinic, professional, service

pytestmark = pytest.mark.django_db

NOW = at(MONDAY - datetime.timedelta(days=7), 10)
SLOT = at(MONDAY, 9)  # the freed slot: 09:00–09:30
SLOT_END = at(MONDAY, 9, 30)


@pytest.fixture
def w(time_machine):
    time_machine.move_to(NOW, tick=False)
    c = clinic(waitlist_hold_minutes=30)
    ana = professional(c, "Dra. Ana")
    bruno = professional(c, "Dr. Bruno")
    svc = service(c, [ana, bruno], duration_minutes=30)
    return {"clinic": c, "ana": ana, "bruno": bruno, "svc": svc, "staff": factories.staff_user(c)}


def _waiting(w, n, **kwargs):
    """`n` patients joined in order, a minute apart."""
    entries = []
    for i in range(n):
        entries.append(
            waitlist_join(
                patient=factories.patient(w["clinic"]),
                service=w["svc"],
                now=NOW - datetime.timedelta(minutes=n - i),
                **kwargs,
            )
        )
    return entries


def _offer(w, now=NOW, **kwargs):
    return offer_next(
        clinic_id=w["clinic"].pk, professional_id=w["ana"].pk, start=SLOT, end=SLOT_END, now=now, **kwargs
    )


# ---- joining ----------------------------------------------------------------------------------------------------


def test_joining_twice_keeps_one_place_in_line_and_takes_the_latest_wishes(w):
    patient = factories.patient(w["clinic"])
    first = waitlist_join(patient=patient, service=w["svc"], now=NOW - datetime.timedelta(hours=1))
    again = waitlist_join(patient=patient, service=w["svc"], professional=w["ana"], not_after=at(MONDAY, 12))
    assert again.pk == first.pk
    assert WaitlistEntry.objects.count() == 1
    again.refresh_from_db()
    assert again.created_at == NOW - datetime.timedelta(hours=1)
    assert (again.professional, again.not_after) == (w["ana"], at(MONDAY, 12))


def test_joining_with_an_appointment_waits_only_for_slots_before_it(w):
    patient = factories.patient(w["clinic"])
    appointment = book(patient, w["ana"], w["svc"], at(MONDAY + datetime.timedelta(days=2), 10))
    entry = waitlist_join(patient=patient, service=w["svc"], appointment=appointment)
    assert entry.not_after == appointment.start


def test_joining_refuses_a_professional_who_does_not_perform_the_service_or_an_inactive_service(w):
    carla = professional(w["clinic"], "Dra. Carla")
    patient = factories.patient(w["clinic"])
    with pytest.raises(ProfessionalDoesNotPerform):
        waitlist_join(patient=patient, service=w["svc"], professional=carla)
    closed = service(w["clinic"], [w["ana"]], active=False)
    with pytest.raises(BookingError):
        waitlist_join(patient=patient, service=closed)
    with pytest.raises(ValueError):
        waitlist_join(patient=factories.patient(factories.clinic()), service=w["svc"])


def test_leaving_withdraws_the_entry_and_passes_its_open_offer_on(w):
    first, second = _waiting(w, 2)
    offer = _offer(w)
    assert offer.entry == first
    nxt = waitlist_leave(entry=first)
    first.refresh_from_db()
    offer.refresh_from_db()
    assert first.status == WaitlistStatus.CANCELLED and offer.status == OfferStatus.DECLINED
    assert nxt is not None and nxt.entry == second


# ---- offering ---------------------------------------------------------------------------------------------------


def test_a_freed_slot_goes_to_the_first_patient_in_line_held_for_the_clinics_waitlist_minutes(w):
    first, _second = _waiting(w, 2)
    cancelled = book(factories.patient(w["clinic"]), w["ana"], w["svc"], SLOT)
    appointment_cancel(appointment=cancelled, actor=Actor.staff(w["staff"]))
    offer = _offer(w)
    assert offer.entry == first
    assert (offer.start, offer.end, offer.status) == (SLOT, SLOT_END, OfferStatus.OFFERED)
    assert offer.expires_at == NOW + datetime.timedelta(minutes=30)
    hold = SlotHold.objects.get()
    assert (hold.holder, hold.start, hold.expires_at) == (f"waitlist:{first.pk}", SLOT, offer.expires_at)


def test_nobody_else_can_book_the_held_slot_meanwhile(w):
    _waiting(w, 1)
    _offer(w)
    with pytest.raises(SlotTaken) as excinfo:
        appointment_book(
            patient=factories.patient(w["clinic"]),
            service=w["svc"],
            professional=w["ana"],
            start=SLOT,
            actor=Actor.patient(),
            source=AppointmentSource.WHATSAPP,
        )
    assert excinfo.value.details["reason"] == "held"


def test_a_slot_with_an_open_offer_is_not_offered_twice(w):
    _waiting(w, 2)
    assert _offer(w) is not None
    assert _offer(w) is None


def test_candidates_leave_out_whoever_cannot_use_the_slot(w):
    c = w["clinic"]
    bruno_only = waitlist_join(patient=factories.patient(c), service=w["svc"], professional=w["bruno"])
    too_late = waitlist_join(patient=factories.patient(c), service=w["svc"], not_after=SLOT)
    opted_out = waitlist_join(patient=factories.patient(c, opt_out_automated=True), service=w["svc"])
    busy = waitlist_join(patient=factories.patient(c), service=w["svc"])
    book(busy.patient, w["bruno"], w["svc"], at(MONDAY, 9, 15))
    long_svc = service(c, [w["ana"]], duration_minutes=60)
    too_long = waitlist_join(patient=factories.patient(c), service=long_svc)
    later_patient = factories.patient(c)
    earlier_appointment = book(later_patient, w["ana"], w["svc"], at(MONDAY, 8))
    already_earlier = waitlist_join(patient=later_patient, service=w["svc"], appointment=earlier_appointment)
    fine = waitlist_join(patient=factories.patient(c), service=w["svc"], professional=w["ana"])
    found = offer_candidates(clinic=c, professional=w["ana"], start=SLOT, end=SLOT_END, now=NOW)
    assert found == [fine]
    assert not {bruno_only, too_late, opted_out, busy, too_long, already_earlier} & set(found)


def test_a_slot_sooner_than_the_minimum_notice_is_offered_to_nobody(w):
    w["clinic"].booking_min_notice_minutes = 60
    w["clinic"].save()
    _waiting(w, 1)
    soon = NOW + datetime.timedelta(minutes=30)
    assert offer_candidates(clinic=w["clinic"], professional=w["ana"], start=soon, end=soon, now=NOW) == []


def test_a_patient_with_an_open_offer_is_passed_over_for_another_slot(w):
    _first, second = _waiting(w, 2)
    _offer(w)
    other = offer_next(
        clinic_id=w["clinic"].pk, professional_id=w["ana"].pk, start=at(MONDAY, 10), end=at(MONDAY, 10, 30), now=NOW
    )
    assert other.entry == second


def test_the_callers_say_passes_a_candidate_over(w):
    first, second = _waiting(w, 2)
    assert _offer(w, reachable=lambda entry: entry != first).entry == second


def test_outside_the_sending_window_nothing_is_offered(w):
    _waiting(w, 1)
    night = at(MONDAY - datetime.timedelta(days=7), 21)
    assert _offer(w, now=night) is None
    assert not SlotHold.objects.exists()


# ---- expiry -----------------------------------------------------------------------------------------------------


def test_an_unanswered_offer_expires_and_the_slot_goes_to_the_next_patient(w):
    _first, second = _waiting(w, 2)
    offer = _offer(w)
    later = NOW + datetime.timedelta(minutes=31)
    made = offers_expire(now=later)
    offer.refresh_from_db()
    assert offer.status == OfferStatus.EXPIRED
    assert [o.entry for o in made] == [second]
    assert made[0].expires_at == later + datetime.timedelta(minutes=30)
    assert offers_expire(now=later) == []  # nothing more to do


def test_a_slot_freed_at_night_is_offered_when_the_window_opens(w, time_machine):
    _waiting(w, 1)
    night = at(MONDAY - datetime.timedelta(days=7), 21)
    time_machine.move_to(night, tick=False)
    gone = book(factories.patient(w["clinic"]), w["ana"], w["svc"], SLOT)
    appointment_cancel(appointment=gone, actor=Actor.staff(w["staff"]))
    assert offers_expire(now=night) == []
    morning = at(MONDAY - datetime.timedelta(days=6), 8)
    made = offers_expire(now=morning)
    assert [(o.professional_id, o.start, o.end) for o in made] == [(w["ana"].pk, SLOT, SLOT_END)]
    assert offers_expire(now=morning + datetime.timedelta(minutes=1)) == []  # it has its offer now


# ---- answers ----------------------------------------------------------------------------------------------------


def test_accepting_books_the_slot_and_ends_the_wait(w):
    (entry,) = _waiting(w, 1)
    offer = _offer(w)
    result = offer_accept(offer_id=offer.pk, now=NOW + datetime.timedelta(minutes=5))
    assert (result.ok, result.reason) == (True, AcceptReason.BOOKED)
    appointment = result.appointment
    assert (appointment.patient, appointment.start, appointment.source) == (entry.patient, SLOT, "whatsapp")
    entry.refresh_from_db()
    offer.refresh_from_db()
    assert entry.status == WaitlistStatus.BOOKED and offer.status == OfferStatus.ACCEPTED
    assert not SlotHold.objects.exists()
    again = offer_accept(offer_id=offer.pk)
    assert (again.ok, again.reason, again.appointment) == (True, AcceptReason.ALREADY, appointment)


def test_accepting_with_an_appointment_moves_it_earlier(w):
    patient = factories.patient(w["clinic"])
    wednesday = at(MONDAY + datetime.timedelta(days=2), 10)
    current = book(patient, w["bruno"], w["svc"], wednesday)
    waitlist_join(patient=patient, service=w["svc"], appointment=current)
    offer = _offer(w)
    result = offer_accept(offer_id=offer.pk)
    assert (result.ok, result.reason) == (True, AcceptReason.MOVED)
    current.refresh_from_db()
    assert (current.start, current.professional) == (SLOT, w["ana"])
    assert Appointment.objects.count() == 1


def test_a_late_yes_still_books_while_the_slot_is_free(w):
    (_entry,) = _waiting(w, 1)
    offer = _offer(w)
    later = NOW + datetime.timedelta(hours=2)
    offers_expire(now=later)
    result = offer_accept(offer_id=offer.pk, now=later)
    assert (result.ok, result.reason) == (True, AcceptReason.BOOKED)


def test_a_late_yes_after_the_slot_was_taken_is_expired_taken(w):
    (entry,) = _waiting(w, 1)
    offer = _offer(w)
    later = NOW + datetime.timedelta(hours=2)
    offers_expire(now=later)
    book(factories.patient(w["clinic"]), w["ana"], w["svc"], SLOT)
    result = offer_accept(offer_id=offer.pk, now=later)
    assert (result.ok, result.reason, result.gone, result.told) == (False, AcceptReason.EXPIRED_TAKEN, [], False)
    offer.refresh_from_db()
    entry.refresh_from_db()
    assert offer.status == OfferStatus.GONE and entry.status == WaitlistStatus.WAITING


def test_accepting_ends_the_slots_other_open_offers_gone(w, time_machine):
    _first, second = _waiting(w, 2)
    stale = _offer(w)
    # The first offer's hold lapsed without the sweep; another pass offered the slot to the second patient.
    later = NOW + datetime.timedelta(minutes=31)
    time_machine.move_to(later, tick=False)
    newer = _offer(w, now=later)
    assert newer.entry == second
    result = offer_accept(offer_id=newer.pk, now=later)
    assert result.ok and [o.pk for o in result.gone] == [stale.pk]
    stale.refresh_from_db()
    assert stale.status == OfferStatus.GONE
    late = offer_accept(offer_id=stale.pk, now=later)
    assert (late.ok, late.reason, late.told) == (False, AcceptReason.GONE, True)


def test_declining_passes_the_slot_to_the_next_patient_and_keeps_the_place_in_line(w):
    first, second = _waiting(w, 2)
    offer = _offer(w)
    nxt = offer_decline(offer_id=offer.pk)
    offer.refresh_from_db()
    first.refresh_from_db()
    assert offer.status == OfferStatus.DECLINED and first.status == WaitlistStatus.WAITING
    assert nxt.entry == second
    assert SlotHold.objects.get().holder == f"waitlist:{second.pk}"
    assert offer_decline(offer_id=offer.pk) is None  # a second "no" changes nothing


def test_a_declined_slot_is_not_offered_to_the_same_patient_again(w):
    (_only,) = _waiting(w, 1)
    offer = _offer(w)
    assert offer_decline(offer_id=offer.pk) is None
    assert _offer(w) is None
    assert Appointment.objects.filter(status=AppointmentStatus.SCHEDULED).count() == 0
