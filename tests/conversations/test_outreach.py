"""The reminder sweep (conversations.outreach): what goes out when, to whom, once — and how a step follows its message.

Real PostgreSQL, frozen time (time_machine), appointments booked through the booking services (which plan the steps),
the sweep called as beat would call it. Sends go to Evolution faked at its wire with respx; a private Redis serves the
outbox's rate limit and broker (tests/fakes/outbox.py).
"""

from __future__ import annotations

import datetime
import itertools
import json
import sys
import threading
import types
import zoneinfo
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cecilia.models import WhatsAppProvider
from conversations import outreach
from conversations.models import Conversation, Message, MessageAuthor, MessageStatus
from conversations.outbox import Outcome, message_retry, message_send
from conversations.outreach import outreach_sweep
from conversations.services import status_update_record
from integrations.whatsapp.base import DeliveryStatus, StatusUpdate
from patients.models import PatientGuardian
from scheduling.models import (
    AppointmentSource,
    AppointmentStatus,
    ReminderPurpose,
    ReminderRule,
    ReminderStep,
    ReminderTemplate,
    SkipReason,
    StepKind,
    StepStatus,
)
from scheduling.services import (
    Actor,
    appointment_book,
    appointment_cancel,
    appointment_complete,
    appointment_reschedule,
)
from tests import factories
from tests.fakes import outbox as fakes
from tests.scheduling.test_availability_support import at, professional, service
from tests.scheduling.test_availability_support import clinic as support_clinic

pytestmark = pytest.mark.django_db

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")
MANAUS = zoneinfo.ZoneInfo("America/Manaus")
FRIDAY = datetime.date(2026, 2, 27)
SATURDAY = datetime.date(2026, 2, 28)
SUNDAY = datetime.date(2026, 3, 1)
MONDAY = datetime.date(2026, 3, 2)
TUESDAY = datetime.date(2026, 3, 3)
EVOLUTION = "https://evolution.clinica.test"
SEND_TEXT = r"^/message/sendText/"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SYSTEM = Actor.system()

REMINDER_CHOICES = [
    {"id": "1", "title": "Confirmo"},
    {"id": "2", "title": "Não poderei ir"},
    {"id": "3", "title": "Quero remarcar"},
]


def sent_response(provider_id: str) -> httpx.Response:
    body = json.loads((FIXTURES / "evolution" / "rest" / "send_text_response_201.json").read_text(encoding="utf-8"))
    body["key"]["id"] = provider_id
    return httpx.Response(201, json=body)


@pytest.fixture
def evolution() -> Any:
    """Evolution's sendText, answering each send with its own id (3EB0…1, 3EB0…2, …)."""
    ids = itertools.count(1)
    with respx.mock(base_url=EVOLUTION, assert_all_called=False) as router:
        router.post(path__regex=SEND_TEXT).mock(side_effect=lambda request: sent_response(f"3EB0{next(ids):018X}"))
        yield router


_instances = itertools.count(1)
# The 30-minute starts inside the professionals' hours (08–12, 14–18).
SLOTS = [(h, m) for h in (8, 9, 10, 11, 14, 15, 16, 17) for m in (0, 30)]


def make_clinic(tz: str = "America/Sao_Paulo", *, rules: tuple[int, ...] = (48, 2), **kwargs: Any) -> Any:
    """A clinic on Evolution with reminders `rules` hours before (Cecília's standard text, asking to confirm)."""
    n = next(_instances)
    defaults = {
        "timezone": tz,
        "whatsapp_provider": WhatsAppProvider.EVOLUTION,
        "whatsapp_instance": f"clinica-teste-{n}",
        "whatsapp_api_url": EVOLUTION,
        "whatsapp_api_key": "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60",
    }
    clinic = support_clinic(**{**defaults, **kwargs})
    ReminderRule.objects.bulk_create(
        ReminderRule(clinic=clinic, hours_before=hours, asks_confirmation=True) for hours in rules
    )
    return clinic


@pytest.fixture
def agenda(time_machine) -> dict[str, Any]:
    time_machine.move_to(at(FRIDAY, 10), tick=False)
    clinic = make_clinic(name="Clínica Sorriso")
    ana = professional(clinic, "Dra. Ana")
    return {"clinic": clinic, "ana": ana, "svc": service(clinic, [ana], name="Limpeza")}


def book(
    agenda: dict[str, Any], start: datetime.datetime, patient: Any = None, professional: Any = None, **fields: Any
) -> Any:
    patient = patient or factories.patient(agenda["clinic"], **{"full_name": "Maria Souza", **fields})
    return appointment_book(
        patient=patient,
        service=agenda["svc"],
        professional=professional or agenda["ana"],
        start=start,
        actor=SYSTEM,
        source=AppointmentSource.ADMIN,
    )


def steps_of(appointment: Any) -> dict[str, ReminderStep]:
    return {s.key: s for s in ReminderStep.objects.filter(appointment=appointment, appointment_start=appointment.start)}


def step(appointment: Any, key: str, start: datetime.datetime | None = None) -> ReminderStep:
    return ReminderStep.objects.get(appointment=appointment, key=key, appointment_start=start or appointment.start)


def sweep_at(time_machine: Any, moment: datetime.datetime) -> outreach.SweepResult:
    time_machine.move_to(moment, tick=False)
    return outreach_sweep()


def outcome(appointment: Any, key: str, start: datetime.datetime | None = None) -> tuple[str, str]:
    s = step(appointment, key, start)
    return s.status, s.skip_reason


# --- the lifecycle --------------------------------------------------------------------------------------------------


def test_48h_and_2h_reminders_go_out_at_each_clinics_local_time_once_and_follow_their_receipts(time_machine, evolution):
    time_machine.move_to(at(FRIDAY, 10), tick=False)
    booked = {}
    for tz, zone in (("America/Sao_Paulo", SP), ("America/Manaus", MANAUS)):
        clinic = make_clinic(tz, name=f"Clínica {tz.split('/')[1]}")
        ana = professional(clinic, "Dra. Ana")
        agenda = {"clinic": clinic, "ana": ana, "svc": service(clinic, [ana], name="Limpeza")}
        booked[zone] = book(agenda, at(MONDAY, 15, tz=zone))

    for zone, appointment in booked.items():
        steps = steps_of(appointment)
        assert set(steps) == {"48h", "2h"}
        assert steps["48h"].due_at == at(SATURDAY, 15, tz=zone)  # 15:00 on the clinic's clock, two days before
        assert steps["2h"].due_at == at(MONDAY, 13, tz=zone)
        assert {s.status for s in steps.values()} == {StepStatus.SCHEDULED}

    assert sweep_at(time_machine, at(SATURDAY, 14, 59)).queued == 0  # São Paulo: a minute early
    assert not Message.objects.exists()

    assert sweep_at(time_machine, at(SATURDAY, 15)).queued == 1  # São Paulo's is due; Manaus is an hour behind
    sp_message = Message.objects.get()
    assert sp_message.reminder_step == step(booked[SP], "48h")
    assert sweep_at(time_machine, at(SATURDAY, 15, 30)).queued == 0  # nothing twice
    assert sweep_at(time_machine, at(SATURDAY, 15, tz=MANAUS)).queued == 1
    assert Message.objects.count() == 2

    for appointment in booked.values():
        message = Message.objects.get(reminder_step__appointment=appointment)
        assert (message.author, message.status) == (MessageAuthor.SYSTEM, MessageStatus.QUEUED)
        assert message.conversation.patient_id == appointment.patient_id
        assert message.text == (
            f"Olá, Maria! 😊 Passando para lembrar do seu horário na *{appointment.clinic.name}*:\n"
            "🩺 *Limpeza* com *Dra. Ana*\n"
            "📅 *segunda, 02/03 às 15:00*\n\n"
            "Você confirma? Responda com o número:\n1. ✅ Confirmo\n2. ❌ Não poderei ir\n3. 🔁 Quero remarcar"
        )
        assert message.buttons == REMINDER_CHOICES
        assert message.template == {}
        assert message.conversation.state["reminder_appointment_id"] == appointment.pk
        assert step(appointment, "48h").status == StepStatus.QUEUED
        assert step(appointment, "48h").queued_at is not None
        assert step(appointment, "2h").status == StepStatus.SCHEDULED

        assert message_send(message_id=message.pk) == Outcome.SENT
        message.refresh_from_db()
        assert (step(appointment, "48h").status, step(appointment, "48h").sent_at) == (StepStatus.SENT, message.sent_at)
        for receipt, expected in ((DeliveryStatus.DELIVERED, StepStatus.DELIVERED), (DeliveryStatus.READ, "read")):
            update = StatusUpdate(provider_message_id=message.provider_message_id, status=receipt)
            status_update_record(clinic=appointment.clinic, update=update)
            assert step(appointment, "48h").status == expected
        late = StatusUpdate(provider_message_id=message.provider_message_id, status=DeliveryStatus.DELIVERED)
        status_update_record(clinic=appointment.clinic, update=late)
        assert step(appointment, "48h").status == StepStatus.READ  # never backwards

    assert len(evolution.calls) == 2
    assert sweep_at(time_machine, at(MONDAY, 13)).queued == 1  # São Paulo's 2 h reminder
    assert sweep_at(time_machine, at(MONDAY, 13, tz=MANAUS)).queued == 1
    assert Message.objects.count() == 4


def test_a_receipt_never_moves_a_step_the_patient_already_answered(agenda, time_machine, evolution):
    appointment = book(agenda, at(MONDAY, 15))
    sweep_at(time_machine, at(SATURDAY, 15))
    message = Message.objects.get()
    message_send(message_id=message.pk)
    message.refresh_from_db()
    ReminderStep.objects.filter(pk=message.reminder_step_id).update(status=StepStatus.CONFIRMED)

    status_update_record(
        clinic=agenda["clinic"],
        update=StatusUpdate(provider_message_id=message.provider_message_id, status=DeliveryStatus.READ),
    )

    assert step(appointment, "48h").status == StepStatus.CONFIRMED


def test_a_dependents_reminder_goes_to_their_guardian_and_names_them(agenda, time_machine):
    guardian = factories.patient(agenda["clinic"], full_name="Carla Lima", phone="+5511987650001")
    child = factories.patient(agenda["clinic"], full_name="João Lima", phone=None)
    PatientGuardian.objects.create(clinic=agenda["clinic"], guardian=guardian, dependent=child)
    appointment = book(agenda, at(MONDAY, 15), patient=child)

    sweep_at(time_machine, at(SATURDAY, 15))

    message = Message.objects.get()
    assert message.conversation.patient == guardian
    assert message.text.startswith("Olá, Carla! 😊")
    assert "👤 Paciente: João" in message.text
    assert step(appointment, "48h").status == StepStatus.QUEUED


def test_a_patient_nobody_can_reach_on_whatsapp_is_skipped_no_contact(agenda, time_machine):
    child = factories.patient(agenda["clinic"], full_name="João Lima", phone=None)
    appointment = book(agenda, at(MONDAY, 15), patient=child)

    sweep_at(time_machine, at(SATURDAY, 15))

    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.NO_CONTACT)
    assert not Message.objects.exists()


# --- the sending window ---------------------------------------------------------------------------------------------


def test_a_2h_reminder_for_0830_goes_the_evening_before_at_the_end_of_the_window(agenda, time_machine):
    appointment = book(agenda, at(TUESDAY, 8, 30))
    assert step(appointment, "2h").due_at == at(MONDAY, 20)
    assert sweep_at(time_machine, at(SUNDAY, 12)).queued == 1  # the 48 h reminder

    assert sweep_at(time_machine, at(MONDAY, 19, 59)).queued == 0
    assert sweep_at(time_machine, at(MONDAY, 20) + datetime.timedelta(seconds=40)).queued == 1  # a sweep late

    assert step(appointment, "2h").status == StepStatus.QUEUED


def test_a_reminder_due_at_0700_for_a_0900_appointment_goes_at_0800(agenda, time_machine):
    appointment = book(agenda, at(TUESDAY, 9))
    assert step(appointment, "2h").due_at == at(TUESDAY, 8)
    assert sweep_at(time_machine, at(SUNDAY, 12)).queued == 1  # the 48 h reminder

    assert sweep_at(time_machine, at(TUESDAY, 7, 30)).queued == 0
    assert sweep_at(time_machine, at(TUESDAY, 8)).queued == 1


def test_a_reminder_found_after_the_window_closed_waits_for_the_morning_if_it_is_still_of_use(agenda, time_machine):
    appointment = book(agenda, at(TUESDAY, 8, 30))  # 2 h reminder due Monday 20:00
    sweep_at(time_machine, at(SUNDAY, 12))  # the 48 h reminder

    result = sweep_at(time_machine, at(MONDAY, 22))  # beat was down at 20:00
    assert (result.queued, result.waiting) == (0, 1)
    assert step(appointment, "2h").status == StepStatus.SCHEDULED

    assert sweep_at(time_machine, at(TUESDAY, 8)).queued == 1


def test_a_reminder_found_after_the_window_closed_is_skipped_when_the_window_reopens_too_late(agenda, time_machine):
    appointment = book(agenda, at(TUESDAY, 8))  # 2 h reminder due Monday 20:00; the window reopens at 08:00
    sweep_at(time_machine, at(SUNDAY, 12))  # the 48 h reminder

    result = sweep_at(time_machine, at(MONDAY, 22))

    assert result.skipped == {"outside_window": 1}
    assert outcome(appointment, "2h") == (StepStatus.SKIPPED, SkipReason.OUTSIDE_WINDOW)


# --- the appointment changed ----------------------------------------------------------------------------------------


def test_a_moved_appointment_gets_reminders_for_its_new_time_and_moving_it_back_revives_the_old_ones(
    agenda, time_machine
):
    first = at(MONDAY, 15)
    appointment = book(agenda, first)
    appointment_reschedule(appointment=appointment, start=at(TUESDAY, 15), actor=SYSTEM)

    assert outcome(appointment, "48h", first) == (StepStatus.SKIPPED, SkipReason.APPOINTMENT_CHANGED)
    assert step(appointment, "48h", at(TUESDAY, 15)).due_at == at(MONDAY - datetime.timedelta(days=1), 15)

    appointment_reschedule(appointment=appointment, start=first, actor=SYSTEM)
    assert outcome(appointment, "48h", first) == (StepStatus.SCHEDULED, "")
    assert outcome(appointment, "48h", at(TUESDAY, 15)) == (StepStatus.SKIPPED, SkipReason.APPOINTMENT_CHANGED)

    assert sweep_at(time_machine, at(SATURDAY, 15)).queued == 1
    assert Message.objects.get().reminder_step == step(appointment, "48h", first)


def test_the_sweep_skips_a_step_whose_appointment_moved_even_before_a_replan(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))
    type(appointment).objects.filter(pk=appointment.pk).update(start=at(MONDAY, 16), end=at(MONDAY, 16, 30))

    sweep_at(time_machine, at(SATURDAY, 15))

    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.APPOINTMENT_CHANGED)
    assert not Message.objects.exists()


def test_a_cancelled_appointments_reminders_are_skipped(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))
    appointment_cancel(appointment=appointment, actor=SYSTEM)
    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.CANCELLED)

    other = book(agenda, at(MONDAY, 16))
    type(other).objects.filter(pk=other.pk).update(status=AppointmentStatus.CANCELLED)  # no replan: the sweep checks
    sweep_at(time_machine, at(SATURDAY, 16))

    assert outcome(other, "48h") == (StepStatus.SKIPPED, SkipReason.CANCELLED)
    assert not Message.objects.exists()


def test_a_reminder_the_clinic_turned_off_is_not_sent_even_before_the_replan(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))
    ReminderRule.objects.filter(clinic=agenda["clinic"], hours_before=48).update(active=False)

    sweep_at(time_machine, at(SATURDAY, 15))

    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.POLICY_CHANGED)


def test_an_opted_out_patient_gets_no_reminder(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))
    appointment.patient.opt_out_automated = True
    appointment.patient.save(update_fields=["opt_out_automated"])

    sweep_at(time_machine, at(SATURDAY, 15))

    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.OPTED_OUT)
    assert not Message.objects.exists()


# --- downtime and races ---------------------------------------------------------------------------------------------


def test_after_downtime_only_the_latest_due_reminder_is_sent(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))

    result = sweep_at(time_machine, at(MONDAY, 13, 30))  # both the 48 h and the 2 h reminders are overdue

    assert (result.queued, result.skipped) == (1, {"superseded": 1})
    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.SUPERSEDED)
    assert step(appointment, "2h").status == StepStatus.QUEUED
    assert Message.objects.get().reminder_step == step(appointment, "2h")


def test_after_downtime_past_the_start_no_reminder_is_sent(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))
    agenda["clinic"].no_show_after_minutes = 0
    agenda["clinic"].save(update_fields=["no_show_after_minutes"])

    sweep_at(time_machine, at(MONDAY, 15, 5))

    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.STARTED)
    assert outcome(appointment, "2h") == (StepStatus.SKIPPED, SkipReason.STARTED)
    assert not Message.objects.exists()


def test_sweeping_twice_sends_each_step_once(agenda, time_machine):
    appointments = [book(agenda, at(MONDAY, 15 + n // 2, 30 * (n % 2))) for n in range(4)]

    assert sweep_at(time_machine, at(SATURDAY, 17)).queued == 4
    assert outreach_sweep().queued == 0

    assert Message.objects.count() == 4
    assert {m.reminder_step.appointment_id for m in Message.objects.all()} == {a.pk for a in appointments}


def test_a_step_that_has_its_message_already_is_not_sent_again(agenda, time_machine):
    """The one-to-one is the last word: a step reset to scheduled by hand still gets no second message."""
    appointment = book(agenda, at(MONDAY, 15))
    sweep_at(time_machine, at(SATURDAY, 15))
    ReminderStep.objects.filter(appointment=appointment, key="48h").update(status=StepStatus.SCHEDULED)

    result = outreach_sweep()

    assert result.queued == 0
    assert Message.objects.count() == 1
    assert step(appointment, "48h").status == StepStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_send_each_step_once(time_machine):
    time_machine.move_to(at(FRIDAY, 10), tick=False)
    clinic = make_clinic()
    pros = [professional(clinic, f"Dra. {name}") for name in ("Ana", "Bia", "Clara")]
    agenda = {"clinic": clinic, "ana": pros[0], "svc": service(clinic, pros, name="Limpeza")}
    for n in range(40):
        book(agenda, at(MONDAY, *SLOTS[n // 3]), professional=pros[n % 3])
    time_machine.move_to(at(SATURDAY, 19), tick=False)
    barrier = threading.Barrier(2)
    results: list[outreach.SweepResult] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(outreach_sweep(batch=7))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(r.queued for r in results) == 40
    assert Message.objects.count() == 40
    assert ReminderStep.objects.filter(key="48h", status=StepStatus.QUEUED).count() == 40


def test_the_sweeps_queries_do_not_grow_with_the_number_of_due_steps(agenda, time_machine):
    ReminderRule.objects.filter(clinic=agenda["clinic"], hours_before=2).delete()

    def queries_for(count: int, day: datetime.date) -> int:
        for n in range(count):
            book(agenda, at(day, *SLOTS[n]))
        time_machine.move_to(at(day - datetime.timedelta(days=2), 19), tick=False)
        with CaptureQueriesContext(connection) as queries:
            assert outreach_sweep().queued == count
        return len(queries)

    assert queries_for(3, MONDAY) == queries_for(12, MONDAY + datetime.timedelta(days=7))


# --- after the appointment ------------------------------------------------------------------------------------------


def test_an_appointment_nobody_marked_becomes_a_no_show_and_gets_the_rebooking_offer(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 10))  # the clinic marks no-shows 60 minutes after the start

    assert sweep_at(time_machine, at(MONDAY, 10, 59)).no_shows == 0
    result = sweep_at(time_machine, at(MONDAY, 11))

    assert result.no_shows == 1
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.NO_SHOW
    followup = step(appointment, "no_show")
    assert (followup.kind, followup.status) == (StepKind.NO_SHOW_FOLLOWUP, StepStatus.QUEUED)
    message = Message.objects.get(reminder_step=followup)
    assert message.text == (
        "Olá, Maria! Sentimos sua falta hoje no horário de *Limpeza* com *Dra. Ana*. Está tudo bem? 💙\n\n"
        "Quer que eu marque um novo horário?\n1. Sim, quero remarcar\n2. Agora não"
    )
    assert message.buttons == [{"id": "1", "title": "Quero remarcar"}, {"id": "2", "title": "Agora não"}]
    assert sweep_at(time_machine, at(MONDAY, 11, 1)).no_shows == 0


def test_an_appointment_staff_marked_completed_is_not_a_no_show_and_gets_the_rating_question(agenda, time_machine):
    agenda["clinic"].satisfaction_survey = True
    agenda["clinic"].save(update_fields=["satisfaction_survey"])
    appointment = book(agenda, at(MONDAY, 10))
    time_machine.move_to(at(MONDAY, 10, 20), tick=False)
    appointment_complete(appointment=appointment, actor=Actor.staff(factories.staff_user(agenda["clinic"])))

    assert sweep_at(time_machine, at(MONDAY, 11)).no_shows == 0
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.COMPLETED
    assert step(appointment, "satisfaction").due_at == at(MONDAY, 12, 30)  # 2 h after the end

    assert sweep_at(time_machine, at(MONDAY, 12, 30)).queued == 1
    message = Message.objects.get(reminder_step__key="satisfaction")
    assert "De *1 a 5*, como foi o atendimento de *Limpeza* com *Dra. Ana*?" in message.text
    assert message.buttons == []


def test_old_open_appointments_are_left_for_staff_when_the_no_show_setting_is_turned_on(agenda, time_machine):
    agenda["clinic"].no_show_after_minutes = 0
    agenda["clinic"].save(update_fields=["no_show_after_minutes"])
    appointment = book(agenda, at(MONDAY, 10))
    time_machine.move_to(at(TUESDAY, 10), tick=False)
    agenda["clinic"].no_show_after_minutes = 60
    agenda["clinic"].save(update_fields=["no_show_after_minutes"])

    assert outreach_sweep().no_shows == 0
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.SCHEDULED


def test_a_sent_reminder_nobody_answered_is_closed_when_the_appointment_starts(agenda, time_machine, evolution):
    agenda["clinic"].no_show_after_minutes = 0
    agenda["clinic"].save(update_fields=["no_show_after_minutes"])
    appointment = book(agenda, at(MONDAY, 15))
    sweep_at(time_machine, at(MONDAY, 13))
    message_send(message_id=Message.objects.get().pk)
    assert step(appointment, "2h").status == StepStatus.SENT

    assert sweep_at(time_machine, at(MONDAY, 14, 59)).no_answer == 0
    assert sweep_at(time_machine, at(MONDAY, 15)).no_answer == 1
    assert step(appointment, "2h").status == StepStatus.NO_ANSWER


# --- Meta's 24-hour window ------------------------------------------------------------------------------------------


@pytest.fixture
def meta_agenda(time_machine) -> dict[str, Any]:
    time_machine.move_to(at(FRIDAY, 10), tick=False)
    clinic = make_clinic(
        whatsapp_provider=WhatsAppProvider.META,
        whatsapp_instance="106540352242922",
        whatsapp_api_url="https://graph.facebook.test/v21.0",
    )
    ana = professional(clinic, "Dra. Ana")
    return {"clinic": clinic, "ana": ana, "svc": service(clinic, [ana], name="Limpeza")}


def silent_patient(agenda: dict[str, Any], *, days: int) -> Any:
    patient = factories.patient(agenda["clinic"], full_name="Maria Souza")
    Conversation.objects.create(
        clinic=agenda["clinic"], patient=patient, last_inbound_at=at(FRIDAY, 10) - datetime.timedelta(days=days)
    )
    return patient


def test_on_meta_a_reminder_to_a_silent_patient_without_a_template_is_skipped(meta_agenda, time_machine):
    appointment = book(meta_agenda, at(MONDAY, 15), patient=silent_patient(meta_agenda, days=3))

    sweep_at(time_machine, at(SATURDAY, 15))

    assert outcome(appointment, "48h") == (StepStatus.SKIPPED, SkipReason.NO_TEMPLATE)
    assert not Message.objects.exists()


def test_on_meta_a_reminder_to_a_silent_patient_goes_as_the_clinics_approved_template(meta_agenda, time_machine):
    template = ReminderTemplate.objects.create(
        clinic=meta_agenda["clinic"],
        purpose=ReminderPurpose.REMINDER,
        name="Lembrete aprovado",
        body="Olá, {nome}! Lembrete: {servico} em {data} às {hora}.",
        whatsapp_template_name="lembrete_consulta",
    )
    ReminderRule.objects.filter(clinic=meta_agenda["clinic"]).update(template=template)
    appointment = book(meta_agenda, at(MONDAY, 15), patient=silent_patient(meta_agenda, days=3))

    sweep_at(time_machine, at(SATURDAY, 15))

    message = Message.objects.get()
    assert message.template == {
        "name": "lembrete_consulta",
        "language": "pt_BR",
        "body_parameters": ["Maria", "Limpeza", "segunda, 02/03", "15:00"],
    }
    assert message.text.startswith("Olá, Maria! Lembrete: Limpeza em segunda, 02/03 às 15:00.")
    assert step(appointment, "48h").status == StepStatus.QUEUED


def test_on_meta_a_patient_who_wrote_today_gets_free_text_with_buttons(meta_agenda, time_machine):
    patient = silent_patient(meta_agenda, days=0)
    Conversation.objects.filter(patient=patient).update(last_inbound_at=at(SATURDAY, 9))
    book(meta_agenda, at(MONDAY, 15), patient=patient)

    sweep_at(time_machine, at(SATURDAY, 15))

    message = Message.objects.get()
    assert (message.template, message.buttons) == ({}, REMINDER_CHOICES)


# --- failures -------------------------------------------------------------------------------------------------------


def test_a_failed_send_fails_its_step_and_staffs_retry_sends_it_once(agenda, time_machine):
    appointment = book(agenda, at(MONDAY, 15))
    sweep_at(time_machine, at(SATURDAY, 15))
    message = Message.objects.get()
    unauthorized = json.loads((FIXTURES / "evolution" / "rest" / "error_401_unauthorized.json").read_text())
    with respx.mock(base_url=EVOLUTION) as router:
        route = router.post(path__regex=SEND_TEXT)
        route.side_effect = [httpx.Response(401, json=unauthorized), sent_response("3EB0RETRY")]

        assert message_send(message_id=message.pk) == Outcome.FAILED
        assert step(appointment, "48h").status == StepStatus.FAILED

        assert message_retry(message=message) is True
        assert step(appointment, "48h").status == StepStatus.QUEUED
        assert outreach_sweep().queued == 0  # the sweep leaves it to the outbox

        assert message_send(message_id=message.pk) == Outcome.SENT
        assert message_send(message_id=message.pk) == Outcome.SKIPPED
        assert route.call_count == 2
    assert step(appointment, "48h").status == StepStatus.SENT


def test_a_failing_hook_does_not_stop_the_sweep(agenda, time_machine, monkeypatch):
    def broken(now: datetime.datetime) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(outreach, "SWEEP_HOOKS", [("broken", broken)])
    book(agenda, at(MONDAY, 15))

    result = sweep_at(time_machine, at(SATURDAY, 15))

    assert (result.queued, result.hooks) == (1, {})


def test_the_waitlist_hook_runs_the_waitlists_expiry_with_the_sweeps_clock(agenda, time_machine, monkeypatch):
    import conversations

    seen: list[datetime.datetime] = []
    fake = types.SimpleNamespace(waitlist_offers_expire=lambda now: seen.append(now) or 2)
    monkeypatch.setitem(sys.modules, "conversations.waitlist_offers", fake)
    monkeypatch.setattr(conversations, "waitlist_offers", fake, raising=False)

    result = sweep_at(time_machine, at(SATURDAY, 15))

    assert result.hooks == {"waitlist_offers": 2} and seen == [at(SATURDAY, 15)]


def test_without_the_waitlist_the_hook_does_nothing(agenda, time_machine, monkeypatch):
    import conversations

    monkeypatch.setitem(sys.modules, "conversations.waitlist_offers", types.SimpleNamespace())
    monkeypatch.setattr(conversations, "waitlist_offers", types.SimpleNamespace(), raising=False)

    assert sweep_at(time_machine, at(SATURDAY, 15)).hooks == {"waitlist_offers": 0}


def test_the_sweep_is_registered_with_beat_every_minute_and_editable_in_the_admin(db):
    from django.contrib import admin
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.select_related("interval").get(name="Reminders sweep")

    assert (task.task, task.enabled) == ("conversations.tasks.reminders_sweep", True)
    assert (task.interval.every, task.interval.period) == (60, "seconds")
    assert admin.site.is_registered(PeriodicTask)
