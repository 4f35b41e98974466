"""The WhatsApp simulator in a real Chromium: a receptionist writes "oi" as a new patient and sees the chat live.

The processing task runs for real: Celery is eager for these tests (the task runs in the live server's thread when the
webhook event commits), or — in the second test — the publish is recorded and the worker's job is run by the test, to
watch the page turn a pending message into a processed one by polling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse
from django.utils import translation
from playwright.sync_api import Page, expect

from cecilia.celery import app as celery_app
from conversations import services, tasks
from conversations.models import Conversation, InboundEvent, Message, MessageAuthor, MessageStatus
from patients.models import Patient

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1234"  # factories.staff_user


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks run where they are published (the worker's semantics are tested with a real worker elsewhere)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


def _label(status: MessageStatus) -> str:
    with translation.override("pt-br"):
        return str(status.label)


def _log_in(page: Page, live_server: Any, username: str) -> None:
    page.goto(f"{live_server.url}{reverse('admin:login')}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator('#login-form [type="submit"]').click()
    expect(page).to_have_url(f"{live_server.url}{reverse('admin:index')}")


def _open_simulator(page: Page, live_server: Any) -> None:
    """From the conversation list, as staff would find it."""
    page.goto(f"{live_server.url}{reverse('admin:conversations_conversation_changelist')}")
    page.locator(f'.object-tools a[href="{reverse("admin:conversations_conversation_simulator")}"]').click()
    expect(page.locator("#sim-form")).to_be_visible()
    page.wait_for_load_state("domcontentloaded")  # the page's script (Enter sends, polling) has run


def test_a_receptionist_writes_oi_as_a_new_number_and_sees_it_and_the_reply_appear(
    page: Page, http_errors: list[str], live_server: Any, clinic_a: Any, receptionist_a: Any, eager_celery: None
) -> None:
    _log_in(page, live_server, receptionist_a.username)
    _open_simulator(page, live_server)
    expect(page.locator("html")).to_have_attribute("lang", "pt-br")

    page.locator("#sim-phone").fill("(11) 98765-4321")
    page.locator("#sim-name").fill("Maria")
    page.locator("#sim-text").fill("oi")
    page.locator("#sim-text").press("Enter")  # Enter sends, as on WhatsApp Web

    patient_bubbles = page.locator("#sim-transcript .sim-msg--patient:not(.sim-msg--pending)")
    expect(patient_bubbles).to_have_count(1)
    expect(patient_bubbles.first.locator(".sim-msg__text")).to_have_text("oi")
    expect(page.locator("#sim-chat-title")).to_contain_text("Maria")
    expect(page.locator("#sim-text")).to_be_focused()
    message = Message.objects.get()
    assert (message.clinic, message.text, message.conversation.patient.phone) == (clinic_a, "oi", "+5511987654321")
    assert InboundEvent.objects.get().processed_at is not None  # the task ran: the same path as a webhook

    # A reply written by Cecilia (the assistant or staff) shows up by itself, with its status.
    Message.objects.create(
        clinic=clinic_a,
        conversation=message.conversation,
        direction="out",
        author=MessageAuthor.STAFF,
        status=MessageStatus.QUEUED,
        text="Olá, Maria! Como podemos ajudar?",
    )
    reply = page.locator("#sim-transcript .sim-msg--clinic")
    expect(reply).to_have_count(1, timeout=6_000)
    expect(reply.locator(".sim-msg__text")).to_have_text("Olá, Maria! Como podemos ajudar?")
    expect(reply.locator(".sim-msg__status")).to_have_text(_label(MessageStatus.QUEUED))
    Message.objects.filter(direction="out").update(status=MessageStatus.SENT)
    expect(reply.locator(".sim-msg__status")).to_have_text(_label(MessageStatus.SENT), timeout=6_000)
    assert http_errors == [], f"requests failed: {http_errors}"


def test_a_message_waits_as_pending_until_the_worker_processes_it(
    page: Page, live_server: Any, clinic_a: Any, receptionist_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[int] = []
    monkeypatch.setattr(tasks.inbound_event_process, "delay", published.append)
    maria = Patient.objects.create(clinic=clinic_a, full_name="Maria Souza", phone="+5511987654321")
    _log_in(page, live_server, receptionist_a.username)
    _open_simulator(page, live_server)

    page.locator("#sim-patient").select_option(label="Maria Souza · +55 11 98765-4321")
    expect(page).to_have_url(
        f"{live_server.url}{reverse('admin:conversations_conversation_simulator')}"
        f"?clinic={clinic_a.pk}&phone=%2B5511987654321"
    )
    page.locator("#sim-text").fill("quero marcar uma consulta")
    page.locator("#sim-send").click()

    pending = page.locator("#sim-transcript .sim-msg--pending")
    expect(pending).to_have_count(1)
    expect(pending.locator(".sim-msg__text")).to_have_text("quero marcar uma consulta")
    assert len(published) == 1

    services.inbound_event_process(event_id=published[0])  # the worker's job

    expect(pending).to_have_count(0, timeout=6_000)
    expect(page.locator("#sim-transcript .sim-msg--patient .sim-msg__text")).to_have_text("quero marcar uma consulta")
    expect(page.locator("#sim-conversation-link")).to_have_attribute(
        "href", reverse("admin:conversations_conversation_change", args=[Conversation.objects.get(patient=maria).pk])
    )
