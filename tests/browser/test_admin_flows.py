"""A receptionist's day in the admin, in a real Chromium: log in, find a patient, book an appointment.

These tests click and type as staff do (select2 autocompletes, the pt-BR split date/time widget) against a live
server on the real database, and assert what the receptionist sees on the page plus what ended up stored.
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

from scheduling.models import ActorKind, Appointment, AppointmentSource, AppointmentStatus, WorkingHours
from tests import factories

pytestmark = [
    pytest.mark.browser,
    # live_server needs committed data. The flush after each transactional test empties every table; the staff
    # role groups come back through post_migrate (cecilia.apps).
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "pw-for-tests-1234"  # factories.staff_user
SITE_HEADER = "Cecilia — Recepção"


def _url(live_server: Any, name: str, *args: Any) -> str:
    return f"{live_server.url}{reverse(name, args=args)}"


def _log_in(page: Page, live_server: Any, username: str) -> None:
    page.goto(_url(live_server, "admin:login"))
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator('#login-form [type="submit"]').click()
    expect(page.locator("#site-name")).to_have_text(SITE_HEADER)
    expect(page).to_have_url(_url(live_server, "admin:index"))


def _assert_styled_pt_br(page: Page, http_errors: list[str]) -> None:
    """The page is the admin in Portuguese with its stylesheets applied (static files served)."""
    expect(page.locator("html")).to_have_attribute("lang", "pt-br")
    header_bg = page.locator("#header").evaluate("el => getComputedStyle(el).backgroundColor")
    assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), "admin CSS not applied: the header has no background"
    assert http_errors == [], f"requests failed: {http_errors}"


def _pick_autocomplete(page: Page, field: str, search: str, option: str) -> None:
    """Choose in a select2 autocomplete as staff do: open it, type, click the suggestion."""
    page.locator(f".field-{field} .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(search)
    page.locator(".select2-container--open .select2-results__option", has_text=option).click()
    expect(page.locator(f"#select2-id_{field}-container")).to_contain_text(option)


def _fill_start(page: Page, local_start: datetime.datetime) -> None:
    """The admin's split date/time widget, in the pt-BR formats."""
    page.locator("#id_start_0").fill(f"{local_start:%d/%m/%Y}")
    page.locator("#id_start_1").fill(f"{local_start:%H:%M:%S}")


def _next_week_at(tz: zoneinfo.ZoneInfo, hour: int, minute: int) -> datetime.datetime:
    day = (timezone.now().astimezone(tz) + datetime.timedelta(days=7)).date()
    return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=tz)


def test_receptionist_finds_a_patient_and_books_an_appointment(
    page: Page,
    http_errors: list[str],
    live_server: Any,
    clinic_a: Any,
    clinic_b: Any,
    receptionist_a: Any,
    tmp_path: Path,
) -> None:
    maria = factories.patient(clinic_a, full_name="Maria Aparecida Souza")
    joao = factories.patient(clinic_a, full_name="João Pedro Lima")
    factories.patient(clinic_b, full_name="Helena Concorrente Barros")
    dra = factories.professional(clinic_a, name="Dra. Ana Ribeiro")
    consulta = factories.service(clinic_a, name="Consulta de rotina", duration_minutes=45, professionals=[dra])
    # Bookings go through the booking services: the professional works then (and a holiday does not close the clinic).
    clinic_a.open_on_holidays = True
    clinic_a.save(update_fields=["open_on_holidays"])
    for weekday in range(7):
        WorkingHours.objects.create(
            clinic=clinic_a, professional=dra, weekday=weekday, start=datetime.time(8), end=datetime.time(18)
        )

    _log_in(page, live_server, receptionist_a.username)
    _assert_styled_pt_br(page, http_errors)

    # The patient list, reached from the index like a receptionist would.
    patients_url = reverse("admin:patients_patient_changelist")
    page.locator(f'#content-main th[scope="row"] a[href="{patients_url}"]').click()
    expect(page).to_have_url(f"{live_server.url}{patients_url}")
    names = page.locator("#result_list tbody th.field-display_name a")
    expect(names).to_have_count(2)
    expect(names.filter(has_text=maria.full_name)).to_have_count(1)
    expect(names.filter(has_text=joao.full_name)).to_have_count(1)
    expect(page.locator("body")).not_to_contain_text("Helena")
    expect(page.locator("body")).not_to_contain_text("Concorrente")

    # A patient's page: the details form with their data.
    names.filter(has_text=maria.full_name).click()
    expect(page).to_have_url(_url(live_server, "admin:patients_patient_change", maria.pk))
    expect(page.locator("#patient_form")).to_be_visible()
    expect(page.locator("#id_full_name")).to_have_value(maria.full_name)
    expect(page.locator("#id_phone")).to_have_value(maria.phone)
    expect(page.locator('#patient_form [name="_save"]')).to_be_visible()

    # Book from the index's "Adicionar" link of appointments.
    page.locator("#site-name a").click()
    add_url = reverse("admin:scheduling_appointment_add")
    page.locator(f'#content-main a.addlink[href="{add_url}"]').click()
    expect(page).to_have_url(f"{live_server.url}{add_url}")
    # The patient search does not offer the other clinic's patient either.
    page.locator(".field-patient .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill("Helena")
    expect(page.locator(".select2-container--open .select2-results__message")).to_contain_text("Nenhum resultado")
    expect(page.locator(".select2-container--open .select2-results__option", has_text="Helena")).to_have_count(0)
    page.keyboard.press("Escape")
    _pick_autocomplete(page, "patient", "Maria", maria.full_name)
    _pick_autocomplete(page, "professional", "Ana", dra.name)
    _pick_autocomplete(page, "service", "rotina", consulta.name)
    # The clinic's zone (the default, São Paulo, UTC-3 all year): what the receptionist types is local time.
    tz = zoneinfo.ZoneInfo("America/Sao_Paulo")
    assert str(clinic_a.timezone) == "America/Sao_Paulo"
    local_start = _next_week_at(tz, 14, 30)
    _fill_start(page, local_start)
    expect(page.locator("#id_end_0")).to_have_count(0)  # not asked: a booking lasts the service's duration
    page.locator('#appointment_form [name="_save"]').click()

    success = page.locator("ul.messagelist li.success")
    expect(success).to_contain_text("foi adicionado com sucesso")
    expect(success).to_contain_text(maria.full_name)
    expect(page).to_have_url(_url(live_server, "admin:scheduling_appointment_changelist"))

    appointment = Appointment.objects.get()
    assert (appointment.clinic, appointment.patient, appointment.professional, appointment.service) == (
        clinic_a,
        maria,
        dra,
        consulta,
    )
    expected_utc = local_start.astimezone(datetime.UTC)
    assert expected_utc.hour == (14 + 3) % 24  # 14:30 in São Paulo is 17:30 UTC
    assert appointment.start == expected_utc
    assert appointment.end == expected_utc + datetime.timedelta(minutes=45)
    assert appointment.status == AppointmentStatus.SCHEDULED
    assert appointment.source == AppointmentSource.ADMIN
    assert appointment.created_by_kind == ActorKind.STAFF
    assert appointment.created_by_user == receptionist_a
    assert appointment.updated_by_user == receptionist_a

    # The changelist shows it, at the local time that was typed.
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(maria.full_name)
    expect(rows.first).to_contain_text(dra.name)
    expect(rows.first).to_contain_text(consulta.name)
    expect(rows.first.locator(".field-start")).to_contain_text("14:30")
    _assert_styled_pt_br(page, http_errors)
    page.screenshot(path=tmp_path / "appointment-booked.png", full_page=True)


def test_booking_over_another_appointment_of_the_professional_shows_an_error(
    page: Page, http_errors: list[str], live_server: Any, receptionist_a: Any, clinic_a: Any, tmp_path: Path
) -> None:
    # A clinic away from settings.TIME_ZONE, so the overlap only exists if the typed time is read in the clinic's
    # zone (Manaus, UTC-4): 10:15 Manaus overlaps 10:00–10:30 Manaus; 10:15 São Paulo (09:15 Manaus) would not.
    clinic_a.timezone = "America/Manaus"
    clinic_a.save(update_fields=["timezone"])
    tz = zoneinfo.ZoneInfo("America/Manaus")
    first = factories.patient(clinic_a, full_name="Maria Aparecida Souza")
    second = factories.patient(clinic_a, full_name="João Pedro Lima")
    dra = factories.professional(clinic_a, name="Dra. Ana Ribeiro")
    consulta = factories.service(clinic_a, name="Consulta de rotina", duration_minutes=30, professionals=[dra])
    booked_start = _next_week_at(tz, 10, 0)
    existing = factories.appointment(patient=first, professional=dra, service=consulta, start=booked_start)

    _log_in(page, live_server, receptionist_a.username)
    page.goto(_url(live_server, "admin:scheduling_appointment_add"))
    _pick_autocomplete(page, "patient", "João", second.full_name)  # another patient: only the professional clashes
    _pick_autocomplete(page, "professional", "Ana", dra.name)
    _pick_autocomplete(page, "service", "rotina", consulta.name)
    _fill_start(page, booked_start + datetime.timedelta(minutes=15))
    page.locator('#appointment_form [name="_save"]').click()

    # Django's pt-BR "please correct the error" banner, and the product's overlap message on the form.
    expect(page.locator("#appointment_form .errornote")).to_contain_text("corrija")
    expect(page.locator("ul.messagelist li.success")).to_have_count(0)
    errors = page.locator("#appointment_form ul.errorlist")
    expect(errors).to_have_count(1)
    shown = errors.inner_text().strip()
    # The receptionist reads who is busy and when, in the clinic's own time (10:00–10:30 Manaus), in Portuguese.
    assert dra.name in shown, shown
    assert "10:00" in shown and "10:30" in shown, f"the clash is not shown in the clinic's time zone: {shown!r}"
    assert "já tem" in shown, f"the overlap error does not reach the receptionist in Portuguese: {shown!r}"
    expect(page).to_have_url(_url(live_server, "admin:scheduling_appointment_add"))  # still on the form

    assert list(Appointment.objects.all()) == [existing]
    _assert_styled_pt_br(page, http_errors)
    page.screenshot(path=tmp_path / "overlap-error.png", full_page=True)
