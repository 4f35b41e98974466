"""The reminder, rating and waitlist pages of the admin: what staff see, in which clinic, with which role."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from conversations.models import Conversation, Message
from scheduling import tasks
from scheduling.models import (
    AppointmentStatus,
    ReminderPurpose,
    ReminderRule,
    ReminderStep,
    ReminderTemplate,
    StepKind,
    StepStatus,
    WaitlistEntry,
    WaitlistOffer,
)
from scheduling.reminder_defaults import reminder_defaults_create
from tests import factories
from tests.admin_forms import changeform_data


@pytest.fixture(autouse=True)
def pt_br():
    with translation.override("pt-br"):
        yield


@pytest.fixture
def replans(monkeypatch):
    """The replan task's publications, run on the spot (no broker, no worker)."""
    published = []

    def delay(clinic_id):
        published.append(clinic_id)
        tasks.reminders_replan(clinic_id)

    monkeypatch.setattr(tasks.reminders_replan, "delay", delay)
    return published


def _fill(clinic, tag):
    """One row of each model of these pages, named with `tag` so a page that leaks it is caught."""
    pro = factories.professional(clinic, name=f"Dra. {tag}")
    svc = factories.service(clinic, name=f"Serviço {tag}", professionals=[pro])
    patient = factories.patient(clinic, full_name=f"Paciente {tag}")
    template = ReminderTemplate.objects.create(
        clinic=clinic, name=f"Modelo {tag}", body="Olá, {nome}! Até {data} às {hora}."
    )
    rule = ReminderRule.objects.create(clinic=clinic, service=svc, hours_before=48, template=template)
    appt = factories.appointment(
        patient=patient, professional=pro, service=svc, start=timezone.now() + datetime.timedelta(days=5)
    )
    step = ReminderStep.objects.create(
        clinic=clinic,
        appointment=appt,
        key="48h",
        appointment_start=appt.start,
        rule=rule,
        due_at=appt.start - datetime.timedelta(hours=48),
        status=StepStatus.FAILED,
    )
    conversation = Conversation.objects.create(clinic=clinic, patient=patient)
    message = Message.objects.create(
        clinic=clinic,
        conversation=conversation,
        direction="out",
        author="system",
        status="failed",
        error=f"Número inválido {tag}",
        text="Lembrete",
        reminder_step=step,
    )
    past = factories.appointment(
        patient=patient,
        professional=pro,
        service=svc,
        start=timezone.now() - datetime.timedelta(days=3),
        status=AppointmentStatus.COMPLETED,
    )
    rating = ReminderStep.objects.create(
        clinic=clinic,
        appointment=past,
        kind=StepKind.SATISFACTION,
        key="satisfaction",
        appointment_start=past.start,
        due_at=past.end,
        status=StepStatus.ANSWERED,
        score=4,
        note=f"Ótimo atendimento {tag}",
        answered_at=timezone.now() - datetime.timedelta(days=1),
    )
    entry = WaitlistEntry.objects.create(clinic=clinic, patient=patient, service=svc)
    offer = WaitlistOffer.objects.create(
        clinic=clinic,
        entry=entry,
        professional=pro,
        start=appt.start - datetime.timedelta(days=1),
        end=appt.start - datetime.timedelta(days=1) + datetime.timedelta(minutes=30),
        expires_at=timezone.now() + datetime.timedelta(minutes=30),
    )
    return {
        "pro": pro,
        "service": svc,
        "patient": patient,
        "template": template,
        "rule": rule,
        "appointment": appt,
        "step": step,
        "message": message,
        "rating": rating,
        "entry": entry,
        "offer": offer,
    }


@pytest.fixture
def two_clinics(clinic_a, clinic_b):
    return {"a": _fill(clinic_a, "AAAA"), "b": _fill(clinic_b, "BBBB")}


PAGES = (
    ("remindertemplate", "template"),
    ("reminderrule", "rule"),
    ("reminderstep", "step"),
    ("waitlistentry", "entry"),
    ("waitlistoffer", "offer"),
)


def _query_count(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries), response


# --- pages, scoping and queries ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["receptionist", "manager"])
def test_every_new_page_renders_for_both_roles_with_only_their_clinics_rows(
    client, receptionist_a, manager_a, two_clinics, role
):
    client.force_login(receptionist_a if role == "receptionist" else manager_a)
    for model_name, key in PAGES:
        changelist = reverse(f"admin:scheduling_{model_name}_changelist")
        _count, response = _query_count(client, changelist)
        html = response.content.decode()
        assert "BBBB" not in html, changelist
        assert {row.clinic_id for row in response.context["cl"].result_list} == {two_clinics["a"][key].clinic_id}
        mine = reverse(f"admin:scheduling_{model_name}_change", args=[two_clinics["a"][key].pk])
        _count, response = _query_count(client, mine)
        assert "BBBB" not in response.content.decode(), mine
        theirs = reverse(f"admin:scheduling_{model_name}_change", args=[two_clinics["b"][key].pk])
        assert client.get(theirs).status_code == 404, theirs


@pytest.mark.django_db
@pytest.mark.parametrize("model_name", [name for name, _key in PAGES])
def test_a_changelist_costs_the_same_queries_for_one_row_or_many(client, manager_a, clinic_a, clinic_b, model_name):
    client.force_login(manager_a)
    _fill(clinic_a, "AAAA")
    url = reverse(f"admin:scheduling_{model_name}_changelist")
    few, _response = _query_count(client, url)
    for n in range(3):
        _fill(clinic_a, f"MORE{n}")
    many, response = _query_count(client, url)
    assert len(response.context["cl"].result_list) > 1
    assert many == few <= 14


@pytest.mark.django_db
def test_an_appointment_page_lists_its_steps_at_a_constant_cost(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    rows = _fill(clinic_a, "AAAA")
    url = reverse("admin:scheduling_appointment_change", args=[rows["appointment"].pk])
    client.get(url)  # the first page after logging in also stores what later pages read from the cache
    few, response = _query_count(client, url)
    html = response.content.decode()
    assert "Lembretes e acompanhamentos" in html and "Reenviar" in html
    for key in ("24h", "2h"):
        ReminderStep.objects.create(
            clinic=clinic_a,
            appointment=rows["appointment"],
            key=key,
            appointment_start=rows["appointment"].start,
            due_at=rows["appointment"].start - datetime.timedelta(hours=int(key[:-1])),
        )
    many, _response = _query_count(client, url)
    assert many == few


# --- templates --------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_template_page_lists_the_placeholders_and_previews_the_message(client, manager_a, clinic_a):
    client.force_login(manager_a)
    factories.professional(clinic_a, name="Dra. Ana Souza")
    template = ReminderTemplate.objects.create(
        clinic=clinic_a, name="Padrão", body="Olá, {nome}! {servico} com {profissional} na {clinica}."
    )
    html = client.get(reverse("admin:scheduling_remindertemplate_change", args=[template.pk])).content.decode()
    assert "{preparo}" in html and "instruções de preparo do serviço" in html
    assert "Olá, Maria! Consulta com Dra. Ana Souza na Clínica A." in html
    assert "1. ✅ Confirmo" in html  # what Cecília adds to a reminder that asks to confirm


@pytest.mark.django_db
def test_an_unknown_placeholder_is_refused_in_words(client, manager_a, clinic_a):
    client.force_login(manager_a)
    response = client.post(
        reverse("admin:scheduling_remindertemplate_add"),
        {
            "clinic": clinic_a.pk,
            "purpose": ReminderPurpose.REMINDER,
            "name": "Errado",
            "body": "Olá, {nomee}!",
            "whatsapp_template_language": "pt_BR",
        },
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors["body"])
    assert "{nomee}" in errors and "{nome}" in errors
    assert not ReminderTemplate.objects.exists()


@pytest.mark.django_db
def test_receptionists_read_the_reminder_policy_and_only_managers_change_it(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    rows = _fill(clinic_a, "AAAA")
    response = client.get(reverse("admin:scheduling_reminderrule_change", args=[rows["rule"].pk]))
    assert response.status_code == 200 and not response.context["has_change_permission"]
    assert client.get(reverse("admin:scheduling_reminderrule_add")).status_code == 403
    assert client.get(reverse("admin:scheduling_remindertemplate_add")).status_code == 403


# --- rules list, the service page and replanning ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_rules_list_names_rules_without_a_service_all_services(client, manager_a, clinic_a):
    client.force_login(manager_a)
    reminder_defaults_create(clinic=clinic_a)
    html = client.get(reverse("admin:scheduling_reminderrule_changelist")).content.decode()
    assert "Todos os serviços" in html and "Lembrete padrão" in html
    assert "Horas antes" in html or "horas antes" in html


def _future_appointment(clinic, days=5):
    pro = factories.professional(clinic)
    svc = factories.service(clinic, professionals=[pro])
    patient = factories.patient(clinic)
    start = timezone.localtime(timezone.now() + datetime.timedelta(days=days), clinic.tz).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    return factories.appointment(patient=patient, professional=pro, service=svc, start=start)


@pytest.mark.django_db
def test_changing_a_rule_from_48_to_24_hours_replans_pending_steps_and_leaves_sent_ones(
    client, manager_a, clinic_a, replans, django_capture_on_commit_callbacks
):
    client.force_login(manager_a)
    rule = ReminderRule.objects.create(clinic=clinic_a, hours_before=48)
    pending = _future_appointment(clinic_a)
    sent = _future_appointment(clinic_a, days=6)
    tasks.reminders_replan(clinic_a.pk)  # as a booking would have planned them
    sent_step = ReminderStep.objects.get(appointment=sent)
    ReminderStep.objects.filter(pk=sent_step.pk).update(status=StepStatus.SENT)

    url = reverse("admin:scheduling_reminderrule_change", args=[rule.pk])
    data = changeform_data(client.get(url))
    data["hours_before"] = "24"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302

    assert replans == [clinic_a.pk]
    steps = {(s.key, s.status, s.skip_reason) for s in ReminderStep.objects.filter(appointment=pending)}
    assert steps == {("48h", StepStatus.SKIPPED, "policy_changed"), ("24h", StepStatus.SCHEDULED, "")}
    new = ReminderStep.objects.get(appointment=pending, key="24h")
    assert new.due_at == pending.start - datetime.timedelta(hours=24)
    sent_step.refresh_from_db()
    assert (sent_step.key, sent_step.status) == ("48h", StepStatus.SENT)


@pytest.mark.django_db
def test_rules_edited_on_the_service_page_replan_once(
    client, manager_a, clinic_a, replans, django_capture_on_commit_callbacks
):
    client.force_login(manager_a)
    appointment = _future_appointment(clinic_a, days=9)
    url = reverse("admin:scheduling_service_change", args=[appointment.service_id])
    data = changeform_data(client.get(url))
    data.pop("accepted_health_plans")
    data["professionals"] = [appointment.professional_id]  # changeform_data leaves many-to-many values as lists
    prefix = "reminder_rules"
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": "2",
            f"{prefix}-0-hours_before": "168",
            f"{prefix}-0-asks_confirmation": "on",
            f"{prefix}-0-active": "on",
            f"{prefix}-1-hours_before": "2",
            f"{prefix}-1-active": "on",
        }
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, data)
    assert response.status_code == 302, (
        response.context["adminform"].form.errors,
        [(i.formset.errors, i.formset.non_form_errors()) for i in response.context["inline_admin_formsets"]],
    )
    assert replans == [clinic_a.pk]
    assert set(ReminderStep.objects.filter(appointment=appointment).values_list("key", flat=True)) == {"168h", "2h"}


@pytest.mark.django_db
def test_a_broker_outage_never_fails_the_save(monkeypatch, caplog):
    def down(clinic_id):
        raise ConnectionError("redis down")

    monkeypatch.setattr(tasks.reminders_replan, "delay", down)
    tasks.reminders_replan_enqueue(7)
    assert "not enqueued" in caplog.text


def test_the_worker_finds_the_replan_task():
    from cecilia.celery import app

    app.loader.import_default_modules()
    assert "scheduling.tasks.reminders_replan" in app.tasks


# --- the clinic page --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_moving_the_sending_window_replans_and_other_settings_do_not(
    client, manager_a, clinic_a, replans, django_capture_on_commit_callbacks
):
    client.force_login(manager_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    page = client.get(url)
    assert "Lembretes e acompanhamento" in page.content.decode()
    data = changeform_data(page, skip=frozenset({"whatsapp_api_key", "whatsapp_webhook_secret"}))
    data["waitlist_hold_minutes"] = "45"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    assert replans == []
    data["reminder_window_end"] = "19:00:00"
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    clinic_a.refresh_from_db()
    assert (clinic_a.reminder_window_end, clinic_a.waitlist_hold_minutes) == (datetime.time(19), 45)
    assert replans == [clinic_a.pk]


@pytest.mark.django_db
def test_receptionists_cannot_change_the_reminder_settings(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    page = client.get(url)
    assert not page.context["has_change_permission"]
    client.post(url, {"reminder_window_end": "23:00:00"})
    clinic_a.refresh_from_db()
    assert clinic_a.reminder_window_end == datetime.time(20)


@pytest.mark.django_db
def test_a_clinic_added_in_the_admin_starts_with_the_48_and_2_hour_reminders(admin_client):
    page = admin_client.get(reverse("admin:cecilia_clinic_add"))
    data = changeform_data(page)
    data.update({"name": "Clínica Nova", "slug": "clinica-nova", "timezone": "America/Sao_Paulo"})
    response = admin_client.post(reverse("admin:cecilia_clinic_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rules = ReminderRule.objects.filter(clinic__slug="clinica-nova")
    assert sorted(r.hours_before for r in rules) == [2, 48]
    assert all(r.service_id is None and r.template.name == "Lembrete padrão" for r in rules)
    assert ReminderTemplate.objects.filter(clinic__slug="clinica-nova").count() == 4


@pytest.mark.django_db
def test_the_defaults_are_idempotent_and_respect_a_clinic_that_removed_one(clinic_a):
    reminder_defaults_create(clinic=clinic_a)
    ReminderRule.objects.filter(clinic=clinic_a, hours_before=2).delete()
    reminder_defaults_create(clinic=clinic_a)
    assert list(ReminderRule.objects.filter(clinic=clinic_a).values_list("hours_before", flat=True)) == [48]
    assert ReminderTemplate.objects.filter(clinic=clinic_a).count() == 4


# --- resending --------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_resend_button_queues_the_failed_message_again_with_one_click(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    rows = two_clinics["a"]
    changelist = reverse("admin:scheduling_reminderstep_changelist")
    html = client.get(changelist).content.decode()
    retry_url = reverse("admin:scheduling_reminderstep_retry", args=[rows["step"].pk])
    assert f'formaction="{retry_url}"' in html
    response = client.post(retry_url, HTTP_REFERER=f"http://testserver{changelist}")
    assert response.status_code == 302 and response["Location"] == f"http://testserver{changelist}"
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 lembrete colocado na fila para reenvio."]
    rows["message"].refresh_from_db()
    rows["step"].refresh_from_db()
    assert (rows["message"].status, rows["step"].status) == ("queued", StepStatus.QUEUED)


@pytest.mark.django_db
def test_resending_a_step_whose_message_did_not_fail_says_so(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    rows = two_clinics["a"]
    Message.objects.filter(pk=rows["message"].pk).update(status="sent", error="")
    response = client.post(reverse("admin:scheduling_reminderstep_retry", args=[rows["step"].pk]))
    assert response["Location"] == reverse("admin:scheduling_reminderstep_changelist")
    assert [m.level_tag for m in get_messages(response.wsgi_request)] == ["error"]


@pytest.mark.django_db
def test_another_clinics_step_cannot_be_resent(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    theirs = two_clinics["b"]
    assert client.post(reverse("admin:scheduling_reminderstep_retry", args=[theirs["step"].pk])).status_code == 404
    mine = reverse("admin:scheduling_reminderstep_retry", args=[two_clinics["a"]["step"].pk])
    assert client.get(mine).status_code == 404  # POST only
    theirs["message"].refresh_from_db()
    assert theirs["message"].status == "failed"


@pytest.mark.django_db
def test_the_resend_action_resends_the_selected_failed_steps(client, manager_a, two_clinics):
    client.force_login(manager_a)
    rows = two_clinics["a"]
    response = client.post(
        reverse("admin:scheduling_reminderstep_changelist"),
        {"action": "retry_selected", "_selected_action": [rows["step"].pk, two_clinics["b"]["step"].pk]},
    )
    assert response.status_code == 302
    assert Message.objects.get(pk=rows["message"].pk).status == "queued"
    assert Message.objects.get(pk=two_clinics["b"]["message"].pk).status == "failed"


# --- ratings ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_managers_see_their_clinics_ratings_per_professional_and_the_latest_comments(client, manager_a, two_clinics):
    client.force_login(manager_a)
    rows = two_clinics["a"]
    ReminderStep.objects.filter(pk=rows["rating"].pk).update(score=5)
    second = _fill(manager_a.memberships.get().clinic, "CCCC")
    ReminderStep.objects.filter(pk=second["rating"].pk).update(score=2, note="")
    response = client.get(reverse("admin:scheduling_reminderstep_ratings"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Avaliações dos pacientes" in html
    assert "Ótimo atendimento AAAA" in html and "BBBB" not in html
    by_name = {row["appointment__professional__name"]: row for row in response.context["professionals"]}
    assert (by_name["Dra. AAAA"]["average"], by_name["Dra. AAAA"]["count"]) == (5, 1)
    assert response.context["overall"] == {"average": 3.5, "count": 2}
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:scheduling_reminderstep_ratings") in index


@pytest.mark.django_db
def test_receptionists_get_no_ratings_page_nor_the_rating_answers(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    assert client.get(reverse("admin:scheduling_reminderstep_ratings")).status_code == 403
    assert reverse("admin:scheduling_reminderstep_ratings") not in client.get(reverse("admin:index")).content.decode()
    steps = client.get(reverse("admin:scheduling_reminderstep_changelist")).context["cl"].result_list
    assert [s.kind for s in steps] == [StepKind.REMINDER]
    rating_url = reverse("admin:scheduling_reminderstep_change", args=[two_clinics["a"]["rating"].pk])
    assert client.get(rating_url).status_code == 404


# --- waitlist and the patient page ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_receptionist_puts_a_patient_on_the_waitlist(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    pro = factories.professional(clinic_a)
    svc = factories.service(clinic_a, professionals=[pro])
    patient = factories.patient(clinic_a, full_name="Joana")
    add = reverse("admin:scheduling_waitlistentry_add")
    assert client.get(add).status_code == 200
    data = {"clinic": clinic_a.pk, "patient": patient.pk, "service": svc.pk, "status": "waiting"}
    data.update({"offers-TOTAL_FORMS": "0", "offers-INITIAL_FORMS": "0"})
    response = client.post(add, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = WaitlistEntry.objects.get()
    assert (entry.patient, entry.service, entry.clinic) == (patient, svc, clinic_a)
    again = client.post(add, data)
    assert "já está na lista de espera" in again.content.decode() or again.status_code == 200
    assert WaitlistEntry.objects.count() == 1


@pytest.mark.django_db
def test_a_waitlist_entry_to_bring_an_appointment_forward_waits_for_slots_before_it(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    pro = factories.professional(clinic_a)
    svc = factories.service(clinic_a, professionals=[pro])
    patient = factories.patient(clinic_a, full_name="Joana")
    appointment = factories.appointment(patient=patient, professional=pro, service=svc)
    data = {"clinic": clinic_a.pk, "patient": patient.pk, "service": svc.pk, "appointment": appointment.pk}
    data.update({"status": "waiting", "offers-TOTAL_FORMS": "0", "offers-INITIAL_FORMS": "0"})
    response = client.post(reverse("admin:scheduling_waitlistentry_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert WaitlistEntry.objects.get().not_after == appointment.start


@pytest.mark.django_db
def test_the_patient_page_shows_how_often_and_when_they_missed(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    rows = _fill(clinic_a, "AAAA")
    url = reverse("admin:patients_patient_change", args=[rows["patient"].pk])
    assert "Faltas" in client.get(url).content.decode()
    for days in (10, 20, 30):
        factories.appointment(
            patient=rows["patient"],
            professional=rows["pro"],
            service=rows["service"],
            start=timezone.now() - datetime.timedelta(days=days),
            status=AppointmentStatus.NO_SHOW,
        )
    few, response = _query_count(client, url)
    html = response.content.decode()
    assert "<strong>3</strong>" in html and html.count('class="patient-no-shows"') == 1
    factories.appointment(
        patient=rows["patient"],
        professional=rows["pro"],
        service=rows["service"],
        start=timezone.now() - datetime.timedelta(days=40),
        status=AppointmentStatus.NO_SHOW,
    )
    many, _response = _query_count(client, url)
    assert many == few
