"""The desk in a real Chromium against Cecilia's real processes: daphne (HTTP and the ws/inbox/ socket), a Celery
worker (webhook processing, turns, sends), a private Redis (broker and channel layer) and a fake Evolution API.

What a receptionist sees: a patient's WhatsApp message arrives through the webhook and appears in her open inbox
without a reload; she takes over and answers, the patient receives it, and the assistant stays silent while she owns
the chat; she gives it back and the assistant answers the next message. A receptionist of another clinic, with her
inbox open the whole time, sees none of it.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from cecilia.models import WhatsAppProvider
from conversations.models import Conversation, ConversationOwner
from tests import factories
from tests.browser.conftest import ACTION_TIMEOUT_MS
from tests.fakes import outbox as fakes
from tests.fakes.celery_worker import Worker
from tests.fakes.evolution_server import FakeEvolution
from tests.processes import free_port, start_web

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

private_redis = fakes.private_redis
outbox_redis = fakes.outbox_redis
fake_evolution = fakes.fake_evolution

PASSWORD = "pw-for-tests-1234"  # factories.staff_user
INSTANCE, API_KEY = fakes.EVOLUTION_INSTANCE, fakes.EVOLUTION_TOKEN  # the shared fake Evolution's
SECRET = "desk-webhook-secret-0123456789abcdef"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "evolution" / "2.3.7" / "messages_upsert_text.json"
PHONE = "5511987650001"
WAIT_S = 30.0


@pytest.fixture
def stack(transactional_db: Any, outbox_redis: Any, tmp_path: Path) -> Iterator[str]:
    """A worker and daphne on the private Redis and this test's database; yields daphne's base URL."""
    # No debounce and no pacing: the test waits for real sends, not for timers meant for patients' bursts.
    quick = {"WHATSAPP_SEND_PER_MINUTE": "0", "WHATSAPP_TYPING_DELAY_MS": "0", "TURN_DEBOUNCE_SECONDS": "0"}
    worker = Worker(redis_url=outbox_redis.url, log_path=tmp_path / "worker.log", env=quick)
    worker.start()
    port = free_port()
    web = start_web({**worker.environment, "LOG_LEVEL": "WARNING"}, port, tmp_path / "web.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.kill()
        web.wait(timeout=10)
        worker.kill()


def webhook(base_url: str, text: str) -> None:
    """The patient writes: Evolution's messages.upsert, as it posts it."""
    payload = json.loads(FIXTURE.read_text())
    payload["instance"], payload["apikey"] = INSTANCE, API_KEY
    payload["data"]["key"].update(remoteJid=f"{PHONE}@s.whatsapp.net", remoteJidAlt="", id=uuid.uuid4().hex.upper())
    payload["data"]["pushName"] = "Joana Prado"
    payload["data"]["message"]["conversation"] = text
    payload["data"]["messageTimestamp"] = int(time.time())
    request = urllib.request.Request(
        f"{base_url}/webhooks/whatsapp/evolution/",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "X-Cecilia-Webhook-Secret": SECRET},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def sent_texts(fake: FakeEvolution) -> list[str]:
    return [str(request.body.get("text", "")) for request in fake.requests_to("sendText")]


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting until {what}")
        time.sleep(0.1)


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}{reverse('admin:login')}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator('#login-form [type="submit"]').click()
    page.wait_for_url(f"{base_url}{reverse('admin:index')}")


def open_inbox(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}{reverse('admin:conversations_conversation_inbox')}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "on")  # the socket is open


def test_a_receptionist_sees_the_message_live_takes_over_answers_and_gives_back(
    page: Page, fake_evolution: FakeEvolution, stack: str
) -> None:
    clinic = factories.clinic(
        name="Clínica Sorriso",
        whatsapp_provider=WhatsAppProvider.EVOLUTION,
        whatsapp_instance=INSTANCE,
        whatsapp_api_url=fake_evolution.url,
        whatsapp_api_key=API_KEY,
        whatsapp_webhook_secret=SECRET,
        privacy_notice="",
    )
    receptionist = factories.staff_user(clinic, username="ana.recepcao")
    other_clinic = factories.clinic(name="Clínica Outra")
    outsider = factories.staff_user(other_clinic, username="bia.outra")

    # The other clinic's receptionist keeps her inbox open in her own browser session.
    other_context = page.context.browser.new_context(locale="pt-BR", timezone_id="America/Sao_Paulo")
    other_context.set_default_timeout(ACTION_TIMEOUT_MS)
    other_page = other_context.new_page()
    log_in(other_page, stack, outsider.username)
    open_inbox(other_page, stack)
    log_in(page, stack, receptionist.username)
    open_inbox(page, stack)

    # 1. The patient writes; the conversation appears in the open inbox, no reload.
    page.evaluate("window.__notReloaded = true")
    webhook(stack, "Oi, bom dia")
    row = page.locator(".desk-row", has_text="Joana Prado")
    expect(row).to_be_visible(timeout=WAIT_S * 1000)
    assert page.evaluate("window.__notReloaded") is True, "the inbox updated in place"
    wait_for(lambda: len(sent_texts(fake_evolution)) >= 1, "the assistant answered the first message")

    # 2. She opens it and takes over; her answer reaches the patient.
    row.locator("a.desk-row__link").click()
    expect(page.locator("#transcript")).to_contain_text("Oi, bom dia")
    page.get_by_role("button", name="Assumir").click()
    expect(page.locator(".desk-state")).to_contain_text("A equipe está atendendo")
    conversation = Conversation.objects.get(clinic=clinic)
    assert conversation.owner == ConversationOwner.HUMAN
    page.get_by_label("Mensagem para o paciente").fill("Olá, Joana! Aqui é a Ana, da recepção.")
    page.get_by_role("button", name="Enviar").click()
    wait_for(lambda: "Olá, Joana! Aqui é a Ana, da recepção." in sent_texts(fake_evolution), "her answer was sent")
    expect(page.locator("#transcript")).to_contain_text("Olá, Joana! Aqui é a Ana")

    # 3. While she owns it the patient's next message shows up live on her page and the assistant stays silent.
    sends_before = len(sent_texts(fake_evolution))
    webhook(stack, "Obrigada! Queria saber do meu exame")
    expect(page.locator("#transcript")).to_contain_text("Queria saber do meu exame", timeout=WAIT_S * 1000)
    time.sleep(3)  # the worker has taken the message (it is on the page); give a wrong reply time to leave
    assert len(sent_texts(fake_evolution)) == sends_before, "the assistant stayed silent while staff own the chat"

    # 4. She gives it back; the assistant answers the next message.
    page.get_by_role("button", name="Devolver à assistente").click()
    expect(page.locator(".desk-state")).to_contain_text("está respondendo")
    webhook(stack, "Quanto custa uma consulta?")
    wait_for(lambda: len(sent_texts(fake_evolution)) > sends_before, "the assistant answered after the give-back")

    # 5. The other clinic's receptionist saw none of it, live or on reload.
    assert "Joana" not in other_page.locator("#inbox-rows").inner_text()
    other_page.reload()
    assert "Joana" not in other_page.content()
    other_context.close()


def test_the_inbox_fits_a_tablet_at_the_front_desk(page: Page, live_server: Any) -> None:
    clinic = factories.clinic()
    receptionist = factories.staff_user(clinic)
    patient = factories.patient(clinic, full_name="Paciente Com Um Nome Bem Comprido Para Testar")
    Conversation.objects.create(clinic=clinic, patient=patient, owner=ConversationOwner.HUMAN)
    page.set_viewport_size({"width": 768, "height": 1024})
    log_in(page, live_server.url, receptionist.username)
    page.goto(f"{live_server.url}{reverse('admin:conversations_conversation_inbox')}")

    expect(page.locator(".desk-row")).to_have_count(1)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the inbox scrolls sideways by {overflow}px on a tablet"
    # Labels for every control (screen readers, and the tests' own way of finding them).
    assert page.get_by_label("Estado").count() == 1
