"""Evolution webhooks in: authentication, parsing and identity, driven by the JSON fixtures in tests/fixtures/evolution.

The fixtures are named by the Evolution version whose wire format they follow (contract §3.1: bytes and 64-bit
numbers change representation between 2.2.x, 2.3.3–2.3.5 and 2.3.6+). `2.3.7/` holds the contract's own samples.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from integrations.whatsapp._common import int64
from integrations.whatsapp.base import (
    ChannelConfig,
    ChannelState,
    ConnectionUpdate,
    DeliveryStatus,
    Ignored,
    InboundMessage,
    Kind,
    Location,
    MalformedPayload,
    QrCodeUpdate,
    StatusUpdate,
)
from integrations.whatsapp.evolution import EvolutionProvider

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution"
TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"
SECRET = "segredo-compartilhado-para-hs256"
MARIA_JID = "5511987654321@s.whatsapp.net"
MARIA_LID = "128765432109876@lid"
CONFIG = ChannelConfig(
    provider="evolution",
    instance="atendimento-sp",
    api_url="https://evolution.minhaempresa.com.br",
    api_key=TOKEN,
    webhook_secret=SECRET,
)
PROVIDER = EvolutionProvider(CONFIG)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def only_event(name: str) -> Any:
    events = PROVIDER.parse_webhook(load(name))
    assert len(events) == 1
    return events[0]


def message(name: str) -> InboundMessage:
    event = only_event(name)
    assert isinstance(event, InboundMessage), event
    return event


def utc(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=datetime.UTC)


# --- every fixture ------------------------------------------------------------------------------------------------

EVENT_FIXTURES = sorted(
    str(path.relative_to(FIXTURES))
    for path in FIXTURES.rglob("*.json")
    if path.relative_to(FIXTURES).parts[0] not in ("malformed", "rest")
)


@pytest.mark.parametrize("name", EVENT_FIXTURES)
def test_every_event_fixture_parses_into_exactly_one_known_event(name):
    events = PROVIDER.parse_webhook(load(name))

    assert len(events) == 1
    assert isinstance(events[0], InboundMessage | StatusUpdate | ConnectionUpdate | QrCodeUpdate | Ignored)


# --- text and the envelope ----------------------------------------------------------------------------------------


def test_a_text_message_reaches_the_receptionist_with_phone_lid_and_name():
    event = message("2.3.7/messages_upsert_text.json")

    assert event == InboundMessage(
        provider_message_id="A1F3C5E7092B4D6F8A0C2E4F6B8D0A13",
        chat_id=MARIA_JID,
        phone="5511987654321",
        lid=MARIA_LID,
        from_me=False,
        sender_name="Maria Souza",
        kind=Kind.TEXT,
        text="Olá, bom dia! Vocês entregam em Campinas?",
        timestamp=utc(2025, 11, 21, 17, 32, 5),
    )


def test_the_time_comes_from_message_timestamp_and_not_from_the_local_date_time_with_a_fake_z():
    body = load("2.3.7/messages_upsert_text.json")
    assert body["date_time"].startswith("2025-11-21T14:32:05")  # São Paulo wall clock, labelled Z

    assert message("2.3.7/messages_upsert_text.json").timestamp == utc(2025, 11, 21, 17, 32, 5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2.3.6/messages_upsert_image.json", utc(2025, 11, 21, 18, 0)),  # a Long
        ("2.3.6/timestamp_as_string.json", utc(2025, 11, 21, 18, 24)),  # a decimal string
        ("2.2.3/messages_upsert_text.json", utc(2025, 7, 27, 11, 15, 50)),  # a number
    ],
)
def test_message_timestamp_parses_as_a_long_a_string_or_a_number(name, expected):
    assert message(name).timestamp == expected


def test_older_versions_extended_text_is_text_and_its_quote_is_kept():
    event = message("2.1.0/extended_text_quoted.json")

    assert event.kind is Kind.TEXT
    assert event.text == "Esse horário não dá, tem outro? https://maps.app.goo.gl/abc123XYZ"
    assert event.quoted_message_id == "3EB0A1B2C3D4E5F60718"


def test_a_quoted_reply_names_the_message_it_answers_from_data_context_info():
    event = message("2.3.6/quoted_reply.json")

    assert event.text == "Pode ser na sexta às 10h"
    assert event.quoted_message_id == "3EB0C4F2A91D7E5B3C8A61"


def test_a_text_without_a_quote_has_no_quoted_id():
    assert message("2.3.7/messages_upsert_text.json").quoted_message_id == ""


@pytest.mark.parametrize(
    ("name", "kind", "text"),
    [
        ("2.3.6/ephemeral_text.json", Kind.TEXT, "Mensagem temporária: preciso de um horário"),
        ("2.3.6/view_once_image.json", Kind.IMAGE, "só pra você ver"),
    ],
)
def test_disappearing_and_view_once_messages_are_unwrapped(name, kind, text):
    event = message(name)

    assert (event.kind, event.text) == (kind, text)


def test_a_message_typed_on_the_clinics_phone_is_from_me_and_carries_no_patient_name():
    event = message("2.3.7/messages_upsert_from_me.json")

    assert event.from_me is True
    assert event.sender_name == ""
    assert event.phone == "5511987654321"
    assert event.text == "Oi Maria, já verifiquei aqui e o pedido sai amanhã cedo."


def test_a_message_with_only_a_key_distribution_is_ignored():
    event = only_event("2.3.6/protocol_only.json")

    assert isinstance(event, Ignored)
    assert "without content" in event.reason


def test_an_unknown_content_type_still_reaches_staff_as_other():
    event = message("2.3.6/poll_creation.json")

    assert event.kind is Kind.OTHER
    assert event.text == ""


# --- media ---------------------------------------------------------------------------------------------------------


def test_a_voice_note_is_audio_flagged_as_voice_with_duration_and_size_from_a_long():
    event = message("2.3.7/messages_upsert_audio_ptt.json")

    assert event.kind is Kind.AUDIO
    assert event.media is not None
    assert event.media.voice_note is True
    assert event.media.mime_type == "audio/ogg; codecs=opus"
    assert event.media.size == 18342
    assert event.media.seconds == 7


def test_a_2_2_3_voice_note_reads_its_decimal_string_file_length():
    event = message("2.2.3/messages_upsert_audio_ptt.json")

    assert event.media is not None
    assert (event.media.voice_note, event.media.size, event.media.seconds) == (True, 18342, 7)


def test_an_audio_file_is_audio_but_not_a_voice_note():
    event = message("2.3.6/messages_upsert_audio_file.json")

    assert event.kind is Kind.AUDIO
    assert event.media is not None
    assert event.media.voice_note is False
    assert event.media.seconds == 95


def test_an_image_caption_becomes_the_text_and_the_media_keeps_key_and_message_for_download():
    body = load("2.3.7/messages_upsert_image_caption.json")
    event = message("2.3.7/messages_upsert_image_caption.json")

    assert event.kind is Kind.IMAGE
    assert event.text == "Foto do produto com defeito 😕"
    assert event.media is not None
    assert event.media.mime_type == "image/jpeg"
    assert event.media.size == 183245
    assert event.media.provider_data == {"key": body["data"]["key"], "message": body["data"]["message"]}


def test_a_2_3_6_image_with_index_keyed_bytes_keeps_the_crypto_fields_opaque():
    body = load("2.3.6/messages_upsert_image.json")
    event = message("2.3.6/messages_upsert_image.json")

    assert event.media is not None
    assert event.media.size == 245760
    media_key = event.media.provider_data["message"]["imageMessage"]["mediaKey"]
    assert media_key == body["data"]["message"]["imageMessage"]["mediaKey"]  # untouched, still {"0": …}


def test_a_document_keeps_its_file_name_mime_type_and_caption():
    event = message("2.3.6/messages_upsert_document_with_caption.json")

    assert event.kind is Kind.DOCUMENT
    assert event.text == "Segue o resultado"
    assert event.media is not None
    assert (event.media.file_name, event.media.mime_type, event.media.size) == (
        "exame-sangue.pdf",
        "application/pdf",
        88231,
    )


def test_a_2_2_3_document_with_base64_bytes_and_a_string_length_parses():
    event = message("2.2.3/messages_upsert_document.json")

    assert event.kind is Kind.DOCUMENT
    assert event.media is not None
    assert (event.media.file_name, event.media.size) == ("receita.pdf", 183245)
    assert event.sender_name == "Maria Souza"


def test_a_video_is_video_with_its_caption_and_duration():
    event = message("2.3.6/messages_upsert_video.json")

    assert event.kind is Kind.VIDEO
    assert event.text == "Olha o inchaço"
    assert event.media is not None
    assert (event.media.seconds, event.media.size) == (12, 1048576)


def test_a_sticker_is_other_not_a_question_and_keeps_its_media_for_the_inbox():
    event = message("2.3.6/messages_upsert_sticker.json")

    assert event.kind is Kind.OTHER
    assert event.text == ""
    assert event.media is not None
    assert event.media.mime_type == "image/webp"


def test_media_sent_inline_by_the_webhook_is_kept_once_for_download():
    body = load("2.3.6/messages_upsert_image_base64.json")
    event = message("2.3.6/messages_upsert_image_base64.json")

    assert event.media is not None
    assert event.media.inline_base64 == body["data"]["message"]["base64"]
    assert "base64" not in event.media.provider_data["message"]


# --- location, contacts, reactions, replies -----------------------------------------------------------------------


def test_a_location_carries_coordinates_name_and_address():
    event = message("2.3.6/location.json")

    assert event.kind is Kind.LOCATION
    assert event.location == Location(
        -23.5613991, -46.6565712, "Clínica Sorriso", "Av. Paulista, 1000 - Bela Vista, São Paulo - SP"
    )


def test_a_live_location_is_a_location_with_its_caption():
    event = message("2.3.6/live_location.json")

    assert event.kind is Kind.LOCATION
    assert event.location == Location(-23.55, -46.63)
    assert event.text == "Estou chegando"


@pytest.mark.parametrize(
    ("name", "contacts"),
    [
        ("2.3.6/contact.json", ("Dr. Paulo Lima",)),
        ("2.3.6/contacts_array.json", ("Dr. Paulo Lima", "Ana (filha)")),
    ],
)
def test_shared_contacts_are_listed_by_display_name(name, contacts):
    event = message(name)

    assert event.kind is Kind.CONTACT
    assert event.contacts == contacts


def test_a_reaction_names_the_emoji_and_the_message_reacted_to():
    event = message("2.3.6/reaction.json")

    assert event.kind is Kind.REACTION
    assert event.text == "👍"
    assert event.reaction_to_message_id == "3EB0C4F2A91D7E5B3C8A61"


def test_a_removed_reaction_has_an_empty_emoji():
    event = message("2.3.6/reaction_removed.json")

    assert event.kind is Kind.REACTION
    assert event.text == ""
    assert event.reaction_to_message_id == "3EB0C4F2A91D7E5B3C8A61"


@pytest.mark.parametrize(
    ("name", "text", "option", "quoted"),
    [
        ("2.3.6/buttons_reply.json", "Confirmar", "confirmar:8812", "3EB0A1B2C3D4E5F60718"),
        ("2.3.6/list_reply.json", "Terça 25/11 às 14h", "slot:2025-11-25T14:00", "3EB0B2C3D4E5F6071829"),
        ("2.3.6/template_button_reply.json", "Remarcar", "remarcar", "3EB0C3D4E5F607182930"),
        ("2.3.6/interactive_reply.json", "Sim, confirmo", "confirmar:8812", "3EB0D4E5F60718293A4B"),
    ],
)
def test_a_button_list_or_interactive_reply_gives_the_selected_option_id_and_its_label(name, text, option, quoted):
    event = message(name)

    assert event.kind is Kind.TEXT
    assert (event.text, event.selected_option_id, event.quoted_message_id) == (text, option, quoted)


def test_an_interactive_reply_with_unreadable_params_keeps_its_label_and_no_option():
    event = message("2.3.6/interactive_reply_bad_params.json")

    assert (event.text, event.selected_option_id) == ("Não posso", "")


# --- who the chat is with ------------------------------------------------------------------------------------------


def test_a_legacy_eight_digit_brazilian_jid_is_reported_as_written():
    event = message("2.3.7/legacy_8_digit_jid.json")

    assert event.phone == "551187654321"
    assert event.chat_id == "551187654321@s.whatsapp.net"


def test_a_device_suffix_is_dropped_from_the_chat():
    event = message("2.3.7/device_suffix_jid.json")

    assert (event.chat_id, event.phone) == (MARIA_JID, "5511987654321")


@pytest.mark.parametrize(
    "name",
    [
        "2.3.5/lid_with_remote_jid_alt.json",  # remoteJid LID, remoteJidAlt phone
        "2.3.1/lid_with_sender_pn.json",  # senderPn
        "2.3.2/lid_rewritten_with_previous_remote_jid.json",  # remoteJid rewritten, LID in previousRemoteJid
        "2.3.6/lid_with_participant_alt.json",  # participantAlt
    ],
)
def test_a_lid_chat_finds_the_phone_wherever_its_version_put_it_and_replies_to_the_phone(name):
    event = message(name)

    assert event.phone == "5511987654321"
    assert event.lid == MARIA_LID
    assert event.chat_id == MARIA_JID


@pytest.mark.parametrize("name", ["2.3.6/lid_without_phone.json", "2.2.3/lid_without_phone.json"])
def test_a_lid_chat_without_any_phone_is_answered_on_the_lid(name):
    event = message(name)

    assert event.phone is None
    assert event.lid == "209876123456789@lid"
    assert event.chat_id == "209876123456789@lid"


def test_a_from_me_message_on_a_lid_chat_uses_the_patients_phone():
    event = message("2.3.5/from_me_lid.json")

    assert (event.from_me, event.phone, event.chat_id) == (True, "5511987654321", MARIA_JID)


def test_the_clinics_own_number_is_never_taken_for_the_patients():
    event = message("2.3.2/from_me_sender_pn_is_owner.json")  # senderPn is the clinic's number here

    assert event.phone is None
    assert event.chat_id == MARIA_LID


def test_the_clinics_chat_with_itself_is_ignored():
    event = only_event("2.3.7/self_chat.json")

    assert isinstance(event, Ignored)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("2.3.7/messages_upsert_group.json", "group chat"),
        ("2.3.6/group.json", "group chat"),
        ("2.3.6/status_broadcast.json", "status update (story)"),
        ("2.3.6/newsletter.json", "newsletter"),
        ("2.3.6/broadcast_list.json", "broadcast list"),
    ],
)
def test_groups_stories_newsletters_and_broadcast_lists_are_not_patient_chats(name, reason):
    assert only_event(name) == Ignored(reason)


# --- statuses ------------------------------------------------------------------------------------------------------


def test_our_own_send_echoed_as_send_message_is_a_sent_status_not_a_staff_message():
    event = only_event("2.3.7/send_message.json")

    assert event == StatusUpdate(
        "3EB0C4F2A91D7E5B3C8A61", DeliveryStatus.SENT, chat_id=MARIA_JID, timestamp=utc(2025, 11, 21, 17, 32, 30)
    )


def test_a_media_send_echo_is_a_sent_status_too():
    event = only_event("2.3.6/send_message_media.json")

    assert isinstance(event, StatusUpdate)
    assert (event.provider_message_id, event.status) == ("3EB0A9D3E2F1C0B7A6958473", DeliveryStatus.SENT)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("2.3.6/messages_update_delivery_ack.json", DeliveryStatus.DELIVERED),
        ("2.3.6/messages_update_read.json", DeliveryStatus.READ),
        ("2.3.6/messages_update_played.json", DeliveryStatus.PLAYED),
        ("2.3.6/messages_update_error.json", DeliveryStatus.FAILED),
        ("2.3.6/messages_update_deleted.json", DeliveryStatus.DELETED),
        ("2.3.7/messages_update_read.json", DeliveryStatus.READ),
        ("2.3.7/messages_update_server_ack.json", DeliveryStatus.SENT),
        ("2.2.3/messages_update_read.json", DeliveryStatus.READ),
        ("legacy/messages_update_key_shape.json", DeliveryStatus.READ),  # numeric status 4, id in data.key.id
    ],
)
def test_messages_update_maps_each_status(name, status):
    event = only_event(name)

    assert isinstance(event, StatusUpdate)
    assert event.status is status


def test_a_status_names_the_message_by_key_id_and_the_chat_as_given():
    event = only_event("2.3.6/messages_update_read.json")

    assert event == StatusUpdate("3EB0C4F2A91D7E5B3C8A61", DeliveryStatus.READ, chat_id=MARIA_LID)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("2.3.6/messages_update_pending.json", "pending status"),
        ("2.3.6/messages_update_poll_vote.json", "poll vote"),
        ("2.3.6/messages_update_inbound_read.json", "receipt for a message the patient sent"),
        ("2.3.6/messages_update_group.json", "status of a message outside a 1:1 chat"),
    ],
)
def test_statuses_that_describe_nothing_of_ours_are_ignored(name, reason):
    assert only_event(name) == Ignored(reason)


@pytest.mark.parametrize("name", ["2.3.6/messages_delete.json", "2.3.7/messages_delete.json"])
def test_a_deleted_message_becomes_a_deleted_status(name):
    assert only_event(name) == StatusUpdate(
        "D4F6A8C0E2B4D6F8A0C2E4F6B8D0A135", DeliveryStatus.DELETED, chat_id=MARIA_JID
    )


# --- connection and QR code ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2.3.7/connection_update_open.json", ConnectionUpdate(ChannelState.OPEN, 200, "5511912345678")),
        ("connection/connecting.json", ConnectionUpdate(ChannelState.CONNECTING, 200)),
        ("connection/close_logged_out.json", ConnectionUpdate(ChannelState.CLOSE, 401)),
        ("2.2.3/connection_update_close.json", ConnectionUpdate(ChannelState.CLOSE, 401)),
        ("connection/refused.json", ConnectionUpdate(ChannelState.REFUSED, 428)),
    ],
)
def test_connection_update_reports_the_state_the_reason_and_once_paired_the_clinics_number(name, expected):
    assert only_event(name) == expected


def test_a_qr_code_update_carries_the_code_and_its_image():
    event = only_event("connection/qrcode_updated.json")

    assert isinstance(event, QrCodeUpdate)
    assert event.qr_code.startswith("2@")
    assert event.image_data_url.startswith("data:image/png;base64,")
    assert event.pairing_code == ""


def test_a_qr_code_update_for_a_number_carries_the_pairing_code():
    event = only_event("connection/qrcode_updated_pairing_code.json")

    assert isinstance(event, QrCodeUpdate)
    assert event.pairing_code == "WZYEH1YY"


def test_the_qr_code_limit_ends_the_pairing_attempt_as_refused():
    assert only_event("connection/qrcode_limit.json") == ConnectionUpdate(ChannelState.REFUSED, 500)


# --- unused events and malformed bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "unused").glob("*.json")))
def test_events_cecilia_does_not_use_are_ignored_whatever_their_data(name):
    body = load(f"unused/{name}")
    event = only_event(f"unused/{name}")

    assert event == Ignored(f"unused event {body['event']}")


MALFORMED = {
    "body_is_array.json": "(body)",
    "no_event.json": "event",
    "no_data.json": "data",
    "data_is_string.json": "data",
    "data_is_array.json": "data",
    "no_key.json": "data.key",
    "no_key_id.json": "data.key.id",
    "no_remote_jid.json": "data.key.remoteJid",
    "remote_jid_not_a_jid.json": "data.key.remoteJid",
    "no_message.json": "data.message",
    "timestamp_garbage.json": "data.messageTimestamp",
    "file_length_garbage.json": "data.message.imageMessage.fileLength",
    "location_without_latitude.json": "data.message.locationMessage.degreesLatitude",
    "reaction_without_key.json": "data.message.reactionMessage.key",
    "update_without_key_id.json": "data.keyId",
    "delete_without_id.json": "data.id",
    "connection_without_state.json": "data.state",
    "qrcode_without_code.json": "data.qrcode.code",
}


def test_every_malformed_fixture_has_an_expected_path():
    assert set(MALFORMED) == {path.name for path in (FIXTURES / "malformed").glob("*.json")}


@pytest.mark.parametrize(("name", "field"), sorted(MALFORMED.items()))
def test_a_body_missing_what_its_event_needs_is_rejected_naming_the_path(name, field):
    with pytest.raises(MalformedPayload) as excinfo:
        PROVIDER.parse_webhook(load(f"malformed/{name}"))

    assert excinfo.value.details == {"field": field}


# --- identity -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "identity"),
    [
        (
            "2.3.7/messages_upsert_text.json",
            "atendimento-sp|messages.upsert|A1F3C5E7092B4D6F8A0C2E4F6B8D0A13|DELIVERY_ACK",
        ),
        ("2.3.7/send_message.json", "atendimento-sp|send.message|3EB0C4F2A91D7E5B3C8A61|PENDING"),
        ("2.3.7/messages_update_read.json", "atendimento-sp|messages.update|3EB0C4F2A91D7E5B3C8A61|READ"),
        ("legacy/messages_update_key_shape.json", "atendimento-sp|messages.update|3EB0A1A2A3A4A5A6A7A8A9|READ"),
        ("2.3.6/messages_delete.json", "atendimento-sp|messages.delete|D4F6A8C0E2B4D6F8A0C2E4F6B8D0A135|DELETED"),
    ],
)
def test_event_identity_is_instance_event_message_id_and_status(name, identity):
    assert PROVIDER.event_identity(load(name)) == identity


def test_a_redelivered_event_has_the_same_identity_and_a_new_status_a_new_one():
    read = load("2.3.6/messages_update_read.json")
    delivered = load("2.3.6/messages_update_delivery_ack.json")

    assert PROVIDER.event_identity(read) == PROVIDER.event_identity(load("2.3.6/messages_update_read.json"))
    assert PROVIDER.event_identity(read) != PROVIDER.event_identity(delivered)


@pytest.mark.parametrize(
    "name", ["2.3.7/connection_update_open.json", "connection/qrcode_updated.json", "unused/contacts_upsert.json"]
)
def test_events_without_a_message_id_have_no_identity_so_they_are_never_deduplicated(name):
    assert PROVIDER.event_identity(load(name)) == ""


@pytest.mark.parametrize(
    ("name", "field"),
    [("malformed/no_key_id.json", "data.key.id"), ("malformed/update_without_key_id.json", "data.keyId")],
)
def test_a_message_event_without_an_id_has_no_identity_and_is_rejected(name, field):
    with pytest.raises(MalformedPayload) as excinfo:
        PROVIDER.event_identity(load(name))

    assert excinfo.value.details == {"field": field}


def test_an_envelope_without_instance_has_no_identity():
    body = load("2.3.7/messages_upsert_text.json")
    del body["instance"]

    with pytest.raises(MalformedPayload) as excinfo:
        PROVIDER.event_identity(body)

    assert excinfo.value.details == {"field": "instance"}


# --- 64-bit numbers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (183245, 183245),
        ("183245", 183245),
        ({"low": 183245, "high": 0, "unsigned": True}, 183245),
        ({"low": -1794967296, "high": 0, "unsigned": True}, 2_500_000_000),  # low half past 2^31
        ({"low": 1, "high": 1, "unsigned": False}, 4_294_967_297),
        ({"low": -1, "high": -1, "unsigned": False}, -1),
        ({"low": 5, "high": 0}, 5),
        (7.0, 7),
        (None, None),
    ],
)
def test_int64_reads_numbers_decimal_strings_and_protobuf_longs(value, expected):
    assert int64(value) == expected


@pytest.mark.parametrize("value", ["ontem", True, 1.5, [1], {"size": 1}, {"low": "1", "high": 0}])
def test_int64_refuses_anything_else(value):
    with pytest.raises(ValueError):
        int64(value)


# --- authentication -----------------------------------------------------------------------------------------------


def evolution_jwt(key: str = SECRET, *, algorithm: str = "HS256", **overrides: Any) -> str:
    """A token as Evolution's generateJwtToken makes it (contract §1.2), with claims overridable."""
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook", **overrides}
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm=algorithm)


def verify(headers: dict[str, str], payload: Any = None, provider: EvolutionProvider = PROVIDER) -> bool:
    body = load("2.3.7/messages_upsert_text.json") if payload is None else payload
    return provider.verify_webhook(json.dumps(body).encode(), headers, body)


def test_a_valid_evolution_jwt_is_accepted():
    assert verify({"Authorization": f"Bearer {evolution_jwt()}"}) is True


def test_header_names_are_case_insensitive():
    assert verify({"authorization": f"bearer {evolution_jwt()}"}) is True
    assert verify({"X-CECILIA-WEBHOOK-SECRET": SECRET}) is True


def test_a_request_without_credentials_is_refused():
    assert verify({"Content-Type": "application/json", "User-Agent": "axios/1.7.9"}) is False


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer abc.def", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", evolution_jwt(), "Token x"],
)
def test_a_malformed_authorization_header_is_refused(authorization):
    assert verify({"Authorization": authorization}) is False


def test_a_jwt_whose_payload_was_changed_is_refused():
    header, _, signature = evolution_jwt().split(".")
    _, forged_payload, _ = evolution_jwt(exp=int(time.time()) + 10**6).split(".")

    assert verify({"Authorization": f"Bearer {header}.{forged_payload}.{signature}"}) is False


def test_an_expired_jwt_is_refused():
    past = int(time.time()) - 3600
    assert verify({"Authorization": f"Bearer {evolution_jwt(iat=past - 600, exp=past)}"}) is False


def test_clock_skew_within_thirty_seconds_is_tolerated_and_beyond_it_is_not():
    now = int(time.time())

    assert verify({"Authorization": f"Bearer {evolution_jwt(iat=now - 610, exp=now - 10)}"}) is True
    assert verify({"Authorization": f"Bearer {evolution_jwt(iat=now - 660, exp=now - 60)}"}) is False


def test_a_jwt_issued_in_the_future_is_refused():
    now = int(time.time())
    assert verify({"Authorization": f"Bearer {evolution_jwt(iat=now + 3600, exp=now + 4200)}"}) is False


@pytest.mark.parametrize("missing", ["exp", "iat"])
def test_a_jwt_without_exp_or_iat_is_refused(missing):
    assert verify({"Authorization": f"Bearer {evolution_jwt(**{missing: None})}"}) is False


def test_an_unsigned_alg_none_jwt_is_refused():
    now = int(time.time())
    token = jwt.encode({"iat": now, "exp": now + 600, "app": "evolution"}, None, algorithm="none")

    assert verify({"Authorization": f"Bearer {token}"}) is False


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")  # HS512 wants a longer key: beside the point
def test_a_jwt_with_another_algorithm_is_refused_even_with_the_right_secret():
    assert verify({"Authorization": f"Bearer {evolution_jwt(algorithm='HS512')}"}) is False


CLINIC_B_SECRET = "segredo-da-clinica-b-para-hs256-xx"


def test_a_jwt_signed_with_another_clinics_key_is_refused():
    other_clinic = evolution_jwt(CLINIC_B_SECRET)

    assert verify({"Authorization": f"Bearer {other_clinic}"}) is False


def test_clinic_as_valid_credentials_do_not_open_clinic_bs_webhook():
    clinic_b = EvolutionProvider(
        ChannelConfig(provider="evolution", instance="clinica-b", api_key=TOKEN, webhook_secret=CLINIC_B_SECRET)
    )

    assert verify({"Authorization": f"Bearer {evolution_jwt()}"}, provider=clinic_b) is False
    assert verify({"X-Cecilia-Webhook-Secret": SECRET}, provider=clinic_b) is False


def test_the_static_secret_header_is_accepted_and_a_wrong_one_refused():
    assert verify({"X-Cecilia-Webhook-Secret": SECRET}) is True
    assert verify({"X-Cecilia-Webhook-Secret": SECRET + "x"}) is False
    assert verify({"X-Cecilia-Webhook-Secret": ""}) is False


def test_a_payload_apikey_that_is_not_the_instance_token_is_refused_even_with_a_valid_jwt():
    body = load("2.3.7/messages_upsert_text.json")
    body["apikey"] = "00000000-0000-0000-0000-000000000000"

    assert verify({"Authorization": f"Bearer {evolution_jwt()}"}, body) is False


def test_the_payload_apikey_is_compared_exactly_so_a_different_case_is_another_token():
    body = load("2.3.7/messages_upsert_text.json")
    body["apikey"] = TOKEN.lower()

    assert verify({"Authorization": f"Bearer {evolution_jwt()}"}, body) is False


@pytest.mark.parametrize("apikey", [None, ""])
def test_a_null_or_empty_payload_apikey_is_not_checked(apikey):
    body = load("2.3.7/messages_upsert_text.json")
    body["apikey"] = apikey

    assert verify({"Authorization": f"Bearer {evolution_jwt()}"}, body) is True


def test_a_clinic_with_no_secret_configured_accepts_nothing():
    unconfigured = EvolutionProvider(ChannelConfig(provider="evolution", instance="atendimento-sp", api_key=TOKEN))

    assert verify({"Authorization": f"Bearer {jwt.encode({'iat': 1}, 'x' * 32)}"}, provider=unconfigured) is False
    assert verify({"X-Cecilia-Webhook-Secret": ""}, provider=unconfigured) is False


@pytest.mark.parametrize("payload", [[1, 2], "texto", 42])
def test_verification_never_raises_on_a_body_that_is_not_an_object(payload):
    assert verify({"Authorization": f"Bearer {evolution_jwt()}"}, payload) is True
    assert verify({"Authorization": "Bearer x"}, payload) is False
