"""Evolution REST out: the exact requests sent and how every answer maps to a result or a ProviderError.

The fake is respx behind httpx's MockTransport (the seam the adapter takes), answering with the status codes and
bodies of the contract (tests/fixtures/evolution/rest/, copied from ../shared/contracts/evolution/payloads/rest/).
A request nobody mocked fails the test, so "no call was made" is asserted by mocking nothing.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from integrations.whatsapp.base import (
    ChannelConfig,
    ChannelState,
    ConnectionUpdate,
    Kind,
    MediaContent,
    MediaRef,
    OutboundMessage,
    ProviderError,
    QrCodeUpdate,
    ReplyButton,
    SendResult,
    Template,
)
from integrations.whatsapp.evolution import CreatedInstance, EvolutionProvider

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution"
BASE = "https://evolution.minhaempresa.com.br"
TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"
GLOBAL_KEY = "B6D711FCDE4D4FD5936544120E713976"
CONFIG = ChannelConfig(
    provider="evolution", instance="atendimento-sp", api_url=BASE, api_key=TOKEN, webhook_secret="s" * 32
)
TEXT = "Olá Maria! Entregamos em Campinas sim. Posso te passar os valores?"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def rest(name: str) -> Any:
    return fixture(f"rest/{name}")


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    router = respx.MockRouter(base_url=BASE)
    yield router
    router.assert_all_called()


def make_provider(router: respx.MockRouter, config: ChannelConfig = CONFIG, **kwargs: Any) -> EvolutionProvider:
    return EvolutionProvider(config, http=httpx.Client(transport=httpx.MockTransport(router.handler)), **kwargs)


@pytest.fixture
def provider(router: respx.MockRouter) -> EvolutionProvider:
    return make_provider(router)


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def media(data: bytes = b"%PDF-1.7 fake", mime: str = "application/pdf", name: str = "orcamento-4821.pdf"):
    return MediaContent(data=data, mime_type=mime, file_name=name)


# --- send: text ---------------------------------------------------------------------------------------------------


def test_a_text_is_posted_to_send_text_with_the_instance_token_as_the_contract_shows(router, provider):
    route = router.post("/message/sendText/atendimento-sp").respond(201, json=rest("send_text_response_201.json"))

    result = provider.send(OutboundMessage(to="+55 11 98765-4321", text=TEXT, typing_delay_ms=1200))

    assert result == SendResult("3EB0C4F2A91D7E5B3C8A61", "5511987654321@s.whatsapp.net")
    request = route.calls.last.request
    assert request.headers["apikey"] == TOKEN
    assert request.headers["content-type"] == "application/json"
    assert sent_json(route) == rest("send_text_request.json")  # {number, text, delay: 1200, linkPreview: false}


def test_the_typing_delay_lengthens_the_wait_for_the_answer(router, provider):
    route = router.post("/message/sendText/atendimento-sp").respond(201, json=rest("send_text_response_201.json"))

    provider.send(OutboundMessage(to="5511987654321", text=TEXT, typing_delay_ms=4000))

    assert route.calls.last.request.extensions["timeout"]["read"] == pytest.approx(34.0)


def test_a_text_without_typing_delay_sends_no_delay(router, provider):
    route = router.post("/message/sendText/atendimento-sp").respond(201, json=rest("send_text_response_201.json"))

    provider.send(OutboundMessage(to="5511987654321", text=TEXT))

    assert sent_json(route) == {"number": "5511987654321", "text": TEXT, "linkPreview": False}


def test_a_text_with_reply_buttons_goes_as_plain_text_because_baileys_buttons_are_unreliable(router, provider):
    route = router.post("/message/sendText/atendimento-sp").respond(201, json=rest("send_text_response_201.json"))
    text = "Sua consulta é amanhã às 14h.\n1. Confirmar\n2. Remarcar"
    buttons = (ReplyButton("confirmar:8812", "Confirmar"), ReplyButton("remarcar:8812", "Remarcar"))

    provider.send(OutboundMessage(to="5511987654321", text=text, buttons=buttons))

    assert sent_json(route) == {"number": "5511987654321", "text": text, "linkPreview": False}


def test_a_reply_quotes_the_message_by_id(router, provider):
    route = router.post("/message/sendText/atendimento-sp").respond(201, json=rest("send_text_response_201.json"))

    provider.send(OutboundMessage(to="5511987654321", text="Perfeito!", quoted_message_id="3A9D2F71C4B8E06A5D13"))

    assert sent_json(route)["quoted"] == {"key": {"id": "3A9D2F71C4B8E06A5D13"}}


@pytest.mark.parametrize(
    ("to", "number"),
    [
        ("128765432109876@lid", "128765432109876@lid"),
        ("5511987654321:12@s.whatsapp.net", "5511987654321@s.whatsapp.net"),
        ("551187654321@s.whatsapp.net", "551187654321@s.whatsapp.net"),
        ("+55 (11) 98765-4321", "5511987654321"),
    ],
)
def test_the_number_is_a_jid_as_given_or_the_digits_of_an_e164_number(router, provider, to, number):
    route = router.post("/message/sendText/atendimento-sp").respond(201, json=rest("send_text_response_201.json"))

    provider.send(OutboundMessage(to=to, text=TEXT))

    assert sent_json(route)["number"] == number


def test_the_instance_name_is_quoted_in_the_path_and_a_trailing_slash_on_the_url_is_dropped():
    router = respx.MockRouter()
    route = router.post().respond(201, json=rest("send_text_response_201.json"))
    config = ChannelConfig(provider="evolution", instance="clínica sp/1", api_url=BASE + "/", api_key=TOKEN)

    make_provider(router, config).send(OutboundMessage(to="5511987654321", text=TEXT))

    assert route.calls.last.request.url.raw_path == b"/message/sendText/cl%C3%ADnica%20sp%2F1"
    assert route.calls.last.request.url.host == "evolution.minhaempresa.com.br"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (OutboundMessage(to="5511987654321", text="   "), "invalid_request"),
        (OutboundMessage(to="ligar depois", text=TEXT), "invalid_request"),
        (OutboundMessage(to="5511987654321", kind=Kind.LOCATION, text="Av. Paulista"), "unsupported_kind"),
        (OutboundMessage(to="5511987654321", template=Template("lembrete_consulta")), "unsupported_kind"),
        (OutboundMessage(to="5511987654321", kind=Kind.IMAGE), "invalid_request"),
        (OutboundMessage(to="5511987654321", kind=Kind.DOCUMENT, media=media(name="")), "invalid_request"),
    ],
)
def test_a_message_evolution_would_refuse_fails_for_good_without_calling_it(provider, message, code):
    with pytest.raises(ProviderError) as excinfo:
        provider.send(message)

    assert (excinfo.value.code, excinfo.value.permanent) == (code, True)


# --- send: media --------------------------------------------------------------------------------------------------


def test_a_document_is_sent_with_send_media_as_raw_base64_with_its_file_name(router, provider):
    route = router.post("/message/sendMedia/atendimento-sp").respond(201, json=rest("send_media_response_201.json"))
    document = media()

    result = provider.send(
        OutboundMessage(
            to="5511987654321",
            kind=Kind.DOCUMENT,
            text="Segue o orçamento atualizado",
            media=document,
            typing_delay_ms=800,
        )
    )

    assert result == SendResult("3EB0A9D3E2F1C0B7A6958473", "5511987654321@s.whatsapp.net")
    body = sent_json(route)
    assert body == {
        "number": "5511987654321",
        "mediatype": "document",
        "media": base64.b64encode(document.data).decode(),  # raw base64, no data: prefix
        "mimetype": "application/pdf",
        "fileName": "orcamento-4821.pdf",
        "caption": "Segue o orçamento atualizado",
        "delay": 800,
    }
    assert set(body) == set(rest("send_media_request.json"))  # the contract's fields, base64 instead of a URL


def test_an_image_goes_with_its_caption_and_mediatype_image(router, provider):
    route = router.post("/message/sendMedia/atendimento-sp").respond(201, json=rest("send_media_response_201.json"))

    provider.send(
        OutboundMessage(
            to="5511987654321", kind=Kind.IMAGE, text="Mapa", media=media(b"\xff\xd8\xff", "image/jpeg", "")
        )
    )

    body = sent_json(route)
    assert (body["mediatype"], body["caption"], base64.b64decode(body["media"])) == ("image", "Mapa", b"\xff\xd8\xff")
    assert "fileName" not in body


def test_a_voice_note_goes_to_send_whatsapp_audio(router, provider):
    route = router.post("/message/sendWhatsAppAudio/atendimento-sp").respond(
        201, json=rest("send_whatsapp_audio_response_201.json")
    )
    audio = media(b"OggS fake", "audio/ogg; codecs=opus", "")

    result = provider.send(
        OutboundMessage(to="5511987654321", kind=Kind.AUDIO, media=audio, voice_note=True, typing_delay_ms=1500)
    )

    # Evolution answers with the JID WhatsApp registered, here without the ninth digit.
    assert result == SendResult("3EB0B8C7D6E5F4A3B2C1D0E9", "551187654321@s.whatsapp.net")
    assert sent_json(route) == {
        "number": "5511987654321",
        "audio": base64.b64encode(b"OggS fake").decode(),
        "delay": 1500,
    }


def test_an_audio_file_that_is_not_a_voice_note_goes_to_send_media_without_caption(router, provider):
    route = router.post("/message/sendMedia/atendimento-sp").respond(201, json=rest("send_media_response_201.json"))

    provider.send(
        OutboundMessage(
            to="5511987654321", kind=Kind.AUDIO, text="ignorado", media=media(b"ID3", "audio/mpeg", "a.mp3")
        )
    )

    body = sent_json(route)
    assert (body["mediatype"], "caption" in body) == ("audio", False)


def test_media_over_the_size_limit_fails_for_good_without_calling(router):
    provider = make_provider(router, max_media_bytes=4)

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511987654321", kind=Kind.DOCUMENT, media=media(b"12345")))

    assert (excinfo.value.code, excinfo.value.permanent) == ("media_too_large", True)


# --- send: errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "permanent"),
    [
        (400, "send_text_error_400_not_on_whatsapp.json", "not_on_whatsapp", True),
        (400, "send_text_error_400_text_required.json", "invalid_request", True),
        (400, "send_text_error_400_validation.json", "invalid_request", True),
        (400, "send_media_error_400_file_name.json", "invalid_request", True),
        (400, "send_text_error_400_connection_closed.json", "channel_disconnected", False),
        (500, "error_500_connection_closed.json", "channel_disconnected", False),
        (400, "send_text_error_400_timed_out.json", "provider_unavailable", False),
        (401, "error_401_unauthorized.json", "unauthorized", True),
        (404, "error_404_instance_not_found.json", "instance_not_found", True),
    ],
)
def test_each_evolution_error_body_maps_to_one_decision(router, provider, status, body, code, permanent):
    router.post("/message/sendText/atendimento-sp").respond(status, json=rest(body))

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511900001111", text=TEXT))

    assert (excinfo.value.code, excinfo.value.permanent, excinfo.value.status) == (code, permanent, status)


@pytest.mark.parametrize(
    ("status", "content", "code", "permanent"),
    [
        (500, b"Internal Server Error", "provider_unavailable", False),
        (502, b"<html><body>Bad Gateway</body></html>", "provider_unavailable", False),
        (503, b"", "provider_unavailable", False),
        (429, b"Too Many Requests", "rate_limited", False),
        (408, b"", "timeout", False),
        (413, b"request entity too large", "media_too_large", True),
        (403, b'{"status":403,"error":"Forbidden","response":{"message":"Forbidden"}}', "unauthorized", True),
        (418, b"<html>teapot</html>", "invalid_request", True),
    ],
)
def test_answers_we_cannot_read_are_temporary_when_5xx_and_permanent_when_4xx(
    router, provider, status, content, code, permanent
):
    router.post("/message/sendText/atendimento-sp").respond(status, content=content)

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511987654321", text=TEXT))

    assert (excinfo.value.code, excinfo.value.permanent) == (code, permanent)


def test_the_staff_message_for_a_number_without_whatsapp_names_neither_number_nor_text(router, provider):
    router.post("/message/sendText/atendimento-sp").respond(400, json=rest("send_text_error_400_not_on_whatsapp.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511900001111", text=TEXT))

    assert excinfo.value.staff_message == "Este número não tem WhatsApp."
    for secret in ("5511900001111", TEXT, TOKEN):
        assert secret not in str(excinfo.value)
        assert secret not in excinfo.value.staff_message


def test_a_disconnected_channel_tells_staff_to_reconnect(router, provider):
    router.post("/message/sendText/atendimento-sp").respond(500, json=rest("error_500_connection_closed.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511987654321", text=TEXT))

    assert excinfo.value.staff_message.startswith("O WhatsApp da clínica está desconectado")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectTimeout("timed out"), "timeout"),
        (httpx.ReadTimeout("timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "provider_unavailable"),
        (httpx.RemoteProtocolError("server disconnected"), "provider_unavailable"),
    ],
)
def test_timeouts_and_network_failures_are_temporary(router, provider, error, code):
    router.post("/message/sendText/atendimento-sp").mock(side_effect=error)

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511987654321", text=TEXT))

    assert (excinfo.value.code, excinfo.value.permanent) == (code, False)


def test_a_success_without_a_message_id_is_not_retried_because_the_message_may_have_left(router, provider):
    router.post("/message/sendText/atendimento-sp").respond(201, json={"status": "PENDING"})

    with pytest.raises(ProviderError) as excinfo:
        provider.send(OutboundMessage(to="5511987654321", text=TEXT))

    assert (excinfo.value.code, excinfo.value.permanent) == ("unexpected_response", True)


@pytest.mark.parametrize("missing", ["api_url", "api_key", "instance"])
def test_an_incomplete_channel_configuration_fails_for_good_without_calling(router, missing):
    config = ChannelConfig(**{**CONFIG.__dict__, missing: ""})

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router, config).send(OutboundMessage(to="5511987654321", text=TEXT))

    assert (excinfo.value.code, excinfo.value.permanent) == ("invalid_config", True)


def test_nothing_about_the_patient_or_the_key_is_logged_when_a_send_fails(router, provider, caplog):
    caplog.set_level(logging.DEBUG)
    router.post("/message/sendText/atendimento-sp").respond(400, json=rest("send_text_error_400_not_on_whatsapp.json"))

    with pytest.raises(ProviderError):
        provider.send(OutboundMessage(to="5511900001111", text=TEXT))

    for secret in ("5511900001111", "Maria", TOKEN):
        assert secret not in caplog.text


# --- download_media -----------------------------------------------------------------------------------------------


def parsed_media(name: str) -> MediaRef:
    event = EvolutionProvider(CONFIG).parse_webhook(fixture(name))[0]
    assert event.media is not None
    return event.media


def test_media_is_fetched_with_get_base64_from_media_message_passing_key_and_message(router, provider):
    route = router.post("/chat/getBase64FromMediaMessage/atendimento-sp").respond(
        201, json=rest("get_base64_from_media_message_response_201.json")
    )
    webhook = fixture("2.3.7/messages_upsert_audio_ptt.json")

    content = provider.download_media(parsed_media("2.3.7/messages_upsert_audio_ptt.json"))

    assert sent_json(route) == {
        "message": {"key": webhook["data"]["key"], "message": webhook["data"]["message"]},
        "convertToMp4": False,
    }
    assert route.calls.last.request.headers["apikey"] == TOKEN
    expected = base64.b64decode(rest("get_base64_from_media_message_response_201.json")["base64"])
    assert content == MediaContent(expected, "audio/ogg; codecs=opus", "B7E2D94A1C6F08E3B5A7D9C1E3F50824.oga")


def test_media_already_in_the_webhook_is_decoded_without_calling_evolution(router, provider):
    webhook = fixture("2.3.6/messages_upsert_image_base64.json")

    content = provider.download_media(parsed_media("2.3.6/messages_upsert_image_base64.json"))

    assert content.data == base64.b64decode(webhook["data"]["message"]["base64"])
    assert content.mime_type == "image/jpeg"


def test_media_announced_bigger_than_the_limit_is_refused_before_any_download(router, provider):
    with pytest.raises(ProviderError) as excinfo:
        provider.download_media(parsed_media("2.3.7/messages_upsert_audio_ptt.json"), max_bytes=1000)

    assert (excinfo.value.code, excinfo.value.permanent) == ("media_too_large", True)


def test_inline_media_bigger_than_the_limit_is_refused(provider):
    ref = MediaRef(mime_type="image/jpeg", inline_base64=base64.b64encode(b"x" * 100).decode())

    with pytest.raises(ProviderError) as excinfo:
        provider.download_media(ref, max_bytes=50)

    assert excinfo.value.code == "media_too_large"


def test_a_downloaded_file_bigger_than_the_limit_is_refused(router):
    ref = MediaRef(provider_data={"key": {"id": "X"}, "message": {"imageMessage": {}}})
    big = {"mimetype": "image/jpeg", "fileName": "x.jpg", "base64": base64.b64encode(b"x" * 3000).decode()}
    router.post("/chat/getBase64FromMediaMessage/atendimento-sp").respond(201, json=big)

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router, max_media_bytes=2000).download_media(ref)

    assert (excinfo.value.code, excinfo.value.permanent) == ("media_too_large", True)


def test_a_runaway_answer_is_not_read_past_the_limit(router):
    ref = MediaRef(provider_data={"key": {"id": "X"}, "message": {"imageMessage": {}}})
    router.post("/chat/getBase64FromMediaMessage/atendimento-sp").respond(201, content=b"A" * 200_000)

    with pytest.raises(ProviderError) as excinfo:
        make_provider(router).download_media(ref, max_bytes=10)

    assert excinfo.value.code == "media_too_large"


@pytest.mark.parametrize(
    ("status", "body", "code", "permanent"),
    [
        (400, "get_base64_error_400_not_found.json", "media_unavailable", True),
        (500, "error_500_connection_closed.json", "channel_disconnected", False),
    ],
)
def test_a_failed_download_says_whether_to_retry(router, provider, status, body, code, permanent):
    router.post("/chat/getBase64FromMediaMessage/atendimento-sp").respond(status, json=rest(body))

    with pytest.raises(ProviderError) as excinfo:
        provider.download_media(parsed_media("2.3.6/messages_upsert_video.json"))

    assert (excinfo.value.code, excinfo.value.permanent) == (code, permanent)


def test_media_without_what_download_needs_is_unavailable(provider):
    with pytest.raises(ProviderError) as excinfo:
        provider.download_media(MediaRef(mime_type="image/jpeg"))

    assert (excinfo.value.code, excinfo.value.permanent) == ("media_unavailable", True)


# --- mark_read and connection state -------------------------------------------------------------------------------


def test_mark_read_posts_the_contract_body(router, provider):
    route = router.post("/chat/markMessageAsRead/atendimento-sp").respond(
        201, json=rest("mark_message_as_read_response_201.json")
    )

    provider.mark_read(chat_id="5511987654321@s.whatsapp.net", provider_message_id="A1F3C5E7092B4D6F8A0C2E4F6B8D0A13")

    assert sent_json(route) == rest("mark_message_as_read_request.json")


def test_mark_read_turns_a_bare_number_into_a_phone_jid(router, provider):
    route = router.post("/chat/markMessageAsRead/atendimento-sp").respond(
        201, json=rest("mark_message_as_read_response_201.json")
    )

    provider.mark_read(chat_id="5511987654321", provider_message_id="A1F3C5E7092B4D6F8A0C2E4F6B8D0A13")

    assert sent_json(route) == rest("mark_message_as_read_request.json")


def test_mark_read_skips_lid_chats_that_evolution_would_drop_silently(router, provider):
    provider.mark_read(chat_id="128765432109876@lid", provider_message_id="A1F3C5E7092B4D6F8A0C2E4F6B8D0A13")

    assert router.calls.call_count == 0


def test_mark_read_with_a_refused_key_fails_for_good(router, provider):
    router.post("/chat/markMessageAsRead/atendimento-sp").respond(401, json=rest("error_401_unauthorized.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.mark_read(chat_id="5511987654321@s.whatsapp.net", provider_message_id="A1")

    assert (excinfo.value.code, excinfo.value.permanent) == ("unauthorized", True)


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ("connection_state_response_200.json", ChannelState.OPEN),
        ("connection_state_response_connecting.json", ChannelState.CONNECTING),
        ("connection_state_response_not_loaded.json", ChannelState.UNKNOWN),
    ],
)
def test_connection_state_reads_the_instance_state(router, provider, body, state):
    route = router.get("/instance/connectionState/atendimento-sp").respond(200, json=rest(body))

    assert provider.connection_state() is state
    assert route.calls.last.request.headers["apikey"] == TOKEN


def test_connection_state_of_an_unknown_instance_is_a_permanent_error(router, provider):
    router.get("/instance/connectionState/atendimento-sp").respond(404, json=rest("error_404_instance_not_found.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.connection_state()

    assert (excinfo.value.code, excinfo.value.permanent) == ("instance_not_found", True)


# --- connecting a number ------------------------------------------------------------------------------------------


def test_create_instance_uses_the_global_key_and_returns_token_and_first_qr_code(router):
    route = router.post("/instance/create").respond(201, json=rest("create_instance_response_201.json"))
    config = ChannelConfig(provider="evolution", instance="atendimento-sp", api_url=BASE)

    created = make_provider(router, config).create_instance(global_api_key=GLOBAL_KEY)

    assert route.calls.last.request.headers["apikey"] == GLOBAL_KEY
    assert sent_json(route) == rest("create_instance_request.json")
    assert created.instance_name == "atendimento-sp"
    assert created.instance_id == "6f1c2b7e-4d3a-4f8e-9b21-7c5e0a9d3f42"
    assert created.token == TOKEN
    assert isinstance(created.qr, QrCodeUpdate)
    assert created.qr.qr_code.startswith("2@")


def test_create_instance_can_choose_the_instance_token(router, provider):
    route = router.post("/instance/create").respond(201, json=rest("create_instance_response_201.json"))

    provider.create_instance(global_api_key=GLOBAL_KEY, token=TOKEN)

    assert sent_json(route)["token"] == TOKEN


def test_create_instance_reads_the_v1_hash_shape_too(router, provider):
    answer = {**rest("create_instance_response_201.json"), "hash": {"apikey": TOKEN}, "qrcode": None}
    router.post("/instance/create").respond(201, json=answer)

    assert provider.create_instance(global_api_key=GLOBAL_KEY) == CreatedInstance(
        "atendimento-sp", "6f1c2b7e-4d3a-4f8e-9b21-7c5e0a9d3f42", TOKEN, None
    )


def test_creating_an_instance_whose_name_is_taken_fails_for_good(router, provider):
    router.post("/instance/create").respond(403, json=rest("create_instance_error_403_name_in_use.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.create_instance(global_api_key=GLOBAL_KEY)

    assert (excinfo.value.code, excinfo.value.permanent) == ("instance_name_taken", True)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("connect_response_open.json", ConnectionUpdate(ChannelState.OPEN)),
        ("connect_response_no_qrcode_yet.json", ConnectionUpdate(ChannelState.CONNECTING)),
    ],
)
def test_connect_reports_the_state_when_there_is_no_qr_code_to_show(router, provider, body, expected):
    router.get("/instance/connect/atendimento-sp").respond(200, json=rest(body))

    assert provider.connect() == expected


def test_connect_returns_the_qr_code_to_pair(router, provider):
    answer = rest("connect_response_qrcode.json")
    router.get("/instance/connect/atendimento-sp").respond(200, json=answer)

    assert provider.connect() == QrCodeUpdate(answer["code"], answer["base64"], "")


def test_connect_failing_inside_evolution_is_temporary(router, provider):
    router.get("/instance/connect/atendimento-sp").respond(200, json=rest("connect_response_error.json"))

    with pytest.raises(ProviderError) as excinfo:
        provider.connect()

    assert excinfo.value.permanent is False


def test_set_webhook_posts_the_nested_body_with_the_jwt_key_header(router, provider):
    route = router.post("/webhook/set/atendimento-sp").respond(201, json=rest("webhook_set_response_201.json"))
    expected = rest("webhook_set_request.json")
    expected["webhook"]["headers"] = {"jwt_key": "segredo-compartilhado-para-hs256"}

    provider.set_webhook(
        "https://crm.minhaempresa.com.br/webhooks/evolution",
        events=expected["webhook"]["events"],
        jwt_key="segredo-compartilhado-para-hs256",
    )

    assert sent_json(route) == expected


def test_set_webhook_by_events_drops_a_trailing_slash_so_suffixes_do_not_double_it(router, provider):
    route = router.post("/webhook/set/atendimento-sp").respond(201, json=rest("webhook_set_response_201.json"))

    provider.set_webhook(
        "https://crm.example.com.br/webhooks/whatsapp/evolution/", ["MESSAGES_UPSERT"], "k" * 32, by_events=True
    )

    webhook = sent_json(route)["webhook"]
    assert (webhook["url"], webhook["byEvents"]) == ("https://crm.example.com.br/webhooks/whatsapp/evolution", True)


@pytest.mark.parametrize(
    ("url", "jwt_key", "by_events"),
    [
        ("crm.example.com.br/webhook", "k" * 32, False),  # Evolution silently never delivers without http(s)://
        ("https://crm.example.com.br/webhook?t=1", "k" * 32, True),  # suffix would land in the query string
        ("https://crm.example.com.br/webhook", "", False),
    ],
)
def test_a_webhook_evolution_could_never_deliver_is_refused(router, provider, url, jwt_key, by_events):
    with pytest.raises(ProviderError) as excinfo:
        provider.set_webhook(url, ["MESSAGES_UPSERT"], jwt_key, by_events=by_events)

    assert (excinfo.value.code, excinfo.value.permanent) == ("invalid_config", True)
