"""Staff see and change only their own clinic's rows, everywhere in the admin (Invariant 5)."""

from __future__ import annotations

import datetime
import json

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from cecilia.admin_scoping import clinic_lookup_for
from cecilia.models import BusinessHours, ClosedDate
from conversations.models import Conversation, Message
from patients.models import HealthPlan
from scheduling.models import TimeOff, WorkingHours
from tests import factories
from tests.admin_forms import changeform_data


def _fill(clinic, tag):
    """One row of every clinic-owned model, named with `tag` so a page that leaks it can be caught."""
    plan = HealthPlan.objects.create(clinic=clinic, name=f"Plano {tag}")
    patient = factories.patient(clinic, full_name=f"Paciente {tag}", health_plan=plan)
    pro = factories.professional(clinic, name=f"Dra. {tag}")
    svc = factories.service(clinic, name=f"Serviço {tag}", professionals=[pro])
    svc.accepted_health_plans.set([plan])
    appt = factories.appointment(patient=patient, professional=pro, service=svc)
    WorkingHours.objects.create(
        clinic=clinic, professional=pro, weekday=0, start=datetime.time(8), end=datetime.time(12)
    )
    TimeOff.objects.create(
        clinic=clinic,
        professional=pro,
        start=timezone.now() + datetime.timedelta(days=3),
        end=timezone.now() + datetime.timedelta(days=4),
        reason=f"Férias {tag}",
    )
    BusinessHours.objects.create(clinic=clinic, weekday=1, start=datetime.time(8), end=datetime.time(18))
    ClosedDate.objects.create(clinic=clinic, date=datetime.date(2030, 1, 2), reason=f"Fechado {tag}")
    conv = Conversation.objects.create(clinic=clinic, patient=patient, last_inbound_at=timezone.now())
    Message.objects.create(
        clinic=clinic, conversation=conv, direction="in", author="patient", status="received", text=f"Olá {tag}"
    )
    return {"patient": patient, "professional": pro, "service": svc, "appointment": appt, "plan": plan}


@pytest.fixture
def two_clinics(clinic_a, clinic_b):
    return {"a": _fill(clinic_a, "AAAA"), "b": _fill(clinic_b, "BBBB")}


def _clinic_owned_admins():
    for model, model_admin in admin.site._registry.items():
        if clinic_lookup_for(model):
            yield model, model_admin


def _clinic_ids(model, lookup, objs):
    values = model._default_manager.filter(pk__in=[o.pk for o in objs]).values_list(lookup, flat=True)
    return set(values)


@pytest.mark.django_db
def test_every_changelist_shows_only_the_staff_members_clinic(client, receptionist_a, manager_a, two_clinics, clinic_a):
    for user in (receptionist_a, manager_a):
        client.force_login(user)
        checked = 0
        for model, model_admin in _clinic_owned_admins():
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            response = client.get(url)
            if response.status_code == 403:
                continue  # the role has no access at all to this model
            assert response.status_code == 200, url
            rows = list(response.context["cl"].result_list)
            lookup = model_admin.clinic_lookup or clinic_lookup_for(model)
            assert _clinic_ids(model, lookup, rows) <= {clinic_a.pk}, url
            assert "BBBB" not in response.content.decode(), url
            checked += 1
        assert checked >= 8  # patients, appointments, professionals, services, conversations, … were reached


@pytest.mark.django_db
def test_another_clinics_patient_is_a_404_for_view_change_history_and_delete(
    client, receptionist_a, manager_a, two_clinics
):
    foreign = two_clinics["b"]["patient"]
    for user in (receptionist_a, manager_a):
        client.force_login(user)
        for view in ("change", "history", "delete"):
            response = client.get(reverse(f"admin:patients_patient_{view}", args=[foreign.pk]))
            assert response.status_code == 404, (user, view)
        response = client.post(reverse("admin:patients_patient_change", args=[foreign.pk]), {"full_name": "Invadido"})
        assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.full_name == "Paciente BBBB"


@pytest.mark.django_db
def test_own_clinics_patient_opens_for_a_receptionist(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    own = two_clinics["a"]["patient"]
    response = client.get(reverse("admin:patients_patient_change", args=[own.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Paciente AAAA" in page
    assert "Serviço AAAA" in page  # the appointment inline
    assert "BBBB" not in page


@pytest.mark.django_db
def test_autocompletes_offer_only_own_clinic_rows(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    for model_name, field in (
        ("patient", "health_plan"),
        ("appointment", "patient"),
        ("appointment", "professional"),
        ("appointment", "service"),
    ):
        app_label = "scheduling" if model_name == "appointment" else "patients"
        response = client.get(
            reverse("admin:autocomplete"),
            {"app_label": app_label, "model_name": model_name, "field_name": field, "term": ""},
        )
        assert response.status_code == 200, (model_name, field)
        texts = [r["text"] for r in json.loads(response.content)["results"]]
        assert texts, (model_name, field)
        assert all("AAAA" in t for t in texts), texts


@pytest.mark.django_db
def test_form_choices_and_list_filters_never_name_another_clinic(client, receptionist_a, two_clinics):
    client.force_login(receptionist_a)
    add_page = client.get(reverse("admin:scheduling_appointment_add")).content.decode()
    assert "BBBB" not in add_page and "Clínica B" not in add_page
    changelist = client.get(reverse("admin:scheduling_appointment_changelist")).content.decode()
    assert "Dra. AAAA" in changelist  # the professional filter lists own professionals
    assert "Dra. BBBB" not in changelist


@pytest.mark.django_db
def test_an_inline_cannot_attach_another_clinics_patient(client, manager_a, two_clinics):
    client.force_login(manager_a)
    own = two_clinics["a"]["patient"]
    url = reverse("admin:patients_patient_change", args=[own.pk])

    def submit(dependent):
        data = changeform_data(client.get(url))
        data.update(
            {
                "dependent_links-TOTAL_FORMS": "1",
                "dependent_links-0-dependent": dependent.pk,
                "dependent_links-0-relationship": "child",
            }
        )
        return client.post(url, data)

    response = submit(two_clinics["b"]["patient"])
    assert response.status_code == 200
    inline = next(f for f in response.context["inline_admin_formsets"] if f.formset.prefix == "dependent_links")
    assert "dependent" in inline.formset.forms[0].errors
    assert own.dependent_links.count() == 0
    # The same form with a patient of the clinic saves: the refusal above is about the clinic, nothing else.
    sibling = factories.patient(own.clinic, full_name="Irmão AAAA")
    assert submit(sibling).status_code == 302
    assert list(own.dependent_links.values_list("dependent", flat=True)) == [sibling.pk]


@pytest.mark.django_db
def test_every_autocomplete_answers_only_own_clinic_rows(client, manager_a, two_clinics):
    client.force_login(manager_a)
    checked = 0
    for model, model_admin in admin.site._registry.items():
        for field_name in model_admin.autocomplete_fields:
            params = {
                "app_label": model._meta.app_label,
                "model_name": model._meta.model_name,
                "field_name": field_name,
                "term": "",
            }
            response = client.get(reverse("admin:autocomplete"), params)
            if response.status_code == 403:
                continue  # the manager may not browse that model at all (e.g. logins of other clinics)
            assert response.status_code == 200, (model, field_name)
            texts = [r["text"] for r in json.loads(response.content)["results"]]
            assert not any("BBBB" in t for t in texts), (model, field_name, texts)
            checked += 1
    assert checked >= 8


@pytest.mark.django_db
def test_a_receptionist_can_assign_a_conversation_to_a_colleague_of_the_clinic(
    client, receptionist_a, manager_a, two_clinics
):
    client.force_login(receptionist_a)
    conversation = Conversation.objects.get(patient=two_clinics["a"]["patient"])
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    response = client.get(url)
    choices = {str(u) for u in response.context["adminform"].form.fields["assigned_to"].queryset}
    assert choices == {receptionist_a.username, manager_a.username}
    data = changeform_data(response)
    data["assigned_to"] = manager_a.pk
    assert client.post(url, data).status_code == 302
    conversation.refresh_from_db()
    assert conversation.assigned_to == manager_a
    from patients.models import AuditEntry

    entry = AuditEntry.objects.get(object_id=str(conversation.pk))
    assert entry.actor == receptionist_a and entry.changes["assigned_to"] == [None, manager_a.username]


@pytest.mark.django_db
def test_a_row_cannot_be_moved_to_another_clinic(admin_client, two_clinics):
    professional = two_clinics["a"]["professional"]
    response = admin_client.get(reverse("admin:scheduling_professional_change", args=[professional.pk]))
    assert "clinic" not in response.context["adminform"].form.fields


@pytest.mark.django_db
def test_a_delete_action_cannot_reach_another_clinics_rows(client, manager_a, two_clinics):
    client.force_login(manager_a)
    foreign = HealthPlan.objects.create(clinic=two_clinics["b"]["patient"].clinic, name="Sem uso B")
    own = HealthPlan.objects.create(clinic=two_clinics["a"]["patient"].clinic, name="Sem uso A")
    response = client.post(
        reverse("admin:patients_healthplan_changelist"),
        {"action": "delete_selected", "_selected_action": [foreign.pk, own.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not HealthPlan.objects.filter(pk=own.pk).exists()
    assert HealthPlan.objects.filter(pk=foreign.pk).exists()


@pytest.mark.django_db
def test_a_superuser_sees_every_clinic(admin_client, two_clinics):
    page = admin_client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert "Paciente AAAA" in page and "Paciente BBBB" in page


@pytest.mark.django_db
def test_a_receptionist_can_read_but_not_change_clinic_settings(client, receptionist_a, clinic_a):
    client.force_login(receptionist_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Outro nome"})
    assert response.status_code == 403
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Clínica A"
