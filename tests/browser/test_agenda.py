"""The agenda in a real Chromium: a receptionist opens a day, books from a free slot and sees the booking appear.

Same set-up as test_admin_flows.py: Debian's Chromium, a live server on the real database, pt-BR, São Paulo.
"""

from __future__ import annotations

import datetime
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from scheduling.models import ActorKind, Appointment, AppointmentChange, AppointmentStatus, WorkingHours
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1234"  # factories.staff_user
SP = zoneinfo.ZoneInfo("America/Sao_Paulo")


def _log_in(page: Page, live_server: Any, username: str) -> None:
    page.goto(f"{live_server.url}{reverse('admin:login')}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator('#login-form [type="submit"]').click()
    expect(page).to_have_url(f"{live_server.url}{reverse('admin:index')}")


def _pick_autocomplete(page: Page, field: str, search: str, option: str) -> None:
    page.locator(f".field-{field} .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(search)
    page.locator(".select2-container--open .select2-results__option", has_text=option).click()
    expect(page.locator(f"#select2-id_{field}-container")).to_contain_text(option)


def test_receptionist_books_from_a_free_slot_and_sees_it_in_the_grid(
    page: Page, http_errors: list[str], live_server: Any, clinic_a: Any, receptionist_a: Any, tmp_path: Path
) -> None:
    clinic_a.open_on_holidays = True  # the day is relative to today: a holiday must not close it
    clinic_a.save(update_fields=["open_on_holidays"])
    ana = factories.professional(clinic_a, name="Dra. Ana Ribeiro")
    beto = factories.professional(clinic_a, name="Dr. Beto Lima")
    for professional in (ana, beto):
        for weekday in range(7):
            WorkingHours.objects.create(
                clinic=clinic_a,
                professional=professional,
                weekday=weekday,
                start=datetime.time(8),
                end=datetime.time(12),
            )
    consulta = factories.service(clinic_a, name="Consulta de rotina", duration_minutes=30, professionals=[ana, beto])
    maria = factories.patient(clinic_a, full_name="Maria Aparecida Souza")
    joao = factories.patient(clinic_a, full_name="João Pedro Lima")
    day = (timezone.now().astimezone(SP) + datetime.timedelta(days=3)).date()
    factories.appointment(
        patient=joao, professional=beto, service=consulta, start=datetime.datetime.combine(day, datetime.time(9), SP)
    )

    _log_in(page, live_server, receptionist_a.username)
    # From the index's agenda link, then the day picked in the date field.
    page.locator(f'#content-main a[href="{reverse("admin:scheduling_appointment_agenda")}"]').first.click()
    expect(page.locator("h1")).to_contain_text("Agenda")
    page.locator("#agenda-date").fill(day.isoformat())
    page.locator("#agenda-show").click()
    expect(page.locator("#agenda-range")).to_contain_text(str(day.day))

    columns = page.locator("section.agenda-col")
    expect(columns).to_have_count(2)
    expect(columns.nth(0).locator(".agenda-col__head")).to_contain_text("Dr. Beto Lima")
    expect(columns.nth(0).locator(".agenda-appt")).to_contain_text("João")
    ana_column = page.locator(f'section.agenda-col[data-professional="{ana.pk}"]')
    expect(ana_column.locator(".agenda-appt")).to_have_count(0)

    # The empty 10:30 of Dra. Ana, by its accessible name.
    ana_column.get_by_role("link", name="10:30").click()
    expect(page.locator("#id_start_1")).to_have_value("10:30:00")
    expect(page.locator("#select2-id_professional-container")).to_contain_text(ana.name)
    _pick_autocomplete(page, "patient", "Maria", maria.full_name)
    _pick_autocomplete(page, "service", "rotina", consulta.name)
    page.locator('#appointment_form [name="_save"]').click()

    # Back on the same day of the agenda, with the booking in Dra. Ana's column at 10:30.
    expect(page.locator("ul.messagelist li.success")).to_contain_text(maria.full_name)
    expect(page.locator("#agenda-range")).to_contain_text(str(day.day))
    block = ana_column.locator(".agenda-appt")
    expect(block).to_have_count(1)
    expect(block).to_contain_text("Maria")
    expect(block).to_contain_text("10:30–11:00")
    expect(block).to_contain_text("Consulta de rotina")
    expect(ana_column.locator("a.agenda-free", has_text="10:30")).to_have_count(0)  # no longer free

    appointment = Appointment.objects.get(patient=maria)
    assert appointment.start == datetime.datetime.combine(day, datetime.time(10, 30), SP)
    assert (appointment.professional, appointment.status) == (ana, AppointmentStatus.SCHEDULED)
    assert (appointment.created_by_kind, appointment.created_by_user) == (ActorKind.STAFF, receptionist_a)
    assert AppointmentChange.objects.filter(appointment=appointment, action="booked").count() == 1

    # A quick action from the block's menu: confirm it, through the service.
    block.locator("summary").click()
    block.locator(".agenda-menu form[action$='/confirm/'] button").click()
    expect(page.locator("ul.messagelist li.success")).to_have_count(1)
    expect(ana_column.locator(".agenda-appt--confirmed")).to_have_count(1)
    appointment.refresh_from_db()
    assert appointment.status == AppointmentStatus.CONFIRMED

    assert http_errors == [], f"requests failed: {http_errors}"
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet at the front desk, portrait
    page.screenshot(path=tmp_path / "agenda-tablet.png", full_page=True)
    print(f"agenda screenshot: {tmp_path / 'agenda-tablet.png'}")
