"""The WhatsApp webhook endpoints: who may post, what is stored, what each answer tells the provider."""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from conversations.models import InboundEvent, Message, Turn
from conversations.services import inbound_event_process
from patients.models import Patient
from tests import factories

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INSTANCE = "atendimento-sp"
TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"  # the instance token the contract's payloads carry in `apikey`
SECRET = "jwt-key-de-teste-com-mais-de-32-caracteres"
URL = "/webhooks/whatsapp/evolution/"


def evolution(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "evolution" / name).read_text())


@pytest.fixture
def clinic(db):
    return factories.clinic(
        name="Clínica Evolution",
        whatsapp_provider="evolution",
        whatsapp_instance=INSTANCE,
        whatsapp_api_url="https://evolution.example",
        whatsapp_api_key=TOKEN,
        whatsapp_webhook_secret=SECRET,
    )


def bearer(secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook", **claims}
    return "Bearer " + jwt.encode(payload, secret, algorithm="HS256")


def post(
    client: Client,
    body: Any,
    *,
    url: str = URL,
    auth: str | None = None,
    secret: str | None = SECRET,
    raw: bytes | None = None,
) -> Any:
    headers = {}
    if auth is not None:
        headers["Authorization"] = auth
    elif secret is not None:
        headers["X-Cecilia-Webhook-Secret"] = secret
    data = raw if raw is not None else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", headers=headers)


def process_all() -> None:
    for event_id in InboundEvent.objects.filter(processed_at__isnull=True).values_list("pk", flat=True):
        inbound_event_process(event_id=event_id)


# --- accepted and processed --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_patient_text_is_stored_then_processed_into_patient_conversation_and_message(
    client, clinic, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, evolution("2.3.7/messages_upsert_text.json"))
    assert response.status_code == 200
    assert response.json()["results"] == ["stored"]
    assert len(callbacks) == 1  # the processing task is enqueued after commit
    event = InboundEvent.objects.get()
    assert "apikey" not in event.payload  # checked, then not kept

    process_all()
    message = Message.objects.get()
    assert message.text == "Olá, bom dia! Vocês entregam em Campinas?"
    assert (message.direction, message.author, message.status) == ("in", "patient", "received")
    patient = message.conversation.patient
    assert patient.clinic == clinic
    assert patient.phone == "+5511987654321"
    assert patient.whatsapp_name == "Maria Souza"
    assert message.conversation.last_inbound_at is not None
    assert message.sent_at.timestamp() == 1763746325  # the patient's own send time, from messageTimestamp
    event.refresh_from_db()
    assert event.processed_at is not None and event.error == ""


@pytest.mark.django_db
def test_a_valid_jwt_from_evolution_is_accepted(client, clinic):
    assert post(client, evolution("2.3.7/messages_upsert_text.json"), auth=bearer()).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL + "messages-upsert", URL + "/messages-upsert", URL + "messages-upsert/"])
def test_evolutions_by_event_urls_reach_the_same_endpoint(client, clinic, url):
    assert post(client, evolution("2.3.7/messages_upsert_text.json"), url=url).status_code == 200
    assert InboundEvent.objects.count() == 1


@pytest.mark.django_db
def test_an_old_eight_digit_jid_and_a_new_one_are_the_same_patient(client, clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    post(client, body)
    old = copy.deepcopy(body)
    old["data"]["key"].update({"id": "OLD-JID-MESSAGE-1", "remoteJid": "551187654321@s.whatsapp.net"})
    post(client, old)
    process_all()
    assert Patient.objects.count() == 1
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_a_chat_known_only_by_lid_gets_its_phone_when_the_phone_shows_up(client, clinic):
    lid_only = evolution("2.3.6/lid_without_phone.json")
    lid_only["instance"] = INSTANCE
    lid_only["apikey"] = TOKEN
    post(client, lid_only)
    process_all()
    patient = Patient.objects.get()
    assert patient.phone is None and patient.whatsapp_id.endswith("@lid")

    with_phone = evolution("2.3.5/lid_with_remote_jid_alt.json")
    with_phone["instance"] = INSTANCE
    with_phone["apikey"] = TOKEN
    with_phone["data"]["key"]["remoteJid"] = patient.whatsapp_id
    post(client, with_phone)
    process_all()
    assert Patient.objects.count() == 1
    patient.refresh_from_db()
    assert patient.phone is not None


@pytest.mark.django_db
def test_a_message_typed_on_the_clinics_phone_is_a_staff_message_and_pauses_the_assistant(client, clinic):
    post(client, evolution("2.3.7/messages_upsert_text.json"))
    post(client, evolution("2.3.7/messages_upsert_from_me.json"))
    process_all()
    staff = Message.objects.get(direction="out")
    assert (staff.author, staff.status, staff.author_user) == ("staff", "sent", None)
    assert staff.conversation.owner == "human"


@pytest.mark.django_db
def test_a_read_receipt_that_overtakes_its_message_is_applied_when_the_message_arrives(client, clinic):
    read = evolution("2.3.7/messages_update_read.json")
    from_me = evolution("2.3.7/messages_upsert_from_me.json")
    from_me["data"]["key"]["id"] = read["data"]["keyId"]
    post(client, read)
    process_all()
    assert not Message.objects.exists()
    post(client, from_me)
    process_all()
    message = Message.objects.get()
    assert message.status == "read" and message.read_at is not None


# --- one effect per event (Invariant 1) --------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_message_delivered_three_times_is_stored_and_recorded_once(client, clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    answers = [post(client, body).json()["results"][0] for _ in range(3)]
    assert answers == ["stored", "duplicate", "duplicate"]
    process_all()
    process_all()
    assert InboundEvent.objects.count() == 1
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_one_message_delivered_three_times_at_once_is_recorded_once(clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    barrier = threading.Barrier(3)
    results: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(post(Client(), body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200, 200, 200]
    events = list(InboundEvent.objects.values_list("pk", flat=True))
    assert len(events) == 1

    # Two workers picking the same event at once still record one message.
    def process(event_id: int) -> None:
        try:
            inbound_event_process(event_id=event_id)
        finally:
            connection.close()

    workers = [threading.Thread(target=process, args=(events[0],)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert Message.objects.count() == 1

    # And two turn tasks for it at once (each delivery enqueued one): one turn, one answer.
    from conversations.turns import turn_run

    conversation_id = Message.objects.get().conversation_id
    later = timezone.now() + datetime.timedelta(seconds=30)

    def answer() -> None:
        try:
            turn_run(conversation_id=conversation_id, now=later)
        finally:
            connection.close()

    turns = [threading.Thread(target=answer) for _ in range(3)]
    for thread in turns:
        thread.start()
    for thread in turns:
        thread.join(timeout=30)
    assert Turn.objects.count() == 1
    assert Message.objects.filter(turn__isnull=False).count() == 1


@pytest.mark.django_db
def test_the_same_message_in_two_separate_events_is_still_one_message(client, clinic):
    """Evolution posts the same body to the instance and the global webhook; both pass the door."""
    body = evolution("2.3.7/messages_upsert_text.json")
    post(client, body)
    InboundEvent.objects.update(dedupe_key="")  # as if the first copy had been stored under another identity
    post(client, body)
    process_all()
    assert InboundEvent.objects.count() == 2
    assert Message.objects.count() == 1


# --- acknowledged and ignored ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fixture",
    ["2.3.7/messages_upsert_group.json", "2.3.6/status_broadcast.json", "2.3.6/newsletter.json"],
)
def test_groups_stories_and_newsletters_are_acknowledged_and_never_stored(client, clinic, fixture):
    body = evolution(fixture)
    body["instance"], body["apikey"] = INSTANCE, TOKEN
    response = post(client, body)
    assert response.status_code == 200
    assert response.json()["results"] == ["ignored"]
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_an_event_type_cecilia_does_not_use_is_acknowledged(client, clinic):
    body = {"event": "presence.update", "instance": INSTANCE, "data": {"id": "x", "presences": {}}, "apikey": TOKEN}
    response = post(client, body)
    assert response.status_code == 200 and response.json()["results"] == ["ignored"]


# --- refused: nothing stored, nothing enqueued --------------------------------------------------------------------


def _refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code
    assert body["message"] and body["correlation_id"]
    assert "details" in body
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "auth",
    [
        "Bearer not-a-jwt",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_a_malformed_authorization_is_refused(client, clinic, auth):
    _refused(post(client, evolution("2.3.7/messages_upsert_text.json"), auth=auth), 401, "not_authenticated")


@pytest.mark.django_db
def test_a_missing_credential_is_refused(client, clinic):
    _refused(post(client, evolution("2.3.7/messages_upsert_text.json"), secret=None), 401, "not_authenticated")


@pytest.mark.django_db
def test_a_jwt_signed_with_another_key_or_expired_is_refused(client, clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    _refused(post(client, body, auth=bearer("outra-chave-qualquer-com-32-caracteres!!")), 401, "not_authenticated")
    expired = bearer(iat=int(time.time()) - 3600, exp=int(time.time()) - 1200)
    _refused(post(client, body, auth=expired), 401, "not_authenticated")


@pytest.mark.django_db
def test_a_wrong_static_secret_or_instance_token_is_refused(client, clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    _refused(post(client, body, secret="segredo-errado"), 401, "not_authenticated")
    body["apikey"] = "00000000-0000-0000-0000-000000000000"
    _refused(post(client, body), 401, "not_authenticated")


@pytest.mark.django_db
def test_clinic_as_valid_secret_does_not_open_clinic_bs_instance(client, clinic):
    factories.clinic(
        whatsapp_provider="evolution",
        whatsapp_instance="clinica-b",
        whatsapp_api_key="B-TOKEN",
        whatsapp_webhook_secret="segredo-da-clinica-b-com-32-caracteres",
    )
    body = evolution("2.3.7/messages_upsert_text.json")
    body["instance"] = "clinica-b"
    body.pop("apikey")
    _refused(post(client, body), 401, "not_authenticated")  # clinic A's secret, clinic B's instance


@pytest.mark.django_db
def test_bad_bodies_get_a_clear_400(client, clinic):
    _refused(post(client, None, raw=b"{not json"), 400, "parse_error")
    _refused(post(client, {"event": "messages.upsert", "data": {}}), 400, "malformed_payload")  # no instance
    broken = evolution("2.3.7/messages_upsert_text.json")
    del broken["data"]["key"]["id"]
    _refused(post(client, broken), 400, "malformed_payload")


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"[]", b'"texto"', b"42", b"null", b'{"instance": ["atendimento-sp"]}'])
def test_json_of_the_wrong_shape_gets_a_clear_400(client, clinic, raw):
    _refused(post(client, None, raw=raw), 400, "malformed_payload")


@pytest.mark.django_db
def test_an_unknown_instance_is_a_404(client, clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    body["instance"] = "ninguem"
    _refused(post(client, body), 404, "unknown_instance")


@pytest.mark.django_db
def test_an_oversized_body_is_a_413(client, clinic, settings):
    settings.WHATSAPP_WEBHOOK_MAX_BYTES = 1024
    body = evolution("2.3.7/messages_upsert_text.json")
    body["data"]["message"]["conversation"] = "x" * 4096
    _refused(post(client, body), 413, "payload_too_large")


@pytest.mark.django_db(transaction=True)
def test_our_database_down_is_a_503_so_the_provider_retries(clinic):
    body = evolution("2.3.7/messages_upsert_text.json")
    wrapper = connections["default"]
    original = dict(wrapper.settings_dict)
    wrapper.close()
    wrapper.settings_dict.update({"HOST": "127.0.0.1", "PORT": "1", "OPTIONS": {"connect_timeout": 1}})
    try:
        response = post(Client(), body)
    finally:
        wrapper.close()
        wrapper.settings_dict.clear()
        wrapper.settings_dict.update(original)
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert not InboundEvent.objects.exists()


# --- Meta Cloud API ----------------------------------------------------------------------------------------------

META_SECRET = "meta_app_secret_de_teste"
META_URL = "/webhooks/whatsapp/meta/"


@pytest.fixture
def meta_clinic(db):
    return factories.clinic(
        whatsapp_provider="meta",
        whatsapp_instance="106540352242922",
        whatsapp_api_key="EAAG-token",
        whatsapp_webhook_secret=META_SECRET,
        whatsapp_verify_token="token-de-verificacao",
    )


def meta_post(client: Client, raw: bytes, secret: str = META_SECRET) -> Any:
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(META_URL, data=raw, content_type="application/json", headers={"X-Hub-Signature-256": signature})


@pytest.mark.django_db
def test_a_signed_meta_message_is_stored_and_processed(client, meta_clinic):
    raw = (FIXTURES / "meta" / "text_inbound.json").read_bytes()
    assert meta_post(client, raw).status_code == 200
    process_all()
    message = Message.objects.get()
    assert message.text == "Olá, bom dia! Vocês entregam em Campinas?"
    assert message.conversation.patient.phone == "+5511987654321"


@pytest.mark.django_db
def test_a_meta_body_with_a_wrong_or_missing_signature_is_refused(client, meta_clinic):
    raw = (FIXTURES / "meta" / "text_inbound.json").read_bytes()
    _refused(meta_post(client, raw, secret="outro-segredo"), 401, "not_authenticated")
    response = client.post(META_URL, data=raw, content_type="application/json")
    _refused(response, 401, "not_authenticated")


@pytest.mark.django_db
def test_metas_verification_handshake_echoes_the_challenge_only_for_the_right_token(client, meta_clinic):
    ok = client.get(
        META_URL, {"hub.mode": "subscribe", "hub.verify_token": "token-de-verificacao", "hub.challenge": "1158201444"}
    )
    assert ok.status_code == 200 and ok.content == b"1158201444"
    wrong = client.get(META_URL, {"hub.mode": "subscribe", "hub.verify_token": "errado", "hub.challenge": "1"})
    assert wrong.status_code == 403


@pytest.mark.django_db
def test_the_echo_of_our_own_send_confirms_it_instead_of_looking_like_staff(client, clinic):
    """Evolution can echo a send (fromMe) before the send's own answer reaches the worker."""
    from django.utils import timezone

    from conversations.models import Conversation

    post(client, evolution("2.3.7/messages_upsert_text.json"))
    process_all()
    conversation = Conversation.objects.get()
    echo = evolution("2.3.7/messages_upsert_from_me.json")
    ours = Message.objects.create(
        clinic=clinic,
        conversation=conversation,
        direction="out",
        author="ai",
        status="sending",
        text=echo["data"]["message"]["conversation"],
        claimed_at=timezone.now(),
        send_started_at=timezone.now(),
    )
    post(client, echo)
    process_all()
    ours.refresh_from_db()
    assert (ours.status, ours.provider_message_id) == ("sent", echo["data"]["key"]["id"])
    assert Message.objects.filter(direction="out").count() == 1
    conversation.refresh_from_db()
    assert conversation.owner == "ai"  # the assistant is not paused by its own message


# --- review findings: batches, failures, odd bodies ---------------------------------------------------------------


@pytest.fixture
def meta_clinic_b(db):
    return factories.clinic(
        whatsapp_provider="meta",
        whatsapp_instance="109876543210987",
        whatsapp_api_key="EAAG-token-b",
        whatsapp_webhook_secret=META_SECRET,
        whatsapp_verify_token="token-b",
    )


@pytest.mark.django_db
def test_a_meta_batch_for_two_clinics_keeps_each_clinics_part_apart(client, meta_clinic, meta_clinic_b):
    raw = (FIXTURES / "meta" / "two_phone_numbers.json").read_bytes()
    assert meta_post(client, raw).status_code == 200
    for clinic, other in ((meta_clinic, meta_clinic_b), (meta_clinic_b, meta_clinic)):
        stored = json.dumps(InboundEvent.objects.get(clinic=clinic).payload)
        assert clinic.whatsapp_instance in stored
        assert other.whatsapp_instance not in stored
    process_all()
    assert {m.clinic_id for m in Message.objects.all()} == {meta_clinic.pk, meta_clinic_b.pk}
    assert all(m.conversation.patient.clinic_id == m.clinic_id for m in Message.objects.all())


@pytest.mark.django_db
def test_a_meta_batch_also_naming_an_unknown_number_still_stores_the_known_clinics_part(client, meta_clinic):
    raw = (FIXTURES / "meta" / "two_phone_numbers.json").read_bytes()
    assert meta_post(client, raw).status_code == 200
    assert InboundEvent.objects.filter(clinic=meta_clinic).count() == 1


@pytest.mark.django_db
def test_a_meta_batch_is_refused_whole_when_one_clinic_does_not_authenticate(client, meta_clinic, meta_clinic_b):
    meta_clinic_b.whatsapp_webhook_secret = "segredo-de-outro-app"
    meta_clinic_b.save()
    raw = (FIXTURES / "meta" / "two_phone_numbers.json").read_bytes()
    _refused(meta_post(client, raw), 401, "not_authenticated")


@pytest.mark.django_db
def test_a_text_the_database_cannot_keep_is_a_400_and_never_reaches_the_logs(client, clinic, caplog):
    body = evolution("2.3.7/messages_upsert_text.json")
    body["data"]["message"]["conversation"] = "oi\u0000segredo do paciente"
    response = post(client, body)
    _refused(response, 400, "malformed_payload")
    assert "segredo do paciente" not in caplog.text


@pytest.mark.django_db
def test_a_deeply_nested_body_is_a_400_not_a_crash(client, clinic):
    _refused(post(client, None, raw=b"[" * 200_000), 400, "parse_error")


@pytest.mark.django_db
def test_an_event_that_keeps_failing_is_recorded_retried_and_finally_given_up_for_staff(client, clinic, monkeypatch):
    from conversations import services

    post(client, evolution("2.3.7/messages_upsert_text.json"))
    event = InboundEvent.objects.get()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug with the patient's text in it: oi")

    monkeypatch.setattr(services, "_dispatch", broken)
    for attempt in range(1, services.MAX_PROCESSING_ATTEMPTS + 1):
        inbound_event_process(event_id=event.pk)
        event.refresh_from_db()
        assert event.attempts == attempt
        assert event.error == f"attempt {attempt} failed: RuntimeError"  # the type, never the text
    assert event.processed_at is not None  # given up: no longer retried, visible with its error
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_whatsapp_refusing_a_sent_message_flags_the_conversation_for_staff(client, clinic):
    from django.utils import timezone

    from conversations.models import Conversation

    post(client, evolution("2.3.7/messages_upsert_text.json"))
    process_all()
    conversation = Conversation.objects.get()
    refused = evolution("2.3.6/messages_update_error.json")
    refused["instance"], refused["apikey"] = INSTANCE, TOKEN
    refused["data"]["remoteJid"] = "5511987654321@s.whatsapp.net"
    Message.objects.create(
        clinic=clinic,
        conversation=conversation,
        direction="out",
        author="ai",
        status="sent",
        text="Olá!",
        provider_message_id=refused["data"]["keyId"],
        sent_at=timezone.now(),
    )
    post(client, refused)
    process_all()
    assert Message.objects.get(direction="out").status == "failed"
    conversation.refresh_from_db()
    assert (conversation.needs_attention, conversation.attention_reason) == (True, "failed_send")


@pytest.mark.django_db
def test_managers_read_a_stored_event_without_its_raw_body(client, clinic):
    from cecilia.models import StaffRole

    manager = factories.staff_user(clinic, role=StaffRole.MANAGER)
    post(client, evolution("2.3.7/messages_upsert_text.json"))
    client.force_login(manager)
    from django.urls import reverse

    page = client.get(reverse("admin:conversations_inboundevent_change", args=[InboundEvent.objects.get().pk]))
    assert page.status_code == 200
    assert "Campinas" not in page.content.decode()


@pytest.mark.django_db
def test_meta_bodies_are_capped_well_below_evolutions_inline_media_limit(client, meta_clinic):
    from conversations.webhooks import META_MAX_BODY_BYTES

    body = json.loads((FIXTURES / "meta" / "text_inbound.json").read_text())
    body["padding"] = "x" * (META_MAX_BODY_BYTES + 1)
    _refused(meta_post(client, json.dumps(body).encode()), 413, "payload_too_large")
