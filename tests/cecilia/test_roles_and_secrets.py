"""Staff roles decide what a person may do; a clinic's secrets never leave the server in full."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import reverse

from cecilia.models import Clinic, StaffMembership, StaffRole
from cecilia.roles import MANAGEMENT_GROUP, RECEPTION_GROUP
from cecilia.services import staff_membership_set
from tests import factories


@pytest.mark.django_db
def test_the_two_role_groups_exist_after_migrating():
    reception = Group.objects.get(name=RECEPTION_GROUP)
    management = Group.objects.get(name=MANAGEMENT_GROUP)
    reception_perms = set(reception.permissions.values_list("codename", flat=True))
    management_perms = set(management.permissions.values_list("codename", flat=True))
    assert {"add_appointment", "change_patient", "view_conversation"} <= reception_perms
    assert "change_clinic" not in reception_perms
    assert "delete_appointment" not in reception_perms | management_perms  # appointments are cancelled, not deleted
    assert {"change_clinic", "add_professional", "add_staffmembership"} <= management_perms


@pytest.mark.django_db
def test_a_membership_puts_the_user_in_the_role_group_and_removing_it_takes_them_out(clinic_a, clinic_b):
    user = factories.staff_user(clinic_a, role=StaffRole.RECEPTIONIST)
    assert list(user.groups.values_list("name", flat=True)) == [RECEPTION_GROUP]
    staff_membership_set(user_id=user.pk, clinic=clinic_b, role=StaffRole.MANAGER)
    assert set(user.groups.values_list("name", flat=True)) == {RECEPTION_GROUP, MANAGEMENT_GROUP}
    StaffMembership.objects.filter(user=user, clinic=clinic_a).delete()
    from cecilia.services import staff_access_sync

    staff_access_sync(user_id=user.pk)
    assert list(user.groups.values_list("name", flat=True)) == [MANAGEMENT_GROUP]


@pytest.mark.django_db
def test_a_new_membership_is_enough_for_a_plain_user_to_log_in_and_work(client, clinic_a):
    colleague = get_user_model().objects.create_user(username="nova", password="pw-for-tests-1234")
    assert not colleague.is_staff
    staff_membership_set(user_id=colleague.pk, clinic=clinic_a, role=StaffRole.RECEPTIONIST)
    colleague.refresh_from_db()
    assert colleague.is_staff
    client.force_login(colleague)
    assert client.get(reverse("admin:patients_patient_changelist")).status_code == 200


@pytest.mark.django_db
def test_secrets_are_encrypted_at_rest_and_never_rendered_back(client, manager_a, clinic_a):
    clinic_a.whatsapp_api_key = "evo-key-1234567890-SECRET"
    clinic_a.whatsapp_webhook_secret = "hook-secret-abcdefgh-XYZW"
    clinic_a.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT whatsapp_api_key FROM cecilia_clinic WHERE id = %s", [clinic_a.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "SECRET" not in stored
    assert Clinic.objects.get(pk=clinic_a.pk).whatsapp_api_key == "evo-key-1234567890-SECRET"

    client.force_login(manager_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    page = client.get(url).content.decode()
    assert "evo-key-1234567890" not in page and "hook-secret-abcdefgh" not in page
    assert "…XYZW" in page  # staff can tell which secret is set


@pytest.mark.django_db
def test_saving_the_clinic_with_blank_secret_fields_keeps_the_stored_secrets(client, manager_a, clinic_a):
    clinic_a.whatsapp_api_key = "evo-key-1234567890-SECRET"
    clinic_a.save()
    client.force_login(manager_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    response = client.get(url)
    data = _form_data(response.context)
    data.update({"name": "Clínica A renomeada", "whatsapp_api_key": "", "whatsapp_webhook_secret": "novo-segredo-1"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Clínica A renomeada"
    assert clinic_a.whatsapp_api_key == "evo-key-1234567890-SECRET"
    assert clinic_a.whatsapp_webhook_secret == "novo-segredo-1"


def _form_data(context):
    form = context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None or name in {"whatsapp_api_key", "whatsapp_webhook_secret", "clear_secrets"}:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = str(value)
    for formset in context["inline_admin_formsets"]:
        fs = formset.formset
        data[f"{fs.prefix}-TOTAL_FORMS"] = str(len(fs.forms))
        data[f"{fs.prefix}-INITIAL_FORMS"] = str(fs.initial_form_count())
        for form in fs.forms:
            for name, field in form.fields.items():
                value = form.initial.get(name, field.initial)
                if value is not None and not isinstance(value, bool):
                    data[f"{form.prefix}-{name}"] = str(getattr(value, "pk", value))
    return data


@pytest.mark.django_db(transaction=True)
def test_the_role_groups_come_back_with_all_their_permissions_after_a_flush():
    from django.core.management import call_command

    before = set(Group.objects.get(name=MANAGEMENT_GROUP).permissions.values_list("codename", flat=True))
    call_command("flush", interactive=False, verbosity=0)
    after = set(Group.objects.get(name=MANAGEMENT_GROUP).permissions.values_list("codename", flat=True))
    assert after == before
    assert "view_inboundevent" in after  # a permission of the last app to migrate
