"""Slot holds: a slot offered to a patient who is still choosing is kept from everyone else for a few minutes."""

from __future__ import annotations

import datetime

import pytest

from scheduling.availability import free_slots, hold_slot, holds_release
from scheduling.errors import PatientOverlap, SlotTaken, TooSoon
from scheduling.models import SlotHold
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, at, book, clinic, day_window, hhmm, professional, service

pytestmark = pytest.mark.django_db

NOW = at(MONDAY - datetime.timedelta(days=1), 10)


@pytest.fixture
def ana(time_machine):
    time_machine.move_to(NOW, tick=False)
    c = clinic(slot_hold_minutes=5)
    pro = professional(c, "Dra. Ana")
    return {"clinic": c, "pro": pro, "svc": service(c, [pro])}


def _hold(ana, hour, holder, minute=0, **kwargs):
    return hold_slot(
        service=ana["svc"], professional=ana["pro"], start=at(MONDAY, hour, minute), holder=holder, **kwargs
    )


def _times(ana, **kwargs):
    return hhmm(free_slots(service=ana["svc"], **day_window(MONDAY), **kwargs))


def test_a_hold_keeps_the_slot_from_other_holders_but_not_from_its_own(ana):
    hold = _hold(ana, 9, "conversation:1")
    assert hold.expires_at == NOW + datetime.timedelta(minutes=5)
    assert (hold.start, hold.end) == (at(MONDAY, 9), at(MONDAY, 9, 30))
    assert "09:00" not in _times(ana)
    assert "09:00" not in _times(ana, holder="conversation:2")
    assert "09:00" in _times(ana, holder="conversation:1")


def test_another_holder_gets_slot_taken_with_alternatives(ana):
    _hold(ana, 9, "conversation:1")
    with pytest.raises(SlotTaken) as excinfo:
        _hold(ana, 9, "conversation:2")
    assert excinfo.value.code == "slot_taken"
    assert excinfo.value.details["reason"] == "held"
    assert [s.start for s in excinfo.value.alternatives] == [at(MONDAY, 9, 30), at(MONDAY, 10, 30), at(MONDAY, 11, 30)]
    assert SlotHold.objects.count() == 1


def test_holding_the_same_slot_again_renews_the_hold(ana, time_machine):
    first = _hold(ana, 9, "conversation:1")
    time_machine.move_to(NOW + datetime.timedelta(minutes=3), tick=False)
    again = _hold(ana, 9, "conversation:1")
    assert again.pk == first.pk
    assert again.expires_at == NOW + datetime.timedelta(minutes=8)
    assert SlotHold.objects.count() == 1


def test_an_expired_hold_blocks_nobody(ana, time_machine):
    _hold(ana, 9, "conversation:1")
    time_machine.move_to(NOW + datetime.timedelta(minutes=5, seconds=1), tick=False)
    assert "09:00" in _times(ana)
    taken = _hold(ana, 9, "conversation:2")
    assert taken.holder == "conversation:2"


def test_releasing_a_holders_holds_frees_their_slots(ana):
    _hold(ana, 9, "conversation:1")
    _hold(ana, 10, "conversation:1")
    _hold(ana, 11, "conversation:2")
    assert holds_release(holder="conversation:1") == 2
    assert "09:00" in _times(ana) and "10:00" in _times(ana) and "11:00" not in _times(ana)
    assert holds_release(holder="conversation:1") == 0


def test_holds_follow_the_patient_booking_policy(ana):
    ana["clinic"].booking_min_notice_minutes = 60 * 24 * 2
    ana["clinic"].save()
    ana["svc"].refresh_from_db()
    with pytest.raises(TooSoon):
        _hold(ana, 9, "conversation:1")


def test_a_patient_who_is_busy_then_cannot_hold_it(ana):
    patient = factories.patient(ana["clinic"])
    other_pro = professional(ana["clinic"], "Dr. Bruno")
    book(patient, other_pro, ana["svc"], at(MONDAY, 9, 15))
    with pytest.raises(PatientOverlap):
        _hold(ana, 9, "conversation:1", patient=patient)


def test_a_new_hold_sweeps_the_professionals_long_expired_holds(ana):
    old = _hold(ana, 9, "conversation:old")
    SlotHold.objects.filter(pk=old.pk).update(expires_at=NOW - datetime.timedelta(days=2))
    recent = _hold(ana, 10, "conversation:recent")
    SlotHold.objects.filter(pk=recent.pk).update(expires_at=NOW - datetime.timedelta(minutes=1))
    _hold(ana, 11, "conversation:new")
    assert set(SlotHold.objects.values_list("holder", flat=True)) == {"conversation:recent", "conversation:new"}


def test_a_hold_needs_a_holder(ana):
    with pytest.raises(ValueError, match="holder"):
        _hold(ana, 9, "")


def test_a_hold_with_buffers_blocks_its_buffers_too():
    c = clinic()
    pro = professional(c, "Dra. Ana")
    svc = service(c, [pro], duration_minutes=30, slot_interval_minutes=15, buffer_after_minutes=15)
    hold_slot(service=svc, professional=pro, start=at(MONDAY, 9), holder="a", now=NOW)
    times = hhmm(free_slots(service=svc, **day_window(MONDAY), now=NOW, holder="b"))
    assert [t for t in times if "08:00" <= t <= "10:00"] == ["08:00", "08:15", "09:45", "10:00"]
