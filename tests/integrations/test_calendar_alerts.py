"""Staff see, on every admin page, when Google Calendar stopped working for their clinic — and only for theirs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from cecilia.models import StaffRole
from integrations.models import AccountState, CalendarAccount, ProfessionalSync
from tests import factories


@pytest.fixture(autouse=True)
def english(client):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"


def banner(client, user) -> str:
    client.force_login(user)
    page = client.get(reverse("admin:index")).content.decode()
    if 'id="calendar-alerts"' not in page:
        return ""
    return page.split('id="calendar-alerts"', 1)[1].split("</ul>", 1)[0]


@pytest.mark.django_db
def test_revoked_access_is_shown_to_the_clinics_staff_with_a_way_to_fix_it(client, clinic_a, clinic_b):
    CalendarAccount.objects.create(clinic=clinic_a, state=AccountState.REVOKED, last_error="invalid_grant")
    manager = factories.staff_user(clinic_a, role=StaffRole.MANAGER)
    shown = banner(client, manager)
    assert "Clínica A" in shown and "Access revoked or expired" in shown
    assert reverse("admin:integrations_calendaraccount_change", args=[clinic_a.calendar_account.pk]) in shown

    receptionist = factories.staff_user(clinic_a, role=StaffRole.RECEPTIONIST)
    shown = banner(client, receptionist)
    assert "Access revoked or expired" in shown and "Ask a manager" in shown

    assert banner(client, factories.staff_user(clinic_b)) == ""


@pytest.mark.django_db
def test_a_professionals_unreadable_calendar_is_named(client, clinic_a):
    ana = factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id="ana@clinica.example")
    ProfessionalSync.objects.create(clinic=clinic_a, professional=ana, last_error="notFound: calendar not shared")
    shown = banner(client, factories.staff_user(clinic_a))
    assert "Dra. Ana Souza" in shown and "cannot be read" in shown


@pytest.mark.django_db
def test_nothing_is_shown_while_google_works(client, clinic_a):
    CalendarAccount.objects.create(clinic=clinic_a, state=AccountState.OK)
    ana = factories.professional(clinic_a, name="Dra. Ana Souza", google_calendar_id="ana@clinica.example")
    ProfessionalSync.objects.create(clinic=clinic_a, professional=ana)
    assert banner(client, factories.staff_user(clinic_a)) == ""
