"""The console provider: the simulator's own tiny format in, nothing out to any network."""

from __future__ import annotations

import datetime

import pytest

from integrations.whatsapp import provider_for
from integrations.whatsapp.base import (
    ChannelConfig,
    ChannelState,
    DeliveryStatus,
    InboundMessage,
    Kind,
    MalformedPayload,
    MediaRef,
    OutboundMessage,
    ProviderError,
    StatusUpdate,
)
from integrations.whatsapp.console import ConsoleProvider

PROVIDER = ConsoleProvider(ChannelConfig(provider="console", instance="simulador", webhook_secret="s" * 32))


def test_provider_for_picks_the_console_for_a_console_channel():
    assert isinstance(provider_for(ChannelConfig(provider="console", instance="simulador")), ConsoleProvider)


def test_a_simulated_message_becomes_an_inbound_text_from_that_phone():
    payload = {"type": "message", "id": "sim-1", "from": "+5511987654321", "name": "Maria", "text": "Oi"}

    assert PROVIDER.parse_webhook(payload) == [
        InboundMessage(
            provider_message_id="sim-1",
            chat_id="+5511987654321",
            phone="5511987654321",
            lid=None,
            from_me=False,
            sender_name="Maria",
            kind=Kind.TEXT,
            text="Oi",
        )
    ]


@pytest.mark.parametrize("timestamp", [1763746325, "1763746325", "2025-11-21T14:32:05-03:00"])
def test_a_simulated_message_may_carry_its_time_as_unix_seconds_or_iso_8601(timestamp):
    payload = {"type": "message", "id": "sim-1", "from": "+5511987654321", "text": "Oi", "timestamp": timestamp}

    (event,) = PROVIDER.parse_webhook(payload)

    assert event.timestamp == datetime.datetime(2025, 11, 21, 17, 32, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize("status", list(DeliveryStatus))
def test_a_simulated_status_updates_the_message(status):
    assert PROVIDER.parse_webhook({"type": "status", "id": "console-abc", "status": status.value}) == [
        StatusUpdate("console-abc", status)
    ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "(body)"),
        ({"type": "typing", "id": "sim-1"}, "type"),
        ({"type": "message", "from": "+5511987654321", "text": "Oi"}, "id"),
        ({"type": "message", "id": "sim-1", "text": "Oi"}, "from"),
        ({"type": "message", "id": "sim-1", "from": "Maria", "text": "Oi"}, "from"),
        ({"type": "message", "id": "sim-1", "from": "+5511987654321", "timestamp": "ontem"}, "timestamp"),
        ({"type": "message", "id": "sim-1", "from": "+5511987654321", "timestamp": "2025-11-21T14:32:05"}, "timestamp"),
        ({"type": "status", "id": "console-abc", "status": "lost"}, "status"),
        ({"type": "status", "status": "read"}, "id"),
    ],
)
def test_anything_else_is_rejected_naming_the_field(payload, field):
    with pytest.raises(MalformedPayload) as excinfo:
        PROVIDER.parse_webhook(payload)

    assert excinfo.value.details == {"field": field}


def test_event_identity_names_type_id_and_status():
    assert PROVIDER.event_identity({"type": "status", "id": "console-abc", "status": "read"}) == (
        "console|status|console-abc|read"
    )
    assert PROVIDER.event_identity({"type": "message", "id": "sim-1"}) == "console|message|sim-1|"


def test_the_console_has_no_public_webhook_so_verification_always_fails():
    assert PROVIDER.verify_webhook(b"{}", {"X-Cecilia-Webhook-Secret": "s" * 32}, {}) is False


def test_a_send_stays_on_the_server_and_gets_a_fresh_console_id():
    first = PROVIDER.send(OutboundMessage(to="+5511987654321", text="Olá"))
    second = PROVIDER.send(OutboundMessage(to="+5511987654321", text="Olá"))

    assert first.provider_message_id.startswith("console-")
    assert first.provider_message_id != second.provider_message_id
    assert first.chat_id == "+5511987654321"


def test_there_is_no_media_to_download():
    with pytest.raises(ProviderError) as excinfo:
        PROVIDER.download_media(MediaRef())

    assert excinfo.value.permanent is True


def test_mark_read_does_nothing_and_the_channel_is_always_open():
    assert PROVIDER.mark_read(chat_id="+5511987654321", provider_message_id="sim-1") is None
    assert PROVIDER.connection_state() is ChannelState.OPEN
