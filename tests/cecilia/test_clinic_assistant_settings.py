"""The clinic's assistant settings in the admin: privacy notice, hand-back time, language model and its secret key."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from cecilia.models import Clinic
from tests.admin_forms import changeform_data

WRITE_ONLY = frozenset(
    {
        "whatsapp_api_key",
        "whatsapp_webhook_secret",
        "whatsapp_verify_token",
        "clear_secrets",
        "llm_api_key",
        "clear_llm_api_key",
    }
)
LLM_KEY = "sk-proj-Abc123Def456Ghi789-Q7RZ"


def change_url(clinic: Clinic) -> str:
    return reverse("admin:cecilia_clinic_change", args=[clinic.pk])


def form_errors(response) -> object:
    return response.context["adminform"].form.errors if response.context else ""


@pytest.fixture
def clinic_with_llm_key(clinic_a):
    clinic_a.llm_api_key = LLM_KEY
    clinic_a.llm_base_url = "https://llm.example.com/v1"
    clinic_a.save()
    return clinic_a


def test_new_clinics_start_with_sensible_assistant_defaults(db):
    clinic = Clinic.objects.create(name="Nova", slug="nova")
    assert clinic.assistant_handback_minutes == 120
    assert clinic.llm_daily_token_budget == 200_000
    assert clinic.transcribe_voice_notes is True
    assert (clinic.llm_model, clinic.llm_base_url, clinic.llm_api_key, clinic.privacy_notice) == ("", "", "", "")


@pytest.mark.django_db
def test_the_llm_key_is_encrypted_at_rest_and_never_rendered_back(client, manager_a, clinic_with_llm_key):
    with connection.cursor() as cursor:
        cursor.execute("SELECT llm_api_key FROM cecilia_clinic WHERE id = %s", [clinic_with_llm_key.pk])
        assert LLM_KEY not in cursor.fetchone()[0]
    client.force_login(manager_a)
    page = client.get(change_url(clinic_with_llm_key)).content.decode()
    assert "Abc123Def456" not in page
    assert "…Q7RZ" in page  # which key is set stays visible
    assert 'name="llm_api_key"' in page and 'type="password"' in page


@pytest.mark.django_db
def test_a_receptionist_reading_the_clinic_page_never_sees_the_llm_key(client, receptionist_a, clinic_with_llm_key):
    client.force_login(receptionist_a)
    response = client.get(change_url(clinic_with_llm_key))
    page = response.content.decode()
    assert response.status_code == 200 and not response.context["has_change_permission"]
    assert "Abc123Def456" not in page
    assert "…Q7RZ" in page


@pytest.mark.django_db
def test_a_manager_sets_the_privacy_notice_and_assistant_settings(client, manager_a, clinic_with_llm_key):
    client.force_login(manager_a)
    url = change_url(clinic_with_llm_key)
    data = changeform_data(client.get(url), skip=WRITE_ONLY)
    data.update(
        {
            "privacy_notice": "Seus dados são usados só para o seu atendimento, conforme a LGPD.",
            "privacy_notice_url": "clinica.example/privacidade",
            "assistant_handback_minutes": "45",
            "llm_model": "gpt-4.1-mini",
            "llm_daily_token_budget": "50000",
        }
    )
    data.pop("transcribe_voice_notes", None)  # unticked
    response = client.post(url, data)
    assert response.status_code == 302, form_errors(response)
    clinic = Clinic.objects.get(pk=clinic_with_llm_key.pk)
    assert clinic.privacy_notice.startswith("Seus dados")
    assert clinic.privacy_notice_url == "https://clinica.example/privacidade"
    assert (clinic.assistant_handback_minutes, clinic.llm_model, clinic.llm_daily_token_budget) == (
        45,
        "gpt-4.1-mini",
        50000,
    )
    assert clinic.transcribe_voice_notes is False
    assert clinic.llm_api_key == LLM_KEY  # the blank key field kept the stored key


@pytest.mark.django_db
def test_a_new_llm_key_replaces_the_old_one_and_the_erase_box_removes_it(client, manager_a, clinic_with_llm_key):
    client.force_login(manager_a)
    url = change_url(clinic_with_llm_key)
    data = changeform_data(client.get(url), skip=WRITE_ONLY)
    response = client.post(url, {**data, "llm_api_key": "sk-new-key-0000000000-NEW1"})
    assert response.status_code == 302, form_errors(response)
    assert Clinic.objects.get(pk=clinic_with_llm_key.pk).llm_api_key == "sk-new-key-0000000000-NEW1"
    clinic_with_llm_key.whatsapp_api_key = "evo-key-that-must-stay"
    clinic_with_llm_key.save()
    response = client.post(url, {**data, "clear_llm_api_key": "on"})
    assert response.status_code == 302, form_errors(response)
    clinic = Clinic.objects.get(pk=clinic_with_llm_key.pk)
    assert clinic.llm_api_key == ""
    assert clinic.whatsapp_api_key == "evo-key-that-must-stay"  # erasing one key leaves the others


@pytest.mark.django_db
def test_pointing_the_model_at_another_server_takes_typing_the_key_again(client, manager_a, clinic_with_llm_key):
    client.force_login(manager_a)
    url = change_url(clinic_with_llm_key)
    data = changeform_data(client.get(url), skip=WRITE_ONLY)
    data["llm_base_url"] = "https://other-llm.example.net/v1"
    response = client.post(url, data)
    assert response.status_code == 200
    assert "llm_api_key" in form_errors(response)
    assert Clinic.objects.get(pk=clinic_with_llm_key.pk).llm_base_url == "https://llm.example.com/v1"
    response = client.post(url, {**data, "llm_api_key": "sk-for-the-other-server-9999"})
    assert response.status_code == 302, form_errors(response)


@pytest.mark.django_db
def test_the_hand_back_time_is_at_most_a_week(client, manager_a, clinic_a):
    client.force_login(manager_a)
    url = change_url(clinic_a)
    data = changeform_data(client.get(url), skip=WRITE_ONLY)
    response = client.post(url, {**data, "assistant_handback_minutes": str(7 * 24 * 60 + 1)})
    assert "assistant_handback_minutes" in form_errors(response)
    response = client.post(url, {**data, "assistant_handback_minutes": "0"})
    assert response.status_code == 302, form_errors(response)
    assert Clinic.objects.get(pk=clinic_a.pk).assistant_handback_minutes == 0
