"""connection.update reports arrive and are processed out of order: the newest report is the one that stays."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from cecilia.models import ChannelState, Clinic
from conversations.services import channel_state_record
from integrations.whatsapp.base import ConnectionUpdate
from tests import factories


@pytest.fixture
def clinic(db):
    return factories.clinic(name="Clínica Conexão")


@pytest.mark.django_db
def test_a_delayed_close_does_not_undo_the_open_that_followed_it(clinic):
    ten = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=10)
    # Reported: close at 10 past, open again at 11 past; processed the other way round.
    channel_state_record(
        clinic=clinic, update=ConnectionUpdate(ChannelState.OPEN), at=ten + datetime.timedelta(minutes=1)
    )
    channel_state_record(clinic=clinic, update=ConnectionUpdate(ChannelState.CLOSE), at=ten)
    clinic = Clinic.objects.get(pk=clinic.pk)
    assert clinic.channel_state == ChannelState.OPEN
    assert clinic.channel_state_since == ten + datetime.timedelta(minutes=1)


@pytest.mark.django_db
def test_the_state_is_dated_from_when_the_provider_reported_it(clinic):
    down_at = timezone.now().replace(microsecond=0) - datetime.timedelta(minutes=20)
    channel_state_record(clinic=clinic, update=ConnectionUpdate(ChannelState.CLOSE), at=down_at)
    # A later report of the same state keeps the time it went down (the admin's alert counts from there).
    channel_state_record(
        clinic=clinic, update=ConnectionUpdate(ChannelState.CLOSE), at=down_at + datetime.timedelta(minutes=5)
    )
    clinic = Clinic.objects.get(pk=clinic.pk)
    assert (clinic.channel_state, clinic.channel_state_since) == (ChannelState.CLOSE, down_at)
    # ...and an older "open" reported late is ignored.
    channel_state_record(
        clinic=clinic, update=ConnectionUpdate(ChannelState.OPEN), at=down_at + datetime.timedelta(minutes=2)
    )
    assert Clinic.objects.get(pk=clinic.pk).channel_state == ChannelState.CLOSE
