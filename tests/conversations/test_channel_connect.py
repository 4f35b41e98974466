"""Connecting a clinic's WhatsApp number from the admin and from `manage.py whatsapp_connect`, and the alert staff see
when the channel stays down.

Every provider call goes through the real adapter; respx replaces the wire and answers with the contract's bodies
(tests/fixtures/evolution/rest/). A request nobody mocked fails the test.
"""

from __future__ import annotations

import copy
import datetime
import json
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from cecilia.models import ChannelState, Clinic, StaffRole, WhatsAppProvider
from cecilia.services import staff_membership_set
from conversations.channel_connect import EVOLUTION_WEBHOOK_EVENTS
from conversations.context_processors import channel_alerts, channel_alerts_for
from tests import factories

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution" / "rest"
BASE = "https://evolution.clinica.com.br"
TOKEN = "3F6A9C1E-7B2D-4E8F-A051-9C3D7E2B4F60"  # the instance token in create_instance_response_201.json
GLOBAL_KEY = "B6D711FCDE4D4FD5936544120E713976"
PUBLIC = "https://cecilia.clinica.com.br"
CHANNEL = "admin:conversations_conversation_channel"
PAIR = "admin:conversations_conversation_channel_pair"
CONTEXT_PROCESSOR = "conversations.context_processors.channel_alerts"


def rest(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


@pytest.fixture(autouse=True)
def english(client: Any, settings: Any) -> None:
    """Pages in English (the source language), and a known public URL for the webhook."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    settings.PUBLIC_BASE_URL = PUBLIC


@pytest.fixture
def evolution(clinic_a: Clinic) -> Clinic:
    clinic_a.whatsapp_provider = WhatsAppProvider.EVOLUTION
    clinic_a.whatsapp_instance = "atendimento-sp"
    clinic_a.whatsapp_api_url = BASE
    clinic_a.save()
    return clinic_a


@pytest.fixture
def paired(evolution: Clinic) -> Clinic:
    """An instance that exists: its token and webhook secret are stored."""
    evolution.whatsapp_api_key = TOKEN
    evolution.whatsapp_webhook_secret = "w" * 43
    evolution.save()
    return evolution


@pytest.fixture
def evo() -> Any:
    with respx.mock(base_url=BASE, assert_all_called=True) as router:
        yield router


@pytest.fixture
def manager(client: Any, manager_a: Any) -> Any:
    client.force_login(manager_a)
    return client


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def _step(client: Any, clinic: Clinic, action: str, **data: Any) -> Any:
    return client.post(reverse(CHANNEL, args=[clinic.pk]), {"action": action, **data}, follow=True)


# --- who may connect ------------------------------------------------------------------------------------------------


def test_the_clinic_page_shows_managers_the_connect_button(manager, evolution):
    page = manager.get(reverse("admin:cecilia_clinic_change", args=[evolution.pk])).content.decode()

    assert f'href="{reverse(CHANNEL, args=[evolution.pk])}"' in page
    assert "Connect WhatsApp" in page


def test_a_console_clinic_page_links_to_the_simulator_instead(manager, clinic_a):
    page = manager.get(reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])).content.decode()

    assert reverse(CHANNEL, args=[clinic_a.pk]) not in page
    assert f"{reverse('admin:conversations_conversation_simulator')}?clinic={clinic_a.pk}" in page


def test_a_receptionist_is_refused_the_connect_page_of_their_clinic(client, evolution, receptionist_a):
    client.force_login(receptionist_a)

    clinic_page = client.get(reverse("admin:cecilia_clinic_change", args=[evolution.pk])).content.decode()

    assert reverse(CHANNEL, args=[evolution.pk]) not in clinic_page
    assert client.get(reverse(CHANNEL, args=[evolution.pk])).status_code == 403
    assert client.post(reverse(CHANNEL, args=[evolution.pk]), {"action": "state"}).status_code == 403
    assert client.post(reverse(PAIR, args=[evolution.pk])).status_code == 403


def test_staff_of_another_clinic_get_404(client, evolution, clinic_b):
    client.force_login(factories.staff_user(clinic_b, role=StaffRole.MANAGER))

    assert client.get(reverse(CHANNEL, args=[evolution.pk])).status_code == 404
    assert client.post(reverse(CHANNEL, args=[evolution.pk]), {"action": "webhook"}).status_code == 404
    assert client.post(reverse(PAIR, args=[evolution.pk])).status_code == 404


def test_a_manager_of_a_and_receptionist_of_b_may_connect_only_a(client, evolution, clinic_b):
    user = factories.staff_user(evolution, role=StaffRole.MANAGER)
    staff_membership_set(user_id=user.pk, clinic=clinic_b, role=StaffRole.RECEPTIONIST)
    client.force_login(user)

    assert client.get(reverse(CHANNEL, args=[evolution.pk])).status_code == 200
    assert client.get(reverse(CHANNEL, args=[clinic_b.pk])).status_code == 403


# --- the page -------------------------------------------------------------------------------------------------------


def test_the_evolution_page_shows_the_steps_the_webhook_url_and_the_stored_state_without_secrets(manager, paired):
    Clinic.objects.filter(pk=paired.pk).update(
        channel_state=ChannelState.OPEN,
        channel_state_since=timezone.now() - datetime.timedelta(hours=1),
        channel_phone="5511912345678",
    )

    response = manager.get(reverse(CHANNEL, args=[paired.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert f"{PUBLIC}/webhooks/whatsapp/evolution/" in page
    assert all(event in page for event in EVOLUTION_WEBHOOK_EVENTS)
    assert "Connected" in page and "+55 11 91234-5678" in page
    assert 'name="global_api_key"' in page and 'type="password"' in page
    assert TOKEN not in page and "w" * 43 not in page


def test_the_meta_page_says_what_to_paste_where_and_checks_the_connection(manager, clinic_a):
    clinic_a.whatsapp_provider = WhatsAppProvider.META
    clinic_a.whatsapp_instance = "106540352242922"
    clinic_a.whatsapp_api_key = "EAAG-meta-access-token-secret"
    clinic_a.save()

    page = manager.get(reverse(CHANNEL, args=[clinic_a.pk])).content.decode()
    with respx.mock(assert_all_called=True) as graph:
        route = graph.get("https://graph.facebook.com/v21.0/106540352242922").respond(
            200, json={"id": "106540352242922"}
        )
        checked = _step(manager, clinic_a, "state")

    assert f"{PUBLIC}/webhooks/whatsapp/meta/" in page
    assert "Verify token" in page and "Access token" in page and "App secret" in page
    assert "EAAG-meta-access-token-secret" not in page
    assert route.calls.last.request.headers["Authorization"] == "Bearer EAAG-meta-access-token-secret"
    assert _messages(checked) == ["WhatsApp connection, as the provider says now: Connected."]
    assert Clinic.objects.get(pk=clinic_a.pk).channel_state == ChannelState.OPEN


def test_the_console_page_points_to_the_simulator(manager, clinic_a):
    page = manager.get(reverse(CHANNEL, args=[clinic_a.pk])).content.decode()

    assert "there is no phone to connect" in page
    assert f"{reverse('admin:conversations_conversation_simulator')}?clinic={clinic_a.pk}" in page


# --- creating the instance ------------------------------------------------------------------------------------------


def test_creating_the_instance_sends_the_global_key_once_and_stores_the_returned_token(manager, evolution, evo):
    route = evo.post("/instance/create").respond(201, json=rest("create_instance_response_201.json"))

    response = manager.post(reverse(CHANNEL, args=[evolution.pk]), {"action": "create", "global_api_key": GLOBAL_KEY})

    evolution.refresh_from_db()
    request = route.calls.last.request
    assert request.headers["apikey"] == GLOBAL_KEY
    assert sent_json(route) == rest("create_instance_request.json")
    assert evolution.whatsapp_api_key == TOKEN
    assert GLOBAL_KEY not in {evolution.whatsapp_api_key, evolution.whatsapp_webhook_secret}
    assert evolution.channel_state == ChannelState.CONNECTING
    page = response.content.decode()
    assert response.status_code == 200
    assert _messages(response) == [
        "Instance “atendimento-sp” created on the Evolution server; its token is stored in the clinic's settings."
    ]
    assert 'src="data:image/png;base64,' in page  # the first QR code, at once
    assert GLOBAL_KEY not in page and TOKEN not in page


def test_an_instance_without_a_name_is_named_after_the_clinic(manager, evolution, evo):
    Clinic.objects.filter(pk=evolution.pk).update(whatsapp_instance="")
    route = evo.post("/instance/create").respond(201, json=rest("create_instance_response_201.json"))

    _step(manager, evolution, "create", global_api_key=GLOBAL_KEY)

    assert sent_json(route)["instanceName"] == "clinica-a"
    assert Clinic.objects.get(pk=evolution.pk).whatsapp_instance == "clinica-a"


def test_creating_without_the_global_key_calls_nothing(manager, evolution, evo):
    response = _step(manager, evolution, "create", global_api_key="  ")

    assert _messages(response) == ["Type the Evolution server's global API key."]
    assert Clinic.objects.get(pk=evolution.pk).whatsapp_api_key == ""


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (403, rest("create_instance_error_403_name_in_use.json"), "Já existe uma instância com este nome"),
        (401, rest("error_401_unauthorized.json"), "The Evolution server refused the global API key."),
        (
            404,
            rest("error_404_instance_not_found.json"),
            "A instância de WhatsApp configurada para a clínica não existe",
        ),
        (500, {"status": 500, "error": "Internal Server Error", "response": {"message": "boom"}}, "is unavailable"),
    ],
)
def test_provider_errors_are_admin_error_messages_never_a_500(manager, evolution, evo, status, body, message):
    evo.post("/instance/create").respond(status, json=body)

    response = _step(manager, evolution, "create", global_api_key=GLOBAL_KEY)

    assert response.status_code == 200
    [shown] = _messages(response)
    assert message in shown
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    assert Clinic.objects.get(pk=evolution.pk).whatsapp_api_key == ""


def test_an_unreachable_server_is_said_in_words(manager, evolution, evo):
    evo.post("/instance/create").mock(side_effect=httpx.ConnectError("connection refused"))

    response = _step(manager, evolution, "create", global_api_key=GLOBAL_KEY)

    assert _messages(response) == [
        f"Could not reach {BASE}. Check the API base URL and that the server is running, then try again."
    ]


def test_a_server_too_slow_to_answer_is_said_in_words(manager, paired, evo):
    evo.get("/instance/connectionState/atendimento-sp").mock(side_effect=httpx.ReadTimeout("slow"))

    response = _step(manager, paired, "state")

    assert _messages(response) == [f"{BASE} did not answer in time. Try again in a moment."]


def test_no_step_runs_without_the_server_url(manager, evolution, evo):
    Clinic.objects.filter(pk=evolution.pk).update(whatsapp_api_url="")

    response = _step(manager, evolution, "create", global_api_key=GLOBAL_KEY)

    assert _messages(response) == ["Set the Evolution API base URL in the clinic's WhatsApp settings first."]


# --- the webhook ----------------------------------------------------------------------------------------------------


def test_setting_the_webhook_generates_a_strong_secret_and_posts_the_nested_body_with_it_as_jwt_key(
    manager, evolution, evo
):
    Clinic.objects.filter(pk=evolution.pk).update(whatsapp_api_key=TOKEN)
    route = evo.post("/webhook/set/atendimento-sp").respond(201, json=rest("webhook_set_response_201.json"))

    response = _step(manager, evolution, "webhook")

    secret = Clinic.objects.get(pk=evolution.pk).whatsapp_webhook_secret
    assert len(secret) >= 32
    assert route.calls.last.request.headers["apikey"] == TOKEN
    assert sent_json(route) == {
        "webhook": {
            "enabled": True,
            "url": f"{PUBLIC}/webhooks/whatsapp/evolution/",
            "headers": {"jwt_key": secret},
            "byEvents": False,
            "base64": False,
            "events": [
                "MESSAGES_UPSERT",
                "MESSAGES_UPDATE",
                "MESSAGES_DELETE",
                "SEND_MESSAGE",
                "CONNECTION_UPDATE",
                "QRCODE_UPDATED",
            ],
        }
    }
    assert _messages(response) == [
        f"Webhook set: Evolution now sends the clinic's messages to {PUBLIC}/webhooks/whatsapp/evolution/."
    ]
    assert secret not in response.content.decode()


def test_the_secret_sent_to_evolution_is_the_one_the_webhook_view_accepts(manager, evolution, evo):
    """What Evolution signs with `jwt_key` passes the inbound check: the round trip is closed."""
    from conversations.channel import channel_provider

    Clinic.objects.filter(pk=evolution.pk).update(whatsapp_api_key=TOKEN)
    route = evo.post("/webhook/set/atendimento-sp").respond(201, json=rest("webhook_set_response_201.json"))
    _step(manager, evolution, "webhook")
    jwt_key = sent_json(route)["webhook"]["headers"]["jwt_key"]
    now = int(timezone.now().timestamp())
    token = jwt.encode({"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}, jwt_key, "HS256")

    provider = channel_provider(Clinic.objects.get(pk=evolution.pk))

    assert provider.verify_webhook(b"{}", {"Authorization": f"Bearer {token}"}, {"instance": "atendimento-sp"})


def test_an_existing_webhook_secret_is_kept(manager, paired, evo):
    route = evo.post("/webhook/set/atendimento-sp").respond(201, json=rest("webhook_set_response_201.json"))

    _step(manager, paired, "webhook")

    assert sent_json(route)["webhook"]["headers"] == {"jwt_key": "w" * 43}
    assert Clinic.objects.get(pk=paired.pk).whatsapp_webhook_secret == "w" * 43


def test_the_webhook_needs_the_instance_token_first(manager, evolution, evo):
    response = _step(manager, evolution, "webhook")

    assert _messages(response) == [
        "The clinic has no instance token yet: create the instance, or type its API key in the settings."
    ]


# --- pairing and state ----------------------------------------------------------------------------------------------


def test_pairing_shows_the_qr_code_and_records_that_the_channel_is_connecting(manager, paired, evo):
    answer = rest("connect_response_qrcode.json")
    route = evo.get("/instance/connect/atendimento-sp").respond(200, json=answer)

    response = manager.post(reverse(CHANNEL, args=[paired.pk]), {"action": "pair"})

    assert route.calls.last.request.headers["apikey"] == TOKEN
    assert response.status_code == 200
    assert f'src="{answer["base64"]}"' in response.content.decode()
    assert f'data-url="{reverse(PAIR, args=[paired.pk])}"' in response.content.decode()
    assert Clinic.objects.get(pk=paired.pk).channel_state == ChannelState.CONNECTING


def test_pairing_an_open_number_says_it_is_connected(manager, paired, evo):
    evo.get("/instance/connect/atendimento-sp").respond(200, json=rest("connect_response_open.json"))

    response = _step(manager, paired, "pair")

    assert _messages(response) == ["The number is connected: there is no QR code to scan."]
    assert Clinic.objects.get(pk=paired.pk).channel_state == ChannelState.OPEN


def test_the_pairing_poll_returns_the_new_qr_code_then_open(manager, paired, evo):
    answers = iter([rest("connect_response_qrcode.json"), rest("connect_response_open.json")])
    evo.get("/instance/connect/atendimento-sp").mock(
        side_effect=lambda request: httpx.Response(200, json=next(answers))
    )

    first = manager.post(reverse(PAIR, args=[paired.pk])).json()
    second = manager.post(reverse(PAIR, args=[paired.pk])).json()

    assert first["state"] == "connecting" and first["qr"].startswith("data:image/png;base64,")
    assert second == {"state": "open", "state_label": "Connected", "qr": "", "pairing_code": ""}


def test_the_pairing_poll_reports_provider_errors_as_json(manager, paired, evo):
    evo.get("/instance/connect/atendimento-sp").respond(200, json=rest("connect_response_error.json"))

    response = manager.post(reverse(PAIR, args=[paired.pk]))

    assert response.status_code == 200
    assert response.json() == {"error": f"{BASE} is unavailable right now. Try again in a moment."}


def test_the_pairing_poll_is_post_only(manager, paired):
    assert manager.get(reverse(PAIR, args=[paired.pk])).status_code == 405


def test_checking_the_state_asks_evolution_and_remembers_the_answer(manager, paired, evo):
    route = evo.get("/instance/connectionState/atendimento-sp").respond(
        200, json=rest("connection_state_response_connecting.json")
    )

    response = _step(manager, paired, "state")

    assert route.calls.last.request.headers["apikey"] == TOKEN
    clinic = Clinic.objects.get(pk=paired.pk)
    assert clinic.channel_state == ChannelState.CONNECTING and clinic.channel_state_since is not None
    assert _messages(response) == ["WhatsApp connection, as the provider says now: Connecting."]


def test_an_unknown_action_is_an_error_message(manager, paired):
    assert _messages(_step(manager, paired, "format-the-disk")) == ["Unknown action."]


# --- the alert ------------------------------------------------------------------------------------------------------


@pytest.fixture
def alerts_on(settings: Any) -> None:
    """The context processor as settings.TEMPLATES lists it in production (added here when it is not yet)."""
    templates = copy.deepcopy(settings.TEMPLATES)
    processors = templates[0]["OPTIONS"]["context_processors"]
    if CONTEXT_PROCESSOR not in processors:
        processors.append(CONTEXT_PROCESSOR)
    settings.TEMPLATES = templates


def _down(clinic: Clinic, *, minutes: float, state: str = ChannelState.CLOSE) -> None:
    since = timezone.now() - datetime.timedelta(minutes=minutes)
    Clinic.objects.filter(pk=clinic.pk).update(channel_state=state, channel_state_since=since)


def _banner(client: Any) -> str:
    page = client.get(reverse("admin:index")).content.decode()
    start = page.find('id="channel-alerts"')
    return "" if start < 0 else page[start : page.find("</ul>", start)]


def test_managers_see_a_banner_linking_to_reconnect_when_the_channel_is_down_for_minutes(alerts_on, manager, evolution):
    _down(evolution, minutes=12)
    since = timezone.localtime(Clinic.objects.get(pk=evolution.pk).channel_state_since, evolution.tz)

    banner = _banner(manager)

    assert f"<strong>Clínica A</strong>: WhatsApp disconnected since {since:%H:%M}" in banner
    assert f'href="{reverse(CHANNEL, args=[evolution.pk])}"' in banner


def test_receptionists_see_the_banner_and_are_told_to_ask_a_manager(alerts_on, client, evolution, receptionist_a):
    _down(evolution, minutes=12)
    client.force_login(receptionist_a)

    banner = _banner(client)

    assert "WhatsApp disconnected since" in banner
    assert "Ask a manager of the clinic to reconnect it." in banner
    assert "href" not in banner


@pytest.mark.parametrize(
    ("minutes", "state", "shown"),
    [
        (12, ChannelState.CLOSE, True),
        (12, ChannelState.CONNECTING, True),  # waiting for a QR scan nobody does
        (12, ChannelState.REFUSED, True),
        (2, ChannelState.CLOSE, False),  # a reconnect in progress: not yet
        (600, ChannelState.OPEN, False),
    ],
)
def test_the_banner_shows_only_after_the_channel_stays_down(alerts_on, manager, evolution, minutes, state, shown):
    _down(evolution, minutes=minutes, state=state)

    assert bool(_banner(manager)) is shown


def test_the_delay_comes_from_the_settings(alerts_on, settings, manager, evolution):
    settings.WHATSAPP_CHANNEL_ALERT_AFTER = 60
    _down(evolution, minutes=2)

    assert "WhatsApp disconnected since" in _banner(manager)


def test_a_channel_that_never_connected_is_not_connected(alerts_on, manager, evolution):
    banner = _banner(manager)

    assert "<strong>Clínica A</strong>: WhatsApp not connected" in banner


def test_console_clinics_never_alert(alerts_on, manager, clinic_a):
    _down(clinic_a, minutes=60)

    assert _banner(manager) == ""


def test_staff_see_only_their_own_clinics_alerts(alerts_on, manager, evolution, clinic_b):
    Clinic.objects.filter(pk=clinic_b.pk).update(whatsapp_provider=WhatsAppProvider.META)
    _down(clinic_b, minutes=60)
    Clinic.objects.filter(pk=evolution.pk).update(channel_state=ChannelState.OPEN)

    assert _banner(manager) == ""


def test_superusers_see_every_clinics_alert(alerts_on, client, evolution, clinic_b):
    Clinic.objects.filter(pk=clinic_b.pk).update(whatsapp_provider=WhatsAppProvider.META)
    _down(clinic_b, minutes=60)
    _down(evolution, minutes=60)
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", password="pw-for-tests-1234"))

    banner = _banner(client)

    assert "Clínica A" in banner and "Clínica B" in banner


def test_the_login_page_has_no_banner(alerts_on, client, evolution):
    _down(evolution, minutes=60)

    assert 'id="channel-alerts"' not in client.get(reverse("admin:login")).content.decode()


def test_the_alerts_cost_one_query(manager_a, evolution, clinic_b, django_assert_num_queries):
    _down(evolution, minutes=60)
    request = RequestFactory().get("/admin/")
    request.user = manager_a
    channel_alerts_for(manager_a)  # the user's clinics and roles: cached per request, as the admin has them

    context = channel_alerts(request)
    with django_assert_num_queries(1):
        assert [alert.clinic_name for alert in context["channel_alerts"]] == ["Clínica A"]


def test_the_alerts_are_not_queried_when_no_page_draws_them(manager_a, django_assert_num_queries):
    request = RequestFactory().get("/admin/")
    request.user = manager_a

    with django_assert_num_queries(0):
        channel_alerts(request)


# --- the management command -----------------------------------------------------------------------------------------


def _command(*args: str) -> str:
    out = StringIO()
    call_command("whatsapp_connect", *args, stdout=out)
    return out.getvalue()


def test_the_command_creates_sets_the_webhook_writes_the_qr_code_and_reads_the_state(
    evolution, evo, monkeypatch, tmp_path
):
    monkeypatch.setenv("EVOLUTION_GLOBAL_KEY", GLOBAL_KEY)
    created = evo.post("/instance/create").respond(201, json=rest("create_instance_response_201.json"))
    webhook = evo.post("/webhook/set/atendimento-sp").respond(201, json=rest("webhook_set_response_201.json"))
    connect = evo.get("/instance/connect/atendimento-sp").respond(200, json=rest("connect_response_qrcode.json"))
    state = evo.get("/instance/connectionState/atendimento-sp").respond(
        200, json=rest("connection_state_response_connecting.json")
    )
    qr_file = tmp_path / "qr.png"

    out = _command(
        "clinica-a",
        "--create",
        "--global-api-key-env",
        "EVOLUTION_GLOBAL_KEY",
        "--set-webhook",
        "--qr-file",
        str(qr_file),
        "--state",
    )

    clinic = Clinic.objects.get(pk=evolution.pk)
    assert created.calls.last.request.headers["apikey"] == GLOBAL_KEY
    assert sent_json(created) == rest("create_instance_request.json")
    assert webhook.calls.last.request.headers["apikey"] == TOKEN
    assert sent_json(webhook)["webhook"]["headers"] == {"jwt_key": clinic.whatsapp_webhook_secret}
    assert connect.called and state.called
    assert clinic.whatsapp_api_key == TOKEN
    assert qr_file.read_bytes().startswith(b"\x89PNG")
    assert "Instance 'atendimento-sp' created" in out
    assert f"Webhook set to {PUBLIC}/webhooks/whatsapp/evolution/" in out
    assert f"QR code written to {qr_file}" in out
    assert "Connection state: connecting" in out
    for secret in (GLOBAL_KEY, TOKEN, clinic.whatsapp_webhook_secret):
        assert secret not in out


def test_the_command_reads_the_state_when_no_step_is_named(paired, evo):
    evo.get("/instance/connectionState/atendimento-sp").respond(200, json=rest("connection_state_response_200.json"))

    assert "Connection state: open" in _command("clinica-a")


def test_the_command_says_when_the_number_is_already_paired(paired, evo, tmp_path):
    evo.get("/instance/connect/atendimento-sp").respond(200, json=rest("connect_response_open.json"))

    out = _command("clinica-a", "--qr-file", str(tmp_path / "qr.png"))

    assert "already connected" in out
    assert not (tmp_path / "qr.png").exists()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["nao-existe"], {}, "No clinic has the slug 'nao-existe'."),
        (["clinica-a", "--create"], {}, "--create needs --global-api-key-env VAR"),
        (["clinica-a", "--create", "--global-api-key-env", "NOPE_KEY"], {}, "NOPE_KEY is not set or empty"),
    ],
)
def test_the_command_fails_with_a_message(evolution, monkeypatch, args, env, message):
    monkeypatch.delenv("NOPE_KEY", raising=False)

    with pytest.raises(CommandError, match=message.replace("?", r"\?")):
        _command(*args)


def test_the_command_refuses_evolution_steps_for_other_providers(clinic_a):
    with pytest.raises(CommandError, match="are for the Evolution API"):
        _command("clinica-a", "--set-webhook")


def test_the_command_exits_non_zero_with_the_providers_reason(paired, evo):
    evo.get("/instance/connectionState/atendimento-sp").respond(404, json=rest("error_404_instance_not_found.json"))

    with pytest.raises(CommandError, match="não existe no servidor Evolution"):
        _command("clinica-a", "--state")
