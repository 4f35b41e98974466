"""Which reminders an appointment gets and when, as the booking services plan them (scheduling.reminders).

Frozen time; real PostgreSQL. The clinic's defaults are 48 h and 2 h before, sent between 08:00 and 20:00 local.
"""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
import time_machine

from scheduling.models import (
    AppointmentSource,
    AppointmentStatus,
    ReminderRule,
    ReminderStep,
    ReminderTemplate,
    SkipReason,
    StepKind,
    StepStatus,
)
from scheduling.reminders import clinic_steps_replan, message_render, placeholder_values, reminder_due, render
from scheduling.services import (
    Actor,
    appointment_book,
    appointment_cancel,
    appointment_complete,
    appointment_mark_no_show,
    appointment_reschedule,
)
from tests import factories
from tests.scheduling.test_availability_support import MONDAY, T, business, clinic, professional, service

pytestmark = pytest.mark.django_db

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")
MANAUS = zoneinfo.ZoneInfo("America/Manaus")
WEDNESDAY, THURSDAY = MONDAY + datetime.timedelta(days=2), MONDAY + datetime.timedelta(days=3)


def local(day: datetime.date, hour: int, minute: int = 0, tz: zoneinfo.ZoneInfo = SP) -> datetime.datetime:
    return datetime.datetime.combine(day, T(hour, minute), tzinfo=tz)


def setup_clinic(tz: str = "America/Sao_Paulo", hours_before: tuple[int, ...] = (48, 2)):
    c = clinic(timezone=tz)
    business(c, range(7), (T(7), T(20)))
    pro = professional(c, "Dra. Ana")
    svc = service(c, [pro], name="Limpeza")
    for hours in hours_before:
        ReminderRule.objects.create(clinic=c, hours_before=hours)
    return c, pro, svc


def book(c, pro, svc, start, patient=None):
    return appointment_book(
        patient=patient or factories.patient(c, full_name="Maria Souza"),
        service=svc,
        professional=pro,
        start=start,
        actor=Actor.system(),
        source=AppointmentSource.WHATSAPP,
    )


def steps(appointment) -> dict[str, tuple[str, datetime.datetime, str]]:
    tz = appointment.clinic.tz
    return {
        f"{s.key}@{s.appointment_start.astimezone(tz):%d %H:%M}": (s.status, s.due_at.astimezone(tz), s.skip_reason)
        for s in ReminderStep.objects.filter(appointment=appointment)
    }


@pytest.mark.parametrize("tz_name", ["America/Sao_Paulo", "America/Manaus"])
def test_a_booking_plans_each_rule_at_local_time_in_the_clinics_zone(tz_name):
    tz = zoneinfo.ZoneInfo(tz_name)
    c, pro, svc = setup_clinic(tz_name)
    with time_machine.travel(local(MONDAY, 9, tz=tz), tick=False):
        appointment = book(c, pro, svc, local(THURSDAY, 15, tz=tz))
    assert steps(appointment) == {
        "48h@05 15:00": (StepStatus.SCHEDULED, local(MONDAY + datetime.timedelta(days=1), 15, tz=tz), ""),
        "2h@05 15:00": (StepStatus.SCHEDULED, local(THURSDAY, 13, tz=tz), ""),
    }


def test_quiet_hours_move_a_reminder_earlier_into_the_sending_window():
    # 08:30: 2 h before is 06:30, and 08:00 would leave only 30 minutes: the evening before at 20:00.
    # 09:00: 2 h before is 07:00; 08:00 still leaves an hour (half the notice): that morning.
    # 22:00 raw due (an appointment on Friday 22:00 minus 48 h): 20:00 that evening.
    c, _pro, _svc = setup_clinic()
    assert reminder_due(local(THURSDAY, 8, 30), 2, c) == local(WEDNESDAY, 20)
    assert reminder_due(local(THURSDAY, 9), 2, c) == local(THURSDAY, 8)
    assert reminder_due(local(THURSDAY, 22), 48, c) == local(MONDAY + datetime.timedelta(days=1), 20)
    assert reminder_due(local(THURSDAY, 15), 48, c) == local(MONDAY + datetime.timedelta(days=1), 15)


def test_a_reminder_already_due_when_booked_is_not_planned():
    c, pro, svc = setup_clinic()
    with time_machine.travel(local(WEDNESDAY, 16), tick=False):
        appointment = book(c, pro, svc, local(THURSDAY, 15))  # 23 h ahead: no 48 h reminder
    assert list(steps(appointment)) == ["2h@05 15:00"]


def test_moving_an_appointment_skips_its_pending_steps_and_plans_new_ones_moving_back_revives_them():
    c, pro, svc = setup_clinic()
    with time_machine.travel(local(MONDAY, 9), tick=False):
        appointment = book(c, pro, svc, local(THURSDAY, 15))
        appointment_reschedule(appointment=appointment, start=local(THURSDAY, 16), actor=Actor.system())
        moved = steps(appointment)
        assert moved["48h@05 15:00"][::2] == (StepStatus.SKIPPED, SkipReason.APPOINTMENT_CHANGED)
        assert moved["2h@05 15:00"][::2] == (StepStatus.SKIPPED, SkipReason.APPOINTMENT_CHANGED)
        assert moved["48h@05 16:00"] == (StepStatus.SCHEDULED, local(MONDAY + datetime.timedelta(days=1), 16), "")
        appointment_reschedule(appointment=appointment, start=local(THURSDAY, 15), actor=Actor.system())
    back = steps(appointment)
    assert back["48h@05 15:00"] == (StepStatus.SCHEDULED, local(MONDAY + datetime.timedelta(days=1), 15), "")
    assert back["48h@05 16:00"][::2] == (StepStatus.SKIPPED, SkipReason.APPOINTMENT_CHANGED)
    assert ReminderStep.objects.filter(appointment=appointment, status=StepStatus.SCHEDULED).count() == 2


def test_a_sent_step_is_never_planned_again_nor_skipped():
    c, pro, svc = setup_clinic()
    with time_machine.travel(local(MONDAY, 9), tick=False):
        appointment = book(c, pro, svc, local(THURSDAY, 15))
    ReminderStep.objects.filter(appointment=appointment, key="48h").update(status=StepStatus.SENT)
    with time_machine.travel(local(MONDAY + datetime.timedelta(days=1), 16), tick=False):
        appointment_cancel(appointment=appointment, actor=Actor.system())
    after = steps(appointment)
    assert after["48h@05 15:00"][0] == StepStatus.SENT
    assert after["2h@05 15:00"][::2] == (StepStatus.SKIPPED, SkipReason.CANCELLED)


def test_a_service_with_rules_of_its_own_gets_only_those_with_its_preparation_text():
    c, pro, _svc = setup_clinic()
    surgery = service(c, [pro], name="Cirurgia", preparation_instructions="Jejum de 8 horas.")
    template = ReminderTemplate.objects.create(
        clinic=c, name="Cirurgia", body="Oi {nome}! {servico} {data} às {hora}.\nPreparo: {preparo}"
    )
    for hours in (168, 48, 2):
        ReminderRule.objects.create(clinic=c, service=surgery, hours_before=hours, template=template)
    with time_machine.travel(local(MONDAY, 9), tick=False):
        appointment = book(c, pro, surgery, local(MONDAY + datetime.timedelta(days=10), 10))
    assert sorted(steps(appointment)) == ["168h@12 10:00", "2h@12 10:00", "48h@12 10:00"]
    step = ReminderStep.objects.get(appointment=appointment, key="168h")
    values = placeholder_values(
        clinic=c,
        patient=appointment.patient,
        recipient=appointment.patient,
        service_name=surgery.name,
        professional_name=pro.name,
        start=appointment.start,
        preparation=surgery.preparation_instructions,
    )
    rendered = message_render("reminder", values, template=step.rule.template, with_choices=True)
    assert rendered.text.startswith("Oi Maria! Cirurgia quinta, 12/03 às 10:00.\nPreparo: Jejum de 8 horas.")
    assert "1. ✅ Confirmo" in rendered.text
    assert [title for _id, title in rendered.buttons] == ["Confirmo", "Não poderei ir", "Quero remarcar"]


def test_a_line_whose_placeholders_are_empty_is_left_out():
    text = render("Olá, {nome}!\n📝 Preparo: {preparo}\n📍 {endereco}", {"nome": "Ana", "endereco": "Rua A, 1"})
    assert text == "Olá, Ana!\n📍 Rua A, 1"


def test_a_template_with_an_unknown_placeholder_is_refused_in_words():
    c, _pro, _svc = setup_clinic()
    template = ReminderTemplate(clinic=c, name="X", body="Oi {nome}, sua consulta é {quando}")
    with pytest.raises(Exception) as error:
        template.full_clean()
    assert "{quando}" in str(error.value)


def test_a_policy_change_replans_future_appointments_and_leaves_sent_steps_alone():
    c, pro, svc = setup_clinic()
    with time_machine.travel(local(MONDAY, 9), tick=False):
        appointment = book(c, pro, svc, local(THURSDAY, 15))
        ReminderStep.objects.filter(appointment=appointment, key="2h").update(status=StepStatus.SENT)
        ReminderRule.objects.filter(clinic=c, hours_before=48).update(hours_before=24)
        ReminderRule.objects.filter(clinic=c, hours_before=2).delete()
        clinic_steps_replan(clinic_id=c.pk)
    after = steps(appointment)
    assert after["48h@05 15:00"][::2] == (StepStatus.SKIPPED, SkipReason.POLICY_CHANGED)
    assert after["24h@05 15:00"] == (StepStatus.SCHEDULED, local(WEDNESDAY, 15), "")
    assert after["2h@05 15:00"][0] == StepStatus.SENT


def test_a_no_show_plans_the_follow_up_and_a_completed_visit_the_rating_when_enabled():
    c, pro, svc = setup_clinic()
    c.satisfaction_survey = True
    c.satisfaction_delay_minutes = 120
    c.save()
    with time_machine.travel(local(MONDAY, 9), tick=False):
        missed = book(c, pro, svc, local(MONDAY, 10))
        seen = book(c, pro, svc, local(MONDAY, 10, 30))
    with time_machine.travel(local(MONDAY, 19, 30), tick=False):
        appointment_mark_no_show(appointment=missed, actor=Actor.system())
        appointment_complete(appointment=seen, actor=Actor.system())
    (followup,) = ReminderStep.objects.filter(appointment=missed, kind=StepKind.NO_SHOW_FOLLOWUP)
    assert followup.due_at == local(MONDAY, 19, 30)
    (rating,) = ReminderStep.objects.filter(appointment=seen, kind=StepKind.SATISFACTION)
    # 19:30 + nothing (the visit ended at 11:00 + 2 h is long past): now — inside the window until 20:00.
    assert rating.due_at == local(MONDAY, 19, 30)
    missed.refresh_from_db()
    assert missed.status == AppointmentStatus.NO_SHOW


def test_a_follow_up_due_at_night_waits_for_the_morning():
    c, pro, svc = setup_clinic()
    with time_machine.travel(local(MONDAY, 9), tick=False):
        missed = book(c, pro, svc, local(MONDAY, 17, 30))
    with time_machine.travel(local(MONDAY, 21), tick=False):
        appointment_mark_no_show(appointment=missed, actor=Actor.system())
    (followup,) = ReminderStep.objects.filter(appointment=missed, kind=StepKind.NO_SHOW_FOLLOWUP)
    assert followup.due_at == local(MONDAY + datetime.timedelta(days=1), 8)
