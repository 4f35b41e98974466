"""The WhatsApp simulator: staff write as a patient of a console clinic, through the real inbound path.

A simulated message is stored as the console provider's webhook event and enqueued on commit, as the webhook view
does; here the broker is replaced by a recorder (no test publishes to the shared Redis), and the task's service is
run by hand to follow the message to the transcript.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from cecilia.models import StaffRole, WhatsAppProvider
from conversations import services, tasks
from conversations.models import (
    Conversation,
    InboundEvent,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
)
from patients.models import Patient
from tests import factories

pytestmark = pytest.mark.django_db

SIMULATOR = "admin:conversations_conversation_simulator"
MESSAGES = "admin:conversations_conversation_simulator_messages"


@pytest.fixture(autouse=True)
def english(client: Any) -> None:
    """Pages in English, the source language: assertions do not depend on the catalogue's translations."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The event ids the simulator enqueued for processing (the Celery publish, recorded instead of sent)."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.inbound_event_process, "delay", lambda event_id: ids.append(event_id))
    return ids


@pytest.fixture
def staff_client(client: Any, receptionist_a: Any) -> Any:
    client.force_login(receptionist_a)
    return client


def _send(client: Any, clinic: Any, django_capture_on_commit_callbacks: Any, **fields: Any) -> Any:
    data = {"clinic": clinic.pk, "phone": "", "patient": "", "name": "", "text": "oi", **fields}
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(reverse(SIMULATOR), data)


def test_staff_of_a_console_clinic_get_the_simulator_with_their_patients_only(staff_client, clinic_a, clinic_b):
    factories.patient(clinic_a, full_name="Maria Aparecida Souza", phone="+5511987654321")
    factories.patient(clinic_b, full_name="Helena Concorrente Barros")
    factories.patient(clinic_a, full_name="Sem Telefone", phone=None)

    response = staff_client.get(reverse(SIMULATOR))

    page = response.content.decode()
    assert response.status_code == 200
    assert response.context["clinic"] == clinic_a
    assert "Maria Aparecida Souza · +55 11 98765-4321" in page
    assert "Helena" not in page
    assert "Sem Telefone" not in page  # no phone: nobody to write as
    assert 'name="text"' in page


def test_a_message_from_a_new_number_is_stored_as_a_console_webhook_event_and_enqueued_on_commit(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks
):
    response = _send(
        staff_client, clinic_a, django_capture_on_commit_callbacks, phone="(11) 98765-4321", name="Maria", text=" oi "
    )

    event = InboundEvent.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{reverse(SIMULATOR)}?clinic={clinic_a.pk}&phone=%2B5511987654321"
    assert (event.clinic, event.provider, event.event_type) == (clinic_a, "console", "message")
    assert event.payload["type"] == "message"
    assert (event.payload["from"], event.payload["name"], event.payload["text"]) == ("+5511987654321", "Maria", "oi")
    assert event.payload["id"].startswith("sim-")
    assert isinstance(event.payload["timestamp"], int)
    assert event.dedupe_key == f"console|message|{event.payload['id']}|"
    assert event.processed_at is None
    assert enqueued == [event.pk]
    assert not Message.objects.exists()  # the simulator never files the message itself: the task does


def test_the_processed_message_shows_in_the_transcript_and_created_the_patient(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks
):
    _send(staff_client, clinic_a, django_capture_on_commit_callbacks, phone="11987654321", name="Maria", text="oi")
    services.inbound_event_process(event_id=enqueued[0])  # what the worker runs

    data = staff_client.get(reverse(MESSAGES), {"clinic": clinic_a.pk, "phone": "+5511987654321"}).json()

    patient = Patient.objects.get(clinic=clinic_a)
    assert (patient.phone, patient.whatsapp_name) == ("+5511987654321", "Maria")
    assert [(m["text"], m["from_patient"]) for m in data["messages"]] == [("oi", True)]
    assert data["pending"] == []
    conversation = Conversation.objects.get(patient=patient)
    assert data["conversation_url"] == reverse("admin:conversations_conversation_change", args=[conversation.pk])


def test_a_message_not_processed_yet_shows_as_pending(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks
):
    _send(staff_client, clinic_a, django_capture_on_commit_callbacks, phone="+55 11 98765-4321", text="quero marcar")

    data = staff_client.get(reverse(MESSAGES), {"clinic": clinic_a.pk, "phone": "+5511987654321"}).json()

    assert data["messages"] == []
    assert [(p["text"], p["late"]) for p in data["pending"]] == [("quero marcar", False)]


def test_the_same_form_sent_twice_stores_one_event(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks
):
    fields = {"phone": "11987654321", "text": "oi", "message_id": "sim-0123456789abcdef"}
    _send(staff_client, clinic_a, django_capture_on_commit_callbacks, **fields)
    second = _send(staff_client, clinic_a, django_capture_on_commit_callbacks, **fields)

    assert second.status_code == 302
    assert InboundEvent.objects.count() == 1
    assert len(enqueued) == 1


def test_a_patient_picked_from_the_list_writes_from_their_phone_under_their_whatsapp_name(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks
):
    maria = factories.patient(clinic_a, full_name="Maria Aparecida Souza", whatsapp_name="Mari ☀️")

    _send(staff_client, clinic_a, django_capture_on_commit_callbacks, patient=maria.pk, text="bom dia")
    services.inbound_event_process(event_id=enqueued[0])

    event = InboundEvent.objects.get()
    assert (event.payload["from"], event.payload["name"]) == (maria.phone, "Mari ☀️")
    assert Patient.objects.filter(clinic=clinic_a).count() == 1  # the same patient, not a new one
    assert Message.objects.get().conversation.patient == maria


def test_a_typed_phone_wins_over_the_patient_picked(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks
):
    maria = factories.patient(clinic_a)

    _send(staff_client, clinic_a, django_capture_on_commit_callbacks, patient=maria.pk, phone="21 99876-5432")

    assert InboundEvent.objects.get().payload["from"] == "+5521998765432"


@pytest.mark.parametrize("phone", ["banana", "123", "+55 11 0000", "11 98765-4321 ext"])
def test_a_phone_that_is_not_a_number_is_refused_readably_and_nothing_is_stored(
    staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks, phone
):
    response = _send(staff_client, clinic_a, django_capture_on_commit_callbacks, phone=phone)

    assert response.status_code == 200
    assert "Enter a valid phone number with area code" in response.content.decode()
    assert not InboundEvent.objects.exists()
    assert enqueued == []


def test_a_message_needs_a_patient_or_a_phone(staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks):
    response = _send(staff_client, clinic_a, django_capture_on_commit_callbacks)

    assert "Choose a patient or type a phone number." in response.content.decode()
    assert not InboundEvent.objects.exists()


def test_an_empty_message_is_refused(staff_client, clinic_a, enqueued, django_capture_on_commit_callbacks):
    response = _send(staff_client, clinic_a, django_capture_on_commit_callbacks, phone="11987654321", text="   ")

    assert response.status_code == 200
    assert response.context["form"].errors["text"]
    assert not InboundEvent.objects.exists()


def test_another_clinics_patient_cannot_be_picked(
    staff_client, clinic_a, clinic_b, enqueued, django_capture_on_commit_callbacks
):
    stranger = factories.patient(clinic_b)

    response = _send(staff_client, clinic_a, django_capture_on_commit_callbacks, patient=stranger.pk)

    assert "Choose a patient of this clinic with a phone number." in response.content.decode()
    assert not InboundEvent.objects.exists()


def test_a_clinic_on_a_real_whatsapp_channel_is_never_simulated(client, enqueued, django_capture_on_commit_callbacks):
    clinic = factories.clinic(name="Clínica Real", whatsapp_provider=WhatsAppProvider.EVOLUTION)
    client.force_login(factories.staff_user(clinic, role=StaffRole.MANAGER))

    page = client.get(reverse(SIMULATOR), {"clinic": clinic.pk})
    posted = _send(client, clinic, django_capture_on_commit_callbacks, phone="11987654321")
    polled = client.get(reverse(MESSAGES), {"clinic": clinic.pk, "phone": "+5511987654321"})

    assert page.status_code == 200
    assert "Clínica Real uses Evolution API: the simulator is off for it." in page.content.decode()
    assert 'name="text"' not in page.content.decode()
    assert posted.status_code == 200
    assert "only works for clinics whose WhatsApp provider is the console" in posted.content.decode()
    assert polled.status_code == 400
    assert not InboundEvent.objects.exists()
    assert enqueued == []


def test_the_simulator_opens_on_a_console_clinic_and_offers_the_others_disabled(client, clinic_a):
    real = factories.clinic(name="Aaa Real", whatsapp_provider=WhatsAppProvider.META)
    user = factories.staff_user(clinic_a)
    from cecilia.services import staff_membership_set

    staff_membership_set(user_id=user.pk, clinic=real, role=StaffRole.RECEPTIONIST)
    client.force_login(user)

    response = client.get(reverse(SIMULATOR))

    page = response.content.decode()
    assert response.context["clinic"] == clinic_a
    assert f'<option value="{real.pk}" disabled>Aaa Real — Meta WhatsApp Cloud API</option>' in page


def test_staff_of_another_clinic_get_404_for_its_simulator(
    staff_client, clinic_b, enqueued, django_capture_on_commit_callbacks
):
    assert staff_client.get(reverse(SIMULATOR), {"clinic": clinic_b.pk}).status_code == 404
    assert _send(staff_client, clinic_b, django_capture_on_commit_callbacks, phone="11987654321").status_code == 404
    polled = staff_client.get(reverse(MESSAGES), {"clinic": clinic_b.pk, "phone": "+5511987654321"})
    assert polled.status_code == 404
    assert not InboundEvent.objects.exists()


def test_the_transcript_of_another_clinic_is_never_shown(staff_client, clinic_a, clinic_b):
    other = factories.patient(clinic_b, phone="+5511987654321")
    conversation = Conversation.objects.create(clinic=clinic_b, patient=other)
    Message.objects.create(
        clinic=clinic_b,
        conversation=conversation,
        direction=MessageDirection.INBOUND,
        author=MessageAuthor.PATIENT,
        status=MessageStatus.RECEIVED,
        text="segredo da clínica B",
    )

    data = staff_client.get(reverse(MESSAGES), {"clinic": clinic_a.pk, "phone": "+5511987654321"}).json()

    assert data == {"messages": [], "pending": [], "conversation_url": ""}


def test_people_who_are_not_staff_are_sent_to_the_login(client, clinic_a):
    response = client.get(reverse(SIMULATOR))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_the_json_transcript_lists_both_sides_oldest_first_with_their_status(staff_client, clinic_a):
    clinic_a.assistant_name = "Cecília"
    clinic_a.save()
    maria = factories.patient(clinic_a, phone="+5511987654321")
    conversation = Conversation.objects.create(clinic=clinic_a, patient=maria)
    common = {"clinic": clinic_a, "conversation": conversation}
    Message.objects.create(
        **common, direction="in", author=MessageAuthor.PATIENT, status=MessageStatus.RECEIVED, text="oi"
    )
    Message.objects.create(
        **common, direction="out", author=MessageAuthor.AI, status=MessageStatus.SENT, text="Olá! Como posso ajudar?"
    )
    Message.objects.create(
        **common,
        direction="out",
        author=MessageAuthor.STAFF,
        status=MessageStatus.QUEUED,
        text="Aqui é a recepção.",
    )
    Message.objects.create(
        **common,
        direction="out",
        author=MessageAuthor.SYSTEM,
        status=MessageStatus.FAILED,
        error="Este número não tem WhatsApp.",
        text="Lembrete",
    )

    response = staff_client.get(reverse(MESSAGES), {"clinic": clinic_a.pk, "phone": "(11) 98765-4321"})

    rows = [(m["from_patient"], m["author"], m["text"], m["status"], m["error"]) for m in response.json()["messages"]]
    assert rows == [
        (True, "Patient", "oi", "received", ""),
        (False, "Cecília", "Olá! Como posso ajudar?", "sent", ""),
        (False, "Staff", "Aqui é a recepção.", "queued", ""),
        (False, "System", "Lembrete", "failed", "Este número não tem WhatsApp."),
    ]
    assert response.json()["messages"][1]["time"] == timezone.localtime(
        Message.objects.get(text="Olá! Como posso ajudar?").created_at, clinic_a.tz
    ).strftime("%H:%M")


def test_the_page_draws_the_transcript_of_the_chat_in_the_address(staff_client, clinic_a):
    maria = factories.patient(clinic_a, full_name="Maria Souza", phone="+5511987654321")
    conversation = Conversation.objects.create(clinic=clinic_a, patient=maria)
    Message.objects.create(
        clinic=clinic_a,
        conversation=conversation,
        direction="out",
        author=MessageAuthor.AI,
        status=MessageStatus.DELIVERED,
        text="Sua consulta está confirmada <b>amanhã</b>.",
    )

    response = staff_client.get(reverse(SIMULATOR), {"clinic": clinic_a.pk, "phone": "+5511987654321"})

    page = response.content.decode()
    assert "Maria Souza · +55 11 98765-4321" in page
    assert "Sua consulta está confirmada &lt;b&gt;amanhã&lt;/b&gt;." in page  # escaped, never markup
    assert f"{reverse(MESSAGES)}?clinic={clinic_a.pk}&amp;phone=%2B5511987654321" in page


def test_a_phone_in_the_address_that_is_not_a_number_is_said_so(staff_client, clinic_a):
    response = staff_client.get(reverse(SIMULATOR), {"clinic": clinic_a.pk, "phone": "abc"})

    assert response.status_code == 200
    assert "Enter a valid phone number with area code" in response.content.decode()
    assert 'value="abc"' in response.content.decode()  # left as typed, to be corrected
    assert "transcript" not in response.context


def test_the_conversation_list_links_to_the_simulator(staff_client):
    page = staff_client.get(reverse("admin:conversations_conversation_changelist")).content.decode()

    assert f'href="{reverse(SIMULATOR)}"' in page
