"""Waitlist offers reach patients on WhatsApp: a cancellation's slot is offered by message, answers are followed up.

Real PostgreSQL, frozen time (Monday a week before the slots, 10:00 in São Paulo, inside the 08–20 window). The
freed-slot task runs inline; sends are not enqueued (the outbox has its own tests).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from cecilia.models import WhatsAppProvider
from conversations import waitlist_offers
from conversations.models import Conversation, Message, MessageAuthor, MessageDirection
from conversations.outbox import tasks as outbox_tasks
from patients.models import PatientGuardian
from scheduling.models import Appointment, AppointmentStatus, OfferStatus, SlotHold, WaitlistOffer
from scheduling.services import Actor, appointment_cancel
from scheduling.waitlist import AcceptReason, waitlist_join
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, at, book, clinic, professional, service

NOW = at(MONDAY - datetime.timedelta(days=7), 10)
SLOT = at(MONDAY, 9)


@pytest.fixture(autouse=True)
def inline_tasks(monkeypatch):
    task = waitlist_offers.waitlist_slot_offer_task
    monkeypatch.setattr(task, "delay", lambda *args: task(*args))
    monkeypatch.setattr(outbox_tasks, "message_send_enqueue", lambda *args, **kwargs: None)


@pytest.fixture
def w(time_machine, transactional_db):
    time_machine.move_to(NOW, tick=False)
    c = clinic(waitlist_hold_minutes=30)
    ana = professional(c, "Dra. Ana")
    svc = service(c, [ana], duration_minutes=30, name="Consulta")
    return {"clinic": c, "ana": ana, "svc": svc, "staff": factories.staff_user(c)}


def _waiting(w, n, **patient):
    return [
        waitlist_join(
            patient=factories.patient(w["clinic"], **patient),
            service=w["svc"],
            now=NOW - datetime.timedelta(minutes=n - i),
        )
        for i in range(n)
    ]


def _cancel_a_slot(w, start=SLOT):
    appointment = book(factories.patient(w["clinic"]), w["ana"], w["svc"], start)
    appointment_cancel(appointment=appointment, actor=Actor.staff(w["staff"]))


def _messages(patient) -> list[Message]:
    return list(
        Message.objects.filter(conversation__patient=patient, direction=MessageDirection.OUTBOUND).order_by("pk")
    )


def _texts(patient) -> list[str]:
    return [m.text for m in _messages(patient)]


def test_a_cancellation_offers_the_slot_to_the_first_waiting_patient_by_whatsapp(w):
    first, second = _waiting(w, 2)
    _cancel_a_slot(w)
    (message,) = _messages(first.patient)
    assert message.author == MessageAuthor.SYSTEM
    assert "abriu um horário mais cedo" in message.text
    assert "*Consulta* com *Dra. Ana*" in message.text
    assert "*segunda, 02/03 às 09:00*" in message.text
    assert "Guardo para você até as 10:30" in message.text
    assert "1. Sim, quero esse horário" in message.text
    assert _messages(second.patient) == []
    hold = SlotHold.objects.get()
    assert hold.holder == f"waitlist:{first.pk}" and hold.expires_at == NOW + datetime.timedelta(minutes=30)


def test_a_patient_who_opted_out_of_automated_messages_is_never_offered(w):
    (opted_out,) = _waiting(w, 1, opt_out_automated=True)
    (other,) = _waiting(w, 1)
    _cancel_a_slot(w)
    assert _messages(opted_out.patient) == []
    assert len(_messages(other.patient)) == 1
    assert not WaitlistOffer.objects.filter(entry=opted_out).exists()


def test_on_meta_a_patient_silent_for_24_hours_is_passed_over_for_one_who_can_be_written_to(w):
    w["clinic"].whatsapp_provider = WhatsAppProvider.META
    w["clinic"].save()
    silent, recent = _waiting(w, 2)
    Conversation.objects.create(
        clinic=w["clinic"], patient=silent.patient, last_inbound_at=NOW - datetime.timedelta(days=2)
    )
    Conversation.objects.create(
        clinic=w["clinic"], patient=recent.patient, last_inbound_at=NOW - datetime.timedelta(hours=1)
    )
    _cancel_a_slot(w)
    assert _messages(silent.patient) == []
    assert len(_messages(recent.patient)) == 1
    assert WaitlistOffer.objects.get().entry == recent


def test_a_dependent_without_whatsapp_is_offered_through_their_guardian(w):
    c = w["clinic"]
    child = factories.patient(c, full_name="Joana Souza", phone=None)
    mother = factories.patient(c, full_name="Marta Souza")
    PatientGuardian.objects.create(clinic=c, guardian=mother, dependent=child)
    waitlist_join(patient=child, service=w["svc"])
    _cancel_a_slot(w)
    (text,) = _texts(mother)
    assert text.startswith("Olá, Marta!") and "Paciente: Joana" in text


def test_outside_the_sending_window_nothing_is_sent_until_it_reopens(w, time_machine):
    (entry,) = _waiting(w, 1)
    night = at(MONDAY - datetime.timedelta(days=7), 21)
    time_machine.move_to(night, tick=False)
    _cancel_a_slot(w)
    assert _messages(entry.patient) == [] and not WaitlistOffer.objects.exists()
    assert waitlist_offers.waitlist_offers_expire() == 0  # the sweep at night
    morning = at(MONDAY - datetime.timedelta(days=6), 8)
    time_machine.move_to(morning, tick=False)
    assert waitlist_offers.waitlist_offers_expire() == 1
    (text,) = _texts(entry.patient)
    assert "09:00" in text and "Guardo para você até as 08:30" in text


def test_an_unanswered_offer_goes_to_the_next_patient_when_it_expires(w, time_machine):
    first, second = _waiting(w, 2)
    _cancel_a_slot(w)
    time_machine.move_to(NOW + datetime.timedelta(minutes=31), tick=False)
    assert waitlist_offers.waitlist_offers_expire() == 1
    assert len(_messages(first.patient)) == 1  # nothing more for the first
    assert len(_messages(second.patient)) == 1
    assert WaitlistOffer.objects.get(entry=first).status == OfferStatus.EXPIRED


def test_accepting_moves_the_appointment_earlier_and_its_old_slot_goes_to_the_next_patient(w):
    c = w["clinic"]
    mover = factories.patient(c)
    wednesday = at(MONDAY + datetime.timedelta(days=2), 10)
    current = book(mover, w["ana"], w["svc"], wednesday)
    waitlist_join(patient=mover, service=w["svc"], appointment=current, now=NOW - datetime.timedelta(hours=1))
    (plain,) = _waiting(w, 1)
    _cancel_a_slot(w)
    offer = WaitlistOffer.objects.get(entry__patient=mover)
    result = waitlist_offers.waitlist_offer_accept(offer.pk)
    assert (result.ok, result.reason) == (True, AcceptReason.MOVED)
    current.refresh_from_db()
    assert current.start == SLOT
    # The move freed Wednesday 10:00: offered to the next in line.
    onward = WaitlistOffer.objects.get(entry=plain)
    assert onward.start == wednesday
    (text,) = _texts(plain.patient)
    assert "quarta, 04/03 às 10:00" in text


def test_declining_sends_the_slot_to_the_next_patient(w):
    first, second = _waiting(w, 2)
    _cancel_a_slot(w)
    offer = WaitlistOffer.objects.get(entry=first)
    nxt = waitlist_offers.waitlist_offer_decline(offer.pk)
    assert nxt.entry == second
    assert len(_messages(second.patient)) == 1
    assert len(_messages(first.patient)) == 1  # the engine answers the "no"; no extra message here


def _run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int, job: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = job()
        except Exception as exc:  # the outcome is what the test inspects
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_two_patients_accepting_the_same_slot_at_once_end_with_one_appointment_and_one_told_it_is_gone(w, time_machine):
    first, second = _waiting(w, 2)
    _cancel_a_slot(w)
    # The first offer's hold lapsed before any sweep; a second pass (a redelivered task) offered it to the second
    # patient, whose hold lapsed too: two open offers of one slot, nothing holding it.
    time_machine.move_to(NOW + datetime.timedelta(minutes=31), tick=False)
    waitlist_offers.waitlist_slot_offer(
        clinic_id=w["clinic"].pk, professional_id=w["ana"].pk, start=SLOT, end=SLOT + datetime.timedelta(minutes=30)
    )
    time_machine.move_to(NOW + datetime.timedelta(minutes=62), tick=False)
    offers = [WaitlistOffer.objects.get(entry=first), WaitlistOffer.objects.get(entry=second)]
    assert [o.status for o in offers] == [OfferStatus.OFFERED, OfferStatus.OFFERED]

    results = _run_together([lambda o=o: waitlist_offers.waitlist_offer_accept(o.pk) for o in offers])

    assert not any(isinstance(r, Exception) for r in results), results
    booked = Appointment.objects.filter(start=SLOT).exclude(status=AppointmentStatus.CANCELLED)
    assert booked.count() == 1
    winner = next(r for r in results if r.ok)
    loser = next(r for r in results if not r.ok)
    assert winner.reason == AcceptReason.BOOKED and loser.reason == AcceptReason.GONE
    assert booked.get().patient_id == winner.offer.entry.patient_id
    assert {o.status for o in WaitlistOffer.objects.all()} == {OfferStatus.ACCEPTED, OfferStatus.GONE}
    # The loser hears it once: from the winner's acceptance when it ended their offer first (`told`), else from the
    # engine's reply to their own answer.
    lost = loser.offer.entry.patient
    assert len([t for t in _texts(lost) if "já foi preenchido" in t]) == (1 if loser.told else 0)
    assert not [t for t in _texts(winner.offer.entry.patient) if "já foi preenchido" in t]


def test_the_patients_whose_offer_of_the_slot_another_acceptance_ended_are_told_it_was_filled(w, time_machine):
    first, second = _waiting(w, 2)
    _cancel_a_slot(w)
    time_machine.move_to(NOW + datetime.timedelta(minutes=31), tick=False)
    newer = waitlist_offers.waitlist_slot_offer(
        clinic_id=w["clinic"].pk, professional_id=w["ana"].pk, start=SLOT, end=SLOT + datetime.timedelta(minutes=30)
    )
    assert newer.entry == second
    result = waitlist_offers.waitlist_offer_accept(newer.pk)
    assert result.ok and [o.entry for o in result.gone] == [first]
    assert _texts(first.patient)[-1] == (
        f"Que pena, {first.patient.first_name}: o horário de segunda, 02/03 às 09:00 já foi preenchido. "
        "Você continua na lista de espera e eu aviso se abrir outro. 💙"
    )
    late = waitlist_offers.waitlist_offer_accept(WaitlistOffer.objects.get(entry=first).pk)
    assert (late.ok, late.reason, late.told) == (False, AcceptReason.GONE, True)
    assert len([t for t in _texts(first.patient) if "já foi preenchido" in t]) == 1  # not told twice
    assert not [t for t in _texts(second.patient) if "já foi preenchido" in t]


def test_the_offer_message_carries_its_answers_as_buttons(w):
    (entry,) = _waiting(w, 1)
    _cancel_a_slot(w)
    (message,) = _messages(entry.patient)
    assert [(b["id"], b["title"]) for b in message.buttons] == [("1", "Quero esse horário"), ("2", "Não, obrigado(a)")]
