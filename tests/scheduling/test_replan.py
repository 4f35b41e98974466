"""A clinic's reminder policy changes: the replan task brings pending steps in line, and never touches sent ones."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduling import tasks
from scheduling.models import ReminderRule, ReminderStep, SkipReason, StepStatus
from tests import factories


def _appointment(clinic, days):
    pro = factories.professional(clinic)
    svc = factories.service(clinic, professionals=[pro])
    start = timezone.localtime(timezone.now() + datetime.timedelta(days=days), clinic.tz).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    return factories.appointment(patient=factories.patient(clinic), professional=pro, service=svc, start=start)


def _steps(appointment):
    return {(s.key, s.status, s.skip_reason) for s in ReminderStep.objects.filter(appointment=appointment)}


@pytest.mark.django_db
def test_the_task_replans_only_the_clinics_future_open_appointments(clinic_a, clinic_b):
    ReminderRule.objects.create(clinic=clinic_a, hours_before=48)
    ReminderRule.objects.create(clinic=clinic_b, hours_before=48)
    ours, theirs = _appointment(clinic_a, 5), _appointment(clinic_b, 5)
    past = _appointment(clinic_a, -2)

    assert tasks.reminders_replan(clinic_a.pk) == 1
    assert _steps(ours) == {("48h", StepStatus.SCHEDULED, "")}
    assert _steps(theirs) == set() and _steps(past) == set()


@pytest.mark.django_db
def test_a_rule_turned_off_skips_pending_steps_and_turned_on_again_brings_them_back(clinic_a):
    rule = ReminderRule.objects.create(clinic=clinic_a, hours_before=48)
    appointment = _appointment(clinic_a, 5)
    tasks.reminders_replan(clinic_a.pk)
    ReminderRule.objects.filter(pk=rule.pk).update(active=False)
    tasks.reminders_replan(clinic_a.pk)
    assert _steps(appointment) == {("48h", StepStatus.SKIPPED, SkipReason.POLICY_CHANGED)}
    ReminderRule.objects.filter(pk=rule.pk).update(active=True)
    tasks.reminders_replan(clinic_a.pk)
    assert _steps(appointment) == {("48h", StepStatus.SCHEDULED, "")}


@pytest.mark.django_db
def test_a_sent_step_is_never_replanned(clinic_a):
    rule = ReminderRule.objects.create(clinic=clinic_a, hours_before=48)
    appointment = _appointment(clinic_a, 5)
    tasks.reminders_replan(clinic_a.pk)
    step = ReminderStep.objects.get(appointment=appointment)
    ReminderStep.objects.filter(pk=step.pk).update(status=StepStatus.SENT)
    ReminderRule.objects.filter(pk=rule.pk).update(hours_before=24)
    tasks.reminders_replan(clinic_a.pk)
    step.refresh_from_db()
    assert (step.status, step.due_at) == (StepStatus.SENT, appointment.start - datetime.timedelta(hours=48))
    assert _steps(appointment) == {("48h", StepStatus.SENT, ""), ("24h", StepStatus.SCHEDULED, "")}


@pytest.mark.django_db
def test_replanning_twice_changes_nothing_the_second_time(clinic_a):
    ReminderRule.objects.create(clinic=clinic_a, hours_before=48)
    ReminderRule.objects.create(clinic=clinic_a, hours_before=2)
    appointment = _appointment(clinic_a, 5)
    tasks.reminders_replan(clinic_a.pk)
    before = list(ReminderStep.objects.filter(appointment=appointment).values_list("pk", "due_at", "updated_at"))
    tasks.reminders_replan(clinic_a.pk)
    after = list(ReminderStep.objects.filter(appointment=appointment).values_list("pk", "due_at", "updated_at"))
    assert sorted(after) == sorted(before) and len(after) == 2


@pytest.mark.django_db
def test_the_demo_clinic_is_reminded_48_and_2_hours_before_and_its_surgery_a_week_before_too():
    from conversations.demo import SURGERY_SERVICE, demo_clinic_seed

    clinic = demo_clinic_seed(password="senha-de-teste-123").clinic
    defaults = ReminderRule.objects.filter(clinic=clinic, service=None)
    assert sorted(r.hours_before for r in defaults) == [2, 48]
    surgery = ReminderRule.objects.filter(clinic=clinic, service__name=SURGERY_SERVICE).select_related("template")
    assert sorted(r.hours_before for r in surgery) == [2, 48, 168]
    assert all("{preparo}" in r.template.body for r in surgery)
    assert ReminderStep.objects.filter(clinic=clinic, status=StepStatus.SCHEDULED).exists()
    counts = (ReminderRule.objects.count(), ReminderStep.objects.count())
    demo_clinic_seed(password="senha-de-teste-123")
    assert (ReminderRule.objects.count(), ReminderStep.objects.count()) == counts


@pytest.mark.django_db
def test_beat_replans_every_clinic_every_six_hours_to_make_up_lost_replans(clinic_a, clinic_b):
    task = PeriodicTask.objects.get(name="Reminders replan")
    assert (task.task, task.interval.every, task.interval.period) == (
        "scheduling.tasks.reminders_replan_all",
        6,
        "hours",
    )
    # A rule added while the broker was down: its steps were never planned (factories write appointments directly).
    ReminderRule.objects.create(clinic=clinic_a, hours_before=48)
    ReminderRule.objects.create(clinic=clinic_b, hours_before=24)
    ours, theirs = _appointment(clinic_a, 5), _appointment(clinic_b, 5)
    assert tasks.reminders_replan_all() == 2
    assert _steps(ours) == {("48h", StepStatus.SCHEDULED, "")}
    assert _steps(theirs) == {("24h", StepStatus.SCHEDULED, "")}
