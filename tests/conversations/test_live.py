"""The live inbox's transport: conversations.live publishes on commit, the ws/inbox/ consumer forwards to the right
clinic's staff only (Invariant 5), and events carry ids and states, never text (Invariant 7).

Against the real ASGI application (session auth, origin check) and the real Redis channel layer, under a channel
prefix of this test's own so parallel runs never hear each other. Async code runs in one `async_to_sync` call per
test: a communicator lives on the event loop that started it.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from cecilia.asgi import application
from conversations import tasks
from conversations.live import live_publish
from conversations.services import message_receive
from integrations.whatsapp.base import InboundMessage, Kind
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_TEXT = "Minha dor no peito piorou, Maria Souza"
_ids = iter(range(10**6))


@pytest.fixture(autouse=True)
def private_channel_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"test-live-{uuid.uuid4().hex}"},
        }
    }


@pytest.fixture(autouse=True)
def no_turns(monkeypatch: Any) -> None:
    # The turn a message enqueues is not this test's subject (and would publish events of its own).
    monkeypatch.setattr(tasks, "turn_enqueue", lambda *args, **kwargs: None)


def receive(clinic: Any, text: str = SECRET_TEXT, *, phone: str = "5511987654321", from_me: bool = False) -> Any:
    """A patient's WhatsApp message (or, `from_me`, one sent from the clinic's number), as a webhook brings it."""
    return message_receive(
        clinic=clinic,
        inbound=InboundMessage(
            provider_message_id=f"LIVE{next(_ids):06d}",
            chat_id=f"{phone}@s.whatsapp.net",
            phone=phone,
            lid=None,
            from_me=from_me,
            sender_name="" if from_me else "Maria Souza",
            kind=Kind.TEXT,
            text=text,
        ),
    )


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def socket(cookie: str | None = None, query: str = "") -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, f"/ws/inbox/{query}", headers=headers)


async def closed_with(communicator: WebsocketCommunicator) -> int | None:
    """The close code of a socket the consumer refuses (it accepts, then closes with a code the page can read)."""
    connected, _ = await communicator.connect()
    assert connected
    output = await communicator.receive_output(timeout=2)
    assert output["type"] == "websocket.close"
    return output.get("code")


def test_staff_of_a_clinic_hear_its_new_messages_and_none_of_another_clinics(clinic_a, clinic_b, receptionist_a):
    cookie = session_cookie(receptionist_a)

    async def scenario() -> tuple[dict, Any]:
        communicator = socket(cookie)
        connected, _ = await communicator.connect()
        assert connected
        await sync_to_async(receive)(clinic_b, phone="5511911112222")
        message = await sync_to_async(receive)(clinic_a)
        event = await communicator.receive_json_from(timeout=3)
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return event, message

    event, message = async_to_sync(scenario)()

    assert event == {
        "event": "message",
        "conversation_id": message.conversation_id,
        "message_id": message.pk,
        "direction": "in",
        "status": "received",
    }


def test_the_echo_that_confirms_one_of_our_sends_is_heard_as_sent(clinic_a, receptionist_a):
    from django.utils import timezone

    from conversations.models import Conversation, Message, MessageAuthor, MessageDirection, MessageStatus

    patient = factories.patient(clinic_a, phone="+5511987654321")
    conversation = Conversation.objects.create(clinic=clinic_a, patient=patient)
    ours = Message.objects.create(  # our send, cut off before the provider's answer reached us
        clinic=clinic_a,
        conversation=conversation,
        direction=MessageDirection.OUTBOUND,
        author=MessageAuthor.AI,
        status=MessageStatus.SENDING,
        text="Sua consulta está confirmada.",
        claimed_at=timezone.now(),
        send_started_at=timezone.now(),
    )
    cookie = session_cookie(receptionist_a)

    async def scenario() -> dict:
        communicator = socket(cookie)
        assert (await communicator.connect())[0]
        echo = await sync_to_async(receive)(clinic_a, "Sua consulta está confirmada.", from_me=True)
        assert echo is None  # adopted by our send, not recorded as staff's
        event = await communicator.receive_json_from(timeout=3)
        await communicator.disconnect()
        return event

    event = async_to_sync(scenario)()

    assert event == {
        "event": "message",
        "conversation_id": conversation.pk,
        "message_id": ours.pk,
        "direction": "out",
        "status": "sent",
    }


def test_an_event_holds_no_message_text_phone_or_patient_name(clinic_a, receptionist_a):
    cookie = session_cookie(receptionist_a)

    async def scenario() -> dict:
        communicator = socket(cookie, f"?clinic={clinic_a.pk}")
        assert (await communicator.connect())[0]
        await sync_to_async(receive)(clinic_a)
        event = await communicator.receive_json_from(timeout=3)
        await communicator.disconnect()
        return event

    raw = json.dumps(async_to_sync(scenario)())

    for secret in ("dor no peito", "Maria", "Souza", "987654321"):
        assert secret not in raw


def test_a_user_of_another_clinic_cannot_join_this_clinic(clinic_a, clinic_b):
    cookie = session_cookie(factories.staff_user(clinic_b))

    async def scenario() -> int | None:
        return await closed_with(socket(cookie, f"?clinic={clinic_a.pk}"))

    assert async_to_sync(scenario)() == 4403


def test_an_anonymous_socket_is_closed_as_unauthenticated(clinic_a):
    async def scenario() -> int | None:
        return await closed_with(socket())

    assert async_to_sync(scenario)() == 4401


def test_staff_without_a_clinic_and_users_not_staff_are_refused(clinic_a):
    no_clinic = factories.staff_user(clinic_a)
    no_clinic.memberships.all().delete()
    not_staff = factories.staff_user(clinic_a)
    not_staff.is_staff = False
    not_staff.save(update_fields=["is_staff"])
    cookies = [session_cookie(no_clinic), session_cookie(not_staff)]

    async def scenario() -> list[int | None]:
        return [await closed_with(socket(cookie)) for cookie in cookies]

    assert async_to_sync(scenario)() == [4403, 4403]


def test_a_superuser_joins_the_clinic_named_and_is_refused_without_one(clinic_a, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw-for-tests-1234")
    cookie = session_cookie(admin)

    async def scenario() -> tuple[dict, int | None]:
        communicator = socket(cookie, f"?clinic={clinic_a.pk}")
        assert (await communicator.connect())[0]
        await sync_to_async(receive)(clinic_a)
        event = await communicator.receive_json_from(timeout=3)
        await communicator.disconnect()
        return event, await closed_with(socket(cookie))

    event, refused = async_to_sync(scenario)()

    assert event["event"] == "message"
    assert refused == 4403


def test_what_the_client_sends_is_ignored_and_a_rolled_back_change_is_never_published(clinic_a, receptionist_a):
    cookie = session_cookie(receptionist_a)

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            live_publish(clinic_id=clinic_a.pk, event="message", conversation_id=1)
            raise RuntimeError

    async def scenario() -> bool:
        communicator = socket(cookie)
        assert (await communicator.connect())[0]
        await communicator.send_json_to({"event": "message", "conversation_id": 1})
        await communicator.send_to(text_data="not json")
        await sync_to_async(rolled_back)()
        silent = await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return silent

    assert async_to_sync(scenario)()


def test_a_channel_layer_outage_is_logged_without_text_and_never_raised(clinic_a, settings, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"], "prefix": f"test-live-{uuid.uuid4().hex}"},
        }
    }

    with caplog.at_level(logging.WARNING, logger="conversations.live"):
        message = receive(clinic_a)

    assert message.pk is not None
    [record] = [r for r in caplog.records if r.name == "conversations.live"]
    assert "not published" in record.getMessage()
    assert "dor no peito" not in caplog.text and "987654321" not in caplog.text


def test_a_take_over_at_the_desk_is_heard_by_the_clinics_staff_only(clinic_a, clinic_b, receptionist_a):
    from conversations.desk.services import conversation_take_over

    message_a = receive(clinic_a)
    message_b = receive(clinic_b, phone="5511911113333")
    staff_b = factories.staff_user(clinic_b)
    cookie = session_cookie(receptionist_a)

    async def scenario() -> list[dict]:
        communicator = socket(cookie)
        connected, _ = await communicator.connect()
        assert connected
        await sync_to_async(conversation_take_over)(conversation_id=message_b.conversation_id, user=staff_b)
        await sync_to_async(conversation_take_over)(conversation_id=message_a.conversation_id, user=receptionist_a)
        heard = [await communicator.receive_json_from(timeout=3)]
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()
        return heard

    heard = async_to_sync(scenario)()

    assert heard == [
        {
            "event": "conversation",
            "conversation_id": message_a.conversation_id,
            "owner": "human",
            "needs_attention": False,
        }
    ]


def test_a_receptionist_removed_from_the_clinic_stops_hearing_it_at_once(clinic_a, receptionist_a):
    from cecilia.models import StaffMembership

    cookie = session_cookie(receptionist_a)
    other_staff = factories.staff_user(clinic_a)
    other_cookie = session_cookie(other_staff)

    async def scenario() -> tuple[int | None, bool, int | None]:
        removed, colleague = socket(cookie), socket(other_cookie)
        assert (await removed.connect())[0] and (await colleague.connect())[0]
        # Logging in (last_login) is no access change: nobody's socket is cut.
        await sync_to_async(Client().force_login)(receptionist_a)
        assert await removed.receive_nothing(timeout=0.3)

        await sync_to_async(StaffMembership.objects.filter(user=receptionist_a).delete)()
        closed = await removed.receive_output(timeout=3)
        assert closed["type"] == "websocket.close"
        await sync_to_async(receive)(clinic_a)
        colleague_heard = (await colleague.receive_json_from(timeout=3))["event"] == "message"
        await colleague.disconnect()
        again = await closed_with(socket(cookie))  # the page reconnects: refused now
        return closed.get("code"), colleague_heard, again

    code, colleague_heard, again = async_to_sync(scenario)()

    assert code == 4409
    assert colleague_heard  # the colleague's socket was not touched
    assert again == 4403
