"""Meta WhatsApp Cloud API: signature, handshake, parsing (fixtures in tests/fixtures/meta) and the Graph API calls.

Inbound fixtures are in Meta's wire form (compact JSON, non-ASCII escaped); `text_inbound.json` is the contract's file,
byte for byte, with its HMAC test vector (contract §5). Graph answers live in tests/fixtures/meta/graph/.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from integrations.whatsapp.base import (
    ChannelConfig,
    ChannelState,
    DeliveryStatus,
    Ignored,
    InboundMessage,
    Kind,
    Location,
    MalformedPayload,
    MediaContent,
    MediaRef,
    OutboundMessage,
    ProviderError,
    ReplyButton,
    SendResult,
    StatusUpdate,
    Template,
)
from integrations.whatsapp.meta_cloud import MetaCloudProvider

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "meta"
APP_SECRET = "meta_app_secret_de_teste"
CONTRACT_SIGNATURE = "sha256=f4e448bb03215c3106059958a45020e638caa068024017e32b235fb73aef85a7"
PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "EAAGm0PX4ZCpsBAKZB1fake0token0for0tests"
VERIFY_TOKEN = "token-de-verificacao-da-clinica"
GRAPH = "https://graph.facebook.com/v21.0"
CONFIG = ChannelConfig(
    provider="meta",
    instance=PHONE_NUMBER_ID,
    api_key=ACCESS_TOKEN,
    webhook_secret=APP_SECRET,
    verify_token=VERIFY_TOKEN,
)
PROVIDER = MetaCloudProvider(CONFIG)
MARIA = "5511987654321"
SENT_ID = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjk5NDU1NjY3Nzg4OTkwMDExMjIzAA=="


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load(name: str) -> Any:
    return json.loads(raw(name))


def events(name: str) -> list[Any]:
    return PROVIDER.parse_webhook(load(name))


def message(name: str) -> InboundMessage:
    (event,) = events(name)
    assert isinstance(event, InboundMessage), event
    return event


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- signature and handshake --------------------------------------------------------------------------------------


def test_the_contract_test_vector_is_accepted_over_the_exact_file_bytes():
    body = raw("text_inbound.json")
    assert sign(body) == CONTRACT_SIGNATURE  # the fixture is the contract's file, byte for byte

    assert PROVIDER.verify_webhook(body, {"X-Hub-Signature-256": CONTRACT_SIGNATURE}, json.loads(body)) is True


def test_the_signature_header_name_is_case_insensitive():
    body = raw("text_inbound.json")

    assert PROVIDER.verify_webhook(body, {"x-hub-signature-256": CONTRACT_SIGNATURE}, None) is True


def test_a_signature_over_re_serialised_json_is_refused_because_only_the_raw_bytes_count():
    body = raw("text_inbound.json")
    reserialised = json.dumps(json.loads(body)).encode()

    assert PROVIDER.verify_webhook(body, {"X-Hub-Signature-256": sign(reserialised)}, None) is False


@pytest.mark.parametrize(
    "header",
    [
        CONTRACT_SIGNATURE[:-1] + ("0" if CONTRACT_SIGNATURE[-1] != "0" else "1"),  # one digit off
        CONTRACT_SIGNATURE.removeprefix("sha256="),  # no scheme
        "sha1=" + CONTRACT_SIGNATURE.removeprefix("sha256="),
        "sha256=",
        "sha256=zzzz",
        "sha256=é" + CONTRACT_SIGNATURE[8:],
        "",
    ],
)
def test_a_wrong_or_malformed_signature_is_refused(header):
    assert PROVIDER.verify_webhook(raw("text_inbound.json"), {"X-Hub-Signature-256": header}, None) is False


def test_a_request_without_signature_is_refused():
    assert PROVIDER.verify_webhook(raw("text_inbound.json"), {"Content-Type": "application/json"}, None) is False


def test_a_body_changed_after_signing_is_refused():
    body = raw("text_inbound.json").replace(b"Campinas", b"Curitiba")

    assert PROVIDER.verify_webhook(body, {"X-Hub-Signature-256": CONTRACT_SIGNATURE}, None) is False


def test_another_apps_secret_does_not_verify_this_clinics_webhook():
    other = MetaCloudProvider(ChannelConfig(provider="meta", instance=PHONE_NUMBER_ID, webhook_secret="outro_segredo"))

    assert other.verify_webhook(raw("text_inbound.json"), {"X-Hub-Signature-256": CONTRACT_SIGNATURE}, None) is False


def test_a_clinic_without_an_app_secret_accepts_nothing():
    unconfigured = MetaCloudProvider(ChannelConfig(provider="meta", instance=PHONE_NUMBER_ID))
    body = raw("text_inbound.json")

    assert unconfigured.verify_webhook(body, {"X-Hub-Signature-256": sign(body, "")}, None) is False


def test_the_subscription_handshake_echoes_the_challenge_for_the_right_token():
    assert PROVIDER.verify_subscription("subscribe", VERIFY_TOKEN, "1158201444") == "1158201444"


@pytest.mark.parametrize(
    ("mode", "token", "challenge"),
    [
        ("subscribe", "token-errado", "1158201444"),
        ("subscribe", None, "1158201444"),
        ("unsubscribe", VERIFY_TOKEN, "1158201444"),
        (None, VERIFY_TOKEN, "1158201444"),
        ("subscribe", VERIFY_TOKEN, None),
    ],
)
def test_the_subscription_handshake_refuses_anything_else(mode, token, challenge):
    assert PROVIDER.verify_subscription(mode, token, challenge) is None


def test_a_clinic_without_a_verify_token_refuses_every_handshake():
    unconfigured = MetaCloudProvider(ChannelConfig(provider="meta", instance=PHONE_NUMBER_ID))

    assert unconfigured.verify_subscription("subscribe", "", "1158201444") is None


# --- parsing ------------------------------------------------------------------------------------------------------


def test_a_text_message_names_the_patient_from_contacts_and_reads_the_string_timestamp():
    assert message("text_inbound.json") == InboundMessage(
        provider_message_id="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBOUQyRjcxQzRCOEUwNkE1RDEzAA==",
        chat_id=MARIA,
        phone=MARIA,
        lid=None,
        from_me=False,
        sender_name="Maria Souza",
        kind=Kind.TEXT,
        text="Olá, bom dia! Vocês entregam em Campinas?",
        timestamp=datetime.datetime(2025, 11, 21, 17, 32, 5, tzinfo=datetime.UTC),
    )


def test_a_reply_names_the_message_it_quotes():
    event = message("text_reply_with_context.json")

    assert event.quoted_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjk5MDAxMTIyMzM0NDU1NjY3Nzg5AA=="


@pytest.mark.parametrize(
    ("name", "kind", "text", "mime", "media_id"),
    [
        ("image.json", Kind.IMAGE, "Pedido médico", "image/jpeg", "1290834769876543"),
        ("video.json", Kind.VIDEO, "Olha o inchaço", "video/mp4", "5054321098765432"),
        ("document.json", Kind.DOCUMENT, "Resultado do exame", "application/pdf", "4065432109876543"),
        ("audio_file.json", Kind.AUDIO, "", "audio/mpeg", "3076543210987654"),
        ("sticker.json", Kind.OTHER, "", "image/webp", "6043210987654321"),
    ],
)
def test_media_messages_keep_the_media_id_for_download(name, kind, text, mime, media_id):
    event = message(name)

    assert (event.kind, event.text) == (kind, text)
    assert event.media is not None
    assert (event.media.mime_type, event.media.provider_data["id"]) == (mime, media_id)
    assert event.media.voice_note is False


def test_a_voice_note_is_audio_flagged_as_voice():
    event = message("audio_voice.json")

    assert event.kind is Kind.AUDIO
    assert event.media is not None
    assert event.media.voice_note is True


def test_a_document_keeps_its_file_name():
    event = message("document.json")

    assert event.media is not None
    assert event.media.file_name == "exame-sangue.pdf"


def test_a_location_carries_coordinates_name_and_address():
    assert message("location.json").location == Location(
        -23.5613991, -46.6565712, "Clínica Sorriso", "Av. Paulista, 1000 - Bela Vista, São Paulo - SP"
    )


def test_shared_contacts_are_listed_by_formatted_name():
    event = message("contacts.json")

    assert (event.kind, event.contacts) == (Kind.CONTACT, ("Dr. Paulo Lima", "Ana (filha)"))


@pytest.mark.parametrize(("name", "emoji"), [("reaction.json", "❤️"), ("reaction_removed.json", "")])
def test_a_reaction_names_the_emoji_or_nothing_when_removed(name, emoji):
    event = message(name)

    assert (event.kind, event.text) == (Kind.REACTION, emoji)
    assert event.reaction_to_message_id == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEjk5MDAxMTIyMzM0NDU1NjY3Nzg5AA=="


@pytest.mark.parametrize(
    ("name", "text", "option"),
    [
        ("interactive_button_reply.json", "Confirmar", "confirmar:8812"),
        ("interactive_list_reply.json", "Terça 25/11 às 14h", "slot:2025-11-25T14:00"),
        ("template_button.json", "Remarcar", "remarcar"),
    ],
)
def test_button_list_and_template_replies_give_the_selected_option_id(name, text, option):
    event = message(name)

    assert (event.kind, event.text, event.selected_option_id) == (Kind.TEXT, text, option)
    assert event.quoted_message_id.startswith("wamid.")


@pytest.mark.parametrize("name", ["interactive_flow_reply.json", "unsupported.json"])
def test_replies_and_types_cecilia_cannot_read_still_reach_staff_as_other(name):
    assert message(name).kind is Kind.OTHER


def test_a_batch_gives_every_message_in_order():
    batch = events("batch_two_messages.json")

    assert [event.text for event in batch] == ["Oi", "Queria marcar uma consulta"]


@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        ("status_sent.json", DeliveryStatus.SENT, ""),
        ("status_delivered.json", DeliveryStatus.DELIVERED, ""),
        ("status_read.json", DeliveryStatus.READ, ""),
        ("status_failed.json", DeliveryStatus.FAILED, "(#131026) Message undeliverable: Message Undeliverable."),
    ],
)
def test_statuses_update_our_message_with_the_reason_when_failed(name, status, error):
    (event,) = events(name)

    assert event == StatusUpdate(SENT_ID, status, chat_id=MARIA, timestamp=event.timestamp, error=error)
    assert event.timestamp is not None and event.timestamp.tzinfo is datetime.UTC


def test_a_failure_outside_the_24_hour_window_says_so():
    (event,) = events("status_failed_outside_window.json")

    assert event.error.startswith("(#131047) Re-engagement message")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("other_phone_number.json", "another phone number"),
        ("unused_field_template_status.json", "unused field message_template_status_update"),
        ("not_whatsapp_object.json", "not a WhatsApp Business Account notification"),
        ("status_unknown.json", "unknown message status warning"),
        ("system_number_changed.json", "system notice"),
        ("value_errors_only.json", "notification without messages or statuses"),
    ],
)
def test_what_is_not_this_clinics_business_is_ignored(name, reason):
    assert events(name) == [Ignored(reason)]


def test_a_batch_for_two_numbers_gives_this_clinics_events_and_ignores_the_others():
    batch = events("two_phone_numbers.json")

    assert isinstance(batch[0], InboundMessage) and batch[0].text == "Para a clínica A"
    assert batch[1] == Ignored("another phone number")
    assert MetaCloudProvider.phone_number_ids(load("two_phone_numbers.json")) == [PHONE_NUMBER_ID, "109876543210987"]


MALFORMED = {
    "body_is_array.json": "(body)",
    "no_entry.json": "entry",
    "entry_not_list.json": "entry",
    "changes_not_list.json": "entry[0].changes",
    "no_value.json": "entry[0].changes[0].value",
    "message_without_id.json": "entry[0].changes[0].value.messages[0].id",
    "message_without_from.json": "entry[0].changes[0].value.messages[0].from",
    "message_bad_timestamp.json": "entry[0].changes[0].value.messages[0].timestamp",
    "status_without_id.json": "entry[0].changes[0].value.statuses[0].id",
    "image_without_media_id.json": "entry[0].changes[0].value.messages[0].image.id",
    "reaction_without_message_id.json": "entry[0].changes[0].value.messages[0].reaction.message_id",
    "location_latitude_string.json": "entry[0].changes[0].value.messages[0].location.latitude",
}


def test_every_malformed_fixture_has_an_expected_path():
    assert set(MALFORMED) == {path.name for path in (FIXTURES / "malformed").glob("*.json")}


@pytest.mark.parametrize(("name", "field"), sorted(MALFORMED.items()))
def test_a_body_missing_what_it_needs_is_rejected_naming_the_path(name, field):
    with pytest.raises(MalformedPayload) as excinfo:
        events(f"malformed/{name}")

    assert excinfo.value.details == {"field": field}


def test_event_identity_is_the_same_for_a_redelivered_batch_even_reordered():
    body = load("batch_two_messages.json")
    reordered = json.loads(json.dumps(body, sort_keys=True))
    reordered["entry"][0] = dict(reversed(list(reordered["entry"][0].items())))

    identity = PROVIDER.event_identity(body)
    assert identity == PROVIDER.event_identity(reordered)
    assert len(identity) == 64 and int(identity, 16) >= 0


def test_event_identity_differs_between_batches():
    assert PROVIDER.event_identity(load("status_sent.json")) != PROVIDER.event_identity(load("status_delivered.json"))


# --- outbound -----------------------------------------------------------------------------------------------------


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    router = respx.MockRouter(base_url=GRAPH)
    yield router
    router.assert_all_called()


def make_provider(router: respx.MockRouter, config: ChannelConfig = CONFIG, **kwargs: Any) -> MetaCloudProvider:
    return MetaCloudProvider(config, http=httpx.Client(transport=httpx.MockTransport(router.handler)), **kwargs)


@pytest.fixture
def provider(router: respx.MockRouter) -> MetaCloudProvider:
    return make_provider(router)


def graph(name: str) -> Any:
    return load(f"graph/{name}")


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def test_a_text_is_sent_to_the_phone_number_with_the_bearer_token_and_no_preview(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))

    result = provider.send(OutboundMessage(to="+55 11 98765-4321", text="Olá Maria!"))

    assert result == SendResult(SENT_ID, MARIA)
    assert route.calls.last.request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert sent_json(route) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": MARIA,
        "type": "text",
        "text": {"body": "Olá Maria!", "preview_url": False},
    }


def test_a_reply_carries_the_quoted_message_as_context(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))

    provider.send(OutboundMessage(to=MARIA, text="Sim!", quoted_message_id="wamid.ABC"))

    assert sent_json(route)["context"] == {"message_id": "wamid.ABC"}


CONFIRM_TEXT = "Sua consulta é amanhã, terça, às 14h.\n1. Confirmar\n2. Remarcar"
CONFIRM = ReplyButton("confirmar:8812", "Confirmar")
RESCHEDULE = ReplyButton("remarcar:8812", "Remarcar")


def test_a_text_with_buttons_is_sent_as_an_interactive_reply_button_message(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))

    result = provider.send(
        OutboundMessage(to=MARIA, text=CONFIRM_TEXT, buttons=(CONFIRM, RESCHEDULE), quoted_message_id="wamid.ABC")
    )

    assert result == SendResult(SENT_ID, MARIA)
    assert sent_json(route) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": MARIA,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": CONFIRM_TEXT},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "confirmar:8812", "title": "Confirmar"}},
                    {"type": "reply", "reply": {"id": "remarcar:8812", "title": "Remarcar"}},
                ]
            },
        },
        "context": {"message_id": "wamid.ABC"},
    }


def test_a_button_title_past_20_characters_is_cut_with_an_ellipsis(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))
    long_title = ReplyButton("falar:8812", "Falar com a recepção agora")

    provider.send(OutboundMessage(to=MARIA, text=CONFIRM_TEXT, buttons=(CONFIRM, long_title)))

    (_, reply) = sent_json(route)["interactive"]["action"]["buttons"]
    assert reply == {"type": "reply", "reply": {"id": "falar:8812", "title": "Falar com a recepçã…"}}
    assert len(reply["reply"]["title"]) == 20


@pytest.mark.parametrize(
    ("text", "buttons"),
    [
        (CONFIRM_TEXT, (CONFIRM, RESCHEDULE, ReplyButton("cancelar", "Cancelar"), ReplyButton("outro", "Outro"))),
        ("x" * 1025, (CONFIRM,)),
        (CONFIRM_TEXT, (ReplyButton("x" * 257, "Confirmar"),)),
        (CONFIRM_TEXT, (ReplyButton("", "Confirmar"),)),
        (CONFIRM_TEXT, (ReplyButton("confirmar", " "),)),
        (CONFIRM_TEXT, (CONFIRM, ReplyButton("confirmar:8812", "Sim"))),
        (CONFIRM_TEXT, (ReplyButton("a", "Confirmar presença hoje"), ReplyButton("b", "Confirmar presença amanhã"))),
    ],
    ids=["four_buttons", "long_body", "long_id", "empty_id", "blank_title", "same_id", "same_title_once_cut"],
)
def test_buttons_meta_would_refuse_fall_back_to_the_plain_text(router, provider, text, buttons):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))

    provider.send(OutboundMessage(to=MARIA, text=text, buttons=buttons))

    body = sent_json(route)
    assert (body["type"], body["text"], "interactive" in body) == ("text", {"body": text, "preview_url": False}, False)


def test_a_template_ignores_buttons(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_template_response_200.json"))

    provider.send(OutboundMessage(to=MARIA, template=Template("boas_vindas"), buttons=(CONFIRM,)))

    assert sent_json(route)["type"] == "template"


def test_a_template_is_sent_with_its_language_and_body_parameters(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_template_response_200.json"))
    template = Template("lembrete_consulta", "pt_BR", ("Maria", "terça 25/11 às 14h"))

    result = provider.send(OutboundMessage(to=MARIA, text="ignorado fora da janela", template=template))

    assert result.provider_message_id == SENT_ID
    body = sent_json(route)
    assert (body["type"], "text" in body) == ("template", False)
    assert body["template"] == {
        "name": "lembrete_consulta",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Maria"}, {"type": "text", "text": "terça 25/11 às 14h"}],
            }
        ],
    }


def test_a_template_without_parameters_has_no_components(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_template_response_200.json"))

    provider.send(OutboundMessage(to=MARIA, template=Template("boas_vindas")))

    assert sent_json(route)["template"] == {"name": "boas_vindas", "language": {"code": "pt_BR"}}


@pytest.mark.parametrize(
    ("kind", "mime", "name", "caption", "expected"),
    [
        (Kind.IMAGE, "image/jpeg", "", "Mapa", {"id": "7032109876543210", "caption": "Mapa"}),
        (
            Kind.DOCUMENT,
            "application/pdf",
            "orientacoes.pdf",
            "Leia antes",
            {"id": "7032109876543210", "caption": "Leia antes", "filename": "orientacoes.pdf"},
        ),
        (Kind.AUDIO, "audio/ogg", "", "sem legenda", {"id": "7032109876543210"}),
        (Kind.VIDEO, "video/mp4", "", "", {"id": "7032109876543210"}),
    ],
)
def test_media_is_uploaded_first_then_sent_by_id(router, provider, kind, mime, name, caption, expected):
    upload = router.post(f"/{PHONE_NUMBER_ID}/media").respond(200, json=graph("media_upload_response_200.json"))
    send = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))

    provider.send(
        OutboundMessage(to=MARIA, kind=kind, text=caption, media=MediaContent(b"bytes-do-arquivo", mime, name))
    )

    request = upload.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    form = request.content
    assert b'name="messaging_product"\r\n\r\nwhatsapp' in form
    assert f'name="type"\r\n\r\n{mime}'.encode() in form
    assert b"bytes-do-arquivo" in form
    body = sent_json(send)
    assert body["type"] == kind.value
    assert body[kind.value] == expected


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (OutboundMessage(to="128765432109876@lid", text="Oi"), "invalid_request"),
        (OutboundMessage(to=MARIA, text=" "), "invalid_request"),
        (OutboundMessage(to=MARIA, kind=Kind.CONTACT), "unsupported_kind"),
        (OutboundMessage(to=MARIA, kind=Kind.IMAGE, media=MediaContent(b"x", "", "")), "invalid_request"),
    ],
)
def test_a_message_meta_would_refuse_fails_for_good_without_calling(provider, message, code):
    with pytest.raises(ProviderError) as excinfo:
        provider.send(message)

    assert (excinfo.value.code, excinfo.value.permanent) == (code, True)


@pytest.mark.parametrize(
    ("status", "body", "code", "permanent"),
    [
        (400, "error_131047_reengagement.json", "outside_24h_window", True),
        (400, "error_131026_undeliverable.json", "undeliverable", True),
        (400, "error_131051_unsupported.json", "unsupported_kind", True),
        (400, "error_131053_media_upload.json", "media_upload_failed", True),
        (400, "error_100_invalid_parameter.json", "invalid_request", True),
        (404, "error_132001_template_missing.json", "template_error", True),
        (401, "error_190_token_expired.json", "unauthorized", True),
        (403, "error_368_policy_block.json", "account_restricted", True),
        (400, "error_4_app_rate_limit.json", "rate_limited", False),
        (400, "error_80007_waba_rate_limit.json", "rate_limited", False),
        (400, "error_130429_throughput.json", "rate_limited", False),
        (400, "error_131048_spam_rate_limit.json", "rate_limited", False),
        (400, "error_131056_pair_rate_limit.json", "rate_limited", False),
        (500, "error_131000_something_wrong.json", "provider_unavailable", False),
    ],
)
def test_each_graph_error_code_maps_to_one_decision(router, provider, status, body, code, permanent):
    router.post(f"/{PHONE_NUMBER_ID}/messages").respond(status, json=graph(body))

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to=MARIA, text="Olá"))

    assert (excinfo.value.code, excinfo.value.permanent) == (code, permanent)


def test_outside_the_24_hour_window_staff_are_told_only_a_template_can_go(router, provider):
    router.post(f"/{PHONE_NUMBER_ID}/messages").respond(400, json=graph("error_131047_reengagement.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to=MARIA, text="Olá"))

    assert "24 horas" in excinfo.value.staff_message
    assert "modelo de mensagem aprovado" in excinfo.value.staff_message
    assert MARIA not in str(excinfo.value)


@pytest.mark.parametrize(
    ("status", "content", "code", "permanent"),
    [
        (502, b"<html>Bad Gateway</html>", "provider_unavailable", False),
        (503, b"", "provider_unavailable", False),
        (429, b"", "rate_limited", False),
        (401, b"", "unauthorized", True),
        (400, b"nonsense", "invalid_request", True),
    ],
)
def test_graph_answers_without_an_error_envelope_fall_back_on_the_http_status(
    router, provider, status, content, code, permanent
):
    router.post(f"/{PHONE_NUMBER_ID}/messages").respond(status, content=content)

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to=MARIA, text="Olá"))

    assert (excinfo.value.code, excinfo.value.permanent) == (code, permanent)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectTimeout("t"), "timeout"),
        (httpx.ReadTimeout("t"), "timeout"),
        (httpx.ConnectError("x"), "provider_unavailable"),
    ],
)
def test_timeouts_and_network_failures_are_temporary(router, provider, error, code):
    router.post(f"/{PHONE_NUMBER_ID}/messages").mock(side_effect=error)

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to=MARIA, text="Olá"))

    assert (excinfo.value.code, excinfo.value.permanent) == (code, False)


def test_a_configured_graph_url_is_used_instead_of_the_default():
    router = respx.MockRouter(base_url="https://graph.example.test/v22.0")
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("send_response_200.json"))
    config = ChannelConfig(**{**CONFIG.__dict__, "api_url": "https://graph.example.test/v22.0/"})

    make_provider(router, config).send(OutboundMessage(to=MARIA, text="Olá"))

    assert route.called


def test_a_missing_access_token_fails_for_good_without_calling(router):
    config = ChannelConfig(**{**CONFIG.__dict__, "api_key": ""})

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router, config).send(OutboundMessage(to=MARIA, text="Olá"))

    assert (excinfo.value.code, excinfo.value.permanent) == ("invalid_config", True)


# --- download, mark_read, connection state ------------------------------------------------------------------------

MEDIA_URL = graph("media_info_response_200.json")["url"]


def voice_note() -> MediaRef:
    media = message("audio_voice.json").media
    assert media is not None
    return media


def test_media_is_downloaded_through_its_short_lived_url_with_the_same_token():
    router = respx.MockRouter()
    info = router.get(f"{GRAPH}/2087654321098765").respond(200, json=graph("media_info_response_200.json"))
    fetch = router.get(MEDIA_URL).respond(200, content=b"OggS audio", headers={"content-type": "audio/ogg"})

    content = make_provider(router).download_media(voice_note())

    assert info.calls.last.request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert fetch.calls.last.request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert (content.data, content.mime_type) == (b"OggS audio", "audio/ogg")
    assert content.file_name.startswith("2087654321098765.")


def test_a_downloaded_document_keeps_its_file_name():
    router = respx.MockRouter()
    router.get(f"{GRAPH}/4065432109876543").respond(
        200, json={**graph("media_info_response_200.json"), "mime_type": "application/pdf", "id": "4065432109876543"}
    )
    router.get(MEDIA_URL).respond(200, content=b"%PDF")

    content = make_provider(router).download_media(message("document.json").media)

    assert (content.file_name, content.mime_type) == ("exame-sangue.pdf", "application/pdf")


def test_media_announced_bigger_than_the_limit_is_not_fetched():
    router = respx.MockRouter()
    router.get(f"{GRAPH}/2087654321098765").respond(200, json=graph("media_info_response_200.json"))

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router).download_media(voice_note(), max_bytes=1000)  # file_size is 18342

    assert (excinfo.value.code, excinfo.value.permanent) == ("media_too_large", True)


def test_media_that_turns_out_bigger_than_the_limit_is_not_read_past_it():
    router = respx.MockRouter()
    router.get(f"{GRAPH}/2087654321098765").respond(
        200, json={**graph("media_info_response_200.json"), "file_size": None}
    )
    router.get(MEDIA_URL).respond(200, content=b"x" * 5000)

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router, max_media_bytes=4096).download_media(voice_note())

    assert excinfo.value.code == "media_too_large"


def test_the_token_is_never_sent_to_a_media_url_without_tls():
    router = respx.MockRouter()
    router.get(f"{GRAPH}/2087654321098765").respond(
        200, json={**graph("media_info_response_200.json"), "url": "http://lookaside.fbsbx.com/x"}
    )

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router).download_media(voice_note())

    assert excinfo.value.code == "unexpected_response"


@pytest.mark.parametrize(
    ("info_status", "info_body", "url_status", "code", "permanent"),
    [
        (400, graph("error_131052_media_download.json"), None, "media_unavailable", True),
        (400, {"error": {"message": "Unsupported get request.", "code": 100}}, None, "media_unavailable", True),
        (200, graph("media_info_response_200.json"), 404, "media_unavailable", True),
        (200, graph("media_info_response_200.json"), 503, "provider_unavailable", False),
    ],
)
def test_a_failed_download_says_whether_to_retry(info_status, info_body, url_status, code, permanent):
    router = respx.MockRouter()
    router.get(f"{GRAPH}/2087654321098765").respond(info_status, json=info_body)
    if url_status is not None:
        router.get(MEDIA_URL).respond(url_status, content=b"")

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router).download_media(voice_note())

    assert (excinfo.value.code, excinfo.value.permanent) == (code, permanent)


def test_media_without_an_id_is_unavailable(provider):
    with pytest.raises(ProviderError) as excinfo:
        provider.download_media(MediaRef(mime_type="image/jpeg"))

    assert excinfo.value.code == "media_unavailable"


def test_mark_read_posts_a_read_status_for_the_message(router, provider):
    route = router.post(f"/{PHONE_NUMBER_ID}/messages").respond(200, json=graph("mark_read_response_200.json"))

    provider.mark_read(chat_id=MARIA, provider_message_id="wamid.ABC")

    assert sent_json(route) == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.ABC"}


def test_connection_state_is_open_when_the_phone_number_answers(router, provider):
    route = router.get(f"/{PHONE_NUMBER_ID}").respond(200, json=graph("phone_number_response_200.json"))

    assert provider.connection_state() is ChannelState.OPEN
    assert route.calls.last.request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


@pytest.mark.parametrize(("status", "content"), [(401, json.dumps(graph("error_190_token_expired.json"))), (401, "")])
def test_connection_state_is_closed_when_meta_refuses_the_token(router, provider, status, content):
    router.get(f"/{PHONE_NUMBER_ID}").respond(status, content=content.encode())

    assert provider.connection_state() is ChannelState.CLOSE


def test_connection_state_raises_when_meta_is_unavailable(router, provider):
    router.get(f"/{PHONE_NUMBER_ID}").respond(503, content=b"")

    with pytest.raises(ProviderError) as excinfo:
        provider.connection_state()

    assert excinfo.value.permanent is False
