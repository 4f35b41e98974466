"""The desk: the inbox ordered by need, the conversation page and its actions (take over, give back, answer, close,
notes), scoping to the user's clinic, and a constant number of queries per page."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cecilia.models import StaffRole
from conversations import tasks
from conversations.desk import services
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationNote,
    ConversationOwner,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    QuickReply,
)
from patients.models import AuditEntry, PatientAccess
from scheduling.models import AppointmentStatus
from tests import factories

pytestmark = pytest.mark.django_db

INBOX = reverse("admin:conversations_conversation_inbox")
ROWS = reverse("admin:conversations_conversation_inbox_rows")


@pytest.fixture(autouse=True)
def no_sends(monkeypatch: Any) -> list[int]:
    """The outbox's task is not this test's subject: record what would be sent."""
    from conversations.outbox import tasks as outbox_tasks

    sent: list[int] = []
    monkeypatch.setattr(outbox_tasks, "message_send_enqueue", lambda message_id, **kw: sent.append(message_id))
    monkeypatch.setattr(tasks, "turn_enqueue", lambda *args, **kwargs: None)
    return sent


def conversation(clinic: Any, **kwargs: Any) -> Conversation:
    patient = factories.patient(clinic)
    defaults = {"last_inbound_at": timezone.now()}
    return Conversation.objects.create(clinic=clinic, patient=patient, **{**defaults, **kwargs})


def message(conv: Conversation, text: str, *, inbound: bool = True, **kwargs: Any) -> Message:
    fields = (
        {"direction": MessageDirection.INBOUND, "author": MessageAuthor.PATIENT, "status": MessageStatus.RECEIVED}
        if inbound
        else {"direction": MessageDirection.OUTBOUND, "author": MessageAuthor.AI, "status": MessageStatus.SENT}
    )
    return Message.objects.create(clinic=conv.clinic, conversation=conv, text=text, **{**fields, **kwargs})


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def names_in(html: str, conversations: list[Conversation]) -> list[str]:
    """The patients' names in the order the page shows them."""
    found = [(html.find(str(c.patient)), str(c.patient)) for c in conversations if str(c.patient) in html]
    return [name for _, name in sorted(found)]


def test_the_inbox_lists_what_needs_a_person_by_urgency_then_the_assistants_conversations() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    ai_recent = conversation(clinic)
    unanswered = conversation(clinic, needs_attention=True, attention_reason=AttentionReason.UNANSWERED)
    emergency = conversation(clinic, needs_attention=True, attention_reason=AttentionReason.EMERGENCY)
    staff_owned = conversation(clinic, owner=ConversationOwner.HUMAN)
    asked = conversation(clinic, needs_attention=True, attention_reason=AttentionReason.ASKED_FOR_HUMAN)
    failed = conversation(clinic, needs_attention=True, attention_reason=AttentionReason.FAILED_SEND)
    closed = conversation(clinic, closed_at=timezone.now())

    html = client_for(user).get(INBOX).content.decode()

    needs_you, assistant = html.split('id="assistant-title"')
    assert names_in(needs_you, [ai_recent, unanswered, emergency, staff_owned, asked, failed]) == [
        str(c.patient) for c in (emergency, asked, failed, unanswered, staff_owned)
    ]
    assert str(ai_recent.patient) in assistant
    assert str(closed.patient) not in html
    closed_html = client_for(user).get(INBOX, {"state": "closed"}).content.decode()
    assert str(closed.patient) in closed_html and str(emergency.patient) not in closed_html


def test_the_filters_show_mine_and_unassigned() -> None:
    clinic = factories.clinic()
    me, colleague = factories.staff_user(clinic), factories.staff_user(clinic)
    mine = conversation(clinic, owner=ConversationOwner.HUMAN, assigned_to=me)
    theirs = conversation(clinic, owner=ConversationOwner.HUMAN, assigned_to=colleague)
    nobodys = conversation(clinic, owner=ConversationOwner.HUMAN)
    client = client_for(me)

    mine_html = client.get(ROWS, {"filter": "mine"}).content.decode()
    unassigned_html = client.get(ROWS, {"filter": "unassigned"}).content.decode()

    assert str(mine.patient) in mine_html and str(theirs.patient) not in mine_html
    assert str(nobodys.patient) in unassigned_html and str(mine.patient) not in unassigned_html


def test_the_inbox_filters_by_professional() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    dra_ana, dr_beto = factories.professional(clinic), factories.professional(clinic)
    service = factories.service(clinic, professionals=[dra_ana, dr_beto])
    with_ana, with_beto = conversation(clinic), conversation(clinic)
    factories.appointment(patient=with_ana.patient, professional=dra_ana, service=service)
    factories.appointment(patient=with_beto.patient, professional=dr_beto, service=service)

    html = client_for(user).get(ROWS, {"professional": dra_ana.pk}).content.decode()

    assert str(with_ana.patient) in html and str(with_beto.patient) not in html


def test_a_receptionist_of_another_clinic_sees_none_of_it() -> None:
    clinic, other = factories.clinic(), factories.clinic()
    secret = conversation(clinic, needs_attention=True, attention_reason=AttentionReason.EMERGENCY)
    message(secret, "Estou com dor no peito")
    outsider = client_for(factories.staff_user(other))

    assert str(secret.patient) not in outsider.get(INBOX).content.decode()
    assert str(secret.patient) not in outsider.get(ROWS).content.decode()
    desk = reverse("admin:conversations_conversation_desk", args=[secret.pk])
    assert outsider.get(desk).status_code == 404
    assert outsider.post(desk, {"action": "take_over"}).status_code == 404
    transcript = reverse("admin:conversations_conversation_desk_transcript", args=[secret.pk])
    assert outsider.get(transcript).status_code == 404
    secret.refresh_from_db()
    assert secret.owner == ConversationOwner.AI


def test_the_inbox_runs_the_same_number_of_queries_for_3_and_30_conversations() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    client = client_for(user)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(INBOX).status_code == 200
        return len(captured)

    for i in range(3):
        conversation(clinic, owner=ConversationOwner.HUMAN if i % 2 else ConversationOwner.AI, assigned_to=user)
    few = queries()
    for i in range(27):
        conversation(clinic, owner=ConversationOwner.HUMAN if i % 2 else ConversationOwner.AI, assigned_to=user)
    assert queries() == few


def test_the_conversation_page_runs_the_same_number_of_queries_for_3_and_60_messages() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic, owner=ConversationOwner.HUMAN)
    QuickReply.objects.create(clinic=clinic, title="Endereço", text="Rua das Flores, 100")
    client = client_for(user)
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    for i in range(3):
        message(conv, f"mensagem {i}", inbound=bool(i % 2))
    ConversationNote.objects.create(clinic=clinic, conversation=conv, author=user, text="Prefere à tarde")
    Conversation.objects.filter(pk=conv.pk).update(unread_count=0)
    few = queries()
    for i in range(57):
        staff = {"author": MessageAuthor.STAFF, "author_user": user} if i % 3 == 0 and not i % 2 else {}
        message(conv, f"mensagem {i}", inbound=bool(i % 2), **staff)
    ConversationNote.objects.create(clinic=clinic, conversation=conv, author=user, text="Ligar amanhã")
    assert queries() == few


def test_opening_a_conversation_marks_it_read_and_logs_the_access() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic, unread_count=3)
    message(conv, "Oi, tudo bem?")

    response = client_for(user).get(reverse("admin:conversations_conversation_desk", args=[conv.pk]))

    assert response.status_code == 200
    assert "Oi, tudo bem?" in response.content.decode()
    conv.refresh_from_db()
    assert conv.unread_count == 0
    access = PatientAccess.objects.get(patient=conv.patient)
    assert access.user == user and access.kind == "conversation"


def test_a_new_patient_message_counts_once_as_unread_and_opens_a_closed_conversation() -> None:
    from conversations.services import message_receive
    from integrations.whatsapp.base import InboundMessage, Kind

    clinic = factories.clinic()
    conv = conversation(clinic, closed_at=timezone.now())
    phone = conv.patient.phone.lstrip("+")
    inbound = InboundMessage(
        provider_message_id="DESK0001", chat_id=f"{phone}@s.whatsapp.net", phone=phone, lid=None,
        from_me=False, sender_name="", kind=Kind.TEXT, text="Voltei",
    )  # fmt: skip
    message_receive(clinic=clinic, inbound=inbound)
    message_receive(clinic=clinic, inbound=inbound)  # the provider delivers it again: counted once

    conv.refresh_from_db()
    assert conv.unread_count == 1
    assert conv.closed_at is None


def test_take_over_answer_and_give_back_from_the_page() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic, needs_attention=True, attention_reason=AttentionReason.ASKED_FOR_HUMAN)
    client = client_for(user)
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    assert client.post(url, {"action": "take_over"}).status_code == 302
    conv.refresh_from_db()
    assert conv.owner == ConversationOwner.HUMAN and conv.assigned_to == user and conv.owner_since is not None

    client.post(url, {"action": "reply", "text": "Olá! Aqui é a Ana, da recepção."})
    reply = Message.objects.get(conversation=conv, direction=MessageDirection.OUTBOUND)
    assert (reply.author, reply.author_user, reply.status) == (MessageAuthor.STAFF, user, MessageStatus.QUEUED)
    conv.refresh_from_db()
    assert not conv.needs_attention, "a person answered: the flag is cleared"

    client.post(url, {"action": "give_back"})
    page = client.get(url).content.decode()
    assert f"{user.username} assumiu a conversa" in page, "the transcript shows who took it over"
    assert f"{user.username} devolveu a conversa à assistente" in page
    conv.refresh_from_db()
    assert conv.owner == ConversationOwner.AI and conv.assigned_to is None
    entries = list(AuditEntry.objects.filter(object_id=str(conv.pk)).order_by("at", "id"))
    assert [e.action_name for e in entries] == ["take_over", "give_back"]
    assert entries[0].actor == user
    # As the audit page shows it: labels and the assignee's name, not codes and ids.
    assert entries[0].changes["owner"] == [str(ConversationOwner.AI.label), str(ConversationOwner.HUMAN.label)]
    assert entries[0].changes["assigned_to"] == [None, user.username]
    assert "unread_count" not in entries[0].changes
    assert entries[0].patient_id == conv.patient_id


def test_answering_an_assistant_conversation_takes_it_over() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic)

    services.staff_reply_send(conversation_id=conv.pk, user=user, text="Oi! Posso ajudar?")

    conv.refresh_from_db()
    assert conv.owner == ConversationOwner.HUMAN


def test_an_empty_or_too_long_answer_is_refused_with_a_message_and_nothing_is_queued() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic)
    client = client_for(user)
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    empty = client.post(url, {"action": "reply", "text": "   "}, follow=True)
    long = client.post(url, {"action": "reply", "text": "a" * 5000}, follow=True)

    assert [str(m) for m in empty.context["messages"]] == ["Escreva a mensagem primeiro."]
    assert "4096" in " ".join(str(m) for m in long.context["messages"])
    assert not Message.objects.filter(conversation=conv).exists()
    conv.refresh_from_db()
    assert conv.owner == ConversationOwner.AI


def test_meta_outside_the_24h_window_refuses_free_text_in_words() -> None:
    import datetime

    clinic = factories.clinic(whatsapp_provider="meta")
    user = factories.staff_user(clinic)
    conv = conversation(clinic, last_inbound_at=timezone.now() - datetime.timedelta(days=2))

    with pytest.raises(services.DeskError, match="24"):
        services.staff_reply_send(conversation_id=conv.pk, user=user, text="Oi")
    assert not Message.objects.filter(conversation=conv).exists()


def test_close_takes_it_out_of_the_inbox_and_notes_stay_internal() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic, owner=ConversationOwner.HUMAN, unread_count=2)
    client = client_for(user)
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    client.post(url, {"action": "note", "text": "Paciente pediu retorno por telefone"})
    client.post(url, {"action": "close"})

    conv.refresh_from_db()
    assert conv.closed_at is not None and conv.owner == ConversationOwner.AI and conv.unread_count == 0
    assert str(conv.patient) not in client.get(INBOX).content.decode()
    assert ConversationNote.objects.get(conversation=conv).text == "Paciente pediu retorno por telefone"
    assert not Message.objects.filter(conversation=conv).exists(), "a note is never sent"


def test_assigning_to_someone_outside_the_clinic_is_refused() -> None:
    clinic, other = factories.clinic(), factories.clinic()
    user, stranger = factories.staff_user(clinic), factories.staff_user(other)
    conv = conversation(clinic)

    with pytest.raises(services.DeskError):
        services.conversation_assign(conversation_id=conv.pk, user=user, assignee_id=stranger.pk)
    conv.refresh_from_db()
    assert conv.assigned_to is None


def test_quick_actions_confirm_an_upcoming_appointment_as_staff() -> None:
    clinic = factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic)
    dra = factories.professional(clinic)
    appointment = factories.appointment(
        patient=conv.patient, professional=dra, service=factories.service(clinic, professionals=[dra])
    )
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    page = client_for(user).get(url).content.decode()
    client_for(user).post(url, {"action": "appointment_confirm", "appointment": appointment.pk})

    assert str(dra) in page
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED
    assert appointment.updated_by_user == user


def test_an_unknown_action_is_refused_in_words_and_changes_nothing() -> None:
    clinic = factories.clinic()
    manager = factories.staff_user(clinic, role=StaffRole.MANAGER)
    conv = conversation(clinic)
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    response = client_for(manager).post(url, {"action": "nonsense"}, follow=True)

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Ação desconhecida. Recarregue a página e tente de novo."]
    conv.refresh_from_db()
    assert conv.owner == ConversationOwner.AI and not AuditEntry.objects.exists()


def test_a_quick_action_on_another_patients_appointment_is_refused_and_changes_nothing() -> None:
    clinic, other = factories.clinic(), factories.clinic()
    user = factories.staff_user(clinic)
    conv = conversation(clinic)
    elsewhere = factories.patient(other)
    dra = factories.professional(other)
    theirs = factories.appointment(
        patient=elsewhere, professional=dra, service=factories.service(other, professionals=[dra])
    )
    url = reverse("admin:conversations_conversation_desk", args=[conv.pk])

    response = client_for(user).post(url, {"action": "appointment_cancel", "appointment": theirs.pk}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Esse agendamento não é mais deste paciente. Recarregue a página."
    ]
    theirs.refresh_from_db()
    assert theirs.status == AppointmentStatus.SCHEDULED


def test_media_is_served_to_the_clinic_staff_only() -> None:
    from django.core.files.base import ContentFile

    clinic, other = factories.clinic(), factories.clinic()
    conv = conversation(clinic)
    voice = message(conv, "Queria remarcar", kind="audio", media_mime_type="audio/ogg")
    voice.media.save("nota.ogg", ContentFile(b"OggS-fake-audio"), save=True)
    url = reverse("admin:conversations_conversation_desk_media", args=[conv.pk, voice.pk])

    mine = client_for(factories.staff_user(clinic)).get(url)
    theirs = client_for(factories.staff_user(other)).get(url)

    assert mine.status_code == 200 and b"".join(mine.streaming_content) == b"OggS-fake-audio"
    assert mine["Content-Type"] == "audio/ogg" and "no-store" in mine["Cache-Control"]
    assert theirs.status_code == 404


def test_managers_write_quick_replies_and_the_front_desk_inserts_them() -> None:
    clinic = factories.clinic()
    manager = factories.staff_user(clinic, role=StaffRole.MANAGER)
    receptionist = factories.staff_user(clinic)
    add = reverse("admin:conversations_quickreply_add")
    fields = {"clinic": clinic.pk, "title": "Endereço", "text": "Rua das Flores, 100 — 2º andar", "position": 0}

    refused = client_for(receptionist).post(add, {**fields, "active": "on"})
    created = client_for(manager).post(add, {**fields, "active": "on"})

    assert refused.status_code == 403
    assert created.status_code == 302
    conv = conversation(clinic)
    page = client_for(receptionist).get(reverse("admin:conversations_conversation_desk", args=[conv.pk]))
    assert "Rua das Flores, 100 — 2º andar" in page.content.decode()
