"""The agenda page: what staff see on a day or a week, who may see it, and that it costs the same few queries."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from cecilia.models import ClosedDate, StaffRole
from cecilia.services import staff_membership_set
from scheduling.agenda import agenda_grid
from scheduling.availability import free_slots
from scheduling.models import AppointmentStatus, TimeOff, WorkingHours
from tests import factories

AGENDA = "admin:scheduling_appointment_agenda"
SP = zoneinfo.ZoneInfo("America/Sao_Paulo")
# A Wednesday well ahead, not a holiday anywhere in Brazil; the clock is frozen a week before it.
DAY = datetime.date(2031, 3, 12)
NOW = datetime.datetime(2031, 3, 5, 10, 0, tzinfo=SP)


def at(hour: int, minute: int = 0, day: datetime.date = DAY, tz: zoneinfo.ZoneInfo = SP) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=tz)


def working_week(professional, *shifts):
    for weekday in range(7):
        for start, end in shifts:
            WorkingHours.objects.create(
                clinic=professional.clinic,
                professional=professional,
                weekday=weekday,
                start=datetime.time(*start),
                end=datetime.time(*end),
            )


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def agenda(clinic_a):
    ana = factories.professional(clinic_a, name="Dra. Ana Ribeiro")
    beto = factories.professional(clinic_a, name="Dr. Beto Lima")
    working_week(ana, ((8, 0), (12, 0)), ((14, 0), (18, 0)))  # a split shift
    working_week(beto, ((9, 0), (17, 0)))
    consulta = factories.service(clinic_a, name="Consulta", duration_minutes=30, professionals=[ana, beto])
    maria = factories.patient(clinic_a, full_name="Maria Aparecida Souza")
    joao = factories.patient(clinic_a, full_name="João Pedro")
    first = factories.appointment(patient=maria, professional=ana, service=consulta, start=at(9))
    second = factories.appointment(
        patient=joao, professional=beto, service=consulta, start=at(10), status=AppointmentStatus.CONFIRMED
    )
    return {"ana": ana, "beto": beto, "consulta": consulta, "maria": maria, "first": first, "second": second}


def _get(client, **params):
    return client.get(reverse(AGENDA), params)


def _column(response, professional, day=DAY):
    return next(c for c in response.context["grid"].columns if c.professional == professional and c.day == day)


@pytest.mark.django_db
def test_the_day_shows_every_professional_side_by_side_with_their_appointments(client, receptionist_a, agenda):
    client.force_login(receptionist_a)
    response = _get(client, date=DAY.isoformat())

    assert response.status_code == 200
    grid = response.context["grid"]
    assert [c.professional.name for c in grid.columns] == ["Dr. Beto Lima", "Dra. Ana Ribeiro"]
    ana_blocks = _column(response, agenda["ana"]).blocks
    assert [(b.appointment, b.time_label) for b in ana_blocks] == [(agenda["first"], "09:00–09:30")]
    html = response.content.decode()
    change_url = reverse("admin:scheduling_appointment_change", args=[agenda["first"].pk])
    assert f'href="{change_url}"' in html
    assert "agenda-appt--scheduled" in html and "agenda-appt--confirmed" in html
    assert ">Maria</strong>" in html  # the first name only
    assert "Aparecida" not in html.split('class="agenda-appt__who"')[1].split("</strong>")[0]
    # Rows span the earliest to the latest working hour of the people shown.
    assert (grid.first_minute, grid.last_minute) == (8 * 60, 18 * 60)


@pytest.mark.django_db
def test_without_a_date_the_agenda_opens_on_today_in_the_clinics_time_zone(client, manager_a, clinic_a, agenda):
    client.force_login(manager_a)
    # 23:30 in São Paulo is already tomorrow in UTC: "today" is the clinic's.
    with time_machine.travel(at(23, 30), tick=False):
        response = _get(client)
    assert response.context["query"].day == DAY
    assert response.context["today"] == DAY


@pytest.mark.django_db
def test_the_week_view_shows_one_professionals_seven_days(client, receptionist_a, agenda):
    client.force_login(receptionist_a)
    friday = factories.appointment(
        patient=agenda["maria"],
        professional=agenda["ana"],
        service=agenda["consulta"],
        start=at(15, day=DAY + datetime.timedelta(days=2)),
    )
    response = _get(client, date=DAY.isoformat(), view="week", professional=agenda["ana"].pk)

    columns = response.context["grid"].columns
    monday = DAY - datetime.timedelta(days=DAY.weekday())
    assert [c.day for c in columns] == [monday + datetime.timedelta(days=n) for n in range(7)]
    assert {c.professional for c in columns} == {agenda["ana"]}
    by_day = {c.day: [b.appointment for b in c.blocks] for c in columns}
    assert by_day[DAY] == [agenda["first"]]
    assert by_day[DAY + datetime.timedelta(days=2)] == [friday]
    assert agenda["second"] not in [a for blocks in by_day.values() for a in blocks]  # Beto's
    assert f"date={(DAY + datetime.timedelta(days=7)).isoformat()}" in response.context["next_url"]


@pytest.mark.django_db
def test_working_hours_are_shaded_and_time_off_and_closed_days_are_visible(client, receptionist_a, clinic_a, agenda):
    client.force_login(receptionist_a)
    TimeOff.objects.create(clinic=clinic_a, professional=agenda["beto"], start=at(13), end=at(15), reason="Dentista")
    ClosedDate.objects.create(clinic=clinic_a, date=DAY + datetime.timedelta(days=1), reason="Dedetização")

    response = _get(client, date=DAY.isoformat())
    ana, beto = _column(response, agenda["ana"]), _column(response, agenda["beto"])
    first = response.context["grid"].first_minute
    assert [(s.top + first, s.length) for s in ana.shades if s.kind == "work"] == [(480, 240), (840, 240)]
    assert [(s.top + first, s.length, s.label) for s in beto.shades if s.kind == "off"] == [(780, 120, "Dentista")]
    # No free time offered while Beto is away, nor over his appointment.
    beto_free = {cell.label for cell in beto.free}
    assert not beto_free & {"13:00", "13:30", "14:00", "14:30", "10:00"}
    assert {"09:00", "09:30", "10:30", "12:30", "15:00", "16:30"} <= beto_free
    assert "Dentista" in response.content.decode()

    closed = _get(client, date=(DAY + datetime.timedelta(days=1)).isoformat())
    for column in closed.context["grid"].columns:
        assert column.closed_reason == "Dedetização"
        assert column.free == []
    assert "Dedetização" in closed.content.decode()


@pytest.mark.django_db
def test_public_holidays_close_the_day_unless_the_clinic_opens_on_them(client, receptionist_a, clinic_a, agenda):
    client.force_login(receptionist_a)
    christmas = datetime.date(2031, 12, 25)
    with translation.override("pt-br"):
        response = _get(client, date=christmas.isoformat())
    assert {c.closed_reason for c in response.context["grid"].columns} == {"Natal"}
    clinic_a.open_on_holidays = True
    clinic_a.save(update_fields=["open_on_holidays"])
    response = _get(client, date=christmas.isoformat())
    assert {c.closed_reason for c in response.context["grid"].columns} == {""}


@pytest.mark.django_db
def test_empty_time_links_to_the_add_form_prefilled_with_the_professional_and_the_start(
    client, receptionist_a, clinic_a, agenda
):
    client.force_login(receptionist_a)
    response = _get(client, date=DAY.isoformat())
    ana = _column(response, agenda["ana"])
    labels = [cell.label for cell in ana.free]
    assert "09:00" not in labels  # Maria's appointment
    assert labels[:3] == ["08:00", "08:30", "09:30"]
    assert "12:00" not in labels and "14:00" in labels  # the lunch break is not free time
    cell = next(c for c in ana.free if c.label == "14:00")

    form_page = client.get(cell.url)
    assert form_page.status_code == 200
    initial = form_page.context["adminform"].form.initial
    assert initial["professional"] == str(agenda["ana"].pk)
    assert initial["clinic"] == str(clinic_a.pk)
    assert initial["start"] == at(14)
    assert 'value="14:00:00"' in form_page.content.decode()


@pytest.mark.django_db
def test_with_a_service_chosen_the_free_slots_are_availabilitys(client, receptionist_a, clinic_a, agenda):
    client.force_login(receptionist_a)
    exame = factories.service(clinic_a, name="Exame", duration_minutes=45, professionals=[agenda["ana"]])
    response = _get(client, date=DAY.isoformat(), service=exame.pk)

    columns = response.context["grid"].columns
    assert [c.professional for c in columns] == [agenda["ana"]]  # Beto does not perform it
    expected = free_slots(
        service=exame, start=at(0), end=at(0, day=DAY + datetime.timedelta(days=1)), enforce_policy=False
    )
    assert [cell.start for cell in columns[0].free] == [slot.start for slot in expected]
    assert expected and all(f"service={exame.pk}" in cell.url for cell in columns[0].free)


@pytest.mark.django_db
def test_an_appointment_outside_working_hours_stretches_the_rows(clinic_a, agenda):
    late = factories.appointment(
        patient=factories.patient(clinic_a), professional=agenda["beto"], service=agenda["consulta"], start=at(19, 30)
    )
    grid = agenda_grid(clinic=clinic_a, professionals=[agenda["beto"]], days=[DAY])
    assert (grid.first_minute, grid.last_minute) == (9 * 60, 20 * 60)
    assert [b.appointment for b in grid.columns[0].blocks][-1] == late


@pytest.mark.django_db
def test_a_day_across_a_dst_change_places_blocks_at_their_wall_clock_time(clinic_a, agenda):
    # São Paulo last had DST in 2018/19: clocks went forward at 00:00 on 4 November 2018.
    clinic_a.timezone = "America/Sao_Paulo"
    dst_day = datetime.date(2018, 11, 4)
    appointment = factories.appointment(
        patient=factories.patient(clinic_a),
        professional=agenda["ana"],
        service=agenda["consulta"],
        start=at(9, day=dst_day),
    )
    grid = agenda_grid(clinic=clinic_a, professionals=[agenda["ana"]], days=[dst_day])
    block = grid.columns[0].blocks[0]
    assert block.appointment == appointment
    assert (block.top + grid.first_minute, block.length, block.time_label) == (540, 30, "09:00–09:30")


# --- scoping and roles ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_another_clinics_professional_or_clinic_answers_404(client, receptionist_a, clinic_b, agenda):
    client.force_login(receptionist_a)
    other = factories.professional(clinic_b, name="Dra. Concorrente")
    assert _get(client, professional=other.pk).status_code == 404
    assert _get(client, clinic=clinic_b.pk).status_code == 404
    assert _get(client, service=factories.service(clinic_b).pk).status_code == 404
    html = _get(client, date=DAY.isoformat()).content.decode()
    assert "Concorrente" not in html


@pytest.mark.django_db
def test_another_clinics_appointments_never_show(client, receptionist_a, clinic_b, agenda):
    client.force_login(receptionist_a)
    other_pro = factories.professional(clinic_b, name="Dr. Outro")
    factories.appointment(
        patient=factories.patient(clinic_b, full_name="Helena Barros"),
        professional=other_pro,
        service=factories.service(clinic_b, professionals=[other_pro]),
        start=at(9),
    )
    html = _get(client, date=DAY.isoformat()).content.decode()
    assert "Helena" not in html and "Dr. Outro" not in html


@pytest.mark.django_db
def test_staff_of_two_clinics_choose_which_agenda_they_see(client, clinic_a, clinic_b, receptionist_a, agenda):
    staff_membership_set(user_id=receptionist_a.pk, clinic=clinic_b, role=StaffRole.MANAGER)
    client.force_login(receptionist_a)
    factories.professional(clinic_b, name="Dr. Bê")
    response = _get(client, clinic=clinic_b.pk, date=DAY.isoformat())
    assert response.status_code == 200
    assert response.context["query"].clinic == clinic_b
    assert [c.pk for c in response.context["clinics"]] == [clinic_a.pk, clinic_b.pk]
    assert 'id="agenda-clinic"' in response.content.decode()
    assert [c.professional.name for c in response.context["grid"].columns] == ["Dr. Bê"]


@pytest.mark.django_db
def test_receptionists_and_managers_both_work_the_agenda_only_managers_get_the_hours_link(
    client, receptionist_a, manager_a, agenda
):
    hours_url = reverse("admin:scheduling_professional_change", args=[agenda["ana"].pk])
    for user, sees_hours in ((receptionist_a, False), (manager_a, True)):
        client.force_login(user)
        response = _get(client, date=DAY.isoformat())
        html = response.content.decode()
        assert response.status_code == 200
        assert response.context["may_change"] is True
        assert "agenda-free" in html and "/confirm/" in html
        assert (hours_url in html) is sees_hours


@pytest.mark.django_db
def test_staff_without_a_clinic_cannot_open_the_agenda(client, agenda):
    from django.contrib.auth import get_user_model

    loner = get_user_model().objects.create_user(username="sem_clinica", password="x-1234-abcd", is_staff=True)
    client.force_login(loner)
    assert _get(client).status_code == 403
    client.logout()
    assert _get(client).status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_index_and_the_appointment_list_link_to_the_agenda(client, receptionist_a, agenda):
    client.force_login(receptionist_a)
    url = reverse(AGENDA)
    assert f'href="{url}"' in client.get(reverse("admin:index")).content.decode()
    assert f'href="{url}"' in client.get(reverse("admin:scheduling_appointment_changelist")).content.decode()


@pytest.mark.django_db
def test_bad_query_values_fall_back_instead_of_failing(client, receptionist_a, agenda):
    client.force_login(receptionist_a)
    response = _get(client, date="31/02/2031", view="month")
    assert response.status_code == 200
    assert response.context["query"].day == DAY - datetime.timedelta(days=7)  # today
    assert response.context["query"].view == "day"
    assert _get(client, professional="abc").status_code == 404


# --- queries ---------------------------------------------------------------------------------------------------------


def _count_queries(client, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = _get(client, **params)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.django_db
@pytest.mark.parametrize("with_service", [False, True])
def test_the_page_costs_the_same_queries_however_full_the_agenda(
    client, clinic_a, receptionist_a, agenda, with_service
):
    client.force_login(receptionist_a)
    service = agenda["consulta"]
    params = {"date": DAY.isoformat(), **({"service": service.pk} if with_service else {})}
    week = {**params, "view": "week", "professional": agenda["ana"].pk}
    small_day, small_week = _count_queries(client, **params), _count_queries(client, **week)

    for n in range(6):
        pro = factories.professional(clinic_a, name=f"Dr. Extra {n}")
        working_week(pro, ((7, 0), (19, 0)))
        service.professionals.add(pro)
        TimeOff.objects.create(clinic=clinic_a, professional=pro, start=at(12), end=at(13))
        for hour in (8, 9, 10, 11, 14, 15):
            factories.appointment(
                patient=factories.patient(clinic_a), professional=pro, service=service, start=at(hour)
            )
    for day in range(7):
        factories.appointment(
            patient=factories.patient(clinic_a),
            professional=agenda["ana"],
            service=service,
            start=at(16, day=DAY - datetime.timedelta(days=DAY.weekday()) + datetime.timedelta(days=day)),
        )

    assert _count_queries(client, **params) == small_day
    assert _count_queries(client, **week) == small_week
    assert len(_get(client, **params).context["grid"].columns) == 8


@pytest.mark.django_db
def test_changes_made_in_google_waiting_for_staff_are_counted_with_a_link_for_who_may_review(
    client, receptionist_a, clinic_a, agenda
):
    from django.contrib.auth import get_user_model

    from integrations.models import CalendarReconciliation

    CalendarReconciliation.objects.create(
        clinic=clinic_a, appointment=agenda["first"], professional=agenda["ana"], kind="deleted"
    )
    client.force_login(receptionist_a)
    response = _get(client, date=DAY.isoformat())
    assert response.context["reconciliations"]["count"] == 1
    assert 'id="agenda-reconciliations"' in response.content.decode()

    admin_user = get_user_model().objects.create_superuser(username="root", password="x-1234-abcd")
    client.force_login(admin_user)
    html = _get(client, clinic=clinic_a.pk, date=DAY.isoformat()).content.decode()
    assert f'href="{reverse("admin:integrations_calendarreconciliation_changelist")}"' in html
