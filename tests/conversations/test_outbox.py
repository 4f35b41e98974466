"""The outbox: every message leaves through a queued row, is sent at most once, retried or failed visibly, paced.

Real PostgreSQL and a private Redis (broker and rate limit); the providers are faked at their wire with respx, answering
with the contract's REST payloads. A request nobody mocked fails the test, so "no call" is asserted by counting.
"""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from django.core.files.base import ContentFile
from django.db import connection
from django.urls import reverse
from django.utils import timezone, translation

from cecilia.models import WhatsAppProvider
from conversations.models import (
    AttentionReason,
    Conversation,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageKind,
    MessageStatus,
    StatusReceipt,
)
from conversations.outbox import (
    UNCONFIRMED,
    Outcome,
    OutsideWhatsAppWindow,
    message_echo_adopt,
    message_queue_outbound,
    message_retry,
    message_send,
    outbox_relay,
    sending,
)
from conversations.outbox import relay as relay_module
from integrations.whatsapp.base import Template
from tests import factories
from tests.fakes import outbox as fakes
from tests.fakes.outbox import queued_tasks
from tests.logs import default_handler_output

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EVOLUTION = "https://evolution.clinica.test"
SEND_TEXT = "/message/sendText/clinica-teste"
TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"
GRAPH = "https://graph.facebook.test/v21.0"
PHONE_NUMBER_ID = "106540352242922"
TEXT = "Olá Maria! Sua consulta está confirmada para amanhã às 9h."


def rest(name: str) -> Any:
    return json.loads((FIXTURES / "evolution" / "rest" / name).read_text(encoding="utf-8"))


def graph(name: str) -> Any:
    return json.loads((FIXTURES / "meta" / "graph" / name).read_text(encoding="utf-8"))


SENT_ID = rest("send_text_response_201.json")["key"]["id"]


def answer_with_fresh_ids(route: respx.Route) -> None:
    """Each send answers the contract's 201 with its own message id, as Evolution would."""
    ids = itertools.count(1)

    def answer(request: httpx.Request) -> httpx.Response:
        body = rest("send_text_response_201.json")
        body["key"]["id"] = f"3EB0{next(ids):018X}"
        return httpx.Response(201, json=body)

    route.side_effect = answer


@pytest.fixture(autouse=True)
def english():
    """Staff-facing reasons are asserted in the English source; the suite's default language is pt-BR."""
    with translation.override("en"):
        yield


@pytest.fixture
def clinic(db: Any) -> Any:
    return factories.clinic(
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance="clinica-teste",
        whatsapp_api_url=EVOLUTION,
        whatsapp_api_key=TOKEN,
    )


def conversation_for(clinic: Any, **patient: Any) -> Conversation:
    return Conversation.objects.create(
        clinic=clinic, patient=factories.patient(clinic, **patient), last_inbound_at=timezone.now()
    )


@pytest.fixture
def conversation(clinic: Any) -> Conversation:
    return conversation_for(clinic, phone="+5511987654321")


@pytest.fixture
def evolution() -> Any:
    with respx.mock(base_url=EVOLUTION, assert_all_called=False) as router:
        yield router


def queue(conversation: Conversation, text: str = TEXT, **kwargs: Any) -> Message:
    return message_queue_outbound(conversation=conversation, text=text, author=MessageAuthor.AI, **kwargs)


def later(seconds: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(seconds=seconds)


# --- queueing --------------------------------------------------------------------------------------------------------


def test_a_message_is_a_queued_row_first_and_its_send_is_enqueued_when_the_transaction_commits(
    conversation, django_capture_on_commit_callbacks, outbox_redis
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = queue(conversation)
        assert Message.objects.get(pk=message.pk).status == MessageStatus.QUEUED
        assert queued_tasks(outbox_redis) == []

    assert len(callbacks) == 2, "the send and the live event for an open transcript"
    assert queued_tasks(outbox_redis) == [("conversations.outbox.message_send_task", [message.pk])]
    assert (message.direction, message.author, message.kind) == (
        MessageDirection.OUTBOUND,
        MessageAuthor.AI,
        MessageKind.TEXT,
    )


def test_a_message_queued_in_a_transaction_that_rolls_back_is_never_sent(
    conversation, django_capture_on_commit_callbacks
):
    from django.db import transaction

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        queue(conversation)
        raise RuntimeError("the booking failed")

    assert callbacks == []
    assert not Message.objects.filter(conversation=conversation).exists()


def test_a_broker_outage_at_commit_is_logged_and_leaves_the_row_queued_for_the_relay(
    conversation, django_capture_on_commit_callbacks, private_redis
):
    private_redis.stop()
    try:
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            message = queue(conversation)
        assert time.monotonic() - started < 10
    finally:
        private_redis.start()

    assert Message.objects.get(pk=message.pk).status == MessageStatus.QUEUED


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"text": "  "}, "needs text"),
        ({"kind": MessageKind.DOCUMENT}, "needs its file"),
        ({"kind": MessageKind.LOCATION}, "cannot be sent"),
        ({"author": MessageAuthor.PATIENT}, "Patients"),
    ],
)
def test_a_message_that_cannot_be_sent_as_asked_is_refused_before_any_row_is_written(conversation, kwargs, problem):
    arguments = {"conversation": conversation, "text": TEXT, "author": MessageAuthor.AI, **kwargs}
    with pytest.raises(ValueError, match=problem):
        message_queue_outbound(**arguments)

    assert not Message.objects.exists()


# --- sending ---------------------------------------------------------------------------------------------------------


def test_sending_stores_the_provider_id_and_applies_the_receipts_that_arrived_before_it(
    clinic, conversation, evolution
):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    delivered_at = timezone.now()
    StatusReceipt.objects.create(
        clinic=clinic, provider_message_id=SENT_ID, status="delivered", occurred_at=delivered_at
    )
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.SENT

    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.attempts) == (MessageStatus.DELIVERED, SENT_ID, 1)
    assert message.sent_at is not None and message.delivered_at == delivered_at
    assert json.loads(route.calls.last.request.content) == {
        "number": "5511987654321",
        "text": TEXT,
        "linkPreview": False,
        "delay": 1200,
    }
    conversation.refresh_from_db()
    assert conversation.last_outbound_at == message.sent_at


def test_a_sent_message_is_not_sent_again_by_a_second_task(conversation, evolution):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    message = queue(conversation)
    message_send(message_id=message.pk)

    assert message_send(message_id=message.pk) == Outcome.SKIPPED
    assert route.call_count == 1


def test_a_temporary_error_is_retried_with_backoff_and_jitter_and_then_delivered(conversation, evolution):
    route = evolution.post(SEND_TEXT)
    route.side_effect = [
        httpx.Response(500, json=rest("error_500_connection_closed.json")),
        httpx.Response(201, json=rest("send_text_response_201.json")),
    ]
    message = queue(conversation)
    before = timezone.now()

    assert message_send(message_id=message.pk, now=before) == Outcome.RETRY
    message.refresh_from_db()
    assert message.status == MessageStatus.QUEUED and message.attempts == 1
    assert datetime.timedelta(seconds=4) <= message.next_attempt_at - before <= datetime.timedelta(seconds=6)
    assert message.error.startswith("O WhatsApp da clínica está desconectado")  # staff see why it waits

    assert message_send(message_id=message.pk, now=before) == Outcome.SKIPPED  # not due yet
    assert route.call_count == 1

    assert message_send(message_id=message.pk, now=message.next_attempt_at) == Outcome.SENT
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error, message.error_code) == (MessageStatus.SENT, 2, "", "")
    assert route.call_count == 2


def test_the_backoff_doubles_each_attempt_within_twenty_percent_and_is_capped(settings):
    settings.WHATSAPP_SEND_RETRY_BASE_SECONDS = 5.0
    from conversations.outbox.pacing import backoff_seconds

    for attempt, nominal in [(1, 5), (2, 10), (3, 20), (4, 40), (7, 300), (12, 300)]:
        waits = [backoff_seconds(attempt) for _ in range(200)]
        assert nominal * 0.8 <= min(waits) and max(waits) <= nominal * 1.2
        assert max(waits) - min(waits) > nominal * 0.1  # jittered, not fixed


def test_a_message_is_failed_with_the_last_reason_after_the_last_attempt(settings, conversation, evolution):
    settings.WHATSAPP_SEND_MAX_ATTEMPTS = 2
    route = evolution.post(SEND_TEXT).respond(503, content=b"")
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.RETRY
    message.refresh_from_db()
    assert message_send(message_id=message.pk, now=message.next_attempt_at) == Outcome.FAILED

    message.refresh_from_db()
    assert (message.status, message.error_code, route.call_count) == (MessageStatus.FAILED, "gave_up", 2)
    assert "2" in message.error and "indisponível" in message.error


def test_a_number_not_on_whatsapp_fails_at_once_with_a_reason_staff_can_read_and_flags_the_conversation(
    conversation, evolution
):
    route = evolution.post(SEND_TEXT).respond(400, json=rest("send_text_error_400_not_on_whatsapp.json"))
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.FAILED
    assert message_send(message_id=message.pk, now=later(3600)) == Outcome.SKIPPED
    assert outbox_relay(now=later(3600)).enqueued == 0

    message.refresh_from_db()
    assert (message.status, message.error, message.error_code) == (
        MessageStatus.FAILED,
        "Este número não tem WhatsApp.",
        "not_on_whatsapp",
    )
    assert message.failed_at is not None and route.call_count == 1
    conversation.refresh_from_db()
    assert (conversation.needs_attention, conversation.attention_reason) == (True, AttentionReason.FAILED_SEND)


def test_a_refused_api_key_fails_the_message_without_retrying(conversation, evolution):
    route = evolution.post(SEND_TEXT).respond(401, json=rest("error_401_unauthorized.json"))
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.FAILED

    message.refresh_from_db()
    assert (message.status, message.error_code, route.call_count) == (MessageStatus.FAILED, "unauthorized", 1)
    assert message.error.startswith("A chave da API do WhatsApp foi recusada")


def test_a_conversation_already_flagged_for_an_emergency_keeps_its_reason_when_a_send_fails(conversation, evolution):
    Conversation.objects.filter(pk=conversation.pk).update(
        needs_attention=True, attention_reason=AttentionReason.EMERGENCY
    )
    evolution.post(SEND_TEXT).respond(400, json=rest("send_text_error_400_not_on_whatsapp.json"))

    message_send(message_id=queue(conversation).pk)

    conversation.refresh_from_db()
    assert conversation.attention_reason == AttentionReason.EMERGENCY


def test_a_connection_that_was_never_made_is_retried(conversation, evolution):
    evolution.post(SEND_TEXT).mock(side_effect=httpx.ConnectError("connection refused"))
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.RETRY
    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.QUEUED, "provider_unavailable")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ReadTimeout("the provider took too long"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
        httpx.Response(504, content=b"<html>Gateway Time-out</html>"),
        httpx.Response(201, json={"status": "PENDING"}),
    ],
    ids=["read-timeout", "dropped-connection", "gateway-timeout", "success-without-an-id"],
)
def test_a_failure_after_the_request_may_have_arrived_is_marked_unconfirmed_and_never_resent(
    conversation, evolution, answer
):
    route = evolution.post(SEND_TEXT).mock(side_effect=[answer])
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.FAILED
    assert message_send(message_id=message.pk, now=later(3600)) == Outcome.SKIPPED
    outbox_relay(now=later(3600))

    message.refresh_from_db()
    assert (message.status, message.error_code, route.call_count) == (MessageStatus.FAILED, UNCONFIRMED, 1)
    assert "before sending it again" in message.error
    conversation.refresh_from_db()
    assert conversation.attention_reason == AttentionReason.FAILED_SEND


def test_the_console_provider_sends_locally_and_the_row_stays_for_the_simulator(db):
    clinic = factories.clinic()  # the default channel: the simulator
    conversation = conversation_for(clinic)
    message = queue(conversation)

    with respx.mock:  # any real HTTP call would fail the test
        assert message_send(message_id=message.pk) == Outcome.SENT

    message.refresh_from_db()
    assert message.status == MessageStatus.SENT and message.provider_message_id.startswith("console-")


def test_a_patient_known_only_by_whatsapps_privacy_id_is_sent_to_by_that_id(clinic, evolution):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    conversation = conversation_for(clinic, phone=None, whatsapp_id="128765432109876@lid")

    message_send(message_id=queue(conversation).pk)

    assert json.loads(route.calls.last.request.content)["number"] == "128765432109876@lid"


def test_a_patient_without_any_whatsapp_address_fails_with_a_reason(clinic, evolution):
    conversation = conversation_for(clinic, phone=None, whatsapp_id="")
    message = queue(conversation)

    assert message_send(message_id=message.pk) == Outcome.FAILED
    message.refresh_from_db()
    assert (message.error_code, message.send_started_at) == ("no_recipient", None)


def test_a_document_is_sent_with_its_file_name_type_and_caption(conversation, evolution, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    route = evolution.post("/message/sendMedia/clinica-teste").respond(201, json=rest("send_media_response_201.json"))
    message = queue(
        conversation,
        text="Segue o seu pedido de exame",
        kind=MessageKind.DOCUMENT,
        media=ContentFile(b"%PDF-1.7 pedido", name="pedido-exame.pdf"),
        media_mime_type="application/pdf",
    )

    assert message_send(message_id=message.pk) == Outcome.SENT

    body = json.loads(route.calls.last.request.content)
    assert (body["mediatype"], body["mimetype"], body["fileName"], body["caption"]) == (
        "document",
        "application/pdf",
        "pedido-exame.pdf",
        "Segue o seu pedido de exame",
    )
    assert body["media"] == "JVBERi0xLjcgcGVkaWRv"


def test_a_reply_quotes_the_patients_message_by_its_whatsapp_id(conversation, evolution):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    inbound = Message.objects.create(
        clinic=conversation.clinic,
        conversation=conversation,
        direction=MessageDirection.INBOUND,
        author=MessageAuthor.PATIENT,
        status=MessageStatus.RECEIVED,
        text="Posso levar meu filho?",
        provider_message_id="3A7F2C1B9E8D4F6A0B12",
    )

    message_send(message_id=queue(conversation, text="Pode sim!", quoted=inbound).pk)

    assert json.loads(route.calls.last.request.content)["quoted"] == {"key": {"id": "3A7F2C1B9E8D4F6A0B12"}}


def test_sends_log_ids_and_codes_but_never_the_number_or_the_text(conversation, evolution):
    evolution.post(SEND_TEXT).mock(side_effect=[httpx.ReadTimeout("t")])

    with default_handler_output() as output:
        message_send(message_id=queue(conversation).pk)

    logged = output.getvalue()
    assert "unconfirmed" in logged
    assert "5511987654321" not in logged and "98765" not in logged and TEXT not in logged


# --- the 24-hour window (Meta) -----------------------------------------------------------------------------------


@pytest.fixture
def meta_clinic(db: Any) -> Any:
    return factories.clinic(
        whatsapp_provider=WhatsAppProvider.META,
        whatsapp_instance=PHONE_NUMBER_ID,
        whatsapp_api_url=GRAPH,
        whatsapp_api_key="EAAG-token-de-teste",
    )


def silent_for(clinic: Any, hours: float | None) -> Conversation:
    conversation = conversation_for(clinic, phone="+5511987654321")
    last = None if hours is None else timezone.now() - datetime.timedelta(hours=hours)
    Conversation.objects.filter(pk=conversation.pk).update(last_inbound_at=last)
    conversation.refresh_from_db()
    return conversation


@pytest.mark.parametrize("hours", [24.01, 72, None], ids=["just-past-24h", "three-days", "never-wrote"])
def test_meta_refuses_free_text_to_a_patient_silent_for_24_hours_with_an_error_staff_can_read(meta_clinic, hours):
    conversation = silent_for(meta_clinic, hours)

    with pytest.raises(OutsideWhatsAppWindow) as excinfo:
        queue(conversation)

    assert "24 hours" in str(excinfo.value) and "template" in str(excinfo.value)
    assert not Message.objects.exists()


def test_meta_sends_an_approved_template_outside_the_window(meta_clinic):
    conversation = silent_for(meta_clinic, 48)
    template = Template(name="lembrete_consulta", language="pt_BR", body_parameters=("Maria", "amanhã às 9h"))
    message = queue(conversation, text="Lembrete: consulta amanhã às 9h", template=template)

    with respx.mock(base_url=GRAPH) as graph_api:
        route = graph_api.post(f"/{PHONE_NUMBER_ID}/messages").respond(
            200, json=graph("send_template_response_200.json")
        )
        assert message_send(message_id=message.pk) == Outcome.SENT

    body = json.loads(route.calls.last.request.content)
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "lembrete_consulta",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Maria"}, {"type": "text", "text": "amanhã às 9h"}],
            }
        ],
    }


def test_meta_sends_free_text_within_the_window_and_evolution_has_no_window(meta_clinic, clinic):
    assert queue(silent_for(meta_clinic, 23.9)).status == MessageStatus.QUEUED
    assert queue(silent_for(clinic, None)).status == MessageStatus.QUEUED


def test_metas_own_refusal_at_send_time_fails_the_message_with_metas_reason(meta_clinic):
    message = queue(silent_for(meta_clinic, 23.99))  # the window closes while it waits

    with respx.mock(base_url=GRAPH) as graph_api:
        graph_api.post(f"/{PHONE_NUMBER_ID}/messages").respond(400, json=graph("error_131047_reengagement.json"))
        assert message_send(message_id=message.pk) == Outcome.FAILED

    message.refresh_from_db()
    assert message.error_code == "outside_24h_window" and "24 horas" in message.error


# --- pacing ----------------------------------------------------------------------------------------------------------


def test_messages_of_one_chat_go_out_one_at_a_time_in_order(clinic, conversation, evolution):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    first, second = queue(conversation, text="Primeira"), queue(conversation, text="Segunda")
    other_chat = queue(conversation_for(clinic), text="Outra conversa")

    assert message_send(message_id=second.pk) == Outcome.SKIPPED  # the first is still queued
    assert message_send(message_id=other_chat.pk) == Outcome.SENT  # other chats are not held back

    route.side_effect = [
        httpx.Response(201, json={**rest("send_text_response_201.json"), "key": {"id": "ID-PRIMEIRA"}}),
        httpx.Response(201, json={**rest("send_text_response_201.json"), "key": {"id": "ID-SEGUNDA"}}),
    ]
    assert message_send(message_id=first.pk) == Outcome.SENT
    assert message_send(message_id=second.pk) == Outcome.SENT

    texts = [json.loads(call.request.content)["text"] for call in route.calls]
    assert texts == ["Outra conversa", "Primeira", "Segunda"]


def test_a_message_backing_off_holds_back_the_next_one_of_its_chat(conversation, evolution):
    evolution.post(SEND_TEXT).mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json=rest("send_text_response_201.json"))]
    )
    first, second = queue(conversation, text="Primeira"), queue(conversation, text="Segunda")
    message_send(message_id=first.pk)

    assert message_send(message_id=second.pk, now=later(3600)) == Outcome.SKIPPED
    assert Message.objects.get(pk=second.pk).attempts == 0


def test_when_a_message_is_settled_the_next_one_of_its_chat_is_enqueued(
    conversation, evolution, django_capture_on_commit_callbacks, outbox_redis
):
    evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    first, second = queue(conversation, text="Primeira"), queue(conversation, text="Segunda")

    with django_capture_on_commit_callbacks(execute=True):
        message_send(message_id=first.pk)

    assert queued_tasks(outbox_redis) == [("conversations.outbox.message_send_task", [second.pk])]


def test_over_the_numbers_rate_limit_a_message_waits_for_its_reserved_slot(settings, clinic, evolution):
    settings.WHATSAPP_SEND_PER_MINUTE = 120  # one every half second
    settings.WHATSAPP_SEND_BURST = 1
    route = evolution.post(SEND_TEXT)
    answer_with_fresh_ids(route)
    first = queue(conversation_for(clinic), text="Lembrete 1")
    second = queue(conversation_for(clinic), text="Lembrete 2")

    assert message_send(message_id=first.pk) == Outcome.SENT
    assert message_send(message_id=second.pk) == Outcome.PACED

    second.refresh_from_db()
    assert (second.status, second.attempts, route.call_count) == (MessageStatus.QUEUED, 0, 1)
    wait = (second.next_attempt_at - timezone.now()).total_seconds()
    assert 0 < wait <= 0.5
    time.sleep(wait + 0.05)
    assert message_send(message_id=second.pk) == Outcome.SENT
    assert route.call_count == 2


def test_each_clinics_number_has_its_own_rate_limit(settings, clinic, evolution):
    settings.WHATSAPP_SEND_PER_MINUTE = 1
    settings.WHATSAPP_SEND_BURST = 1
    answer_with_fresh_ids(evolution.post(SEND_TEXT))
    other = factories.clinic(
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance="outra-clinica",
        whatsapp_api_url=EVOLUTION,
        whatsapp_api_key=TOKEN,
    )
    evolution.post("/message/sendText/outra-clinica").respond(
        201, json={**rest("send_text_response_201.json"), "key": {"id": "OUTRA"}}
    )

    assert message_send(message_id=queue(conversation_for(clinic)).pk) == Outcome.SENT
    assert message_send(message_id=queue(conversation_for(clinic)).pk) == Outcome.PACED
    assert message_send(message_id=queue(conversation_for(other)).pk) == Outcome.SENT


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_of_one_message_make_one_provider_call(clinic, conversation):
    message = queue(conversation)
    gate = threading.Barrier(8)
    outcomes: list[Outcome] = []

    def send() -> None:
        gate.wait()
        try:
            outcomes.append(message_send(message_id=message.pk))
        finally:
            connection.close()

    with respx.mock(base_url=EVOLUTION) as evolution:
        route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert route.call_count == 1
    assert sorted(outcomes) == sorted([Outcome.SENT] + [Outcome.SKIPPED] * 7)


# --- the relay -------------------------------------------------------------------------------------------------------


def claimed(message: Message, *, started: bool, minutes_ago: float) -> None:
    """The row as a worker killed after claiming it (and, with `started`, after the request left) leaves it."""
    at = timezone.now() - datetime.timedelta(minutes=minutes_ago)
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENDING, claimed_at=at, attempts=1, send_started_at=at if started else None
    )


def test_the_relay_requeues_a_claim_that_never_reached_the_provider_and_it_is_sent_once(
    conversation, evolution, outbox_redis
):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    message = queue(conversation)
    claimed(message, started=False, minutes_ago=2)

    result = outbox_relay()

    assert result.requeued == 1
    assert queued_tasks(outbox_redis) == [("conversations.outbox.message_send_task", [message.pk])]
    assert message_send(message_id=message.pk) == Outcome.SENT
    assert message_send(message_id=message.pk) == Outcome.SKIPPED
    assert route.call_count == 1


def test_the_relay_marks_a_send_left_in_flight_unconfirmed_flags_the_chat_and_never_resends_it(
    conversation, evolution, outbox_redis
):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    message = queue(conversation)
    claimed(message, started=True, minutes_ago=10)

    assert outbox_relay().unconfirmed == 1
    assert outbox_relay(now=later(3600)).enqueued == 0
    assert message_send(message_id=message.pk, now=later(3600)) == Outcome.SKIPPED

    message.refresh_from_db()
    assert (message.status, message.error_code, route.call_count) == (MessageStatus.FAILED, UNCONFIRMED, 0)
    assert queued_tasks(outbox_redis) == []
    conversation.refresh_from_db()
    assert conversation.attention_reason == AttentionReason.FAILED_SEND


def test_the_relay_stops_requeueing_a_message_whose_workers_keep_dying_before_it_leaves(settings, conversation):
    settings.WHATSAPP_SEND_MAX_ATTEMPTS = 3
    message = queue(conversation)
    claimed(message, started=False, minutes_ago=2)
    Message.objects.filter(pk=message.pk).update(attempts=3)

    assert outbox_relay().requeued == 0

    message.refresh_from_db()
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "gave_up")
    assert "3" in message.error


def test_a_row_that_cannot_be_prepared_is_retried_later_not_sent_and_not_looped_on(conversation, evolution):
    message = queue(conversation)
    Message.objects.filter(pk=message.pk).update(template={"name": "lembrete", "body_parameters": 5})  # corrupt

    with pytest.raises(TypeError):
        message_send(message_id=message.pk)

    message.refresh_from_db()
    assert (message.status, message.error_code, message.attempts) == (MessageStatus.QUEUED, "internal_error", 1)
    assert message.next_attempt_at > timezone.now() and message.send_started_at is None


def test_the_relay_leaves_sends_that_may_still_be_running_alone(conversation):
    started, claimed_only = queue(conversation), queue(conversation_for(conversation.clinic))
    claimed(started, started=True, minutes_ago=1)
    claimed(claimed_only, started=False, minutes_ago=0.5)

    assert outbox_relay() == relay_module.RelayResult(enqueued=0, requeued=0, unconfirmed=0)
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENDING}


def test_the_relay_enqueues_the_first_queued_message_of_each_chat_whose_task_was_lost(
    clinic, conversation, outbox_redis
):
    first, second = queue(conversation), queue(conversation)
    fresh = queue(conversation_for(clinic))
    Message.objects.filter(pk__in=[first.pk, second.pk]).update(
        created_at=timezone.now() - datetime.timedelta(minutes=5)
    )

    assert outbox_relay().enqueued == 1

    assert queued_tasks(outbox_redis) == [("conversations.outbox.message_send_task", [first.pk])]
    assert fresh.pk not in [args[0] for _, args in queued_tasks(outbox_redis)]  # its own task is still on its way


def test_a_slow_worker_whose_claim_the_relay_took_back_does_not_send(conversation, evolution):
    route = evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    message = queue(conversation)
    slow = sending._claim(message.pk, timezone.now() - datetime.timedelta(minutes=2))

    outbox_relay()  # presumes the slow worker dead: requeued
    assert message_send(message_id=message.pk) == Outcome.SENT  # another worker sends it

    assert sending._mark_started(slow, slow.claimed_at) is False  # the slow one wakes up: not its row any more
    assert route.call_count == 1


# --- echoes, retries, admin ------------------------------------------------------------------------------------------


def test_the_providers_echo_confirms_a_send_marked_unconfirmed(conversation):
    message = queue(conversation)
    claimed(message, started=True, minutes_ago=10)
    outbox_relay()

    adopted = message_echo_adopt(conversation=conversation, provider_message_id="3EB0ECHO", text=TEXT)

    assert adopted is not None and adopted.pk == message.pk
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.error) == (MessageStatus.SENT, "3EB0ECHO", "")


def test_a_message_typed_on_the_clinics_phone_is_not_taken_for_an_echo(conversation):
    claimed(queue(conversation), started=True, minutes_ago=0)

    assert message_echo_adopt(conversation=conversation, provider_message_id="3EB0TYPED", text="Outra coisa") is None


def test_an_echo_recorded_before_the_send_returned_is_merged_into_the_sent_message(conversation, evolution):
    evolution.post(SEND_TEXT).respond(201, json=rest("send_text_response_201.json"))
    message = queue(conversation)
    Message.objects.create(  # what the inbound path records for a fromMe message it does not recognise
        clinic=conversation.clinic,
        conversation=conversation,
        direction=MessageDirection.OUTBOUND,
        author=MessageAuthor.STAFF,
        status=MessageStatus.SENT,
        text=TEXT,
        provider_message_id=SENT_ID,
    )

    assert message_send(message_id=message.pk) == Outcome.SENT

    assert list(Message.objects.filter(provider_message_id=SENT_ID).values_list("pk", flat=True)) == [message.pk]


def test_staff_can_retry_a_failed_message_and_it_is_sent_again(conversation, evolution):
    route = evolution.post(SEND_TEXT)
    route.side_effect = [
        httpx.Response(401, json=rest("error_401_unauthorized.json")),
        httpx.Response(201, json=rest("send_text_response_201.json")),
    ]
    message = queue(conversation)
    message_send(message_id=message.pk)

    assert message_retry(message=message) is True
    message.refresh_from_db()
    assert (message.status, message.error, message.attempts) == (MessageStatus.QUEUED, "", 0)
    assert message_send(message_id=message.pk) == Outcome.SENT
    assert message_retry(message=message) is False  # only failed messages


@pytest.fixture
def receptionist(clinic: Any) -> Any:
    return factories.staff_user(clinic)


def test_failed_messages_show_their_reason_in_the_admin_and_can_be_retried_from_it(
    client, receptionist, conversation, evolution, django_capture_on_commit_callbacks
):
    evolution.post(SEND_TEXT).respond(400, json=rest("send_text_error_400_not_on_whatsapp.json"))
    message = queue(conversation)
    message_send(message_id=message.pk)
    client.force_login(receptionist)
    changelist = reverse("admin:conversations_message_changelist")

    page = client.get(changelist, {"status__exact": "failed"})

    assert page.status_code == 200
    assert "Este número não tem WhatsApp." in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = client.post(changelist, {"action": "retry_sending", "_selected_action": [message.pk]})
    assert answer.status_code == 302
    assert Message.objects.get(pk=message.pk).status == MessageStatus.QUEUED
    assert len(callbacks) == 1


def test_staff_of_another_clinic_cannot_retry_its_messages(client, conversation, evolution):
    evolution.post(SEND_TEXT).respond(400, json=rest("send_text_error_400_not_on_whatsapp.json"))
    message = queue(conversation)
    message_send(message_id=message.pk)
    client.force_login(factories.staff_user(factories.clinic()))

    client.post(
        reverse("admin:conversations_message_changelist"), {"action": "retry_sending", "_selected_action": [message.pk]}
    )

    assert Message.objects.get(pk=message.pk).status == MessageStatus.FAILED


def test_the_relays_are_registered_with_beat_once(db):
    from importlib import import_module

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    register = import_module("conversations.migrations.0006_outbox_periodic_tasks").periodic_tasks_register
    register(apps, None)  # a second run changes nothing

    tasks = {
        task.task: task.interval
        for task in PeriodicTask.objects.filter(name__in=["Outbox relay", "Inbound events relay"])
    }
    assert {name: (i.every, i.period) for name, i in tasks.items()} == {
        "conversations.outbox.outbox_relay_task": (30, "seconds"),
        "conversations.tasks.inbound_events_relay": (60, "seconds"),
    }
    assert PeriodicTask.objects.filter(name="Outbox relay").count() == 1
