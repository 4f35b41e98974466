"""The nightly retention job erases exactly what each clinic's policy says, and nothing else."""

from __future__ import annotations

import datetime
import os
import zoneinfo

import pytest
from django.core.files.base import ContentFile

from conversations.models import InboundEvent, Message
from patients.retention import MEDIA_REMOVED, TEXT_REMOVED, retention_enforce, retention_enforce_all
from patients.tasks import retention_enforce_all as retention_task
from scheduling.models import Appointment
from tests import factories

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")
NOW = datetime.datetime(2026, 6, 15, 12, 0, tzinfo=SP)
MINUTE = datetime.timedelta(minutes=1)
TEXT_CUTOFF = datetime.datetime(2025, 12, 15, 12, 0, tzinfo=SP)  # 6 months
MEDIA_CUTOFF = datetime.datetime(2026, 3, 15, 12, 0, tzinfo=SP)  # 3 months
EVENTS_CUTOFF = NOW - datetime.timedelta(days=30)


@pytest.fixture(autouse=True)
def frozen(time_machine, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    time_machine.move_to(NOW, tick=False)


def _conversation(clinic):
    from conversations.models import Conversation

    return Conversation.objects.create(clinic=clinic, patient=factories.patient(clinic))


def _message(conversation, at: datetime.datetime, *, text: str = "", media: str = "") -> Message:
    message = Message(
        clinic=conversation.clinic,
        conversation=conversation,
        direction="in",
        author="patient",
        status="received",
        kind="image" if media else "text",
        text=text,
    )
    if media:
        message.media.save(media, ContentFile(b"JPEG"), save=False)
    message.save()
    Message.objects.filter(pk=message.pk).update(created_at=at)
    return Message.objects.get(pk=message.pk)


def _event(clinic, at: datetime.datetime, key: str, *, processed: bool = True) -> InboundEvent:
    event = InboundEvent.objects.create(
        clinic=clinic,
        provider="evolution",
        event_type="messages.upsert",
        dedupe_key=key,
        payload={"data": {"message": f"texto {key}"}},
        processed_at=at if processed else None,
    )
    InboundEvent.objects.filter(pk=event.pk).update(received_at=at)
    return event


@pytest.fixture
def clinic(clinic_a):
    clinic_a.retention_message_text_months = 6
    clinic_a.retention_media_months = 3
    clinic_a.retention_raw_events_days = 30
    clinic_a.save()
    return clinic_a


@pytest.fixture
def seeded(clinic):
    conversation = _conversation(clinic)
    return {
        "text_out": _message(conversation, TEXT_CUTOFF - MINUTE, text="antigo demais"),
        "text_in": _message(conversation, TEXT_CUTOFF + MINUTE, text="ainda dentro"),
        "media_out": _message(conversation, MEDIA_CUTOFF - MINUTE, media="fora.jpg"),
        "media_in": _message(conversation, MEDIA_CUTOFF + MINUTE, media="dentro.jpg"),
        "event_out": _event(clinic, EVENTS_CUTOFF - MINUTE, "old"),
        "event_in": _event(clinic, EVENTS_CUTOFF + MINUTE, "new"),
        "event_unprocessed": _event(clinic, EVENTS_CUTOFF - MINUTE, "backlog", processed=False),
    }


def _fresh(row):
    return type(row).objects.get(pk=row.pk)


@pytest.mark.django_db
def test_texts_older_than_the_limit_are_erased_and_newer_ones_kept(clinic, seeded):
    counts = retention_enforce(clinic=clinic, now=NOW)
    assert counts.texts == 1
    assert _fresh(seeded["text_out"]).text == TEXT_REMOVED
    assert _fresh(seeded["text_in"]).text == "ainda dentro"


@pytest.mark.django_db
def test_media_older_than_the_limit_lose_file_and_reference_and_keep_a_placeholder(clinic, seeded):
    old_path, new_path = seeded["media_out"].media.path, seeded["media_in"].media.path
    counts = retention_enforce(clinic=clinic, now=NOW)
    assert counts.media == 1
    gone = _fresh(seeded["media_out"])
    assert (gone.media.name, gone.text) == ("", MEDIA_REMOVED)
    assert not os.path.exists(old_path)
    assert os.path.exists(new_path) and _fresh(seeded["media_in"]).media.name


@pytest.mark.django_db
def test_raw_events_older_than_the_limit_lose_their_payload_but_a_backlog_is_left_for_the_worker(clinic, seeded):
    counts = retention_enforce(clinic=clinic, now=NOW)
    assert counts.raw_events == 1
    assert _fresh(seeded["event_out"]).payload == {}
    assert _fresh(seeded["event_in"]).payload == {"data": {"message": "texto new"}}
    assert _fresh(seeded["event_unprocessed"]).payload != {}


@pytest.mark.django_db
def test_running_twice_changes_nothing_more(clinic, seeded):
    retention_enforce(clinic=clinic, now=NOW)
    snapshot = list(Message.objects.order_by("pk").values("text", "media"))
    again = retention_enforce(clinic=clinic, now=NOW)
    assert again.as_dict() == {"texts": 0, "media": 0, "raw_events": 0}
    assert list(Message.objects.order_by("pk").values("text", "media")) == snapshot


@pytest.mark.django_db
def test_a_clinic_with_empty_settings_keeps_every_message(clinic_a):
    conversation = _conversation(clinic_a)
    ancient = _message(conversation, NOW - datetime.timedelta(days=3650), text="de 2016", media="velha.jpg")
    counts = retention_enforce(clinic=clinic_a, now=NOW)
    assert (counts.texts, counts.media) == (0, 0)
    kept = _fresh(ancient)
    assert (kept.text, bool(kept.media)) == ("de 2016", True)


@pytest.mark.django_db
def test_another_clinics_policy_does_not_touch_this_clinic(clinic, clinic_b, seeded):
    conversation = _conversation(clinic_b)  # clinic_b keeps texts and media
    theirs = _message(conversation, TEXT_CUTOFF - MINUTE, text="da outra clínica", media="outra.jpg")
    retention_enforce(clinic=clinic, now=NOW)
    kept = _fresh(theirs)
    assert (kept.text, bool(kept.media)) == ("da outra clínica", True)


@pytest.mark.django_db
def test_appointments_are_never_touched(clinic, seeded):
    pro = factories.professional(clinic)
    old = factories.appointment(
        patient=factories.patient(clinic),
        professional=pro,
        service=factories.service(clinic, professionals=[pro]),
        start=NOW - datetime.timedelta(days=3650),
        notes="consulta antiga",
    )
    retention_enforce(clinic=clinic, now=NOW)
    assert Appointment.objects.get(pk=old.pk).notes == "consulta antiga"


@pytest.mark.django_db
def test_work_is_done_in_batches_and_all_of_it_gets_done(clinic):
    conversation = _conversation(clinic)
    for n in range(5):
        _message(conversation, TEXT_CUTOFF - MINUTE * (n + 1), text=f"velha {n}")
    assert retention_enforce(clinic=clinic, now=NOW, batch_size=2).texts == 5
    assert set(Message.objects.values_list("text", flat=True)) == {TEXT_REMOVED}


@pytest.mark.django_db
def test_the_nightly_task_applies_every_clinics_policy(clinic, seeded):
    assert retention_task() == {"texts": 1, "media": 1, "raw_events": 1}
    assert retention_enforce_all(now=NOW) == {"texts": 0, "media": 0, "raw_events": 0}


@pytest.mark.django_db
def test_the_nightly_job_is_registered_with_beat():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="LGPD retention")
    assert task.task == "patients.tasks.retention_enforce_all"
    assert (task.crontab.hour, task.crontab.minute) == ("3", "30")
