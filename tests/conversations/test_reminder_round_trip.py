"""A reminder and its answer, end to end: booked → the sweep sends it → the patient taps or types → a real turn.

Real PostgreSQL, frozen time, the console provider; the patient's message goes through `message_receive` (what the
webhook calls) and `turn_run` (what the turn task calls).
"""

from __future__ import annotations

import datetime
import itertools

import pytest

from conversations.models import Conversation, Message, MessageAuthor, MessageDirection
from conversations.outreach import outreach_sweep
from conversations.services import message_receive
from conversations.turns import turn_run
from integrations.whatsapp.base import InboundMessage, Kind
from scheduling.models import AppointmentSource, AppointmentStatus, ReminderRule, ReminderStep, StepStatus
from scheduling.services import Actor, appointment_book
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, T, at, business, clinic, professional, service

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)
PHONE = "5511987654321"
THURSDAY = MONDAY + datetime.timedelta(days=3)


@pytest.fixture
def reminded(time_machine, settings):
    settings.TURN_DEBOUNCE_SECONDS = 0
    time_machine.move_to(at(MONDAY, 9), tick=False)
    c = clinic(address="Rua das Flores, 100", privacy_notice="")
    business(c, range(7), (T(7), T(20)))
    pro = professional(c, "Dra. Ana Lima")
    svc = service(c, [pro], name="Limpeza")
    ReminderRule.objects.create(clinic=c, hours_before=48)
    patient = factories.patient(c, full_name="Maria Souza", phone=f"+{PHONE}")
    appointment = appointment_book(
        patient=patient, service=svc, professional=pro, start=at(THURSDAY, 15),
        actor=Actor.system(), source=AppointmentSource.WHATSAPP,
    )  # fmt: skip
    time_machine.move_to(at(MONDAY + datetime.timedelta(days=1), 15), tick=False)  # 48 h before
    outreach_sweep()
    return c, appointment


def answer(clinic, text: str, option: str = "") -> Conversation:
    message = message_receive(
        clinic=clinic,
        inbound=InboundMessage(
            provider_message_id=f"IN{next(_ids):06d}", chat_id=f"{PHONE}@s.whatsapp.net", phone=PHONE, lid=None,
            from_me=False, sender_name="Maria", kind=Kind.TEXT, text=text, selected_option_id=option,
        ),
    )  # fmt: skip
    turn_run(conversation_id=message.conversation_id)
    return Conversation.objects.get(pk=message.conversation_id)


def replies(conversation: Conversation) -> str:
    return "\n".join(
        conversation.messages.filter(direction=MessageDirection.OUTBOUND, author=MessageAuthor.AI).values_list(
            "text", flat=True
        )
    )


def test_tapping_confirm_on_the_reminder_confirms_the_appointment(reminded):
    c, appointment = reminded
    (reminder,) = Message.objects.filter(reminder_step__appointment=appointment)
    assert "quinta, 05/03 às 15:00" in reminder.text and "1. ✅ Confirmo" in reminder.text
    conversation = answer(c, "Confirmo", option="1")
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert ReminderStep.objects.get(appointment=appointment, key="48h").status == StepStatus.CONFIRMED
    assert "confirmada" in replies(conversation)


def test_typing_remarcar_to_the_reminder_offers_new_times_for_that_appointment(reminded):
    c, appointment = reminded
    conversation = answer(c, "preciso remarcar")
    assert ReminderStep.objects.get(appointment=appointment, key="48h").status == StepStatus.RESCHEDULE_REQUESTED
    assert conversation.state["flow"] == "reschedule" and conversation.state["appointment_id"] == appointment.pk
    assert "1." in replies(conversation)
