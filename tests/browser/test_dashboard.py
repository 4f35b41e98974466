"""The admin index's dashboard in a real Chromium: the front desk sees today's agenda and who waits for a person, and
on a 768 px tablet nothing scrolls sideways.

Same set-up as test_agenda.py: Debian's Chromium, a live server on the real database, pt-BR, São Paulo.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from conversations.models import AttentionReason, Conversation
from scheduling.models import AppointmentStatus
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1234"  # factories.staff_user


def _log_in(page: Page, live_server: Any, username: str) -> None:
    page.goto(f"{live_server.url}{reverse('admin:login')}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator('#login-form [type="submit"]').click()
    expect(page).to_have_url(f"{live_server.url}{reverse('admin:index')}")


def test_the_front_desk_sees_todays_agenda_and_a_waiting_conversation_on_a_tablet(
    page: Page, http_errors: list[str], live_server: Any, clinic_a: Any, receptionist_a: Any, tmp_path: Path
) -> None:
    ana = factories.professional(clinic_a, name="Dra. Ana Ribeiro")
    consulta = factories.service(clinic_a, name="Consulta de rotina", professionals=[ana])
    today = timezone.localtime(timezone.now(), clinic_a.tz).date()
    factories.appointment(
        patient=factories.patient(clinic_a, full_name="Maria Aparecida Souza"),
        professional=ana,
        service=consulta,
        start=datetime.datetime.combine(today, datetime.time(23, 0), clinic_a.tz),
        status=AppointmentStatus.CONFIRMED,
    )
    waiting = Conversation.objects.create(
        clinic=clinic_a,
        patient=factories.patient(clinic_a, full_name="João Pedro Lima"),
        needs_attention=True,
        attention_reason=AttentionReason.EMERGENCY,
        last_inbound_at=timezone.now() - datetime.timedelta(minutes=7),
    )
    page.set_viewport_size({"width": 768, "height": 1024})

    _log_in(page, live_server, receptionist_a.username)

    agenda = page.locator("#dash-agenda")
    expect(agenda.locator(".dash-prof h3")).to_have_text("Dra. Ana Ribeiro")
    expect(agenda.locator(".dash-appt")).to_contain_text("23:00")
    expect(agenda.locator(".dash-appt a")).to_have_text("Maria Aparecida Souza")
    row = page.locator("#dash-waiting .dash-conv")
    expect(row).to_have_count(1)
    expect(row.locator("a")).to_have_text("João Pedro Lima")
    assert f"/{waiting.pk}/" in (row.locator("a").get_attribute("href") or "")
    expect(page.locator("#dash-charts figure")).to_have_count(5)
    expect(page.locator("#content-main .app-scheduling")).to_be_visible()  # the app list is still on the page

    overflow = page.evaluate(
        "() => ({page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,"
        " wide: [...document.querySelectorAll('#content-main *')].filter(e => e.getBoundingClientRect().right >"
        " document.documentElement.clientWidth + 1).map(e => e.className || e.tagName).slice(0, 5)})"
    )
    page.screenshot(path=tmp_path / "dashboard-768.png", full_page=True)
    assert overflow["page"] <= overflow["view"], overflow
    assert overflow["wide"] == [], overflow
    assert http_errors == []
