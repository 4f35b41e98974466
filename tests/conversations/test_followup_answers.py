"""Patients answering Cecília's reminders, no-show follow-ups and rating questions, through the rule engine.

The reminder's message is stored as the sweep stores it (an outbound message pointing at its step); the patient's
answers are ordinary turns. Frozen on Monday 2026-03-02 07:00 in São Paulo (tests.conversations.test_engine_rules).
"""

from __future__ import annotations

import datetime

import pytest

from conversations.engines.rules.followups import rating_of, reminder_intent
from conversations.models import AttentionReason, Conversation, Message, MessageAuthor, MessageDirection, MessageStatus
from scheduling.models import AppointmentStatus, ReminderRule, ReminderStep, StepKind, StepStatus
from scheduling.reminders import step_render
from tests import factories
from tests.conversations.test_engine_rules import NOW, THURSDAY, Chat, at
from tests.scheduling.test_availability_support import T, business, clinic, professional, service

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(time_machine):
    time_machine.move_to(NOW, tick=False)
    c = clinic(cancellation_notice_hours=24, address="Rua das Flores, 100")
    business(c, range(7), (T(7), T(20)))
    pro = professional(c, "Dra. Ana Lima")
    svc = service(c, [pro], name="Limpeza")
    ReminderRule.objects.create(clinic=c, hours_before=48)
    patient = factories.patient(c, full_name="Maria Souza")
    return c, pro, svc, patient


def reminded(chat: Chat, appointment, *, kind: str = StepKind.REMINDER, key: str = "48h", asks: bool = True):
    """The sweep's work for one step: the step row and its message in the conversation, as sent."""
    step, _ = ReminderStep.objects.update_or_create(
        appointment=appointment,
        key=key,
        appointment_start=appointment.start,
        defaults={"clinic": appointment.clinic, "kind": kind, "due_at": NOW, "asks_confirmation": asks},
    )
    rendered = step_render(step, recipient=chat.conversation.patient)
    Message.objects.create(
        clinic=appointment.clinic,
        conversation=chat.conversation,
        direction=MessageDirection.OUTBOUND,
        author=MessageAuthor.SYSTEM,
        status=MessageStatus.DELIVERED,
        text=rendered.text,
        buttons=[{"id": i, "title": t} for i, t in rendered.buttons],
        reminder_step=step,
    )
    ReminderStep.objects.filter(pk=step.pk).update(status=StepStatus.DELIVERED)
    return step


def booked(c, pro, svc, patient, start):
    return factories.appointment(patient=patient, professional=pro, service=svc, start=start)


@pytest.mark.parametrize("answer", ["1", "Sim", "confirmo!", "👍", "Confirmo [1]"])
def test_a_yes_to_a_reminder_confirms_the_appointment(world, answer):
    c, pro, svc, patient = world
    appointment = booked(c, pro, svc, patient, at(THURSDAY, 9))
    chat = Chat(patient)
    step = reminded(chat, appointment)
    chat.say(answer)
    appointment.refresh_from_db()
    step.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert step.status == StepStatus.CONFIRMED
    assert "confirmada" in chat.text


def test_no_to_a_reminder_cancels_within_policy_and_offers_new_times(world):
    c, pro, svc, patient = world
    appointment = booked(c, pro, svc, patient, at(THURSDAY, 9))
    chat = Chat(patient)
    step = reminded(chat, appointment)
    chat.say("2")
    appointment.refresh_from_db()
    step.refresh_from_db()
    assert appointment.status == AppointmentStatus.CANCELLED
    assert step.status == StepStatus.CANCELLED
    assert "cancelei" in chat.text
    assert "1." in chat.text and chat.state["flow"] == "book"  # new slots listed, numbered


def test_cancelling_inside_the_notice_goes_to_staff_politely(world):
    c, pro, svc, patient = world
    appointment = booked(c, pro, svc, patient, at(datetime.date(2026, 3, 2), 15))  # today: inside 24 h
    chat = Chat(patient)
    step = reminded(chat, appointment)
    reply = chat.say("não vou poder ir")
    appointment.refresh_from_db()
    step.refresh_from_db()
    assert appointment.status == AppointmentStatus.SCHEDULED
    assert reply.handoff
    assert step.status == StepStatus.ANSWERED and step.note


def test_remarcar_starts_the_reschedule_of_that_appointment(world):
    c, pro, svc, patient = world
    appointment = booked(c, pro, svc, patient, at(THURSDAY, 9))
    booked(c, pro, svc, patient, at(THURSDAY, 15))  # a second one: the reminder says which
    chat = Chat(patient)
    step = reminded(chat, appointment)
    chat.say("quero remarcar")
    step.refresh_from_db()
    assert step.status == StepStatus.RESCHEDULE_REQUESTED
    assert chat.state["flow"] == "reschedule" and chat.state["appointment_id"] == appointment.pk


def test_free_text_is_kept_for_staff(world):
    c, pro, svc, patient = world
    appointment = booked(c, pro, svc, patient, at(THURSDAY, 9))
    chat = Chat(patient)
    step = reminded(chat, appointment)
    chat.say("vou atrasar uns 15 min")
    step.refresh_from_db()
    conversation = Conversation.objects.get(pk=chat.conversation.pk)
    assert step.status == StepStatus.ANSWERED and step.note == "vou atrasar uns 15 min"
    assert conversation.needs_attention and conversation.attention_reason == AttentionReason.PATIENT_NOTE
    assert "recado" in chat.text


def test_a_question_after_a_reminder_is_answered_and_the_reminder_stays_open(world):
    c, pro, svc, patient = world
    appointment = booked(c, pro, svc, patient, at(THURSDAY, 9))
    chat = Chat(patient)
    step = reminded(chat, appointment)
    chat.say("qual o endereço?")
    assert "Rua das Flores" in chat.text
    chat.say("sim")
    step.refresh_from_db()
    assert step.status == StepStatus.CONFIRMED


def test_a_no_show_follow_up_yes_offers_new_times(world):
    c, pro, svc, patient = world
    missed = booked(c, pro, svc, patient, NOW - datetime.timedelta(hours=20))
    missed.status = AppointmentStatus.NO_SHOW
    missed.save()
    chat = Chat(patient)
    step = reminded(chat, missed, kind=StepKind.NO_SHOW_FOLLOWUP, key="no_show")
    assert "Sentimos sua falta" in step_render(step, recipient=patient).text
    chat.say("Quero remarcar [1]")
    step.refresh_from_db()
    assert step.status == StepStatus.RESCHEDULE_REQUESTED
    assert chat.state["flow"] == "book" and chat.state["service_id"] == svc.pk


@pytest.mark.parametrize(("text", "score"), [("5", 5), ("nota 4", 4), ("⭐⭐⭐", 3), ("foi ótimo", 5), ("?", None)])
def test_rating_answers_are_read(text, score):
    assert rating_of(text) == score


def test_a_bad_rating_is_recorded_and_flags_the_conversation(world):
    c, pro, svc, patient = world
    seen = booked(c, pro, svc, patient, NOW - datetime.timedelta(hours=3))
    seen.status = AppointmentStatus.COMPLETED
    seen.save()
    chat = Chat(patient)
    step = reminded(chat, seen, kind=StepKind.SATISFACTION, key="satisfaction")
    chat.say("2, demorou muito pra ser atendida")
    step.refresh_from_db()
    assert step.score == 2 and "demorou" in step.note
    assert Conversation.objects.get(pk=chat.conversation.pk).needs_attention


@pytest.mark.parametrize(
    ("text", "intent"),
    [("1", "confirm"), ("não vou conseguir ir", "cancel"), ("não posso, dá pra remarcar?", "reschedule"),
     ("não", "no"), ("vou atrasar", None)],
)  # fmt: skip
def test_reminder_answers_are_read(text, intent):
    assert reminder_intent(text) == intent


def test_a_dependents_waitlist_offer_is_the_open_question_in_the_guardians_chat(world):
    from conversations.followups import WAITLIST_OFFER, pending_followup
    from patients.models import PatientGuardian
    from scheduling.models import WaitlistEntry, WaitlistOffer

    c, pro, svc, guardian = world
    child = factories.patient(c, full_name="Pedro Souza", phone=None)
    PatientGuardian.objects.create(clinic=c, guardian=guardian, dependent=child)
    stranger = factories.patient(c, full_name="Outra Pessoa")
    chat = Chat(guardian)
    assert pending_followup(chat.conversation, now=NOW) is None
    for patient in (child, stranger):  # the stranger's is the newest: it must not count
        entry = WaitlistEntry.objects.create(clinic=c, patient=patient, service=svc)
        WaitlistOffer.objects.create(
            clinic=c, entry=entry, professional=pro, start=at(THURSDAY, 9), end=at(THURSDAY, 9, 30),
            expires_at=NOW + datetime.timedelta(minutes=30),
        )  # fmt: skip
    found = pending_followup(chat.conversation, now=NOW)
    assert found.kind == WAITLIST_OFFER
    assert found.offer_id == WaitlistOffer.objects.get(entry__patient=child).pk


def test_the_newest_open_question_wins_and_a_moved_appointments_reminder_is_moot(world, django_assert_num_queries):
    from conversations.followups import WAITLIST_OFFER, pending_followup
    from scheduling.models import WaitlistEntry, WaitlistOffer

    c, pro, svc, patient = world
    chat = Chat(patient)
    with django_assert_num_queries(1):  # every turn asks: one query when nothing is open
        assert pending_followup(chat.conversation, now=NOW) is None

    appointment = booked(c, pro, svc, patient, at(THURSDAY, 10))
    step = reminded(chat, appointment)
    entry = WaitlistEntry.objects.create(clinic=c, patient=patient, service=svc)
    offer = WaitlistOffer.objects.create(
        clinic=c, entry=entry, professional=pro, start=at(THURSDAY, 9), end=at(THURSDAY, 9, 30),
        expires_at=NOW + datetime.timedelta(minutes=30),
    )  # fmt: skip
    Message.objects.filter(reminder_step=step).update(created_at=NOW - datetime.timedelta(hours=1))
    WaitlistOffer.objects.filter(pk=offer.pk).update(created_at=NOW - datetime.timedelta(minutes=5))
    assert pending_followup(chat.conversation, now=NOW).offer_id == offer.pk  # the offer was sent last

    WaitlistOffer.objects.filter(pk=offer.pk).update(created_at=NOW - datetime.timedelta(hours=2))
    found = pending_followup(chat.conversation, now=NOW)
    assert (found.kind, found.step_id, found.appointment_id) == (StepKind.REMINDER, step.pk, appointment.pk)

    type(appointment).objects.filter(pk=appointment.pk).update(start=at(THURSDAY, 15), end=at(THURSDAY, 15, 30))
    found = pending_followup(chat.conversation, now=NOW)  # the reminder speaks of the old time: the offer is open
    assert (found.kind, found.offer_id) == (WAITLIST_OFFER, offer.pk)
