"""The admin index's dashboard (conversations.dashboard): its figures per clinic-local day, scoping and query count."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cecilia.models import ChannelState, StaffRole, WhatsAppProvider
from conversations.dashboard import Chart, dashboard_for_user
from conversations.models import (
    AttentionReason,
    Conversation,
    ConversationOwner,
    Message,
    MessageAuthor,
    MessageDirection,
    MessageStatus,
    Turn,
    TurnOutcome,
)
from integrations.models import AccountState, CalendarAccount
from scheduling.models import (
    ActorKind,
    Appointment,
    AppointmentAction,
    AppointmentChange,
    AppointmentSource,
    AppointmentStatus,
)
from scheduling.reminder_models import ReminderStep, StepStatus
from tests import factories

pytestmark = pytest.mark.django_db

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")  # UTC-3 all year
MANAUS = zoneinfo.ZoneInfo("America/Manaus")  # UTC-4 all year
UTC = datetime.UTC
# 15:00 UTC: 12:00 in São Paulo, 11:00 in Manaus, on 10 March 2026.
NOW = datetime.datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def _setup(clinic: Any) -> tuple[Any, Any, Any]:
    ana = factories.professional(clinic, name="Dra. Ana Ribeiro")
    beto = factories.professional(clinic, name="Dr. Beto Lima")
    consulta = factories.service(clinic, name="Consulta de rotina", professionals=[ana, beto])
    return ana, beto, consulta


def _appt(clinic: Any, professional: Any, service: Any, start: datetime.datetime, **kwargs: Any) -> Appointment:
    patient = kwargs.pop("patient", None) or factories.patient(clinic)
    return factories.appointment(patient=patient, professional=professional, service=service, start=start, **kwargs)


def _conversation(clinic: Any, **kwargs: Any) -> Conversation:
    return Conversation.objects.create(
        clinic=clinic, patient=kwargs.pop("patient", None) or factories.patient(clinic), **kwargs
    )


def _message(
    conversation: Conversation, at: datetime.datetime, *, author: str = MessageAuthor.PATIENT, **kwargs: Any
) -> Message:
    inbound = author == MessageAuthor.PATIENT
    message = Message.objects.create(
        clinic=conversation.clinic,
        conversation=conversation,
        direction=MessageDirection.INBOUND if inbound else MessageDirection.OUTBOUND,
        author=author,
        status=kwargs.pop("status", MessageStatus.RECEIVED if inbound else MessageStatus.SENT),
        text="oi",
        **kwargs,
    )
    Message.objects.filter(pk=message.pk).update(created_at=at)  # auto_now_add: the past is written afterwards
    return message


def _chart(dash: Any, key: str) -> Chart:
    return next(chart for chart in dash.charts if chart.key == key)


def _values(chart: Chart, series: str) -> dict[datetime.date, float]:
    points = next(s for s in chart.series if s.key == series).points
    return {p.day: p.value for p in points if p.value}


def _superuser() -> Any:
    return get_user_model().objects.create_superuser(username="root", password="pw-for-tests-1234", email="r@x.test")


def test_the_agenda_is_the_clinics_local_day_grouped_by_professional(clinic_a: Any, receptionist_a: Any) -> None:
    clinic_a.timezone = "America/Manaus"
    clinic_a.save(update_fields=["timezone"])
    ana, beto, consulta = _setup(clinic_a)
    maria = factories.patient(clinic_a, full_name="Maria Souza")
    # 23:30 on 9 March in Manaus (03:30 UTC on the 10th): yesterday there, whatever UTC says.
    _appt(clinic_a, ana, consulta, datetime.datetime(2026, 3, 10, 3, 30, tzinfo=UTC))
    # 23:30 on 10 March in Manaus (03:30 UTC on the 11th): still today there.
    late = _appt(clinic_a, ana, consulta, datetime.datetime(2026, 3, 10, 23, 30, tzinfo=MANAUS), patient=maria)
    early = _appt(
        clinic_a, ana, consulta, datetime.datetime(2026, 3, 10, 8, 0, tzinfo=MANAUS), status=AppointmentStatus.CONFIRMED
    )
    _appt(
        clinic_a,
        beto,
        consulta,
        datetime.datetime(2026, 3, 10, 9, 0, tzinfo=MANAUS),
        status=AppointmentStatus.CANCELLED,
        cancellation_reason="paciente desistiu",
    )
    beto_appt = _appt(clinic_a, beto, consulta, datetime.datetime(2026, 3, 10, 10, 0, tzinfo=MANAUS))

    dash = dashboard_for_user(user=receptionist_a, now=NOW)

    assert dash.today == datetime.date(2026, 3, 10)
    assert dash.agenda_count == 3
    assert [g.professional_name for g in dash.agenda] == ["Dr. Beto Lima", "Dra. Ana Ribeiro"]
    assert [i.appointment_id for i in dash.agenda[0].items] == [beto_appt.pk]
    ana_items = dash.agenda[1].items
    assert [i.appointment_id for i in ana_items] == [early.pk, late.pk]
    assert [(i.start.hour, i.start.minute) for i in ana_items] == [(8, 0), (23, 30)]  # in the clinic's zone
    assert [i.confirmed for i in ana_items] == [True, False]
    assert ana_items[1].patient_name == "Maria Souza"
    assert ana_items[1].service_name == "Consulta de rotina"
    assert ana_items[1].url == reverse("admin:scheduling_appointment_change", args=[late.pk])
    assert dash.agenda_url == f"{reverse('admin:scheduling_appointment_agenda')}?clinic={clinic_a.pk}&date=2026-03-10"


def test_pending_confirmations_are_the_next_48_hours_still_unconfirmed(clinic_a: Any, receptionist_a: Any) -> None:
    ana, beto, consulta = _setup(clinic_a)
    soon = _appt(clinic_a, ana, consulta, NOW + datetime.timedelta(hours=2))
    asked = _appt(clinic_a, ana, consulta, NOW + datetime.timedelta(hours=30))
    ReminderStep.objects.create(
        clinic=clinic_a,
        appointment=asked,
        key="48h",
        appointment_start=asked.start,
        asks_confirmation=True,
        due_at=NOW - datetime.timedelta(hours=18),
        status=StepStatus.DELIVERED,
    )
    _appt(clinic_a, beto, consulta, NOW + datetime.timedelta(hours=3), status=AppointmentStatus.CONFIRMED)
    _appt(clinic_a, beto, consulta, NOW + datetime.timedelta(hours=49))  # beyond the window
    _appt(clinic_a, beto, consulta, NOW - datetime.timedelta(hours=1))  # already started

    dash = dashboard_for_user(user=receptionist_a, now=NOW)

    assert dash.pending_count == 2
    assert [(p.appointment_id, p.asked) for p in dash.pending] == [(soon.pk, False), (asked.pk, True)]


def test_waiting_conversations_put_emergencies_first_then_the_longest_wait(
    clinic_a: Any, clinic_b: Any, receptionist_a: Any
) -> None:
    def conv(reason: str, minutes_ago: int, **kwargs: Any) -> Conversation:
        return _conversation(
            clinic_a,
            needs_attention=bool(reason),
            attention_reason=reason,
            last_inbound_at=NOW - datetime.timedelta(minutes=minutes_ago),
            **kwargs,
        )

    asked = conv(AttentionReason.ASKED_FOR_HUMAN, 30)
    staff = conv("", 90, owner=ConversationOwner.HUMAN)
    emergency = conv(AttentionReason.EMERGENCY, 2)
    conv(AttentionReason.UNANSWERED, 300, closed_at=NOW)  # closed: nobody waits
    conv("", 500)  # the assistant has it
    _conversation(clinic_b, needs_attention=True, attention_reason=AttentionReason.EMERGENCY)

    dash = dashboard_for_user(user=receptionist_a, now=NOW)

    assert dash.waiting_count == 3
    assert [w.conversation_id for w in dash.waiting] == [emergency.pk, staff.pk, asked.pk]
    first, second, third = dash.waiting
    assert first.emergency and first.reason == AttentionReason.EMERGENCY and first.waiting_minutes == 2
    assert (second.reason, second.waiting_minutes) == ("staff", 90)
    assert third.reason == AttentionReason.ASKED_FOR_HUMAN
    assert first.url.endswith(f"/{emergency.pk}/") or f"/{emergency.pk}/" in first.url


def test_health_reports_the_channel_the_calendar_and_the_outbox(clinic_a: Any, manager_a: Any) -> None:
    clinic_a.whatsapp_provider = WhatsAppProvider.EVOLUTION
    clinic_a.whatsapp_instance = "clinica-a"
    clinic_a.channel_state = ChannelState.CLOSE
    clinic_a.channel_state_since = NOW - datetime.timedelta(hours=1)
    clinic_a.save()
    CalendarAccount.objects.create(clinic=clinic_a, state=AccountState.REVOKED)
    conversation = _conversation(clinic_a)
    _message(conversation, NOW - datetime.timedelta(minutes=20), author=MessageAuthor.AI, status=MessageStatus.QUEUED)
    _message(conversation, NOW - datetime.timedelta(minutes=1), author=MessageAuthor.AI, status=MessageStatus.QUEUED)
    failed = dict(author=MessageAuthor.AI, status=MessageStatus.FAILED, error="número inválido")
    _message(conversation, NOW, failed_at=NOW - datetime.timedelta(hours=2), **failed)
    _message(conversation, NOW, failed_at=NOW - datetime.timedelta(hours=30), **failed)

    health = dashboard_for_user(user=manager_a, now=NOW).health

    assert not health.whatsapp_ok and health.whatsapp_state == ChannelState.CLOSE
    assert health.whatsapp_since == clinic_a.channel_state_since
    assert not health.calendar_ok and health.calendar_state == AccountState.REVOKED
    assert (health.outbox_stale, health.failed_24h) == (1, 1)


def test_messages_per_day_are_bucketed_by_each_clinics_own_midnight(clinic_a: Any, clinic_b: Any) -> None:
    clinic_a.timezone, clinic_b.timezone = "America/Sao_Paulo", "America/Manaus"
    clinic_a.save(update_fields=["timezone"])
    clinic_b.save(update_fields=["timezone"])
    # 03:30 UTC on 10 March: 00:30 on the 10th in São Paulo, 23:30 on the 9th in Manaus.
    boundary = datetime.datetime(2026, 3, 10, 3, 30, tzinfo=UTC)
    for clinic in (clinic_a, clinic_b):
        conversation = _conversation(clinic)
        _message(conversation, boundary)
        _message(conversation, boundary + datetime.timedelta(minutes=1), author=MessageAuthor.AI)
        _message(conversation, datetime.datetime(2026, 3, 8, 12, tzinfo=UTC))
        _message(conversation, datetime.datetime(2026, 1, 1, 12, tzinfo=UTC))  # older than 30 days
    superuser = _superuser()

    sp = dashboard_for_user(user=superuser, clinic_id=clinic_a.pk, now=NOW)
    manaus = dashboard_for_user(user=superuser, clinic_id=clinic_b.pk, now=NOW)

    march = lambda d: datetime.date(2026, 3, d)  # noqa: E731
    assert _values(_chart(sp, "messages"), "in") == {march(8): 1, march(10): 1}
    assert _values(_chart(sp, "messages"), "out") == {march(10): 1}
    assert _values(_chart(manaus, "messages"), "in") == {march(8): 1, march(9): 1}
    assert _values(_chart(manaus, "messages"), "out") == {march(9): 1}
    points = _chart(sp, "messages").series[0].points
    assert (
        len(points) == 30 and points[0].day == march(10) - datetime.timedelta(days=29) and points[-1].day == march(10)
    )
    assert points[-2].value == 0 and points[-2].label == "0"  # a day with no data is a 0, not a gap


def test_the_share_finished_without_a_person_counts_conversation_days_with_a_patient_message(clinic_a: Any) -> None:
    day = datetime.datetime(2026, 3, 9, 10, tzinfo=SP)
    alone = _conversation(clinic_a)
    _message(alone, day)
    _message(alone, day + datetime.timedelta(minutes=1), author=MessageAuthor.AI)
    # The same conversation the next day, just after the clinic's midnight: the patient wrote, nobody answered yet.
    _message(alone, datetime.datetime(2026, 3, 10, 0, 10, tzinfo=SP))
    with_staff = _conversation(clinic_a)
    _message(with_staff, day)
    _message(with_staff, day, author=MessageAuthor.AI)
    _message(with_staff, day, author=MessageAuthor.STAFF, author_user=factories.staff_user(clinic_a))
    handed_off = _conversation(clinic_a)
    _message(handed_off, day)
    _message(handed_off, day, author=MessageAuthor.AI)
    Turn.objects.create(
        clinic=clinic_a, conversation=handed_off, outcome=TurnOutcome.HANDED_OFF, started_at=day, finished_at=day
    )
    reminder_only = _conversation(clinic_a)  # no patient message: not a conversation that day
    _message(reminder_only, day, author=MessageAuthor.SYSTEM)

    chart = _chart(dashboard_for_user(user=_superuser(), now=NOW), "assistant_alone")

    points = {p.day: p for p in chart.series[0].points}
    assert points[datetime.date(2026, 3, 9)].value == pytest.approx(33.3)
    assert points[datetime.date(2026, 3, 9)].label.startswith("1 ")
    assert points[datetime.date(2026, 3, 10)].value == 0
    assert points[datetime.date(2026, 3, 8)].value == 0
    assert "25" in chart.total_label  # 1 of 4 conversation-days in the period


def test_settled_days_are_read_once_and_yesterdays_and_todays_messages_count_at_once(clinic_a: Any) -> None:
    settled = datetime.datetime(2026, 3, 7, 10, tzinfo=SP)
    yesterday, today = datetime.datetime(2026, 3, 9, 23, 50, tzinfo=SP), datetime.datetime(2026, 3, 10, 9, tzinfo=SP)
    chat = _conversation(clinic_a)
    for at in (settled, today):
        _message(chat, at)
        _message(chat, at + datetime.timedelta(minutes=1), author=MessageAuthor.AI)
    superuser = _superuser()

    with CaptureQueriesContext(connection) as first_view:
        first = dashboard_for_user(user=superuser, now=NOW)
    # After the first view: a patient's 23:50 message of yesterday committed late, and one of today, both unanswered.
    for at in (yesterday, today + datetime.timedelta(minutes=30)):
        _message(_conversation(clinic_a), at)
    with CaptureQueriesContext(connection) as second_view:
        second = dashboard_for_user(user=superuser, now=NOW)

    march = lambda d: datetime.date(2026, 3, d)  # noqa: E731
    assert _values(_chart(first, "messages"), "in") == {march(7): 1, march(10): 1}
    assert _values(_chart(second, "messages"), "in") == {march(7): 1, march(9): 1, march(10): 2}
    assert _values(_chart(first, "assistant_alone"), "alone") == {march(7): 100, march(10): 100}
    assert _values(_chart(second, "assistant_alone"), "alone") == {march(7): 100, march(10): 50}
    # The second view read only yesterday's and today's messages: the settled days' two scans came from the cache.
    assert len(second_view) == len(first_view) - 2
    message_scans = [q["sql"] for q in first_view.captured_queries if "conversations_message" in q["sql"]]
    assert len(message_scans) == 1 + 4  # the outbox health, and each message chart's settled days and live days


def test_with_the_cache_down_the_charts_are_still_right(clinic_a: Any, settings: Any, caplog: Any) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    chat = _conversation(clinic_a)
    _message(chat, datetime.datetime(2026, 3, 9, 10, tzinfo=SP))
    _message(chat, datetime.datetime(2026, 3, 10, 9, tzinfo=SP))

    dash = dashboard_for_user(user=_superuser(), now=NOW)

    assert _values(_chart(dash, "messages"), "in") == {datetime.date(2026, 3, 9): 1, datetime.date(2026, 3, 10): 1}
    assert "Cache unavailable" in caplog.text


def test_bookings_confirmations_and_no_shows_per_clinic_local_day(clinic_a: Any) -> None:
    clinic_a.timezone = "America/Manaus"
    clinic_a.save(update_fields=["timezone"])
    ana, beto, consulta = _setup(clinic_a)
    day = datetime.date(2026, 3, 5)

    def at(hour: int, minute: int = 0) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time(hour, minute), MANAUS)

    confirmed = _appt(clinic_a, ana, consulta, at(8), status=AppointmentStatus.CONFIRMED)
    _appt(clinic_a, ana, consulta, at(9))
    _appt(clinic_a, ana, consulta, at(10), status=AppointmentStatus.NO_SHOW)
    completed = _appt(clinic_a, beto, consulta, at(23, 30), status=AppointmentStatus.COMPLETED)
    AppointmentChange.objects.create(
        clinic=clinic_a, appointment=completed, action=AppointmentAction.CONFIRMED, actor_kind=ActorKind.PATIENT
    )
    cancelled = _appt(
        clinic_a, beto, consulta, at(11), status=AppointmentStatus.CANCELLED, cancellation_reason="desistiu"
    )
    # Booked on the 4th (23:50 in Manaus, 03:50 UTC on the 5th), by WhatsApp and in the admin.
    booked_late = datetime.datetime(2026, 3, 4, 23, 50, tzinfo=MANAUS)
    Appointment.objects.filter(pk__in=[confirmed.pk, cancelled.pk]).update(
        created_at=booked_late, source=AppointmentSource.WHATSAPP
    )
    Appointment.objects.exclude(pk__in=[confirmed.pk, cancelled.pk]).update(created_at=at(7))

    dash = dashboard_for_user(user=_superuser(), now=NOW)

    bookings = _chart(dash, "bookings")
    assert _values(bookings, AppointmentSource.WHATSAPP) == {datetime.date(2026, 3, 4): 2}
    assert _values(bookings, AppointmentSource.ADMIN) == {day: 3}
    assert _values(bookings, AppointmentSource.API) == {}
    assert bookings.max_value == 3
    # Of the 4 not cancelled (the 23:30 one belongs to the 5th in Manaus): confirmed now, or confirmed then completed.
    assert _values(_chart(dash, "confirmation_rate"), "confirmed") == {day: 50.0}
    assert _values(_chart(dash, "no_show_rate"), "no_show") == {day: 25.0}


def test_a_receptionist_of_another_clinic_sees_nothing_of_this_one(
    client: Any, clinic_a: Any, clinic_b: Any, receptionist_a: Any
) -> None:
    ana, _beto, consulta = _setup(clinic_a)
    _appt(
        clinic_a,
        ana,
        consulta,
        timezone.now() + datetime.timedelta(hours=1),
        patient=factories.patient(clinic_a, full_name="Joana Segredo"),
    )
    _conversation(
        clinic_a,
        needs_attention=True,
        attention_reason=AttentionReason.EMERGENCY,
        patient=factories.patient(clinic_a, full_name="Carlos Sigilo"),
    )
    receptionist_b = factories.staff_user(clinic_b, role=StaffRole.RECEPTIONIST)

    dash = dashboard_for_user(user=receptionist_b, clinic_id=clinic_a.pk)  # asking for A by id changes nothing
    client.force_login(receptionist_b)
    page = client.get(reverse("admin:index"), {"clinic": clinic_a.pk}).content.decode()

    assert dash.clinic == clinic_b and [c.id for c in dash.clinics] == [clinic_b.pk]
    assert (dash.agenda_count, dash.pending_count, dash.waiting_count) == (0, 0, 0)
    assert "Joana Segredo" not in page and "Carlos Sigilo" not in page and "Clínica A" not in page
    assert dashboard_for_user(user=receptionist_a).waiting_count == 1


def test_a_user_with_no_clinic_gets_no_dashboard(db: Any) -> None:
    loner = get_user_model().objects.create_user(username="loner", password="pw-for-tests-1234", is_staff=True)

    assert dashboard_for_user(user=loner) is None


def _seed(clinic: Any, n: int) -> None:
    today = timezone.localtime(timezone.now(), clinic.tz).date()
    professionals = [factories.professional(clinic) for _ in range(max(1, n // 20))]
    consulta = factories.service(clinic, professionals=professionals)
    for i in range(n):
        start = datetime.datetime.combine(today, datetime.time(0), clinic.tz) + datetime.timedelta(
            minutes=5 * (i // len(professionals))
        )
        _appt(clinic, professionals[i % len(professionals)], consulta, start, minutes=5)
        conversation = _conversation(clinic, needs_attention=True, attention_reason=AttentionReason.UNANSWERED)
        _message(conversation, timezone.now() - datetime.timedelta(days=i % 30))
        _message(conversation, timezone.now() - datetime.timedelta(days=i % 30), author=MessageAuthor.AI)


def _count_queries(user_pk: int, clinic_pk: int) -> int:
    user = get_user_model().objects.get(pk=user_pk)  # a fresh user: the role cache is per request
    with CaptureQueriesContext(connection) as queries:
        dash = dashboard_for_user(user=user, clinic_id=clinic_pk)
    assert dash is not None
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_the_data(clinic_a: Any, clinic_b: Any, receptionist_a: Any) -> None:
    factories.staff_user(clinic_b)
    _seed(clinic_a, 10)
    small = _count_queries(receptionist_a.pk, clinic_a.pk)
    _seed(clinic_b, 200)
    receptionist_b = factories.staff_user(clinic_b)

    large = _count_queries(receptionist_b.pk, clinic_b.pk)

    assert small == large
    assert large <= 14, large


@pytest.mark.parametrize("role", ["receptionist", "manager", "superuser"])
def test_the_index_page_renders_the_dashboard_for_every_kind_of_staff(client: Any, clinic_a: Any, role: str) -> None:
    ana, _beto, consulta = _setup(clinic_a)
    now = timezone.now()
    _appt(
        clinic_a,
        ana,
        consulta,
        max(
            now + datetime.timedelta(minutes=5),
            datetime.datetime.combine(timezone.localtime(now, clinic_a.tz).date(), datetime.time(0, 5), clinic_a.tz),
        ),
        patient=factories.patient(clinic_a, full_name="Maria Aparecida"),
    )
    user = _superuser() if role == "superuser" else factories.staff_user(clinic_a, role=StaffRole(role))
    client.force_login(user)

    response = client.get(reverse("admin:index"), {"days": "7"})

    assert response.status_code == 200
    html = response.content.decode()
    for section in ("dash-agenda", "dash-waiting", "dash-pending", "dash-health", "dash-charts"):
        assert f'id="{section}"' in html
    assert "Maria Aparecida" in html
    assert html.count('class="dash-bar"') == 7 * 5  # seven days in each of the five charts
    assert "app-scheduling module" in html  # the app list is still there


def test_a_superuser_picks_the_clinic_and_bad_input_falls_back(client: Any, clinic_a: Any, clinic_b: Any) -> None:
    _setup(clinic_b)
    _conversation(
        clinic_b,
        needs_attention=True,
        attention_reason=AttentionReason.EMERGENCY,
        patient=factories.patient(clinic_b, full_name="Paulo Bexiga"),
    )
    client.force_login(_superuser())

    picked = client.get(reverse("admin:index"), {"clinic": clinic_b.pk})
    nonsense = client.get(reverse("admin:index"), {"clinic": "x'; drop", "days": "-4"})

    assert picked.status_code == 200 and "Paulo Bexiga" in picked.content.decode()
    assert 'id="dash-clinic"' in picked.content.decode()
    assert nonsense.status_code == 200 and "Paulo Bexiga" not in nonsense.content.decode()  # Clínica A, 30 days
    assert nonsense.content.decode().count('class="dash-bar"') == 30 * 5
